//! Every error code callmux sends, in one enum: the server writes these and the OpenAPI
//! document lists them, so a code cannot be sent without being documented.

use serde::Serialize;
use strum::{EnumIter, EnumMessage, IntoEnumIterator, IntoStaticStr};

/// A code clients see in `errors[].error` or `code`, written as its SCREAMING_SNAKE name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    EnumIter,
    EnumMessage,
    IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // A provider's failure: names the provider.
    /// No complete answer within the provider's `timeout_ms`.
    UpstreamTimeout,
    /// Connection refused or failed.
    UpstreamUnreachable,
    /// Answered 401/403 to the provider's own credentials.
    UpstreamAuthRejected,
    /// Kept answering 429 past the request's deadline.
    UpstreamRateLimited,
    /// Answered a non-2xx status (other than 401/403/429).
    UpstreamError,
    /// Body not JSON, or JSON of the wrong shape.
    UpstreamBadResponse,
    /// A Bland upstream answered its own error envelope.
    UpstreamReportedError,
    /// Body over the provider's `max_body_bytes`.
    UpstreamTooLarge,
    /// The connection broke off mid-answer.
    UpstreamBrokenResponse,
    /// Paging went past `max_pages`, or a cursor came back twice.
    UpstreamEndlessList,
    /// A forwarding Bland provider had no caller credentials to send.
    UpstreamNoCredentials,
    /// Call control the upstream's data pointed somewhere callmux does not send to.
    UpstreamControlRefused,
    /// The provider failed repeatedly and is not asked for a while.
    CircuitOpen,
    /// callmux failed while asking this provider (a bug, logged).
    InternalError,

    // The request's own, on any route.
    /// Missing, unreadable or wrong key, or unknown org id (401).
    AuthFailure,
    /// No `x-bland-org-id` and the key alone names no single org (400).
    MissingOrgId,
    /// Bland could not be asked about the caller's key (502).
    AuthUnavailable,
    /// Headers over `[server] max_header_bytes` (431).
    HeadersTooLarge,
    /// `[server] max_concurrent_requests` or `max_streams` already in use (503).
    Overloaded,
    /// No answer within `[server] request_timeout_ms` (503).
    RequestTimeout,
    /// A method the route does not answer, or one forwarding does not send (405).
    MethodNotAllowed,
    /// The key lacks the scope the route needs; the message names both (403).
    Forbidden,
    /// The key is over its `requests_per_second` or `calls_per_second`; see `retry-after` (429).
    RateLimited,

    // Call control.
    /// The call id in the path is not one callmux passes on (400).
    InvalidCallId,
    /// No provider the org may see lists the call (404).
    CallNotFound,
    /// The provider's kind cannot end calls, or no provider places calls (501).
    NotSupported,
    /// Every agent server is at its `max_active_calls` (503).
    AtCapacity,
    /// The upstream may or may not have acted: no answer in time, or the connection broke (504).
    OutcomeUnknown,
    /// The placement names a route the org may not use, or the org has none (404).
    RouteNotFound,
    /// The platform refused the call itself, e.g. a number it will not dial (422).
    PlaceRejected,
    /// The `Idempotency-Key` was used before with another body (422).
    IdempotencyKeyReused,
    /// The first placement with this `Idempotency-Key` is still being answered (409).
    IdempotencyInFlight,

    // Bodies, forwarding and callbacks.
    /// A body callmux cannot take: a placement's field, a broken forwarded body, a callback
    /// without `CallSid`/`CallStatus` (400).
    InvalidBody,
    /// A body over its limit (413).
    BodyTooLarge,
    /// A forwarded path callmux will not send (400).
    InvalidPath,
    /// No route, and nothing forwarded (404).
    NotFound,
    /// No `twilio` provider with this id takes status callbacks (404).
    UnknownHook,
    /// A status callback without `X-Twilio-Signature` (403).
    MissingSignature,
    /// A status callback whose signature does not match (403).
    InvalidSignature,
    /// A status callback of another Twilio account (403).
    WrongAccount,
}

/// Where a code can be sent: each family is one `enum` in the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A provider's failure, in a list's `errors` (with `provider`).
    Provider,
    /// The request's own refusal, in a list's `errors` (no `provider`).
    Request,
    /// A control route's `code`.
    Control,
    /// A forwarded route's `code`.
    Forward,
    /// A status callback's `code`.
    Hook,
    /// callmux's 404 for a route it neither serves nor forwards.
    Unrouted,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether an answer of `family` may carry this code.
    pub fn in_family(self, family: Family) -> bool {
        use ErrorCode::*;
        let provider = matches!(
            self,
            UpstreamTimeout
                | UpstreamUnreachable
                | UpstreamAuthRejected
                | UpstreamRateLimited
                | UpstreamError
                | UpstreamBadResponse
                | UpstreamReportedError
                | UpstreamTooLarge
                | UpstreamBrokenResponse
                | UpstreamEndlessList
                | UpstreamNoCredentials
                | UpstreamControlRefused
                | CircuitOpen
                | InternalError
        );
        let request = matches!(
            self,
            AuthFailure
                | MissingOrgId
                | AuthUnavailable
                | HeadersTooLarge
                | Overloaded
                | RequestTimeout
                | MethodNotAllowed
                | Forbidden
                | RateLimited
        );
        match family {
            Family::Provider => provider,
            Family::Request => request,
            Family::Control => {
                provider
                    || request
                    || matches!(
                        self,
                        InvalidCallId
                            | CallNotFound
                            | NotSupported
                            | AtCapacity
                            | OutcomeUnknown
                            | InvalidBody
                            | RouteNotFound
                            | PlaceRejected
                            | IdempotencyKeyReused
                            | IdempotencyInFlight
                    )
            }
            Family::Forward => {
                provider || request || matches!(self, InvalidBody | BodyTooLarge | InvalidPath)
            }
            Family::Hook => matches!(
                self,
                InvalidBody
                    | BodyTooLarge
                    | UnknownHook
                    | MissingSignature
                    | InvalidSignature
                    | WrongAccount
            ),
            Family::Unrouted => self == NotFound,
        }
    }

    /// The codes of `family`, in declaration order.
    pub fn of(family: Family) -> impl Iterator<Item = ErrorCode> {
        Self::iter().filter(move |c| c.in_family(family))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a code compares with the text a client reads.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_its_serde_name_and_belongs_somewhere() {
        for code in ErrorCode::iter() {
            let serde = serde_json::to_value(code).unwrap();
            assert_eq!(serde, code.as_str(), "{code:?}");
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{code:?}"
            );
            let families = [
                Family::Provider,
                Family::Request,
                Family::Control,
                Family::Forward,
                Family::Hook,
                Family::Unrouted,
            ];
            assert!(
                families.iter().any(|f| code.in_family(*f)),
                "{code:?} is in no family, so no schema lists it"
            );
        }
    }
}
