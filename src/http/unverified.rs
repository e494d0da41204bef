//! Keys sent to Bland to be checked, limited per client address (`[server]
//! unverified_keys_per_second`): a client making keys up costs Bland at most that many asks
//! a second, whatever it sends. Keys Bland accepted or rejected lately are not counted.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::service::auth::AuthError;

/// Addresses held before the ones idle for a while are dropped.
const TIDY_ABOVE: usize = 4096;

pub struct Unverified {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_second: NonZeroU32,
}

impl Unverified {
    pub fn new(per_second: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(per_second)),
            per_second,
        }
    }

    /// Takes one unverified key from `peer`'s allowance, or says when to retry.
    pub fn take(&self, peer: IpAddr) -> Result<(), AuthError> {
        let taken = self.limiter.check_key(&peer);
        if self.limiter.len() > TIDY_ABOVE {
            self.limiter.retain_recent();
        }
        taken.map_err(|not| {
            let wait = not.wait_time_from(crate::service::limits::CLOCK.now());
            AuthError::TooManyUnverified {
                per_second: self.per_second.get(),
                retry_after_secs: crate::service::limits::retry_after_secs(wait),
            }
        })
    }
}
