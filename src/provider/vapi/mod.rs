//! Kind `vapi`: Vapi's `GET {base_url}/call` for the calls created within `lookback_ms`, paged
//! by creation time, and ending a call by posting `end-call` to that call's own control URL
//! once the URL has passed DESIGN §8's host rule.

pub mod capacity;
pub mod hook;
pub mod place;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use super::http::{endpoint, Auth, Client, HttpSettings, Lister, Request};
use super::kind::{Hook, Kind, KindSettings, TargetSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::call::{time, Text};
use crate::settings::{Check, ONE_DAY_MS};
use crate::wire::Readers;
use wire::ControlUrl;

pub const DEFAULT_BASE_URL: &str = "https://api.vapi.ai";
pub const DEFAULT_LOOKBACK_MS: u64 = ONE_DAY_MS;
pub const DEFAULT_CONTROL_HOSTS: &[&str] = &[".vapi.ai"];
/// A minute at least (a shorter window would miss calls still ringing), 30 days at most.
const LOOKBACK_MS: std::ops::RangeInclusive<u64> = 60_000..=30 * ONE_DAY_MS;

pub static KIND: VapiKind = VapiKind;

pub struct VapiKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
    api_key_env: Option<String>,
    lookback_ms: Option<u64>,
    control_hosts: Option<Vec<String>>,
    server_secret_env: Option<String>,
}

/// Validated settings of a `vapi` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// The variable the key was read from (shown by `check-config`; the key never is).
    pub api_key_env: String,
    /// `authorization: Bearer <key>`, a sensitive header value: its `Debug` is redacted.
    pub auth: Auth,
    /// Calls created this long before an ask are listed.
    pub lookback_ms: u64,
    /// Host suffixes a control URL may be on, each starting with a dot, lowercase.
    pub control_hosts: Vec<String>,
    /// Vapi's server messages are taken when `server_secret_env` is set.
    pub webhook: Option<hook::VapiHook>,
}

impl Kind for VapiKind {
    fn name(&self) -> &'static str {
        "vapi"
    }

    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>> {
        let raw: Raw = check.read(at, table, super::RawCommon::FIELDS)?;
        let before = check.count();
        let base_url = check.base_url_or(at, raw.base_url.as_deref(), DEFAULT_BASE_URL);
        let var = check.required(
            at,
            "api_key_env",
            raw.api_key_env.as_deref(),
            KIND.name(),
            "set it to the name of the environment variable holding your Vapi private \
             API key (Vapi dashboard, API Keys), e.g. \"VAPI_API_KEY\"",
        );
        let auth = var
            .and_then(|var| check.bearer_from_env(&format!("{at}.api_key_env"), var))
            .map(Auth::Bearer);
        let lookback_ms = check.ranged(
            &format!("{at}.lookback_ms"),
            raw.lookback_ms.unwrap_or(DEFAULT_LOOKBACK_MS),
            DEFAULT_LOOKBACK_MS,
            LOOKBACK_MS,
        );
        let control_hosts = control_hosts(&format!("{at}.control_hosts"), raw.control_hosts, check);
        let webhook = raw.server_secret_env.and_then(|var| {
            let secret =
                check.sensitive_header_from_env(&format!("{at}.server_secret_env"), &var)?;
            Some(hook::VapiHook {
                secret_env: var,
                secret,
            })
        });
        if check.count() > before {
            return None;
        }
        Some(Arc::new(Settings {
            base_url: base_url?,
            api_key_env: raw.api_key_env?,
            auth: auth?,
            lookback_ms,
            control_hosts,
            webhook,
        }))
    }
}

/// `control_hosts` as written, checked: each a dot and a domain of two labels or more, so no
/// entry can admit a whole top-level domain, and `evilvapi.ai` never matches `.vapi.ai`.
fn control_hosts(field: &str, raw: Option<Vec<String>>, check: &mut Check<'_>) -> Vec<String> {
    let Some(raw) = raw else {
        return DEFAULT_CONTROL_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect();
    };
    if raw.is_empty() {
        check.push(
            field,
            "is empty, so no call could ever be ended",
            "remove it for the default [\".vapi.ai\"], or list host suffixes such as \".vapi.ai\"",
        );
    }
    let mut hosts = Vec::with_capacity(raw.len());
    for written in raw {
        let host = written.trim().to_ascii_lowercase();
        let labels: Vec<&str> = host
            .strip_prefix('.')
            .unwrap_or_default()
            .split('.')
            .collect();
        let valid = host.starts_with('.')
            && labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            hosts.push(host);
        } else {
            check.push(
                field,
                format!("{written:?} is not a host suffix: a dot, then a domain of two labels or more"),
                "write each like \".vapi.ai\", which matches phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai but not evilvapi.ai",
            );
        }
    }
    hosts
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        format!(
            "at {}; api key from ${} (set, value hidden); lists calls created in the last {} ms; \
             ends calls through their control URLs on hosts ending in {} or at base_url",
            self.base_url,
            self.api_key_env,
            self.lookback_ms,
            self.control_hosts.join(", "),
        ) + &match &self.webhook {
            Some(h) => format!(
                "; server messages checked against ${} (set, value hidden)",
                h.secret_env
            ),
            None => String::new(),
        }
    }

    fn hook(&self) -> Option<&dyn Hook> {
        self.webhook.as_ref().map(|h| h as &dyn Hook)
    }

    fn target(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn TargetSettings>> {
        place::target(at, table, check)
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        let vapi = Arc::new(Vapi {
            id,
            list_url: endpoint(&self.base_url, "call"),
            origin: self.base_url.origin(),
            auth: self.auth.clone(),
            lookback_ms: self.lookback_ms,
            control_hosts: self.control_hosts.clone(),
            lister: Lister::new(&common.http, false)?,
            http: common.http.clone(),
            controls: Mutex::default(),
        });
        Ok(Backend {
            list: vapi.clone(),
            end: Some(vapi.clone()),
            place: None,
            places: Some(vapi),
            forward: None,
            capacity: Arc::new(capacity::VapiCapacity::new(common.max_concurrent_calls)),
        })
    }
}

pub struct Vapi {
    id: Arc<str>,
    list_url: reqwest::Url,
    /// A control URL at exactly this scheme, host and port is the configured upstream's own.
    origin: url::Origin,
    auth: Auth,
    lookback_ms: u64,
    control_hosts: Vec<String>,
    lister: Lister,
    http: HttpSettings,
    /// From the last list: each live call and its control URL, if Vapi gave one.
    controls: Mutex<HashMap<Text, Option<ControlUrl>>>,
}

impl fmt::Debug for Vapi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.controls.lock().map_or(0, |c| c.len());
        f.debug_struct("Vapi")
            .field("id", &self.id)
            .field("list_url", &self.list_url.as_str())
            .field("control_hosts", &self.control_hosts)
            .field("live_calls", &live)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ListCalls for Vapi {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        // Vapi lists no status filter: the window bounds what is read, and the merge leaves
        // out the ended calls in it.
        let since = time::to_iso8601(time::now_ms().saturating_sub(self.lookback_ms))
            .ok_or(ProviderError::Internal)?;
        let first = Request::get(self.list_url.clone())
            .query("limit", &wire::PAGE_LIMIT.to_string())
            .query("createdAtGt", &since)
            .auth(&self.auth);
        let next = |oldest: &str| Ok(first.clone().query("createdAtLt", oldest));
        let parse = |body: &[u8], provider: &Arc<str>| {
            wire::parse_page_with(body, provider, Readers::default())
        };
        let (calls, pages) = self
            .lister
            .list_with(first.clone(), next, None, &self.id, parse)
            .await?;
        // `None`: every page as last time, so the index of the last list still holds.
        if let Some(pages) = pages {
            let controls = pages.into_iter().flat_map(|page| page.0).collect();
            *self.controls.lock().expect("vapi control index lock") = controls;
        }
        Ok(calls)
    }
}

#[async_trait]
impl EndCall for Vapi {
    async fn end_call(&self, ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        let control = match self.control_of(call_id) {
            Some(control) => control,
            // Not in the last list: the call may have begun since.
            None => {
                self.active_calls(ctx).await.map_err(EndError::Failed)?;
                self.control_of(call_id).ok_or(EndError::NotFound)?
            }
        };
        let Some(control) = control else {
            // The refusal is shown after "provider `<id>`", so it does not name it again.
            return Err(EndError::Failed(ProviderError::ControlRefused(
                "has no control URL for this call (Vapi gives one while the assistant's \
                 monitorPlan.controlEnabled is on); nothing was sent"
                    .to_owned(),
            )));
        };
        let deadline = Instant::now() + self.http.timeout;
        let (url, client) = self.control_client(&control, deadline).await?;
        let body = serde_json::json!({"type": "end-call"});
        client
            .control(&Request::post_json(url, &body), deadline, &[404])
            .await?;
        Ok(())
    }
}

impl Vapi {
    /// `None`: not a live call in the last list; `Some(None)`: live, without a control URL.
    fn control_of(&self, call_id: &str) -> Option<Option<ControlUrl>> {
        self.controls
            .lock()
            .expect("vapi control index lock")
            .get(call_id)
            .cloned()
    }

    /// The control URL parsed, and a client that may send to it: at the provider's own
    /// origin, or https on a `control_hosts` host whose every address is public, pinned to
    /// the addresses checked so a second lookup cannot point elsewhere. Redirects are not
    /// followed: the answer's `location` is upstream data too.
    async fn control_client(
        &self,
        control: &ControlUrl,
        deadline: Instant,
    ) -> Result<(reqwest::Url, Client), EndError> {
        let url = reqwest::Url::parse(control.expose()).map_err(|_| self.refused("not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.refused("it holds a user name or password"));
        }
        // Every `Client` refuses redirects, so a control URL cannot send the request on.
        if url.origin() == self.origin {
            let client = Client::new(&self.http).map_err(|e| self.bug(&e))?;
            return Ok((url, client));
        }
        let matched = url.scheme() == "https"
            && url
                .host_str()
                .is_some_and(|host| host_in(host, &self.control_hosts));
        if !matched {
            return Err(self.refused(
                "it is neither https on a host in control_hosts nor at the provider's base_url",
            ));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let (domain, addrs) = match url.host() {
            Some(url::Host::Domain(domain)) => {
                let lookup = tokio::net::lookup_host((domain, port));
                let found = tokio::time::timeout_at(deadline, lookup)
                    .await
                    .map_err(|_| {
                        EndError::Failed(ProviderError::Timeout(
                            self.http.timeout.as_millis() as u64
                        ))
                    })?
                    .map_err(|_| {
                        EndError::Failed(ProviderError::Unreachable(
                            "the host of the call's control URL did not resolve".into(),
                        ))
                    })?;
                (Some(domain.to_owned()), found.collect::<Vec<SocketAddr>>())
            }
            Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
            None => return Err(self.refused("it has no host")),
        };
        if addrs.is_empty() || !addrs.iter().all(|a| is_public(a.ip())) {
            return Err(self.refused(
                "its host resolves to a private, loopback, link-local or otherwise non-public address",
            ));
        }
        let client = Client::with_options(&self.http, |b| match &domain {
            Some(domain) => b.resolve_to_addrs(domain, &addrs),
            None => b,
        })
        .map_err(|e| self.bug(&e))?;
        Ok((url, client))
    }

    /// Nothing is sent; the message says why, never the URL (the provider is named by
    /// whoever shows it).
    fn refused(&self, why: &'static str) -> EndError {
        tracing::warn!(provider = %self.id, why, "refused to send to a call's control URL");
        EndError::Failed(ProviderError::ControlRefused(format!(
            "refused the call's control URL: {why}; nothing was sent"
        )))
    }

    fn bug(&self, e: &str) -> EndError {
        tracing::error!(provider = %self.id, error = e, "could not build a client to end a call");
        EndError::Failed(ProviderError::Internal)
    }
}

/// Whether `host` ends in one of `suffixes` (each a dot and a domain): `a.vapi.ai` is in
/// `.vapi.ai`; `evilvapi.ai`, `vapi.ai` and `a.vapi.ai.evil.com` are not.
pub fn host_in(host: &str, suffixes: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    suffixes
        .iter()
        .any(|s| s.starts_with('.') && host.len() > s.len() && host.ends_with(s.as_str()))
}

/// Whether an address is on the public internet: not private, loopback, link-local, shared
/// (CGNAT), multicast, documentation, benchmarking, reserved or unspecified, in IPv4 or
/// IPv6, including IPv4 carried inside IPv6 (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o0 == 0
        || (o0 == 100 && (o1 & 0xc0) == 64)
        || (o0 == 192 && o1 == 0 && o2 == 0)
        || (o0 == 198 && (o1 & 0xfe) == 18)
        || o0 >= 240)
}

fn public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        // ::/96, IPv4-compatible addresses among them
        || s[..6] == [0; 6]
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x64 && s[1] == 0xff9b && !public_v4(embedded(s[6], s[7])))
        || (s[0] == 0x2002 && !public_v4(embedded(s[1], s[2])))
        // 2001::/23: IETF protocol assignments, Teredo among them; 2001:db8::/32: documentation
        || (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn a_control_host_matches_a_suffix_only_on_a_dot_boundary() {
        let vapi = hosts(&[".vapi.ai"]);
        for host in [
            "phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai",
            "a.vapi.ai",
            "A.VAPI.AI",
        ] {
            assert!(host_in(host, &vapi), "{host}");
        }
        for host in [
            "evilvapi.ai",
            "vapi.ai",
            ".vapi.ai",
            "a.vapi.ai.evil.com",
            "a.vapi.ai.",
            "vapi.ai.evil",
            "a-vapi.ai",
            "",
        ] {
            assert!(!host_in(host, &vapi), "{host}");
        }
        assert!(host_in(
            "x.example.org",
            &hosts(&[".vapi.ai", ".example.org"])
        ));
        assert!(!host_in("a.vapi.ai", &[]));
    }

    #[test]
    fn the_backend_debug_output_shows_neither_the_key_nor_any_control_url() {
        let http = HttpSettings {
            timeout: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            retries: 0,
            max_pages: 1,
        };
        let base = url::Url::parse("https://api.vapi.ai").unwrap();
        let (page, controls) = wire::parse_page_with(
            br#"[{"id":"c","status":"ringing","monitor":{"controlUrl":"https://x.vapi.ai/secret-capability/control"}}]"#,
            &Arc::from("v"),
            Readers::default(),
        )
        .unwrap();
        assert_eq!(page.calls.len(), 1);
        let vapi = Vapi {
            id: Arc::from("v"),
            list_url: endpoint(&base, "call"),
            origin: base.origin(),
            auth: Auth::bearer("sk-SECRET-vapi-key").unwrap(),
            lookback_ms: DEFAULT_LOOKBACK_MS,
            control_hosts: hosts(DEFAULT_CONTROL_HOSTS),
            lister: Lister::new(&http, false).unwrap(),
            http,
            controls: Mutex::new(controls.0.into_iter().collect()),
        };
        let shown = format!("{vapi:?} {vapi:#?}");
        assert!(shown.contains("live_calls: 1"), "{shown}");
        for secret in ["secret-capability", "SECRET-vapi-key"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "104.18.0.1",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip}");
        }
    }
}
