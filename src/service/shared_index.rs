//! The call → provider index shared by a fleet (`[state] backend = "redis"`): each replica
//! publishes, whenever a scope's snapshot (an org's, or one caller's) has a new version, the
//! call ids each provider that answered listed, one sealed list per provider. A replica whose
//! own index does not know a call looks there before listing afresh, so a call listed through
//! one replica can be ended through another. A provider that failed keeps the list it
//! published last, as the local index keeps its calls. Entries say which provider to ask,
//! never more: the owner must still be one of the org's providers, and ends the call itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Snapshot, Version};
use crate::provider::RequestContext;
use crate::state::redis::Redis;
use crate::state::seal::Rejected;

/// How long a provider's published list is kept after its last publication: a call whose
/// provider has been failing longer than this is found by listing, or not at all.
const KEEP: Duration = Duration::from_secs(3_600);

type Scope = (Arc<str>, Option<[u8; 32]>);

pub struct SharedIndex {
    redis: Arc<Redis>,
    /// The version last published per scope, so an unchanged snapshot costs one lookup. An
    /// entry lives at most half of `KEEP`, so a list that stays the same is written again
    /// before Redis lets it go; one whose write failed is taken out at once.
    published: moka::sync::Cache<Scope, Version>,
}

impl SharedIndex {
    pub fn new(redis: Arc<Redis>) -> Self {
        Self {
            redis,
            published: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(crate::provider::CALLER_IDLE)
                .time_to_live(KEEP / 2)
                .build(),
        }
    }

    fn scope(ctx: &RequestContext) -> Scope {
        (
            ctx.org_id.clone(),
            ctx.forwarded.as_ref().map(|f| f.digest()),
        )
    }

    /// Named by an HMAC of the scope and the provider: the caller's digest never shows.
    fn key(&self, scope: &Scope, provider: &str) -> String {
        let caller: &[u8] = scope.1.as_ref().map_or(&[], |d| &d[..]);
        self.redis
            .sealer
            .secret_key("index", &[scope.0.as_bytes(), caller, provider.as_bytes()])
    }

    /// Publishes `snapshot`'s owners for `ctx`'s scope if its version is new here; the write
    /// happens off the request.
    pub fn publish<'p>(
        &self,
        ctx: &RequestContext,
        providers: impl Iterator<Item = &'p str>,
        snapshot: &Snapshot,
    ) {
        let scope = Self::scope(ctx);
        let version = snapshot.version();
        if !self.redis.is_up() || self.published.get(&scope) == Some(version) {
            return;
        }
        self.published.insert(scope.clone(), version);
        let failed: Vec<&str> = snapshot.failures().iter().map(|f| &*f.provider).collect();
        let mut lists: HashMap<&str, Vec<&str>> = providers
            .filter(|p| !failed.contains(p))
            .map(|p| (p, Vec::new()))
            .collect();
        for call in snapshot.calls() {
            if let Some(list) = lists.get_mut(&*call.provider) {
                list.push(&call.call_id);
            }
        }
        let sealed: Vec<(String, Vec<u8>)> = lists
            .into_iter()
            .filter_map(|(provider, ids)| {
                let key = self.key(&scope, provider);
                let json = serde_json::to_vec(&ids).ok()?;
                let value = self.redis.sealer.seal(&key, &json);
                Some((key, value))
            })
            .collect();
        let redis = self.redis.clone();
        let published = self.published.clone();
        tokio::spawn(async move {
            let written: Option<()> = redis
                .run("index", |mut c| async move {
                    let mut pipe = redis::pipe();
                    for (key, value) in sealed {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg(value)
                            .arg("PX")
                            .arg(KEEP.as_millis() as u64)
                            .ignore();
                    }
                    pipe.query_async(&mut c).await
                })
                .await;
            if written.is_none() {
                published.invalidate(&scope);
            }
        });
    }

    /// Named by an HMAC of the scope and a call placed through callmux.
    fn placed_key(&self, scope: &Scope, call_id: &str) -> String {
        let caller: &[u8] = scope.1.as_ref().map_or(&[], |d| &d[..]);
        self.redis
            .sealer
            .secret_key("placed", &[scope.0.as_bytes(), caller, call_id.as_bytes()])
    }

    /// A call just placed through `provider`: every replica routes it there at once, before
    /// any list shows it (for [`super::index::PLACED_KEPT`]).
    pub async fn placed(&self, ctx: &RequestContext, provider: &str, call_id: &str) {
        let key = self.placed_key(&Self::scope(ctx), call_id);
        self.redis
            .put_sealed(&key, provider.as_bytes(), super::index::PLACED_KEPT)
            .await;
    }

    /// The provider among `providers` (the org's) whose published list holds `call_id`.
    pub async fn owner(
        &self,
        ctx: &RequestContext,
        providers: &[String],
        call_id: &str,
    ) -> Option<Arc<str>> {
        let scope = Self::scope(ctx);
        let keys: Vec<String> = providers.iter().map(|p| self.key(&scope, p)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .redis
            .cmd("get", redis::cmd("MGET").arg(&keys).clone())
            .await?;
        for ((provider, key), value) in providers.iter().zip(&keys).zip(values) {
            let Some(payload) = value.and_then(|v| self.redis.open("index", key, &v)) else {
                continue;
            };
            // Owned: an id with `"` or `\` is escaped in JSON, and cannot be borrowed.
            match serde_json::from_slice::<Vec<String>>(&payload) {
                Ok(ids) if ids.iter().any(|id| id == call_id) => {
                    return Some(Arc::from(provider.as_str()))
                }
                Ok(_) => {}
                Err(_) => self.redis.rejected("index", Rejected::Decode),
            }
        }
        let placed = self
            .redis
            .get_sealed("placed", &self.placed_key(&scope, call_id))
            .await?;
        let placed = std::str::from_utf8(&placed).ok()?;
        providers
            .iter()
            .find(|p| p.as_str() == placed)
            .map(|p| Arc::from(p.as_str()))
    }
}
