//! A topic's poller, and what it asks of the process serving it ([`Source`]): while anyone
//! is subscribed it lists the org every poll period and publishes what changed; with no
//! subscribers it stops asking, keeps the topic for a reconnect for a while, then retires it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::change::State;
use super::topic::{Topic, TopicKey};
use crate::provider::kind::Move;
use crate::service::auth::{AuthError, Presented};
use crate::service::capacity::Capacity;
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
    /// The org's capacity as of `state`, for the `capacity` event; `None`: not followed.
    async fn capacity(&self, _state: &State) -> Option<Capacity> {
        None
    }
    /// Lays a signed push over `provider`'s answers; whether it moved anything.
    fn pushed(&self, _provider: &str, _moved: &Move) -> bool {
        false
    }
    /// Where `provider`'s answer is among `org`'s, in its snapshots' order.
    fn position(&self, _org: &str, _provider: &str) -> Option<usize> {
        None
    }
    /// `org`'s list with no caller, to watch it for its webhooks; `None`: it cannot be.
    async fn list_unattended(&self, _org: &str) -> Option<Result<Listed, ListError>> {
        None
    }
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
        let capacity = hub.source().capacity(&next).await;
        // Only a change is announced, and not the one a notice already announced.
        if topic.publish(next) && noticed != Some(version) {
            hub.changed(&topic.key, version);
        }
        if let Some(capacity) = capacity {
            topic.publish_capacity(capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::{sleep, Instant};

    use super::super::change::Body;
    use super::super::fixtures::{
        added, drain, hub, key, listed, no_kick, pollers_running, presented, subscribe, Answer,
        Upstream,
    };
    use super::super::hub::Joining;
    use super::*;
    use crate::call::CallStatus::Ringing;

    const PERIOD: Duration = Duration::from_secs(1);
    /// Polls fall on whole periods: a wait that ends half-way is between two of them.
    const HALF: Duration = Duration::from_millis(500);

    fn since(start: Instant, asked: &[Instant]) -> Vec<u128> {
        asked.iter().map(|t| (*t - start).as_millis()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_subscriber_starts_the_poller_and_it_stops_asking_once_the_last_leaves() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        sleep(PERIOD * 3).await;
        assert!(up.asked().is_empty(), "no subscriber, no poll");
        assert_eq!(pollers_running(), 0);
        let first = subscribe(&hub, Joining::Fresh(listed(&[])));
        let second = subscribe(&hub, Joining::Current);
        sleep(PERIOD * 3 + HALF).await;
        assert_eq!(up.asked().len(), 3, "one poller for both subscribers");
        assert_eq!(pollers_running(), 1);
        drop(first);
        sleep(PERIOD * 2).await;
        assert_eq!(up.asked().len(), 5);
        drop(second);
        sleep(PERIOD * 10).await;
        assert_eq!(up.asked().len(), 5, "no one left to hear a poll");
    }

    #[tokio::test(start_paused = true)]
    async fn polls_come_one_period_apart_a_reload_re_points_the_period_and_a_removed_org_stops_them(
    ) {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let start = Instant::now();
        let _s = subscribe(&hub, Joining::Fresh(listed(&[])));
        sleep(PERIOD * 3 + HALF).await;
        up.set_period(Some(PERIOD / 4));
        // The wait under way keeps its period; the next ones have the new one.
        sleep(PERIOD + Duration::from_millis(400)).await;
        assert_eq!(
            since(start, &up.asked()),
            [1000, 2000, 3000, 4000, 4250, 4500, 4750]
        );
        up.set_period(None);
        sleep(PERIOD * 5).await;
        assert_eq!(up.asked().len(), 8, "the poll under way, then none");
        assert_eq!(pollers_running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_polled_change_reaches_every_subscriber_once() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let mut a = subscribe(&hub, Joining::Fresh(listed(&[])));
        let mut b = subscribe(&hub, Joining::Current);
        up.answer(Answer::Calls(vec![("c1", Ringing)]));
        sleep(PERIOD * 3 + HALF).await;
        assert_eq!(up.asked().len(), 3);
        for s in [&mut a, &mut b] {
            let events = drain(&mut s.events);
            assert_eq!(events.len(), 1);
            assert_eq!(added(&events[0]), Some(vec!["c1".to_owned()]));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_hub_ends_its_pollers() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let _s = subscribe(&hub, Joining::Fresh(listed(&[])));
        sleep(PERIOD + HALF).await;
        assert_eq!((up.asked().len(), pollers_running()), (1, 1));
        drop(hub);
        sleep(PERIOD * 5).await;
        assert_eq!((up.asked().len(), pollers_running()), (1, 0));
        assert_eq!(Arc::strong_count(&up), 1, "nothing holds the source");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_no_longer_accepted_ends_the_stream_with_the_reason() {
        let up = Upstream::new(PERIOD, Answer::Refused);
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[])));
        sleep(PERIOD + HALF).await;
        let events = drain(&mut s.events);
        assert!(
            matches!(&events[..], [e] if matches!(&e.body, Body::End(r) if r.contains("no longer accepted"))),
            "{events:?}"
        );
        assert_eq!(pollers_running(), 0);
        let rejoin = hub.subscribe(key(), presented(), Joining::Current, None, no_kick());
        assert!(rejoin.is_none(), "the topic is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_check_that_cannot_reach_its_upstream_keeps_the_stream_and_polls_again() {
        let up = Upstream::new(PERIOD, Answer::CheckUnavailable);
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[])));
        sleep(PERIOD * 2 + HALF).await;
        assert!(drain(&mut s.events).is_empty());
        up.answer(Answer::Calls(vec![("c1", Ringing)]));
        sleep(PERIOD).await;
        assert_eq!(up.asked().len(), 3);
        assert_eq!(drain(&mut s.events).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_topic_everyone_left_resumes_within_the_window_and_is_retired_after_it() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![("c1", Ringing)]));
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[])));
        sleep(PERIOD + HALF).await;
        let seen = drain(&mut s.events)[0].id.to_string();
        drop(s);
        sleep(RESUME_WINDOW - PERIOD).await;
        assert_eq!(up.asked().len(), 1, "kept, not polled");
        let again = hub
            .subscribe(key(), presented(), Joining::Current, Some(&seen), no_kick())
            .expect("kept for the resume window");
        assert!(again.first.is_empty(), "nothing missed, and no snapshot");
        sleep(PERIOD * 2 + HALF / 2).await;
        assert_eq!(up.asked().len(), 3, "polled again");
        drop(again);
        sleep(RESUME_WINDOW + PERIOD * 2).await;
        assert_eq!(pollers_running(), 0);
        let late = hub.subscribe(key(), presented(), Joining::Current, Some(&seen), no_kick());
        assert!(late.is_none(), "retired: a late client starts afresh");
    }
}
