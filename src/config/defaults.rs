//! The built-in defaults (`defaults.toml`), the bottom layer under every setting.

use std::sync::LazyLock;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

use super::server::RawServer;
use crate::provider::RawCommon;
use crate::state::settings::RawState;

/// The built-in defaults, the bottom layer.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Deserialize)]
pub(super) struct Defaults {
    pub(super) server: RawServer,
    pub(super) provider: RawCommon,
    pub(super) state: RawState,
}

pub(super) static BUILT_IN: LazyLock<Defaults> = LazyLock::new(|| {
    Figment::from(Toml::string(DEFAULTS))
        .extract()
        .expect("the built-in defaults are valid")
});
