//! Forwarding Bland's other routes in the service core: which provider the caller's org
//! forwards to, with the caller authenticated exactly as a list is first.

use std::sync::Arc;

use super::auth::{self, AuthError, Identity, Presented};
use super::Service;
use crate::provider::{Forward, RequestContext};

/// Where one request is forwarded, and as whom.
pub struct Route {
    pub org: Arc<str>,
    pub provider: Arc<str>,
    pub forward: Arc<dyn Forward>,
    pub ctx: RequestContext,
}

/// Where the caller's org sends Bland's other routes.
pub enum Passthrough {
    Forward(Route),
    /// The org forwards none.
    NotForwarded {
        org: Arc<str>,
    },
}

impl Service {
    /// Authenticates `presented` as [`Service::list`] does and answers where its org's
    /// other Bland routes go.
    ///
    /// A caller who brings a Bland key has it checked by the org's Bland provider as a list
    /// would, unless Bland accepted the same key moments ago; a key callmux issued is
    /// checked here and never goes further.
    pub async fn passthrough(&self, presented: &Presented) -> Result<Passthrough, AuthError> {
        let identity = auth::identify(&self.config, presented)?;
        let org = identity.org();
        self.vouch(&identity, presented).await?;
        let forwarded = match identity {
            Identity::ViaUpstream(org, ..) => presented.forwarded(org),
            Identity::Verified(..) => None,
        };
        let runtime = &self.orgs[&org.id];
        let not_forwarded = || {
            Ok(Passthrough::NotForwarded {
                org: runtime.id.clone(),
            })
        };
        let Some(provider) = &org.passthrough else {
            return not_forwarded();
        };
        let Some(built) = self.providers.iter().find(|b| b.spec.id == *provider) else {
            return not_forwarded();
        };
        let Some(forward) = &built.backend.forward else {
            return not_forwarded();
        };
        Ok(Passthrough::Forward(Route {
            org: runtime.id.clone(),
            provider: Arc::from(provider.as_str()),
            forward: forward.clone(),
            ctx: RequestContext {
                org_id: runtime.id.clone(),
                forwarded,
            },
        }))
    }
}
