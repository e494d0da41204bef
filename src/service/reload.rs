//! The configuration being served, swapped whole on reload (SIGHUP or a changed file).
//! Requests in flight keep the one they started with; an invalid new file is refused with a
//! log line and the old configuration keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::auth::Presented;
use super::capacity::Capacity;
use super::events::outbox::{Lookup, SystemLookup};
use super::events::Outboxes;
use super::live::{self, Hub};
use super::{ListError, Listed, Service};
use crate::config::Config;
use crate::state::Store;
use crate::telemetry::Telemetry;

/// One loaded configuration and what `/readyz` says about it.
pub struct Loaded {
    pub service: Service,
    /// 1 for the configuration the process started with, then one more per reload.
    pub version: u64,
    /// SHA-256 of the file's bytes (empty when not loaded from a file).
    pub file_sha256: String,
    pub loaded_at: SystemTime,
}

pub struct Live {
    /// Shared with the hub, whose pollers list from whichever configuration is served.
    current: Arc<ArcSwap<Loaded>>,
    /// One metrics registry for every configuration this process serves.
    telemetry: Arc<Telemetry>,
    source: Option<PathBuf>,
    /// Serialises reloads, and remembers the digest of the last file refused so a watcher
    /// does not log the same refusal every poll.
    reloading: Mutex<Option<String>>,
    /// The live streams of every configuration this process serves.
    hub: Arc<Hub>,
    /// The webhooks' outboxes of the configuration the process started with.
    outboxes: Arc<Outboxes>,
    /// Each key's rates, kept across reloads for the keys a reload leaves as they were.
    rates: super::limits::KeyRates,
}

impl Live {
    /// A configuration that cannot be reloaded (no file behind it).
    pub fn fixed(config: Config) -> Result<Arc<Self>, String> {
        let telemetry = Arc::new(Telemetry::default());
        let store = Store::new(&config.state, &telemetry)?;
        let service = Service::new(config, &store, telemetry.clone())?;
        Ok(Self::serving(service, String::new(), None, telemetry))
    }

    /// Loads `path` (under the process's `CALLMUX_*` variables) and keeps it to reload from.
    pub fn from_file(path: PathBuf) -> Result<Arc<Self>, String> {
        let telemetry = Arc::new(Telemetry::default());
        let (service, file_sha256) = load(&path, None, &telemetry)?;
        Ok(Self::serving(service, file_sha256, Some(path), telemetry))
    }

    /// Serves `service` as version 1, with a hub of its own.
    fn serving(
        service: Service,
        file_sha256: String,
        source: Option<PathBuf>,
        telemetry: Arc<Telemetry>,
    ) -> Arc<Self> {
        let fleet = service.store().redis().cloned();
        let current = Arc::new(ArcSwap::from_pointee(Loaded {
            service,
            version: 1,
            file_sha256,
            loaded_at: SystemTime::now(),
        }));
        let hub = Hub::new(current.clone(), telemetry.clone(), fleet.clone());
        let fleet_for_watch = fleet.clone();
        let lookup: Arc<dyn Lookup> = Arc::new(SystemLookup);
        let outboxes = Arc::new(Outboxes::new(
            current.load().service.config(),
            &telemetry,
            lookup,
            fleet,
        ));
        hub.tap(outboxes.clone());
        super::events::watch::start(current.clone(), &outboxes, fleet_for_watch, &telemetry);
        Arc::new(Self {
            current,
            telemetry,
            source,
            reloading: Mutex::new(None),
            hub,
            outboxes,
            rates: Default::default(),
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn outboxes(&self) -> &Arc<Outboxes> {
        &self.outboxes
    }

    pub fn rates(&self) -> &super::limits::KeyRates {
        &self.rates
    }

    /// Loads the file again and, if valid, serves it from the next request on. Returns the
    /// new version.
    pub fn reload(&self) -> Result<u64, String> {
        let mut refused = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.source else {
            return Err("this configuration was not loaded from a file".into());
        };
        let old = self.current();
        match load(path, Some(&old.service), &self.telemetry) {
            Ok((service, file_sha256)) => {
                if service.config().server != old.service.config().server {
                    tracing::warn!("[server] settings changed; they take effect on restart");
                }
                let version = old.version + 1;
                self.current.store(Arc::new(Loaded {
                    service,
                    version,
                    file_sha256,
                    loaded_at: SystemTime::now(),
                }));
                *refused = None;
                let new = self.current();
                self.hub
                    .reloaded(old.service.config(), new.service.config());
                self.rates
                    .reloaded(|org, key| new.service.config().has_key(org, key));
                tracing::info!(version, config = %path.display(), "configuration reloaded");
                Ok(version)
            }
            Err(e) => {
                *refused = sha256_of(path).ok();
                // One log line, whatever the number of problems.
                let problems = e.lines().map(str::trim).collect::<Vec<_>>().join(" ");
                tracing::error!(config = %path.display(), version = old.version, "configuration reload refused, still serving the previous one: {problems}");
                Err(e)
            }
        }
    }

    /// Reloads whenever the file's contents change, checking every `every`.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let Some(path) = self.source.clone() else {
            return;
        };
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(live) = live.upgrade() else { return };
                let Ok(now) = sha256_of(&path) else { continue };
                let refused = live
                    .reloading
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if now != live.current().file_sha256 && Some(&now) != refused.as_ref() {
                    let _ = live.reload();
                }
            }
        });
    }
}

/// The hub lists from the configuration being served at each poll.
#[async_trait]
impl live::Source for ArcSwap<Loaded> {
    fn poll_period(&self, org: &str) -> Option<Duration> {
        let loaded = self.load();
        let config = loaded.service.config();
        config
            .org(org)?
            .providers
            .iter()
            .filter_map(|id| config.provider(id))
            .map(|p| p.common.poll_interval)
            .min()
    }

    async fn list(&self, presented: &Presented) -> Result<Listed, ListError> {
        self.load_full().service.list(presented).await
    }

    fn pushed(&self, provider: &str, moved: &crate::provider::kind::Move) -> bool {
        self.load().service.pushed(provider, moved)
    }

    fn position(&self, org: &str, provider: &str) -> Option<usize> {
        self.load().service.position(org, provider)
    }

    async fn list_unattended(&self, org: &str) -> Option<Result<Listed, ListError>> {
        self.load_full().service.list_unattended(org).await
    }

    async fn capacity(&self, state: &live::change::State) -> Option<Capacity> {
        let loaded = self.load_full();
        let snapshot = match state {
            live::change::State::Listed(s) => Some(&**s),
            live::change::State::AllFailed { .. } => None,
        };
        Some(
            loaded
                .service
                .capacity_of(state.org(), snapshot, state.failures())
                .await,
        )
    }
}

/// Loads `path`; on a reload, the providers `previous` built from unchanged settings are kept.
fn load(
    path: &PathBuf,
    previous: Option<&Service>,
    telemetry: &Arc<Telemetry>,
) -> Result<(Service, String), String> {
    let digest = sha256_of(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let config = Config::load(path).map_err(|e| e.to_string())?;
    // The store is the process's, made from the first configuration and kept on reload.
    let store = match previous {
        Some(p) => {
            if config.state != p.config().state {
                tracing::warn!("[state] settings changed; they take effect on restart");
            }
            p.store().clone()
        }
        None => Store::new(&config.state, telemetry)?,
    };
    Ok((
        Service::keeping(config, previous, &store, telemetry.clone())?,
        digest,
    ))
}

fn sha256_of(path: &PathBuf) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}
