//! Forwarding any other Bland route: the client's request sent to `{base_url}` with its
//! method, path, query and body unchanged, its headers less hop-by-hop ones and with Bland
//! credentials in place of its own; Bland's answer handed back as it arrives.

use async_trait::async_trait;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, EXPECT};

use super::{Bland, ORG_ID_HEADER};
use crate::provider::http::{strip_hop_by_hop, Request, Streamed};
use crate::provider::{Forward, Outgoing, ProviderError, RequestContext};

/// Why a path is never forwarded, if it is one: a segment that percent-decodes to `.` or
/// `..` (which the URL on the way, or any server, reads as "this" or "the parent" folder,
/// so the request would reach a route other than the one named), or one that holds an
/// encoded `/` or a `\` in any form (which some servers split on).
pub fn path_problem(path: &str) -> Option<&'static str> {
    path.split('/').find_map(|segment| {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        if decoded == b"." || decoded == b".." {
            Some("a segment of the path is `.` or `..`, or encodes one (%2e)")
        } else if decoded.contains(&b'/') {
            Some("a segment of the path holds an encoded `/` (%2F)")
        } else if decoded.contains(&b'\\') {
            Some("the path holds a `\\`, or encodes one (%5C)")
        } else {
            None
        }
    })
}

impl Bland {
    /// `{base_url}{path}?{query}`, the path and query as the client sent them.
    fn forward_url(&self, path: &str, query: Option<&str>) -> Option<reqwest::Url> {
        let base = self.base_url.as_str().trim_end_matches('/');
        let mut url = reqwest::Url::parse(&format!("{base}{path}")).ok()?;
        url.set_query(query);
        Some(url)
    }
}

#[async_trait]
impl Forward for Bland {
    async fn forward(
        &self,
        ctx: &RequestContext,
        outgoing: Outgoing,
    ) -> Result<Streamed, ProviderError> {
        if let Some(problem) = path_problem(&outgoing.path) {
            return Err(ProviderError::ControlRefused(format!(
                "refused to forward the path: {problem}"
            )));
        }
        let (authorization, org_id, _) = self.credentials(ctx)?;
        let url = self
            .forward_url(&outgoing.path, outgoing.query.as_deref())
            .ok_or_else(|| {
                ProviderError::ControlRefused(
                    "refused to forward the path: it makes no URL under base_url".to_owned(),
                )
            })?;
        let mut headers = outgoing.headers;
        strip_hop_by_hop(&mut headers);
        // The body's length is the body's, set as it is sent; and the body is already here
        // whole, so there is nothing to ask Bland to wait for (`expect: 100-continue`).
        headers.remove(CONTENT_LENGTH);
        headers.remove(EXPECT);
        // The client's credentials are replaced whatever they were: a key callmux issued
        // is never sent upstream.
        headers.insert(AUTHORIZATION, authorization.clone());
        headers.insert(ORG_ID_HEADER, org_id.clone());
        let request = Request {
            method: outgoing.method,
            url,
            headers,
            body: outgoing.body,
        };
        let client = self.lister.client();
        let deadline = match outgoing.not_after {
            Some(not_after) => not_after.min(client.deadline()),
            None => client.deadline(),
        };
        let mut answer = client.stream(&request, deadline).await?;
        strip_hop_by_hop(&mut answer.headers);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_reach_another_route_have_a_problem() {
        for bad in [
            "/v1/./x",
            "/v1/../x",
            "/v1/calls/%2e%2e/x",
            "/v1/calls/%2E./x",
            "/v1/calls/.%2e",
            "/v1/%2e/x",
            "/v1/a%2Fb",
            "/v1/a%2fb",
            "/v1/a\\b",
            "/v1/a%5Cb",
            "/v1/a%5cb",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
        for good in [
            "/v1/calls",
            "/v1/calls/9d404c1b-6a23-4426-953a-a52c392ff8f1",
            "/v1/pathway/abc/version/0",
            "/v1/...",
            "/v1/a.b/.c",
            "/v1/%252e%252e",
            "/v1/a%20b",
        ] {
            assert_eq!(path_problem(good), None, "{good}");
        }
    }
}
