//! Live changes of each org's calls, free of HTTP: one poller per org (per caller for orgs
//! whose callers bring their own Bland keys), started by the first subscriber and stopped
//! after the last, whose changes are fanned out to every subscriber from one place.
//!
//! The seam for shared state: every change any subscriber sees passes through
//! [`Topic::publish`] (a new state, polled or pushed, becomes one event) and then to every
//! subscriber. With a fleet, a status pushed to one replica is sent to the others, which
//! apply it with [`Hub::push`]; a poller's change is also announced (a notice naming the
//! topic and the new version), and the pollers of that topic on other replicas poll at once
//! ([`fleet`]).
//!
//! The hub knows the process only as a [`Source`] of lists (the configuration being served)
//! and its telemetry; its pollers hold it weakly, so dropping it ends them.

pub mod change;
#[cfg(test)]
mod fixtures;
pub mod fleet;
mod hub;
mod poller;
mod topic;

pub use change::{Body, Change, Event, EventId, State};
pub use hub::{Hub, Joining};
pub use poller::Source;
pub use topic::{Subscription, Tap, Topic, TopicKey, QUEUE};
