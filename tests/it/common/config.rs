//! providers.toml text for tests, built org by org and provider by provider:
//!
//! ```ignore
//! TestConfig::new()
//!     .org(OrgB::key("acme", "acme-key").providers(&["agents"]))
//!     .provider(ProviderB::agent("agents", &url).set("cache_ttl_ms", 0))
//!     .toml()
//! ```
//!
//! Tests of config parsing itself write their TOML out by hand; this is for tests that need
//! some valid config and care about what it says, not how it is spelled.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sha256_hex;

/// `prefix` with a suffix no other call in this process returns, e.g. `acme_3_9f2c41`: for
/// org and provider ids in tests that read process-wide state (the metrics every app in the
/// process shares), so that tests running beside them cannot move what they read.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{n}_{:06x}", fastrand::u32(..1 << 24))
}

/// A whole providers.toml: `[server]` settings, orgs and providers, in the order added.
#[derive(Clone, Debug, Default)]
pub struct TestConfig {
    server: Settings,
    orgs: Vec<OrgB>,
    providers: Vec<ProviderB>,
}

impl TestConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `[server]` setting.
    pub fn server(mut self, key: &str, value: impl Into<Val>) -> Self {
        self.server.set(key, value.into());
        self
    }

    pub fn org(mut self, org: OrgB) -> Self {
        self.orgs.push(org);
        self
    }

    pub fn provider(mut self, provider: ProviderB) -> Self {
        self.providers.push(provider);
        self
    }

    pub fn toml(&self) -> String {
        let mut out = String::new();
        if !self.server.is_empty() {
            out.push_str("[server]\n");
            self.server.write(&mut out);
            out.push('\n');
        }
        for org in &self.orgs {
            let _ = writeln!(out, "[orgs.{}]", quoted(&org.id));
            match &org.auth {
                Auth::Digest(digest) => {
                    let _ = writeln!(out, "api_key_sha256 = {}", quoted(digest));
                }
                Auth::Env(var) => {
                    let _ = writeln!(out, "api_key_env = {}", quoted(var));
                }
                Auth::Upstream(provider) => {
                    let _ = writeln!(out, "auth = {}", quoted(provider));
                }
            }
            let providers: Vec<String> = org.providers.iter().map(|p| quoted(p)).collect();
            let _ = writeln!(out, "providers = [{}]", providers.join(", "));
            if let Some(p) = &org.passthrough {
                let _ = writeln!(out, "bland_passthrough = {}", quoted(p));
            }
            out.push('\n');
        }
        for provider in &self.providers {
            let _ = writeln!(out, "[providers.{}]", quoted(&provider.id));
            provider.settings.write(&mut out);
            out.push('\n');
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Auth {
    /// `api_key_sha256`: the digest of the key clients send.
    Digest(String),
    /// `api_key_env`: the variable holding the key.
    Env(String),
    /// `auth`: the forwarding Bland provider that checks the callers' own keys.
    Upstream(String),
}

/// One `[orgs.<id>]` table.
#[derive(Clone, Debug)]
pub struct OrgB {
    id: String,
    auth: Auth,
    providers: Vec<String>,
    passthrough: Option<String>,
}

impl OrgB {
    fn new(id: &str, auth: Auth) -> Self {
        Self {
            id: id.to_string(),
            auth,
            providers: Vec::new(),
            passthrough: None,
        }
    }

    /// An org whose clients send `key`, configured by its digest (`api_key_sha256`).
    pub fn key(id: &str, key: &str) -> Self {
        Self::new(id, Auth::Digest(sha256_hex(key)))
    }

    /// An org whose key is read from the variable `var` (`api_key_env`).
    pub fn key_env(id: &str, var: &str) -> Self {
        Self::new(id, Auth::Env(var.to_string()))
    }

    /// An org whose callers bring their own Bland keys, checked by forwarding them through
    /// the Bland provider `provider` (`auth = "<provider>"`).
    pub fn bland_keys(id: &str, provider: &str) -> Self {
        Self::new(id, Auth::Upstream(provider.to_string()))
    }

    /// Forwards the org's other Bland routes to `provider` (`bland_passthrough`).
    pub fn passthrough(mut self, provider: &str) -> Self {
        self.passthrough = Some(provider.to_string());
        self
    }

    /// The providers the org sees, in order.
    pub fn providers(mut self, providers: &[&str]) -> Self {
        self.providers = providers.iter().map(|p| p.to_string()).collect();
        self
    }
}

/// One `[providers.<id>]` table.
#[derive(Clone, Debug)]
pub struct ProviderB {
    id: String,
    settings: Settings,
}

impl ProviderB {
    /// A provider of `kind` at `base_url`.
    pub fn new(id: &str, kind: &str, base_url: &str) -> Self {
        Self {
            id: id.to_string(),
            settings: Settings::default(),
        }
        .set("kind", kind)
        .set("base_url", base_url)
    }

    /// A Twilio media-stream agent server.
    pub fn agent(id: &str, base_url: &str) -> Self {
        Self::new(id, "twilio-media-stream", base_url)
    }

    /// A Bland provider with no key of its own: it forwards each caller's Bland key, for
    /// orgs made with [`OrgB::bland_keys`].
    pub fn bland_forwarding(id: &str, base_url: &str) -> Self {
        Self::new(id, "bland", base_url)
    }

    /// A Bland provider with its own key, read from `key_env`, and Bland org id `org_id`.
    pub fn bland(id: &str, base_url: &str, key_env: &str, org_id: &str) -> Self {
        Self::new(id, "bland", base_url)
            .set("api_key_env", key_env)
            .set("org_id", org_id)
    }

    /// Sets (or replaces) one setting.
    pub fn set(mut self, key: &str, value: impl Into<Val>) -> Self {
        self.settings.set(key, value.into());
        self
    }

    /// Settings as TOML lines, as they are written (tests that pass settings around as text).
    pub fn raw(mut self, lines: &str) -> Self {
        self.settings.raw(lines);
        self
    }
}

/// A TOML value: a string (quoted and escaped when written), an integer or a boolean.
#[derive(Clone, Debug)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Str(s.to_string())
    }
}

impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Str(s.clone())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Str(s)
    }
}

impl From<u64> for Val {
    fn from(n: u64) -> Self {
        Val::Int(i64::try_from(n).expect("a TOML integer"))
    }
}

impl From<i64> for Val {
    fn from(n: i64) -> Self {
        Val::Int(n)
    }
}

impl From<i32> for Val {
    fn from(n: i32) -> Self {
        Val::Int(n.into())
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl Val {
    fn toml(&self) -> String {
        match self {
            Val::Str(s) => quoted(s),
            Val::Int(n) => n.to_string(),
            Val::Bool(b) => b.to_string(),
        }
    }
}

/// Key-value lines of one table, then any raw lines.
#[derive(Clone, Debug, Default)]
struct Settings {
    values: Vec<(String, Val)>,
    raw: Vec<String>,
}

impl Settings {
    fn set(&mut self, key: &str, value: Val) {
        match self.values.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.values.push((key.to_string(), value)),
        }
    }

    fn raw(&mut self, lines: &str) {
        if !lines.trim().is_empty() {
            self.raw.push(lines.to_string());
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.raw.is_empty()
    }

    fn write(&self, out: &mut String) {
        for (key, value) in &self.values {
            let _ = writeln!(out, "{key} = {}", value.toml());
        }
        for lines in &self.raw {
            out.push_str(lines);
            out.push('\n');
        }
    }
}

/// A TOML basic string, quotes, backslashes and control characters escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
