//! Fuzzes `callmux::Config::from_figment` on arbitrary `providers.toml` text (every variable
//! an `api_key_env` names reads as "k"), and `Config::summary` on each configuration it accepts.
#![no_main]

use figment::providers::{Format, Toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let figment = figment::Figment::from(Toml::string(s));
    match callmux::Config::from_figment(&figment, &|_| Some("k".to_string())) {
        Ok(config) => {
            let summary = config.summary();
            assert!(summary.starts_with("server: bind "));
        }
        Err(e) => {
            // The error text is what `check-config` prints; building it must not panic.
            let _ = e.to_string();
        }
    }
});
