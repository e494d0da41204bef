//! The kind registry: the one list of backend kinds, and lookups by name. Each kind owns its
//! settings, their validation, its `check-config` summary and its builder; nothing else names
//! a kind.

use super::kind::Kind;

/// Every kind callmux can build. Adding a kind is its own folder and one line here.
pub static KINDS: &[&dyn Kind] = &[
    &super::twilio_media_stream::KIND,
    &super::bland::KIND,
    &super::static_file::KIND,
    &super::twilio::KIND,
    &super::retell::KIND,
    &super::vapi::KIND,
];

/// The kind called `name`, if there is one.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Every kind's name, for messages.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}
