//! The dashboard at `GET /`: its files served from the binary under a policy of its own
//! origin.

use crate::common::*;

const KEY: &str = "acme-dashboard-key";

/// What the dashboard's files must be served with.
const FILES: &[(&str, &str)] = &[
    ("/", "text/html; charset=utf-8"),
    ("/dashboard/app.js", "text/javascript; charset=utf-8"),
    ("/dashboard/style.css", "text/css; charset=utf-8"),
    ("/dashboard/icon.svg", "image/svg+xml"),
];

#[tokio::test]
async fn the_page_and_its_files_come_from_the_binary_under_a_policy_of_their_own_origin() {
    let app = spawn_app(&one_agent_org(KEY, "agents", &refused_url().await, 0)).await;
    for (path, content_type) in FILES {
        let reply = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| {
            reply
                .headers()
                .get(name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(header("content-type"), *content_type, "{path}");
        let policy = header("content-security-policy");
        assert!(policy.starts_with("default-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-cache");
        let etag = header("etag");
        let body = reply.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");

        let again = app
            .http
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} unchanged is not 304");
        assert!(again.text().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_page_loads_nothing_from_elsewhere_and_its_script_never_writes_markup() {
    let app = spawn_app(&one_agent_org(KEY, "agents", &refused_url().await, 0)).await;
    let text = |path: &'static str| {
        let app = &app;
        async move {
            let reply = app.http.get(app.url(path)).send().await.unwrap();
            reply.text().await.unwrap()
        }
    };
    let page = text("/").await;
    // Every src= and href= is a path on callmux or a fragment: nothing from a CDN.
    for attr in ["src=\"", "href=\""] {
        for value in page.split(attr).skip(1) {
            assert!(
                value.starts_with('/') || value.starts_with('#'),
                "{attr}{}",
                &value[..value.find('"').unwrap_or(value.len())]
            );
        }
    }
    // No inline script: the policy would refuse it, and the page would not work.
    for script in page.split("<script").skip(1) {
        let tag_end = script.find('>').unwrap();
        assert!(
            script[..tag_end].contains("src=\"/dashboard/"),
            "<script{script}"
        );
        assert!(
            script[tag_end + 1..].starts_with("</script>"),
            "<script{script}"
        );
    }
    let script = text("/dashboard/app.js").await;
    for markup in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!script.contains(markup), "app.js uses {markup}");
    }
    assert!(!script.contains("localStorage"), "app.js uses localStorage");
    assert!(!script.contains("document.cookie"), "app.js uses cookies");
}
