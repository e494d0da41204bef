//! What `check-config` prints: the configuration as loaded, secrets masked.

use std::fmt;

use super::{Config, KeySource, OrgAuth};
use crate::config::KeySpec;

impl Config {
    /// What `check-config` prints: every org and provider, with secrets masked.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "server: bind {}", self.server.bind);
        if let Some(addr) = self.server.metrics_bind {
            let _ = writeln!(s, "metrics: on their own listener, {addr}");
        }
        if let Some(token) = &self.server.metrics_token {
            let _ = writeln!(s, "metrics: a bearer token from ${} (not shown)", token.env);
        }
        if let Some(org) = &self.server.bland_default_org {
            let _ = writeln!(s, "a Bland key without x-bland-org-id is org `{org}`'s");
        }
        let _ = writeln!(s, "{}", self.state.summary());
        let _ = writeln!(s, "orgs ({}):", self.orgs.len());
        for org in &self.orgs {
            let auth = match &org.auth {
                OrgAuth::Keys(keys) => keys.iter().map(describe).collect::<Vec<_>>().join(", "),
                OrgAuth::Upstream { provider, scopes } => format!(
                    "the caller's own Bland key, checked by provider `{provider}`, may {}",
                    scopes.names().join("/")
                ),
            };
            let forwards = match &org.passthrough {
                Some(p) => format!("; forwards other Bland routes to `{p}`"),
                None => String::new(),
            };
            let routes = match org.routes.as_slice() {
                [] => String::new(),
                r => format!(
                    "; places calls on routes {} (default `{}`)",
                    r.join(", "),
                    r[0]
                ),
            };
            let _ = writeln!(
                s,
                "  {}: {auth}; sees {}{forwards}{routes}",
                org.id,
                org.providers.join(", ")
            );
        }
        let _ = writeln!(s, "providers ({}):", self.providers.len());
        for p in &self.providers {
            let c = &p.common;
            let _ = writeln!(
                s,
                "  {}: {} {}; timeout {} ms (connect {} ms, retries {}, at most {} pages); \
                 max body {} bytes; cache {} ms; circuit opens after {} failures for {} ms",
                p.id,
                p.kind.kind(),
                p.kind.summary(),
                c.http.timeout.as_millis(),
                c.http.connect_timeout.as_millis(),
                c.http.retries,
                c.http.max_pages,
                c.http.max_body_bytes,
                c.cache_ttl.as_millis(),
                c.breaker.failures,
                c.breaker.cooldown.as_millis(),
            );
        }
        if !self.routes.is_empty() {
            let _ = writeln!(s, "routes ({}):", self.routes.len());
        }
        for r in &self.routes {
            let targets: Vec<String> = r
                .targets
                .iter()
                .map(|t| {
                    let own = t.settings.summary();
                    let own = if own.is_empty() {
                        String::new()
                    } else {
                        format!(" ({own})")
                    };
                    format!("{}{own} weight {}", t.provider, t.weight)
                })
                .collect();
            let _ = writeln!(
                s,
                "  {}: {:?}; queue {} ms, at most {}; targets: {}",
                r.id,
                r.strategy,
                r.queue_timeout.as_millis(),
                r.max_queued,
                targets.join(", ")
            );
        }
        s
    }
}

/// One key as `check-config` shows it: its name, where it comes from, what it may do.
fn describe(key: &KeySpec) -> String {
    let from = match &key.source {
        KeySource::Env(var) => format!("from ${var} (set, value hidden)"),
        KeySource::Sha256 => "by sha256 digest (hidden)".to_string(),
    };
    let mut limits = String::new();
    let l = &key.limits;
    if let Some(n) = l.requests_per_second {
        limits.push_str(&format!(", {n} requests/s"));
    }
    if let Some(n) = l.calls_per_second {
        limits.push_str(&format!(", {n} calls placed/s"));
    }
    if let Some(n) = l.max_active_placed {
        limits.push_str(&format!(", at most {n} placed calls active"));
    }
    format!(
        "callmux key `{}` {from} may {}{limits}",
        key.name,
        key.scopes.names().join("/")
    )
}
