//! Configuration: built-in defaults (`defaults.toml`), then `providers.toml`, then `CALLMUX_*`
//! environment overrides (figment), validated as a whole into typed settings, every problem
//! reported at once with its field and its fix. Each provider kind validates its own part.

mod defaults;
mod load;
mod org;
mod passthrough;
mod provider;
mod route;
mod server;
mod summary;

pub use crate::settings::ConfigIssue;
pub use crate::state::settings::StateConfig;
pub use defaults::DEFAULTS;
pub use load::{Config, ConfigError};
pub use org::{KeySource, OrgAuth, OrgSpec};
pub use provider::ProviderSpec;
pub use route::{RouteSpec, Strategy, TargetSpec};
pub use server::ServerConfig;
