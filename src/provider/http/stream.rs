//! An answer passed on as it arrives, whatever its status: its head by the deadline, then
//! its body piece by piece, cut off at the deadline or the body cap.

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::time::Instant;

use super::client::classify;
use super::retry::Failure;
use super::{Client, Request};
use crate::provider::ProviderError;

impl Client {
    /// Sends `request` as it is, adding no header of callmux's own beyond reqwest's defaults
    /// for the ones it lacks, and hands back the answer whatever its status: the head by
    /// `deadline`, then the body as it arrives. It is sent once, as a control request is
    /// (again only after a refused connection). The body stream ends in an error, never
    /// silently, when a piece misses the deadline or the body passes `max_body_bytes`; an
    /// answer that declares a longer body is [`ProviderError::TooLarge`] at once.
    pub async fn stream(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Streamed, ProviderError> {
        let response = self
            .attempts(deadline, false, || async {
                let mut builder = self
                    .client
                    .request(request.method.clone(), request.url.clone())
                    .headers(request.headers.clone());
                if let Some(body) = &request.body {
                    builder = builder.body(body.clone());
                }
                builder.send().await.map_err(|e| Failure::from(classify(e)))
            })
            .await?;
        let cap = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ProviderError::TooLarge(cap));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let limit_ms = self.settings.timeout.as_millis() as u64;
        // The answer and the bytes passed on so far; `None` once the stream has failed.
        let body = futures::stream::unfold(Some((response, 0)), move |state| async move {
            let (mut response, sent) = state?;
            let failed = |e| Some((Err(e), None));
            let piece = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return failed(ProviderError::Timeout(limit_ms)),
                Ok(Err(e)) => return failed(classify(e)),
                Ok(Ok(None)) => return None,
                Ok(Ok(Some(piece))) => piece,
            };
            let sent = sent + piece.len();
            if sent > cap {
                return failed(ProviderError::TooLarge(cap));
            }
            Some((Ok(piece), Some((response, sent))))
        });
        Ok(Streamed {
            status,
            headers,
            body: Box::pin(body),
        })
    }
}

/// An answer on its way: its head, and its body as it arrives (see [`Client::stream`]).
pub struct Streamed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: futures::stream::BoxStream<'static, Result<Bytes, ProviderError>>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
