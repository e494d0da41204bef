//! Cooling a provider down after failed placements (DESIGN §16): `cooldown_failures` in a row
//! and every route passes it over for `cooldown_ms`; with Redis the whole fleet sees it.

use std::sync::Mutex;
use std::time::Duration;

use crate::call::time::now_ms;
use crate::provider::PlacingCooldown;
use crate::state::redis::Redis;
use crate::state::seal::Sealer;

/// One provider's placing failures in a row, and until when it cools down (wall-clock ms,
/// as the fleet shares it). Kept with the provider across reloads.
#[derive(Debug, Default)]
pub struct Cooldown {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    until_ms: Option<u64>,
}

fn key(provider: &str) -> String {
    Sealer::key("cooldown", provider)
}

impl Cooldown {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Until when (wall-clock ms) this replica knows the provider cools down, if it does now.
    pub fn until_ms(&self) -> Option<u64> {
        self.state().until_ms.filter(|&until| now_ms() < until)
    }

    /// Whether the provider cools down now, here or (with Redis) anywhere in the fleet.
    pub async fn cooling(&self, provider: &str, redis: Option<&Redis>) -> bool {
        if self.until_ms().is_some() {
            return true;
        }
        let Some(redis) = redis else { return false };
        let Some(payload) = redis.get_sealed("cooldown", &key(provider)).await else {
            return false;
        };
        match <[u8; 8]>::try_from(payload.as_slice()) {
            Ok(until) => {
                let until = u64::from_be_bytes(until);
                if now_ms() < until {
                    self.state().until_ms = Some(until);
                    return true;
                }
                false
            }
            Err(_) => false,
        }
    }

    /// A placement the provider refused or left unknown: the `settings.failures`th in a row
    /// starts a cooldown, told to the fleet.
    pub async fn failed(&self, provider: &str, settings: PlacingCooldown, redis: Option<&Redis>) {
        let until = {
            let mut s = self.state();
            s.failures += 1;
            if s.failures < settings.failures || settings.cooldown.is_zero() {
                return;
            }
            s.failures = 0;
            let until = now_ms() + settings.cooldown.as_millis() as u64;
            s.until_ms = Some(until);
            until
        };
        tracing::warn!(
            provider,
            cooldown_ms = settings.cooldown.as_millis() as u64,
            "provider cools down after failed placements"
        );
        if let Some(redis) = redis {
            redis
                .put_sealed(&key(provider), &until.to_be_bytes(), settings.cooldown)
                .await;
        }
    }

    /// A placement the provider took (or rejected for the request's own fault): the count
    /// starts again.
    pub fn succeeded(&self) {
        self.state().failures = 0;
    }
}

/// What `retry-after` says when every target cools down or is full, in seconds.
pub fn retry_after(cooling_until_ms: Option<u64>) -> u64 {
    const FULL: Duration = Duration::from_secs(super::super::control::RETRY_AFTER_SECS);
    cooling_until_ms
        .map(|until| until.saturating_sub(now_ms()).div_ceil(1000).max(1))
        .unwrap_or(FULL.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_third_failure_in_a_row_cools_down_and_a_success_resets_the_count() {
        let settings = PlacingCooldown {
            failures: 3,
            cooldown: Duration::from_secs(30),
        };
        let c = Cooldown::default();
        c.failed("p", settings, None).await;
        c.failed("p", settings, None).await;
        c.succeeded();
        c.failed("p", settings, None).await;
        c.failed("p", settings, None).await;
        assert!(!c.cooling("p", None).await);
        c.failed("p", settings, None).await;
        assert!(c.cooling("p", None).await);
        assert!(c.until_ms().unwrap() > now_ms() + 29_000);
    }
}
