//! The connection to a Redis every replica shares: one multiplexed, reconnecting
//! `ConnectionManager`, every operation bounded by `[state] timeout_ms`, and a health check
//! that marks the store down on the first failure (so requests stop waiting on it at once)
//! and up again when Redis answers, counted in `/metrics` either way.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use metrics::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use super::seal::{Rejected, Sealer};
use super::settings::RedisConfig;
use crate::telemetry::Telemetry;

/// How often Redis is asked whether it is there: how soon a replica rejoins once it is back.
const HEALTH_EVERY: Duration = Duration::from_millis(500);

pub struct Redis {
    client: redis::Client,
    manager: ArcSwap<ConnectionManager>,
    timeout: Duration,
    pub sealer: Sealer,
    up: AtomicBool,
    up_gauge: Gauge,
    telemetry: Arc<Telemetry>,
    /// The URL without its password, for logs.
    shown: String,
    /// The password, to scrub from any error text before it is logged.
    password: Option<String>,
    /// Tells this process's own messages on a channel from other replicas'.
    pub origin: u64,
    /// Told each time the store comes back up, so subscriptions are made again: one whose
    /// connection was cut without a reset would otherwise wait for messages for ever.
    rejoined: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects lazily and starts the health check; never fails and never waits: a Redis
    /// that is not there yet leaves the store degraded until it is.
    pub fn start(config: &RedisConfig, telemetry: &Arc<Telemetry>) -> Result<Arc<Self>, String> {
        let url = config.url.expose_secret();
        let client = redis::Client::open(url).map_err(|_| {
            format!(
                "state.redis_url_env: ${} holds `{}`, which is not a Redis URL",
                config.url_env,
                config.shown_url()
            )
        })?;
        let password = url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .filter(|p| !p.is_empty());
        let manager = Self::manager(&client, config.timeout)
            .map_err(|_| "state: cannot set up the Redis connection".to_string())?;
        let redis = Arc::new(Self {
            manager: ArcSwap::from_pointee(manager),
            client,
            timeout: config.timeout,
            sealer: Sealer::new(&config.secret),
            up: AtomicBool::new(false),
            rejoined: Arc::default(),
            up_gauge: telemetry.gauge("callmux_state_up", &[]),
            telemetry: telemetry.clone(),
            shown: config.shown_url(),
            password,
            origin: fastrand::u64(..),
        });
        redis.up_gauge.set(0.0);
        tokio::spawn(health(Arc::downgrade(&redis)));
        Ok(redis)
    }

    fn manager(client: &redis::Client, timeout: Duration) -> RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        ConnectionManager::new_lazy_with_config(client.clone(), config)
    }

    /// Whether Redis answered lately; while it is down, every operation gives up at once.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs one operation (a command or a pipeline) if the store is up, under the timeout.
    /// `None`: down, failed or slow, which is counted and marks the store down.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        self.attempt(op, f).await
    }

    async fn attempt<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = (**self.manager.load()).clone();
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(
                    op,
                    &format!("no answer within {} ms", self.timeout.as_millis()),
                );
                None
            }
        }
    }

    /// One command.
    pub async fn cmd<T: FromRedisValue>(&self, op: &'static str, cmd: redis::Cmd) -> Option<T> {
        self.run(op, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    fn failed(&self, op: &'static str, why: &str) {
        self.telemetry
            .counter("callmux_state_failures_total", &[("op", op)])
            .increment(1);
        if self.up.swap(false, Ordering::Relaxed) {
            self.up_gauge.set(0.0);
            let mut why = why.to_string();
            if let Some(p) = &self.password {
                why = why.replace(p.as_str(), "***");
            }
            tracing::warn!(
                redis = %self.shown, op, error = %why,
                "state store unavailable: this replica serves on its own until Redis is back"
            );
        }
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            self.up_gauge.set(1.0);
            self.rejoined.notify_waiters();
            tracing::info!(redis = %self.shown, "state store connected: sharing with the fleet");
        }
    }

    /// A value read back that was not used, by why.
    pub fn rejected(&self, key_kind: &'static str, why: Rejected) {
        self.telemetry
            .counter(
                "callmux_state_rejected_total",
                &[("kind", key_kind), ("reason", why.reason())],
            )
            .increment(1);
        tracing::warn!(
            kind = key_kind,
            reason = why.reason(),
            "ignored a value in Redis that this fleet did not write"
        );
    }

    /// The payload of `key`, if it is there and this fleet sealed it for that key.
    pub async fn get_sealed(&self, kind: &'static str, key: &str) -> Option<Vec<u8>> {
        let value: Option<Vec<u8>> = self.cmd("get", redis::cmd("GET").arg(key).clone()).await?;
        self.open(kind, key, &value?)
    }

    /// `value`, read back from `key`, opened, or counted as rejected.
    pub fn open(&self, kind: &'static str, key: &str, value: &[u8]) -> Option<Vec<u8>> {
        match self.sealer.open(key, value) {
            Ok(payload) => Some(payload.to_vec()),
            Err(why) => {
                self.rejected(kind, why);
                None
            }
        }
    }

    /// Writes `payload` sealed for `key`, kept for `ttl`.
    pub async fn put_sealed(&self, key: &str, payload: &[u8], ttl: Duration) -> bool {
        let sealed = self.sealer.seal(key, payload);
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(sealed)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .clone();
        self.cmd::<()>("set", cmd).await.is_some()
    }

    /// Writes `payload` sealed for `key`, kept for `ttl`, only if `key` holds nothing:
    /// `Some(true)` if written, `Some(false)` if taken already, `None` if Redis failed.
    pub async fn put_sealed_new(&self, key: &str, payload: &[u8], ttl: Duration) -> Option<bool> {
        let sealed = self.sealer.seal(key, payload);
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(sealed)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .clone();
        let set: Option<String> = self.cmd("set", cmd).await?;
        Some(set.is_some())
    }

    pub async fn del(&self, key: &str) -> bool {
        self.cmd::<()>("del", redis::cmd("DEL").arg(key).clone())
            .await
            .is_some()
    }
}

impl Redis {
    /// Publishes `payload`, sealed, on `channel`; a message lost while Redis is down is lost.
    pub async fn publish(&self, channel: &str, payload: &[u8]) {
        let sealed = self.sealer.seal(channel, payload);
        let _: Option<i64> = self
            .cmd(
                "publish",
                redis::cmd("PUBLISH").arg(channel).arg(sealed).clone(),
            )
            .await;
    }

    /// Every message on `channel` that this fleet sealed, as it comes, for as long as the
    /// store lives: subscribed on a connection of its own, again after Redis comes back.
    pub fn subscribe(
        self: &Arc<Self>,
        kind: &'static str,
        channel: String,
    ) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(1_024);
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(redis) = store.upgrade() else { return };
                let (client, timeout) = (redis.client.clone(), redis.timeout);
                let rejoined = redis.rejoined.clone();
                drop(redis);
                let subscribed = tokio::time::timeout(timeout, async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    RedisResult::Ok(pubsub)
                })
                .await;
                let mut again_now = false;
                if let Ok(Ok(pubsub)) = subscribed {
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let message = tokio::select! {
                            message = messages.next() => message,
                            () = rejoined.notified() => {
                                again_now = true;
                                None
                            }
                        };
                        let Some(message) = message else { break };
                        let Some(redis) = store.upgrade() else { return };
                        let opened = redis.open(kind, &channel, message.get_payload_bytes());
                        if let Some(payload) = opened {
                            if tx.send(payload).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                if !again_now {
                    tokio::time::sleep(HEALTH_EVERY).await;
                }
            }
        });
        rx
    }
}

/// Pings Redis every [`HEALTH_EVERY`] while the store lives. A failed ping replaces the
/// connection manager, so a connection left broken by a garbled answer or a hung server is
/// not reused.
async fn health(redis: Weak<Redis>) {
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(redis) = redis.upgrade() else { return };
        let pong: Option<String> = redis
            .attempt("ping", |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await;
        if pong.as_deref() == Some("PONG") {
            redis.recovered();
        } else {
            if pong.is_some() {
                redis.failed("ping", "answered PING with something other than PONG");
            }
            if let Ok(fresh) = Redis::manager(&redis.client, redis.timeout) {
                redis.manager.store(Arc::new(fresh));
            }
        }
    }
}
