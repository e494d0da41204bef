//! What the live hub's unit tests share: lists of calls, a subscriber's credentials, and an
//! upstream whose answers and poll period a test sets, which counts when it is asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::change::{Body, Event, State};
use super::hub::{Hub, Joining};
use super::poller::Source;
use super::topic::{Subscription, TopicKey};
use crate::call::{Call, CallStatus};
use crate::service::auth::{AuthError, Presented};
use crate::service::merge::ProviderFailure;
use crate::service::{ListError, Listed, Snapshot};
use crate::telemetry::Telemetry;

pub const ORG: &str = "org";

/// `ORG`'s merged list of one provider's `calls`.
pub fn snapshot(calls: &[(&str, CallStatus)], failures: Vec<ProviderFailure>) -> Arc<Snapshot> {
    let answer = Ok(Arc::new(
        calls
            .iter()
            .map(|(id, s)| Call::new(*id, Arc::from("p"), s.clone()))
            .collect(),
    ));
    Arc::new(Snapshot::new(Arc::from(ORG), vec![answer], failures, None))
}

pub fn listed(calls: &[(&str, CallStatus)]) -> State {
    State::Listed(snapshot(calls, vec![]))
}

/// `ORG`'s own topic (not a caller's).
pub fn key() -> TopicKey {
    TopicKey {
        org: Arc::from(ORG),
        caller: None,
        key: None,
    }
}

pub fn presented() -> Presented {
    Presented::new(Some(&HeaderValue::from_static("a-key")), None).expect("a key")
}

/// A kick that does nothing: the subscriber's connection is the test itself.
pub fn no_kick() -> Box<dyn Fn() + Send + Sync> {
    Box::new(|| {})
}

/// Every event waiting in `events`, without waiting for more.
pub fn drain(events: &mut mpsc::Receiver<Arc<Event>>) -> Vec<Arc<Event>> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

/// The call ids an event adds, or `None` if it is not a change.
pub fn added(event: &Event) -> Option<Vec<String>> {
    match &event.body {
        Body::Change(change) => Some(change.added.iter().map(|c| c.call_id.to_string()).collect()),
        _ => None,
    }
}

/// A hub without a fleet whose pollers list from `upstream`.
pub fn hub(upstream: &Arc<Upstream>) -> Arc<Hub> {
    Hub::new(upstream.clone(), Arc::new(Telemetry::default()), None)
}

/// A subscriber to `ORG`'s topic, from a snapshot.
pub fn subscribe(hub: &Arc<Hub>, joining: Joining) -> Subscription {
    hub.subscribe(key(), presented(), joining, None, no_kick())
        .expect("an open hub")
}

/// The tasks of the test's runtime still running: a hub's pollers, once started.
pub fn pollers_running() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What the upstream answers the next polls with.
#[derive(Clone)]
pub enum Answer {
    Calls(Vec<(&'static str, CallStatus)>),
    /// The key is checked by an upstream that cannot be reached.
    CheckUnavailable,
    Refused,
}

/// The configuration being served, as far as pollers see it: `ORG`'s poll period and its
/// list. Records when each poll asked.
pub struct Upstream {
    period: Mutex<Option<Duration>>,
    answer: Mutex<Answer>,
    asked: Mutex<Vec<Instant>>,
}

impl Upstream {
    pub fn new(period: Duration, answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            period: Mutex::new(Some(period)),
            answer: Mutex::new(answer),
            asked: Mutex::new(Vec::new()),
        })
    }

    /// A reload: `None` removes the org.
    pub fn set_period(&self, period: Option<Duration>) {
        *self.period.lock().unwrap() = period;
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn asked(&self) -> Vec<Instant> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Source for Upstream {
    fn poll_period(&self, org: &str) -> Option<Duration> {
        assert_eq!(org, ORG);
        *self.period.lock().unwrap()
    }

    /// Every push moves something, as far as the answers know.
    fn pushed(&self, _provider: &str, _moved: &crate::provider::kind::Move) -> bool {
        true
    }

    /// The one org lists one provider, `p`.
    fn position(&self, _org: &str, provider: &str) -> Option<usize> {
        (provider == "p").then_some(0)
    }

    async fn list(&self, _: &Presented) -> Result<Listed, ListError> {
        self.asked.lock().unwrap().push(Instant::now());
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Answer::Calls(calls) => Ok(Listed {
                snapshot: snapshot(&calls, vec![]),
                waited: Duration::ZERO,
            }),
            Answer::CheckUnavailable => Err(ListError::Auth(AuthError::Unavailable {
                provider: "bland".into(),
                error: crate::provider::ProviderError::Timeout(1),
            })),
            Answer::Refused => Err(ListError::Auth(AuthError::Rejected)),
        }
    }
}
