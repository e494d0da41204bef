//! A topic's poller, and what it asks of the process serving it ([`Source`]): while anyone
//! is subscribed it lists the org every poll period and publishes what changed; with no
//! subscribers it stops asking, keeps the topic for a reconnect for a while, then retires it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::change::State;
use super::topic::{Topic, TopicKey};
use crate::service::auth::{AuthError, Presented};
use crate::service::{ListError, Listed, Version};

/// How long a topic with no subscribers keeps its recent events (without polling), so a
/// client that reconnects at once resumes where it was.
pub(super) const RESUME_WINDOW: Duration = Duration::from_secs(30);

/// What the hub needs of the process serving it: the configuration being served, read
/// afresh at every poll, so a reload re-points every poller from its next poll on.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// How often `org` is polled (the smallest `poll_interval_ms` of its providers); `None`
    /// once the org is gone.
    fn poll_period(&self, org: &str) -> Option<Duration>;
    /// The org's list as `presented` may see it, as the list route answers it.
    async fn list(&self, presented: &Presented) -> Result<Listed, ListError>;
}

/// What a poller needs of the hub that started it, which it holds weakly: a hub that is
/// dropped ends its pollers.
pub(super) trait Keeper: Send + Sync {
    fn source(&self) -> &dyn Source;
    /// Removes `topic`, which has had no subscriber for the resume window; `false` (and
    /// nothing removed) if one joined meanwhile.
    fn retire(&self, topic: &Arc<Topic>) -> bool;
    /// Ends `topic`'s streams with `reason`, and removes it.
    fn end(&self, topic: &Arc<Topic>, reason: &str);
    /// The poller found `key`'s topic changed to `version`, which no notice announced.
    fn changed(&self, key: &TopicKey, version: Version);
}

/// Polls `topic` for as long as it has subscribers and `hub` lives. A notice from another
/// replica polls at once instead of at the timer, which then restarts from that poll.
pub(super) async fn poll(topic: Arc<Topic>, hub: Weak<dyn Keeper>) {
    loop {
        let (dormant, ended) = {
            let inner = topic.lock();
            (inner.subscribers.is_empty(), inner.ended)
        };
        if ended {
            return;
        }
        if dormant {
            let woken = tokio::time::timeout(RESUME_WINDOW, topic.wake.notified()).await;
            // A dropped hub has nothing to retire the topic from.
            if woken.is_err() && hub.upgrade().is_none_or(|h| h.retire(&topic)) {
                return;
            }
            continue;
        }
        let Some(period) = hub
            .upgrade()
            .and_then(|h| h.source().poll_period(&topic.key.org))
        else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = topic.poll_now.notified() => {}
            () = topic.wake.notified() => continue,
        }
        let Some(hub) = hub.upgrade() else { return };
        let (presented, dormant, noticed) = {
            let mut inner = topic.lock();
            let noticed = inner.noticed.take();
            (
                inner.presented.clone(),
                inner.subscribers.is_empty(),
                noticed,
            )
        };
        // The last subscriber left while this poll waited: no one would hear its answer.
        if dormant {
            continue;
        }
        let next = match hub.source().list(&presented).await {
            Ok(listed) => State::Listed(listed.snapshot),
            Err(ListError::AllFailed { failures, .. }) => State::AllFailed {
                org: topic.key.org.clone(),
                failures,
            },
            Err(ListError::Auth(AuthError::Unavailable { .. })) => continue,
            Err(ListError::Auth(_)) => {
                hub.end(&topic, "the key is no longer accepted; sign in again");
                return;
            }
        };
        let version = next.version();
        // Only a change is announced, and not the one a notice already announced.
        if topic.publish(next) && noticed != Some(version) {
            hub.changed(&topic.key, version);
        }
    }
}
