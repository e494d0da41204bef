//! Configuration: built-in defaults (`defaults.toml`), then `providers.toml`, then `CALLMUX_*`
//! environment overrides (figment), validated as a whole into typed settings, every problem
//! reported at once with its field and its fix. Each provider kind validates its own part.

mod defaults;
mod keys;
mod load;
mod org;
mod passthrough;
mod provider;
mod route;
mod server;
mod summary;
mod webhook;

pub use crate::settings::ConfigIssue;
pub use crate::state::settings::StateConfig;
pub use defaults::DEFAULTS;
pub use keys::{KeyLimits, KeySource, KeySpec, BLAND_CALLER, DEFAULT_KEY};
pub use load::{Config, ConfigError};
pub use org::{OrgAuth, OrgSpec};
pub use provider::ProviderSpec;
pub use route::{RouteSpec, Strategy, TargetSpec};
pub use server::ServerConfig;
pub use webhook::{host_is_private, WebhookSpec, EVENT_TYPES};
