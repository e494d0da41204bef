//! The check before every keyed route's handler: the route's scope (from `access::ROUTES`)
//! and the key's rates, refused in the route's own envelope before anything is asked
//! upstream. The credentials it read are handed on, so a request is digested once.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::access::{self, Access, Reply};
use super::envelope::Envelope;
use super::{challenge, json, presented, Edge};
use crate::error_code::ErrorCode;
use crate::scope::Scope;
use crate::service::auth::{self, AuthError, Identity, Presented, Standing};
use crate::service::limits::Spend;
use crate::wire::ErrorItem;

/// The credentials of the request: those the gate read, or read now from the headers.
pub struct Caller(pub Result<Presented, AuthError>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(match parts.extensions.remove::<Presented>() {
            Some(p) => Ok(p),
            None => presented(&parts.headers),
        }))
    }
}

/// What the gate says of a request about to reach its route.
pub(super) enum Verdict {
    /// Go on; with the credentials read, for the handler, when the route needs a key.
    Pass(Option<Presented>),
    /// Refused here, in the route's envelope.
    Refused(Response),
    /// The key's standing with Bland or its rates on Redis must be asked first ([`check`]).
    Ask {
        presented: Presented,
        scope: Scope,
        reply: Reply,
        peer: Option<IpAddr>,
    },
}

/// Checks the matched route's scope and the key's rates, without waiting when nothing needs
/// asking. Credentials that are missing or wrong pass on untouched: the handler refuses them
/// as it always has, in its envelope.
pub(super) fn verdict(edge: &Edge, request: &Request) -> Verdict {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let Some((access, reply)) = access::of(request.method().as_str(), path) else {
        // Fails closed: a route nobody gave a scope serves no one.
        let message = format!(
            "the route {path} has no entry in callmux's scope table; this is a bug in callmux"
        );
        return Verdict::Refused(refuse(
            Reply::Bland,
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            &message,
        ));
    };
    let Access::Key(scope) = access else {
        return Verdict::Pass(None);
    };
    let Ok(p) = presented(request.headers()) else {
        return Verdict::Pass(None);
    };
    let peer = peer_of(request.extensions());
    match check_now(edge, &p, scope, peer) {
        Some(Ok(())) => Verdict::Pass(Some(p)),
        Some(Err(e)) => Verdict::Refused(refused(reply, &e)),
        None => Verdict::Ask {
            presented: p,
            scope,
            reply,
            peer,
        },
    }
}

/// The client's address, as the connection gave it.
pub(super) fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The scope and rate check for `p` on a route that needs `scope`: `Ok` when the caller
/// may go on, or when the credentials themselves are wrong (the route refuses those). A
/// Bland key that Bland has yet to check is counted against its client address `peer`.
pub(super) async fn check(
    edge: &Edge,
    p: &Presented,
    scope: Scope,
    peer: Option<IpAddr>,
) -> Result<(), AuthError> {
    match check_now(edge, p, scope, peer) {
        Some(checked) => checked,
        None => ask(edge, p, scope, peer).await,
    }
}

/// [`check`] in full, asking Bland or Redis where the key needs it.
pub(super) async fn ask(
    edge: &Edge,
    p: &Presented,
    scope: Scope,
    peer: Option<IpAddr>,
) -> Result<(), AuthError> {
    let loaded = edge.live.current();
    let Ok(identity) = auth::identify(loaded.service.config(), p) else {
        return Ok(());
    };
    identity.may(scope)?;
    if let (Identity::ViaUpstream(org, ..), Some(peer)) = (&identity, peer) {
        if loaded.service.verdicts().standing(&org.id, p).await == Standing::Unknown {
            edge.unverified.take(peer)?;
        }
    }
    if let Some(key) = identity.key() {
        let spend = Spend::of(scope);
        if let Some(org) = loaded.service.org_id(&identity.org().id) {
            let fleet = loaded.service.store().redis();
            edge.live.rates().take(fleet, org, key, spend).await?;
        }
    }
    Ok(())
}

/// [`check`] when it needs no waiting; `None` when a Bland key's standing must be asked, or
/// the key's rates are the fleet's, on Redis.
fn check_now(
    edge: &Edge,
    p: &Presented,
    scope: Scope,
    peer: Option<IpAddr>,
) -> Option<Result<(), AuthError>> {
    let loaded = edge.live.current();
    let Ok(identity) = auth::identify(loaded.service.config(), p) else {
        return Some(Ok(()));
    };
    if let Err(e) = identity.may(scope) {
        return Some(Err(e));
    }
    if let (Identity::ViaUpstream(..), Some(_)) = (&identity, peer) {
        return None;
    }
    if let Some(key) = identity.key() {
        let spend = Spend::of(scope);
        if let Some(org) = loaded.service.org_id(&identity.org().id) {
            let fleet = loaded.service.store().redis();
            return edge.live.rates().take_now(fleet, org, key, spend);
        }
    }
    Some(Ok(()))
}

/// A scope or rate refusal in the route's envelope, with `retry-after` on a 429.
pub(super) fn refused(reply: Reply, e: &AuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).expect("auth statuses are valid");
    tracing::info!(code = e.code().as_str(), reason = %e, "request refused");
    let mut response = refuse(reply, status, e.code(), &e.to_string());
    if let Some(secs) = e.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    challenge(&mut response);
    response
}

fn refuse(reply: Reply, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = match reply {
        Reply::List(shape) => shape.write_error(&[ErrorItem {
            provider: None,
            error: code,
            message,
        }]),
        Reply::Agent => Envelope::Agent.error(code, message, None).into_bytes(),
        Reply::Bland => Envelope::Bland.error(code, message, None).into_bytes(),
    };
    json(status, body)
}
