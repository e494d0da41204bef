//! One phone call, one row, across kinds: a Vapi or Retell call placed through Twilio and
//! the same call on the Twilio account are listed once, as the first provider in the org's
//! list reported it, in both orders and in both client shapes.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;
use crate::twilio::{sid, twilio_call, twilio_provider, twilio_server};

/// The one phone call both platforms report.
fn shared_sid() -> String {
    sid(0x5eed)
}

async fn vapi_reporting(call_sid: &str) -> MockServer {
    let mut call = vapi_call(
        "vapi-call-1",
        "in-progress",
        "outboundPhoneCall",
        "2025-09-23T19:48:17.000Z",
    );
    call["phoneCallProviderId"] = json!(call_sid);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/call"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([call])))
        .mount(&server)
        .await;
    server
}

async fn retell_reporting(call_sid: &str) -> MockServer {
    let call = crate::retell::phone_call("retell-call-1", "ongoing", call_sid);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(crate::retell::page(vec![call], false, None)),
        )
        .mount(&server)
        .await;
    server
}

async fn one_row_in_both_orders(platform: ProviderB, platform_call_id: &str, env: &[(&str, &str)]) {
    let twilio = twilio_server(&[(
        "in-progress",
        vec![twilio_call(&shared_sid(), "in-progress", "outbound-api")],
    )])
    .await;
    let mut env = env.to_vec();
    env.extend_from_slice(crate::twilio::ENV);
    for (order, first) in [
        (["tw", "platform"], shared_sid()),
        (["platform", "tw"], platform_call_id.to_string()),
    ] {
        let toml = TestConfig::new()
            .org(OrgB::key("acme", "k").providers(&order))
            .provider(twilio_provider("tw", &twilio.uri()))
            .provider(platform.clone())
            .toml();
        let app = spawn_app_with_env(&toml, &env).await;
        let calls = app.calls("k", "acme").await;
        assert_eq!(calls.status, 200, "{}", calls.body);
        let ids: Vec<&str> = calls.body["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [first.as_str()], "{order:?}");
        let bland = app.bland("k", "acme").await;
        let ids: Vec<&str> = bland.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [first.as_str()], "{order:?}");
    }
}

#[tokio::test]
async fn a_vapi_call_placed_through_twilio_is_one_row_with_the_twilio_call_in_either_order() {
    let vapi = vapi_reporting(&shared_sid()).await;
    let platform =
        ProviderB::new("platform", "vapi", &vapi.uri()).set("api_key_env", "ONE_ROW_VAPI_KEY");
    one_row_in_both_orders(platform, "vapi-call-1", &[("ONE_ROW_VAPI_KEY", "vapi-key")]).await;
}

#[tokio::test]
async fn a_retell_call_placed_through_twilio_is_one_row_with_the_twilio_call_in_either_order() {
    let retell = retell_reporting(&shared_sid()).await;
    let platform = ProviderB::new("platform", "retell", &retell.uri())
        .set("api_key_env", "ONE_ROW_RETELL_KEY");
    one_row_in_both_orders(
        platform,
        "retell-call-1",
        &[("ONE_ROW_RETELL_KEY", "retell-key")],
    )
    .await;
}

#[tokio::test]
async fn calls_with_other_call_sids_stay_rows_of_their_own() {
    let vapi = vapi_reporting(&sid(0xbeef)).await;
    let twilio = twilio_server(&[(
        "in-progress",
        vec![twilio_call(&shared_sid(), "in-progress", "outbound-api")],
    )])
    .await;
    let mut env = vec![("ONE_ROW_VAPI_KEY", "vapi-key")];
    env.extend_from_slice(crate::twilio::ENV);
    let toml = TestConfig::new()
        .org(OrgB::key("acme", "k").providers(&["tw", "platform"]))
        .provider(twilio_provider("tw", &twilio.uri()))
        .provider(
            ProviderB::new("platform", "vapi", &vapi.uri()).set("api_key_env", "ONE_ROW_VAPI_KEY"),
        )
        .toml();
    let app = spawn_app_with_env(&toml, &env).await;
    assert_eq!(app.calls("k", "acme").await.body["count"], 2);
}
