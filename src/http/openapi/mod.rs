//! `GET /openapi.json`: an OpenAPI 3.1 description of every route callmux serves or forwards,
//! and of every answer they give, built once from the documents of each part below.
//!
//! The wire writers are hand-written for speed (`crate::wire`), so the types in these files
//! are never serialised: they exist only to describe that output. `tests/it/openapi.rs` checks
//! real answers of every documented status, and every error code, against this document.

mod capacity;
mod control;
mod forwarding;
mod hooks;
mod keys;
mod lists;
mod routes;
mod shared;
mod streams;
mod webhooks;

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use utoipa::{Modify, OpenApi};

/// The document, serialised once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let json = build().to_json().expect("the OpenAPI document serialises");
    Bytes::from(json)
});

/// Every part's document, merged, with what the routes share added to each.
fn build() -> utoipa::openapi::OpenApi {
    let mut document = lists::ListsDoc::openapi();
    document.merge(control::ControlDoc::openapi());
    document.merge(forwarding::ForwardDoc::openapi());
    document.merge(streams::StreamsDoc::openapi());
    document.merge(hooks::HooksDoc::openapi());
    document.merge(webhooks::WebhooksDoc::openapi());
    document.merge(keys::KeysDoc::openapi());
    document.merge(capacity::CapacityDoc::openapi());
    document.merge(routes::RoutesDoc::openapi());
    shared::OrgKey.modify(&mut document);
    shared::SharedRefusals.modify(&mut document);
    forwarding::BlandsOwnAnswers.modify(&mut document);
    document
}

/// `GET /openapi.json`: served without authentication.
pub async fn document() -> Response {
    super::json(StatusCode::OK, DOCUMENT.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_documented_operation_is_given_the_shared_refusals() {
        let document = super::build();
        let mut seen = 0;
        for (path, item) in &document.paths.paths {
            for operation in [&item.get, &item.post].into_iter().flatten() {
                let id = operation.operation_id.as_deref().unwrap_or_default();
                assert!(
                    super::shared::ROUTES.iter().any(|(route, ..)| *route == id),
                    "{path} ({id}) is not in shared::ROUTES, so it documents none of the refusals every route gives"
                );
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            super::shared::ROUTES.len(),
            "shared::ROUTES names an operation the document lacks"
        );
    }
}
