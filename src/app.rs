//! The running service's state, and one list request answered end to end: auth, fan-out, merge.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::auth::{self, AuthError, Identity, Presented, Verdicts};
use crate::config::Config;
use crate::merge::{self, Listing, ProviderFailure};
use crate::provider::{self, Provider, ProviderError, RequestContext};

/// A loaded configuration with its providers built.
pub struct App {
    config: Config,
    providers: HashMap<String, Arc<dyn Provider>>,
    verdicts: Verdicts,
}

/// Why a list request got no list.
#[derive(Debug)]
pub enum ListError {
    Auth(AuthError),
    /// Every provider the org may see failed.
    AllFailed(Vec<ProviderFailure>),
}

impl From<AuthError> for ListError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl App {
    pub fn new(config: Config) -> Result<Self, String> {
        let providers = config
            .providers
            .iter()
            .map(|spec| Ok((spec.id.clone(), provider::build(spec)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            verdicts: Verdicts::new(config.server.auth_cache_ttl),
            config,
            providers,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Authenticates the request and lists its org's active calls.
    ///
    /// An org that authenticates through Bland has the key checked by that provider before
    /// any other provider is asked, unless Bland accepted the same key moments ago; either
    /// way a Bland rejection in this request is a 401, never a partial list.
    pub async fn list(&self, headers: &HeaderMap) -> Result<(String, Listing), ListError> {
        let presented = Presented::from_headers(headers)?;
        let identity = auth::identify(&self.config, &presented)?;
        let org = identity.org();
        let providers: Vec<Arc<dyn Provider>> = org
            .providers
            .iter()
            .map(|id| self.providers[id].clone())
            .collect();
        let ctx = RequestContext {
            org_id: Arc::from(org.id.as_str()),
            forwarded: match identity {
                Identity::ViaUpstream(..) => presented.forwarded(),
                Identity::Verified(_) => None,
            },
        };

        let mut prefetched = None;
        let authority = match identity {
            Identity::ViaUpstream(org, provider) => {
                let at = org
                    .providers
                    .iter()
                    .position(|p| p == provider)
                    .expect("config validation puts the auth provider in the org's list");
                if !self.verdicts.is_accepted(&org.id, &presented) {
                    let answer = providers[at].active_calls(&ctx).await;
                    match &answer {
                        Err(ProviderError::Rejected(_)) => return Err(AuthError::Rejected.into()),
                        Err(error) => {
                            return Err(AuthError::Unavailable {
                                provider: provider.to_string(),
                                error: error.clone(),
                            }
                            .into())
                        }
                        Ok(_) => self.verdicts.accept(&org.id, &presented),
                    }
                    prefetched = Some((at, answer));
                }
                Some(at)
            }
            Identity::Verified(_) => None,
        };

        let answers = merge::gather(&providers, &ctx, prefetched).await;
        if let Some(at) = authority {
            if let Err(ProviderError::Rejected(_)) = answers[at] {
                self.verdicts.forget(&org.id, &presented);
                return Err(AuthError::Rejected.into());
            }
        }
        let answers = providers
            .iter()
            .map(|p| Arc::from(p.id()))
            .zip(answers)
            .collect();
        let listing = merge::merge(&org.id, answers);
        if listing.failures.len() == providers.len() {
            return Err(ListError::AllFailed(listing.failures));
        }
        Ok((org.id.clone(), listing))
    }
}
