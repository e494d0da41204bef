//! Kind `twilio`: the live calls of one Twilio account from the REST API (one list per active
//! status, asked at once), ended by setting a call's status to `completed`.

pub mod hook;
pub mod place;
pub mod signature;
pub mod wire;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::HeaderValue;
use serde::Deserialize;

use super::http::{endpoint, with_segment, Auth, Lister, Request};
use super::kind::{Hook, Kind, KindSettings, TargetSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::call::Call;
use crate::settings::{redacted_url, Check};

pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The statuses of a live call. Twilio's `Status` filter takes one value, so each is a list
/// of its own.
pub const ACTIVE_STATUSES: [&str; 3] = ["queued", "ringing", "in-progress"];

/// Twilio's largest page.
const PAGE_SIZE: &str = "1000";

pub static KIND: TwilioKind = TwilioKind;

pub struct TwilioKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
    account_sid: Option<String>,
    api_key_sid_env: Option<String>,
    api_key_secret_env: Option<String>,
    auth_token_env: Option<String>,
    public_url: Option<String>,
    signing_key_env: Option<String>,
    calls_per_second: Option<u64>,
}

/// Validated settings of a `twilio` provider. `Debug` shows neither the account SID nor any
/// credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// `AC` and 32 hex digits: checked, so it is safe in a path and as a Basic user name.
    pub account_sid: String,
    /// What the REST API is asked with: Basic, its header value marked sensitive.
    pub auth: Auth,
    /// Where the credentials came from, for `check-config`.
    pub credentials: Credentials,
    /// The account's auth token whenever `auth_token_env` is set: Twilio signs status
    /// callbacks with it, even where the REST API is asked with an API key (DESIGN §11).
    pub auth_token: Option<HeaderValue>,
    /// The URL Twilio is configured to send this provider's status callbacks to (`POST /hooks/twilio/{provider_id}`).
    pub public_url: Option<url::Url>,
    /// The secret of the SharedKey Twilio signs webhooks with when it announces one in
    /// `X-Twilio-Webhooks-Signature-Settings`, and the variable it came from.
    pub signing_key: Option<(String, HeaderValue)>,
    /// Calls placed per second at most (Twilio's own pacing of the account).
    pub calls_per_second: u64,
}

/// The variables the credentials were read from; their values are never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// An API key: Basic with the key's SID and secret.
    ApiKey {
        sid_env: String,
        secret_env: String,
        /// `auth_token_env`, also set: kept for status callbacks only.
        auth_token_env: Option<String>,
    },
    /// The account's auth token: Basic with the account SID and the token.
    AuthToken { auth_token_env: String },
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url.as_str())
            .field("account_sid", &"[HIDDEN]")
            .field("auth", &self.auth)
            .field("credentials", &self.credentials)
            .field("auth_token", &self.auth_token)
            .field(
                "public_url",
                &self.public_url.as_ref().map(url::Url::as_str),
            )
            .field("signing_key", &self.signing_key)
            .field("calls_per_second", &self.calls_per_second)
            .finish()
    }
}

/// Whether `text` is a Twilio SID of this prefix: the prefix and 32 hex digits.
pub fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34 && text.starts_with(prefix) && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Kind for TwilioKind {
    fn name(&self) -> &'static str {
        "twilio"
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
        let account_sid = account_sid(at, raw.account_sid, check);
        let token_field = format!("{at}.auth_token_env");
        let auth_token = raw
            .auth_token_env
            .as_deref()
            .and_then(|var| check.sensitive_header_from_env(&token_field, var));
        let key = match (raw.api_key_sid_env, raw.api_key_secret_env) {
            (Some(sid_env), Some(secret_env)) => {
                let sid = api_key_sid(at, &sid_env, check);
                let secret = check
                    .sensitive_header_from_env(&format!("{at}.api_key_secret_env"), &secret_env);
                Some((sid_env, secret_env, sid, secret))
            }
            (Some(_), None) => {
                check.push(
                    format!("{at}.api_key_secret_env"),
                    "is required when api_key_sid_env is set (an API key is its SID and its secret)",
                    "set api_key_secret_env to the variable holding the key's secret, or remove api_key_sid_env to use auth_token_env",
                );
                None
            }
            (None, Some(_)) => {
                check.push(
                    format!("{at}.api_key_sid_env"),
                    "is required when api_key_secret_env is set (an API key is its SID and its secret)",
                    "set api_key_sid_env to the variable holding the key's SID (SK...), or remove api_key_secret_env to use auth_token_env",
                );
                None
            }
            (None, None) => {
                if raw.auth_token_env.is_none() {
                    check.push(
                        token_field.clone(),
                        "is required when no API key is set: kind twilio needs credentials",
                        "set auth_token_env to the variable holding the account's auth token, or api_key_sid_env and api_key_secret_env to the variables holding an API key's SID and secret",
                    );
                }
                None
            }
        };
        let calls_per_second = check.ranged(
            &format!("{at}.calls_per_second"),
            raw.calls_per_second
                .unwrap_or(place::DEFAULT_CALLS_PER_SECOND),
            place::DEFAULT_CALLS_PER_SECOND,
            1..=1000,
        );
        let public_url = raw.public_url.and_then(|text| {
            let field = format!("{at}.public_url");
            if raw.auth_token_env.is_none() {
                check.push(
                    field.clone(),
                    "needs auth_token_env: Twilio signs status callbacks with the account's auth token",
                    "set auth_token_env as well, or remove public_url",
                );
            }
            public_url(&field, &text, check)
        });
        let signing_key = raw.signing_key_env.and_then(|var| {
            let field = format!("{at}.signing_key_env");
            if public_url.is_none() {
                check.push(
                    field.clone(),
                    "is used only to check status callbacks, which need public_url",
                    "set public_url (and auth_token_env) as well, or remove signing_key_env",
                );
            }
            let key = check.sensitive_header_from_env(&field, &var)?;
            Some((var, key))
        });
        if check.count() > before {
            return None;
        }
        let account_sid = account_sid?;
        let (auth, credentials, auth_token) = match key {
            Some((sid_env, secret_env, Some(sid), Some(secret))) => {
                let auth = basic(sid.to_str().ok()?, &secret);
                let Some(auth) = auth else {
                    unsendable(check, &format!("{at}.api_key_secret_env"), &secret_env);
                    return None;
                };
                let credentials = Credentials::ApiKey {
                    sid_env,
                    secret_env,
                    auth_token_env: raw.auth_token_env,
                };
                (auth, credentials, auth_token)
            }
            Some(_) => return None,
            None => {
                let (token, var) = auth_token.zip(raw.auth_token_env)?;
                let Some(auth) = basic(&account_sid, &token) else {
                    unsendable(check, &token_field, &var);
                    return None;
                };
                (
                    auth,
                    Credentials::AuthToken {
                        auth_token_env: var,
                    },
                    Some(token),
                )
            }
        };
        Some(Arc::new(Settings {
            base_url: base_url?,
            account_sid,
            auth,
            credentials,
            auth_token,
            public_url,
            signing_key,
            calls_per_second,
        }))
    }
}

fn account_sid(at: &str, raw: Option<String>, check: &mut Check<'_>) -> Option<String> {
    let field = format!("{at}.account_sid");
    match raw {
        Some(sid) if is_sid(&sid, "AC") => Some(sid),
        Some(_) => {
            // Not shown: an auth token is also 32 hex digits, and may be what was pasted.
            check.push(
                field,
                "is not a Twilio Account SID (AC followed by 32 hex digits); the value is not shown",
                "copy the Account SID from the Twilio Console's account dashboard",
            );
            None
        }
        None => {
            check.push(
                field,
                "is required for kind twilio (it is part of every API path)",
                "set it to the Account SID from the Twilio Console, e.g. \"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
            );
            None
        }
    }
}

/// The API key's SID, from the variable `var`. Checked for its shape, so that a SID and a
/// secret exported the wrong way round are caught at start-up rather than as 401s.
fn api_key_sid(at: &str, var: &str, check: &mut Check<'_>) -> Option<HeaderValue> {
    let field = format!("{at}.api_key_sid_env");
    let sid = check.sensitive_header_from_env(&field, var)?;
    if sid.to_str().is_ok_and(|s| is_sid(s.trim(), "SK")) {
        return Some(sid);
    }
    check.push(
        field,
        format!(
            "environment variable {var} does not hold an API key SID (SK followed by 32 hex digits); the value is not shown"
        ),
        format!("export {var} with the key's SID, and its secret in the variable api_key_secret_env names"),
    );
    None
}

/// `authorization: Basic base64(user:password)`. Whitespace around a value exported from a
/// file is not part of it.
fn basic(user: &str, password: &HeaderValue) -> Option<Auth> {
    Auth::basic(user.trim(), password.to_str().ok()?.trim())
}

/// A secret the header check let through (bytes beyond ASCII) that Basic cannot carry.
fn unsendable(check: &mut Check<'_>, field: &str, var: &str) {
    check.push(
        field,
        format!("environment variable {var} holds characters Basic authentication cannot carry"),
        format!("export {var} with the credential exactly as Twilio issued it"),
    );
}

fn public_url(field: &str, text: &str, check: &mut Check<'_>) -> Option<url::Url> {
    let shown = redacted_url(text);
    let problem = match url::Url::parse(text) {
        Err(e) => format!("`{shown}` is not a URL ({e})"),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            format!("`{shown}` is not an http or https URL")
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            format!("`{shown}` holds a user name or password")
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => format!("`{shown}` has no host"),
        Ok(u) => return Some(u),
    };
    check.push(
        field,
        problem,
        "give the full URL Twilio is configured to send this provider's status callbacks to, e.g. \"https://callmux.example.com/hooks/twilio/<provider id>\"",
    );
    None
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        let auth = match &self.credentials {
            Credentials::ApiKey {
                sid_env,
                secret_env,
                auth_token_env,
            } => {
                let mut s =
                    format!("API key from ${sid_env} and ${secret_env} (set, values hidden)");
                if let Some(var) = auth_token_env {
                    s += &format!(
                        "; auth token from ${var} (set, value hidden), kept for status callbacks"
                    );
                }
                s
            }
            Credentials::AuthToken { auth_token_env } => {
                format!("account auth token from ${auth_token_env} (set, value hidden)")
            }
        };
        let mut s = format!("at {}; account SID (hidden); {auth}", self.base_url);
        if self.calls_per_second != place::DEFAULT_CALLS_PER_SECOND {
            s += &format!(
                "; places at most {} calls per second",
                self.calls_per_second
            );
        }
        if let Some(url) = &self.public_url {
            s += &format!("; status callbacks at {}", redacted_url(url.as_str()));
        }
        if let Some((var, _)) = &self.signing_key {
            s += &format!("; webhook SharedKey secret from ${var} (set, value hidden)");
        }
        s
    }

    fn hook(&self) -> Option<&dyn Hook> {
        (self.public_url.is_some() && self.auth_token.is_some()).then_some(self as &dyn Hook)
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
        let account = with_segment(
            &endpoint(&self.base_url, "2010-04-01/Accounts"),
            &self.account_sid,
        )
        .ok_or("the account SID cannot be a path segment")?;
        let list_url = with_segment(&account, "Calls.json").ok_or("no Calls.json path")?;
        let calls_url = with_segment(&account, "Calls").ok_or("no Calls path")?;
        let listers = [
            Lister::new(&common.http, false)?,
            Lister::new(&common.http, false)?,
            Lister::new(&common.http, false)?,
        ];
        let twilio = Arc::new(Twilio {
            id,
            base_url: self.base_url.clone(),
            list_url,
            calls_url,
            auth: self.auth.clone(),
            listers,
            last: Mutex::new(None),
            public_url: self.public_url.clone(),
            pace: place::pacer(self.calls_per_second),
        });
        Ok(Backend {
            list: twilio.clone(),
            end: Some(twilio.clone()),
            place: None,
            places: Some(twilio),
            forward: None,
            capacity: Arc::new(super::capacity::Configured(common.max_concurrent_calls)),
        })
    }
}

pub struct Twilio {
    id: Arc<str>,
    /// A next page is asked of this URL's scheme, host and port only.
    base_url: url::Url,
    /// `.../Accounts/{AccountSid}/Calls.json`.
    list_url: reqwest::Url,
    /// `.../Accounts/{AccountSid}/Calls`, under which each call is `{CallSid}.json`.
    calls_url: reqwest::Url,
    auth: Auth,
    /// One per status in [`ACTIVE_STATUSES`]: each keeps its own last pages, so an unchanged
    /// status list is neither copied nor parsed again.
    listers: [Lister; 3],
    /// The three lists last combined, and what they combined to: handed out again while all
    /// three are the very same, so snapshots built from it are reused too.
    last: Mutex<Option<([Calls; 3], Calls)>>,
    /// Where placed calls report their status changes.
    public_url: Option<url::Url>,
    /// Paces placements to `calls_per_second`.
    pace: governor::DefaultDirectRateLimiter,
}

impl Twilio {
    fn first_page(&self, status: &str) -> Request {
        Request::get(self.list_url.clone())
            .query("Status", status)
            .query("PageSize", PAGE_SIZE)
            .auth(&self.auth)
    }

    /// The page Twilio's `next_page_uri` names. It comes from upstream data, so it is
    /// followed only as a path on the base URL's own scheme, host and port: anything else
    /// (another host, a scheme-relative `//host`, text that is not a path) is the
    /// provider's error, and no request.
    fn next_page(&self, uri: &str) -> Result<Request, ProviderError> {
        page_url(&self.base_url, uri)
            .map(|url| Request::get(url).auth(&self.auth))
            .ok_or_else(|| {
                ProviderError::BadBody(
                    "its next_page_uri is not a path on the API's own host, so it was not followed"
                        .into(),
                )
            })
    }
}

/// `uri`, a path with an optional query, on `base`'s scheme, host and port; `None` for
/// anything else.
pub fn page_url(base: &url::Url, uri: &str) -> Option<reqwest::Url> {
    // The URL parser drops tabs and newlines and reads `\` as `/`, either of which could
    // turn `/x` into `//host`: such text is refused before parsing, and the host is
    // compared after.
    let plain = uri.starts_with('/')
        && !uri.starts_with("//")
        && !uri
            .bytes()
            .any(|b| b.is_ascii_control() || matches!(b, b'\\' | b' ' | b'#'));
    if !plain {
        return None;
    }
    let url = base.join(uri).ok()?;
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    same_origin.then_some(url)
}

/// The three status lists as one. A call that moved on between two of the requests (queued
/// when its list was read, ringing by the next) is in two lists; it is listed once, as the
/// later status reported it, since a call's status only moves forward.
fn combine(parts: &[Calls; 3]) -> Calls {
    let total = parts.iter().map(|p| p.len()).sum();
    let mut seen: HashSet<&str> = HashSet::with_capacity(total);
    let mut kept: Vec<&Call> = Vec::with_capacity(total);
    for call in parts.iter().rev().flat_map(|p| p.iter().rev()) {
        if seen.insert(&call.call_id) {
            kept.push(call);
        }
    }
    Arc::new(kept.into_iter().rev().cloned().collect())
}

#[async_trait]
impl ListCalls for Twilio {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let next = |uri: &str| self.next_page(uri);
        let list = |i: usize| {
            self.listers[i].list(
                self.first_page(ACTIVE_STATUSES[i]),
                next,
                None,
                &self.id,
                wire::parse_page,
            )
        };
        // Each list's deadline starts as it is first polled, which is now for all three.
        let (queued, ringing, in_progress) = tokio::try_join!(list(0), list(1), list(2))?;
        let parts = [queued, ringing, in_progress];
        let mut last = self.last.lock().expect("twilio combine lock");
        if let Some((before, combined)) = &*last {
            if before.iter().zip(&parts).all(|(a, b)| Arc::ptr_eq(a, b)) {
                return Ok(combined.clone());
            }
        }
        let combined = combine(&parts);
        *last = Some((parts, combined.clone()));
        Ok(combined)
    }
}

#[async_trait]
impl EndCall for Twilio {
    async fn end_call(&self, _ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        // Twilio's call SIDs are `CA` and 32 hex digits: any other id names no call Twilio
        // could have, so it is not found, and nothing is sent.
        if !is_sid(call_id, "CA") {
            return Err(EndError::NotFound);
        }
        let url =
            with_segment(&self.calls_url, &format!("{call_id}.json")).ok_or(EndError::NotFound)?;
        let request = Request::post_form(url, &[("Status", "completed")]).auth(&self.auth);
        let client = self.listers[0].client();
        client.control(&request, client.deadline(), &[404]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStatus;

    #[test]
    fn sids_are_their_prefix_and_32_hex_digits() {
        assert!(is_sid("AC0123456789abcdefABCDEF0123456789", "AC"));
        assert!(!is_sid("AC0123456789abcdefABCDEF012345678", "AC"));
        assert!(!is_sid("CA0123456789abcdefABCDEF0123456789", "AC"));
        assert!(!is_sid("AC0123456789abcdefABCDEF012345678g", "AC"));
        assert!(!is_sid("AC0123456789abcdefABCDEF01234567é", "AC"));
    }

    #[test]
    fn a_next_page_is_a_path_on_the_base_urls_own_origin_only() {
        let base = url::Url::parse("https://api.twilio.com/prefix/").unwrap();
        assert_eq!(
            page_url(
                &base,
                "/2010-04-01/Accounts/AC1/Calls.json?Page=1&PageToken=PA1"
            )
            .unwrap()
            .as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?Page=1&PageToken=PA1"
        );
        for bad in [
            "https://evil.example/2010-04-01/Calls.json",
            "//evil.example/x",
            "/\\evil.example/x",
            "\\\\evil.example/x",
            "/\t/evil.example/x",
            "/\n/evil.example/x",
            "2010-04-01/Calls.json",
            "",
            "javascript:alert(1)",
            "/x#frag",
            "/a b",
        ] {
            assert_eq!(page_url(&base, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_call_in_two_status_lists_is_kept_once_as_the_later_list_has_it() {
        let call = |id: &str, s: CallStatus| Call::new(id, Arc::from("t"), s);
        let parts = [
            Arc::new(vec![
                call("a", CallStatus::Queued),
                call("b", CallStatus::Queued),
            ]),
            Arc::new(vec![call("a", CallStatus::Ringing)]),
            Arc::new(vec![call("c", CallStatus::InProgress)]),
        ];
        let got: Vec<_> = combine(&parts)
            .iter()
            .map(|c| (c.call_id.to_string(), c.status.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), CallStatus::Queued),
                ("a".to_string(), CallStatus::Ringing),
                ("c".to_string(), CallStatus::InProgress),
            ]
        );
    }
}
