//! Placing a call on Twilio: `POST .../Accounts/{sid}/Calls.json`, a form of `To`, `From`
//! and the target's TwiML `Url`, with status callbacks to `public_url` when it is set, and
//! `sid` from the 201 answer. Sent no faster than the provider's `calls_per_second`, Twilio's
//! own pacing of outbound calls per account.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use super::Twilio;
use crate::provider::http::Request;
use crate::provider::kind::TargetSettings;
use crate::provider::place::{by_status, send_once, PlaceOutcome, PlaceRequest};
use crate::provider::place::{target_of, Places};
use crate::provider::RequestContext;
use crate::settings::{redacted_url, Check};

/// Twilio's default pacing: one outbound call per second per account.
pub const DEFAULT_CALLS_PER_SECOND: u64 = 1;

/// The status changes a placed call reports to `public_url`.
const STATUS_EVENTS: &str = "initiated ringing answered completed";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: Option<String>,
    from: Option<String>,
}

/// A `twilio` route target: the TwiML the call runs and the number it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    pub from: String,
}

impl TargetSettings for Target {
    fn summary(&self) -> String {
        format!(
            "TwiML at {} from {}",
            redacted_url(self.url.as_str()),
            self.from
        )
    }
}

/// Reads a `twilio` target's settings.
pub fn target(
    at: &str,
    table: &figment::value::Value,
    check: &mut Check<'_>,
) -> Option<Arc<dyn TargetSettings>> {
    let raw: Raw = check.read(at, table, &["provider", "weight"])?;
    let url = check.required(
        at,
        "url",
        raw.url,
        "twilio",
        "set it to the URL of the TwiML the call runs, e.g. \"https://example.com/twiml\"",
    );
    let from = check.required(
        at,
        "from",
        raw.from,
        "twilio",
        "set it to a Twilio number of the account, in E.164, e.g. \"+14155550102\"",
    );
    let url = url?;
    let parsed = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
        _ => {
            check.push(
                format!("{at}.url"),
                format!("`{}` is not an http or https URL", redacted_url(&url)),
                "give the full URL of the TwiML the call runs, e.g. \"https://example.com/twiml\"",
            );
            return None;
        }
    };
    Some(Arc::new(Target {
        url: parsed,
        from: from?,
    }))
}

/// The pacer of one provider's placements.
pub fn pacer(calls_per_second: u64) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(calls_per_second.clamp(1, u32::MAX as u64) as u32)
        .expect("clamped to at least 1");
    RateLimiter::direct(Quota::per_second(n).allow_burst(NonZeroU32::MIN))
}

/// The create-call form for `request`. Twilio takes no variables: the TwiML at `Url` is the
/// call's whole script.
pub fn form<'a>(
    target: &'a Target,
    request: &'a PlaceRequest,
    public_url: Option<&'a url::Url>,
) -> Vec<(&'static str, &'a str)> {
    let mut form = vec![
        ("To", request.to.as_str()),
        ("From", target.from.as_str()),
        ("Url", target.url.as_str()),
    ];
    if let Some(callback) = public_url {
        form.push(("StatusCallback", callback.as_str()));
        form.push(("StatusCallbackEvent", STATUS_EVENTS));
    }
    form
}

/// Twilio's answer: the call resource (201) with its `sid`; errors are
/// `{"code", "message", "more_info", "status"}`, read by the shared rules.
pub fn read_answer(status: u16, body: &[u8]) -> PlaceOutcome {
    by_status(status, body, |v| v.get("sid")?.as_str())
}

#[async_trait]
impl Places for Twilio {
    async fn place(&self, _ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let target = match target_of::<Target>(request) {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let form = form(target, request, self.public_url.as_ref());
        let request = Request::post_form(self.list_url.clone(), &form).auth(&self.auth);
        self.pace.until_ready().await;
        send_once(self.listers[0].client(), &request, read_answer).await
    }
}
