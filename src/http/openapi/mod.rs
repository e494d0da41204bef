//! `GET /openapi.json`: an OpenAPI 3.1 description of every route callmux serves or forwards,
//! and of every answer they give, built once from the documents of each part below.
//!
//! The wire writers are hand-written for speed (`crate::wire`), so the types in these files
//! are never serialised: they exist only to describe that output. `tests/it/openapi.rs` checks
//! real answers of every documented status, and every error code, against this document.

mod control;
mod forwarding;
mod hooks;
mod lists;
mod shared;
mod streams;

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use utoipa::{Modify, OpenApi};

/// The document, serialised once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let mut document = lists::ListsDoc::openapi();
    document.merge(control::ControlDoc::openapi());
    document.merge(forwarding::ForwardDoc::openapi());
    document.merge(streams::StreamsDoc::openapi());
    document.merge(hooks::HooksDoc::openapi());
    shared::OrgKey.modify(&mut document);
    shared::SharedRefusals.modify(&mut document);
    forwarding::BlandsOwnAnswers.modify(&mut document);
    let json = document.to_json().expect("the OpenAPI document serialises");
    Bytes::from(json)
});

/// `GET /openapi.json`: served without authentication.
pub async fn document() -> Response {
    super::json(StatusCode::OK, DOCUMENT.clone())
}
