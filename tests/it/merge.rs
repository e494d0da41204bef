//! End to end: two agent servers and one Bland upstream merged into one list, in both shapes.

use crate::common::*;
use serde_json::json;
use wiremock::MockServer;

const KEY: &str = "acme-key";
const BLAND_KEY: &str = "bland-secret-key";

struct World {
    app: TestApp,
    east: MockServer,
    west: MockServer,
    bland: MockServer,
}

/// Org `acme` sees `east`, `west` (agent servers) and `bland`, in that order.
async fn three_providers(
    east: serde_json::Value,
    west: serde_json::Value,
    bland: serde_json::Value,
) -> World {
    let east = agent_server(east).await;
    let west = agent_server(west).await;
    let bland = bland_server(BLAND_KEY, "bland-org-1", bland).await;
    let app = app_over(&east, &west, &bland).await;
    World {
        app,
        east,
        west,
        bland,
    }
}

/// A callmux of its own in which org `acme` sees `east`, `west` and `bland`, in that order.
async fn app_over(east: &MockServer, west: &MockServer, bland: &MockServer) -> TestApp {
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["east", "west", "bland"]))
        .provider(ProviderB::agent("east", &east.uri()))
        // A base URL with a trailing slash reaches the same path.
        .provider(ProviderB::agent("west", &format!("{}/", west.uri())))
        .provider(ProviderB::bland(
            "bland",
            &bland.uri(),
            "BLAND_KEY",
            "bland-org-1",
        ))
        .toml();
    spawn_app_with_env(&toml, &[("BLAND_KEY", BLAND_KEY)]).await
}

async fn standard_world() -> World {
    three_providers(
        json!([
            agent_call("a1", "+15550000001", "ringing", "outbound"),
            agent_call("a2", "+15550000002", "in-progress", "incoming"),
            agent_call("a3", "+15550000003", "completed", "outbound"),
        ]),
        json!([
            agent_call("w2", "+15550000022", "on-hold", "outbound"),
            agent_call("w1", "+15550000021", "initiating", "outbound"),
            agent_call("w3", "+15550000023", "no-answer", "outbound"),
        ]),
        json!([
            bland_call("b2", "IN_PROGRESS", "1758656900740"),
            bland_call("b1", "QUEUED", "1758656817432"),
            bland_call("b3", "COMPLETED", "1758656800000"),
            bland_call("b4", "TRANSFERRING", ""),
        ]),
    )
    .await
}

#[tokio::test]
async fn a_bland_client_sees_every_active_call_of_every_provider_with_every_field_a_string() {
    let w = standard_world().await;
    let reply = w.app.bland(KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let agent = |id: &str, to: &str, from: &str, status: &str| {
        json!({"call_id": id, "user_id": "acme", "from": from, "to": to, "objective": "",
               "pathway_id": "", "start_time": "", "international": "", "status": status, "timestamp": ""})
    };
    assert_eq!(
        reply.body,
        json!({
            "data": [
                // Calls with a creation time first, oldest first; Bland's fields exactly as sent.
                bland_call("b1", "QUEUED", "1758656817432"),
                bland_call("b2", "IN_PROGRESS", "1758656900740"),
                // Then the rest by provider order (east, west, bland), then call_id.
                agent("a1", "+15550000001", "", "QUEUED"),
                agent("a2", "", "+15550000002", "IN_PROGRESS"),
                agent("w1", "+15550000021", "", "QUEUED"),
                agent("w2", "+15550000022", "", "on-hold"),
                bland_call("b4", "TRANSFERRING", ""),
            ],
            "errors": null
        })
    );
}

#[tokio::test]
async fn a_dashboard_sees_the_same_calls_in_the_calls_shape_with_a_true_count() {
    let w = standard_world().await;
    let reply = w.app.calls(KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "calls": [
                {"call_id": "b1", "to_number": "+13105100966", "status": "initiating", "direction": null},
                {"call_id": "b2", "to_number": "+13105100966", "status": "in-progress", "direction": null},
                {"call_id": "a1", "to_number": "+15550000001", "status": "ringing", "direction": "outbound"},
                {"call_id": "a2", "to_number": "+15550000002", "status": "in-progress", "direction": "incoming"},
                {"call_id": "w1", "to_number": "+15550000021", "status": "initiating", "direction": "outbound"},
                {"call_id": "w2", "to_number": "+15550000022", "status": "on-hold", "direction": "outbound"},
                {"call_id": "b4", "to_number": "+13105100966", "status": "TRANSFERRING", "direction": null},
            ],
            "count": 7
        })
    );
    assert_eq!(
        reply.headers.get("content-type").unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn a_call_reported_by_two_providers_is_listed_once_as_the_first_provider_reported_it() {
    let w = three_providers(
        json!([agent_call("same", "+15550000001", "ringing", "outbound")]),
        json!([agent_call(
            "same",
            "+15559999999",
            "in-progress",
            "outbound"
        )]),
        json!([bland_call("same", "IN_PROGRESS", "1758656900740")]),
    )
    .await;
    let reply = w.app.calls(KEY, "acme").await;
    assert_eq!(
        reply.body,
        json!({"calls": [{"call_id": "same", "to_number": "+15550000001", "status": "ringing", "direction": "outbound"}], "count": 1})
    );
}

#[tokio::test]
async fn callmux_sends_the_documented_requests_upstream_and_never_the_clients_key() {
    let w = standard_world().await;
    w.app.bland(KEY, "acme").await;

    for agent in [&w.east, &w.west] {
        let reqs = agent.received_requests().await.unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method.as_str(), "GET");
        assert_eq!(reqs[0].url.path(), "/api/calls");
        assert!(reqs[0].headers.get("authorization").is_none());
        assert!(reqs[0].headers.get("x-bland-org-id").is_none());
    }
    let reqs = w.bland.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].url.path(), "/v1/calls/active");
    assert_eq!(reqs[0].headers["authorization"], BLAND_KEY);
    assert_eq!(reqs[0].headers["x-bland-org-id"], "bland-org-1");
    for r in w
        .east
        .received_requests()
        .await
        .unwrap()
        .iter()
        .chain(reqs.iter())
    {
        assert!(
            r.headers.values().all(|v| v.as_bytes() != KEY.as_bytes()),
            "the client's callmux key went upstream"
        );
    }
}

/// Each repeat is one request to a callmux of its own, so each list is merged afresh: one
/// callmux answers the same upstream answers again with the body it wrote the first time,
/// whatever a second merge would have made of them.
#[tokio::test]
async fn the_same_upstreams_give_the_same_list_every_time() {
    let w = standard_world().await;
    let first = w.app.bland(KEY, "acme").await.body;
    for repeat in 1..=5 {
        let fresh = app_over(&w.east, &w.west, &w.bland).await;
        assert_eq!(
            fresh.bland(KEY, "acme").await.body,
            first,
            "repeat {repeat} merged the same upstreams differently"
        );
    }
}

/// Long enough that callmux merges and writes the list in two halves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_long_enough_to_be_built_in_halves_arrives_whole_ordered_and_deduplicated() {
    const EACH: usize = 8_000;
    const SHARED: usize = 1_000;
    // `e…` calls only east reports, `s…` both east and west, `w…` only west; Bland's have
    // creation times, given out of order.
    let east: Vec<_> = (0..EACH)
        .map(|i| match i < SHARED {
            true => agent_call(&format!("s{i:05}"), "+15550000001", "ringing", "outbound"),
            false => agent_call(&format!("e{i:05}"), "+15550000001", "ringing", "outbound"),
        })
        .rev()
        .collect();
    let west: Vec<_> = (0..EACH)
        .map(|i| match i < SHARED {
            true => agent_call(
                &format!("s{i:05}"),
                "+15550000002",
                "in-progress",
                "outbound",
            ),
            false => agent_call(
                &format!("w{i:05}"),
                "+15550000002",
                "in-progress",
                "outbound",
            ),
        })
        .collect();
    let bland: Vec<_> = (0..EACH)
        .map(|i| {
            let t = 1_758_656_800_000 + (i * 7919 % EACH) as u64;
            bland_call(&format!("b{i:05}"), "IN_PROGRESS", &t.to_string())
        })
        .collect();
    let w = three_providers(json!(east), json!(west), json!(bland)).await;

    let expected_len = 3 * EACH - SHARED;
    let reply = w.app.bland(KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert!(reply.headers.get("transfer-encoding").is_none());
    assert!(reply.headers.get("content-length").is_some());
    let data = reply.body["data"].as_array().unwrap();
    assert_eq!(data.len(), expected_len);
    // Bland's calls first by creation time, then east's (shared ones as east reported them)
    // and west's own, each by call_id.
    let timestamps: Vec<u64> = data[..EACH]
        .iter()
        .map(|c| c["timestamp"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(timestamps.windows(2).all(|p| p[0] < p[1]));
    let ids: Vec<&str> = data[EACH..]
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let mut east_ids: Vec<String> = (SHARED..EACH).map(|i| format!("e{i:05}")).collect();
    east_ids.extend((0..SHARED).map(|i| format!("s{i:05}")));
    let west_ids = (SHARED..EACH).map(|i| format!("w{i:05}"));
    let expected: Vec<String> = east_ids.into_iter().chain(west_ids).collect();
    assert_eq!(ids, expected);
    assert!(data[EACH..EACH + EACH]
        .iter()
        .all(|c| c["to"] == "+15550000001"));

    let reply = w.app.calls(KEY, "acme").await;
    assert_eq!(reply.body["count"], expected_len);
    assert_eq!(reply.body["calls"].as_array().unwrap().len(), expected_len);
}
