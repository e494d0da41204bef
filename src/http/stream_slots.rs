//! The places live streams hold, taken only once the caller is authenticated: at most
//! `max_streams` in all, and `max_streams_per_org` for any one org, so one tenant (or made-up
//! keys waiting on Bland) cannot shut the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every stream's place, in all and per org.
pub struct Slots {
    all: Arc<Semaphore>,
    max: usize,
    per_org: usize,
    taken: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One stream's place, given back when its body is dropped.
pub struct Place {
    _all: OwnedSemaphorePermit,
    org: Arc<str>,
    taken: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = taken.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                taken.remove(&self.org);
            }
        }
    }
}

impl Slots {
    pub fn new(max: usize, per_org: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max)),
            max,
            per_org,
            taken: Arc::default(),
        }
    }

    /// A place for a stream of `org`, or why there is none (the message for the 503).
    pub fn take(&self, org: &Arc<str>) -> Result<Place, String> {
        let Ok(all) = self.all.clone().try_acquire_owned() else {
            tracing::warn!(limit = self.max, "stream refused: max_streams open");
            return Err(format!(
                "callmux has {} streams open already (max_streams); retry shortly",
                self.max
            ));
        };
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let n = taken.entry(org.clone()).or_default();
        if *n >= self.per_org {
            tracing::warn!(org = %org, limit = self.per_org, "stream refused: max_streams_per_org open");
            return Err(format!(
                "this organisation has {} streams open already (max_streams_per_org); close \
                 one, or retry shortly",
                self.per_org
            ));
        }
        *n += 1;
        Ok(Place {
            _all: all,
            org: org.clone(),
            taken: self.taken.clone(),
        })
    }
}
