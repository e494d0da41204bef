//! Who the caller is, as proved: the org, the key's name, its scopes and the org's routes, for
//! a client (the dashboard) to show only what the key may do.

use std::sync::Arc;

use super::auth::{self, AuthError, Presented};
use super::Service;
use crate::scope::Scopes;

/// A proved caller. Holds no key, only its name.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org: Arc<str>,
    pub key: Arc<str>,
    pub scopes: Scopes,
    /// The routes the org may place calls on, its default first.
    pub routes: Vec<String>,
}

impl Service {
    /// Proves `presented` (a Bland key is checked by Bland, as a list would) and says who
    /// it is and what it may do.
    pub async fn whoami(&self, presented: &Presented) -> Result<Caller, AuthError> {
        let identity = auth::identify(&self.config, presented)?;
        self.vouch(&identity, presented).await?;
        Ok(Caller {
            org: self.orgs[&identity.org().id].id.clone(),
            key: Arc::from(identity.key_name()),
            scopes: identity.scopes(),
            routes: identity.org().routes.clone(),
        })
    }
}

impl Service {
    /// The org's id as the service shares it (no allocation per request).
    pub fn org_id(&self, id: &str) -> Option<&Arc<str>> {
        self.orgs.get(id).map(|o| &o.id)
    }
}
