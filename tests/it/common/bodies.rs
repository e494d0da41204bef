//! Platform bodies as the platforms document them, built by the kind tests and by the
//! conformance fixtures alike (and so by the benches that build `common/`).

/// Twilio's Call resource and its list pages.
pub mod twilio {
    use serde_json::{json, Value};

    /// An Account SID of the documented shape (`AC` and 32 hex digits).
    pub const ACCOUNT: &str = "AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1";

    pub const CALLS_PATH: &str =
        "/2010-04-01/Accounts/AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1/Calls.json";

    /// A Call SID of the documented shape, numbered.
    pub fn sid(n: u32) -> String {
        format!("CA{n:032x}")
    }

    /// A call object with every field Twilio's Call resource documents for a list, in the
    /// documented order and types (strings for `duration`, `price` and `queue_time`, RFC 2822
    /// dates, `subresource_uris` an object), with values of these tests' own.
    pub fn twilio_call(sid: &str, status: &str, direction: &str) -> Value {
        let call_uri = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}");
        let sub = |name: &str| format!("{call_uri}/{name}.json");
        json!({
            "account_sid": ACCOUNT,
            "answered_by": null,
            "api_version": "2010-04-01",
            "caller_name": "",
            "date_created": "Tue, 23 Sep 2025 19:48:17 +0000",
            "date_updated": "Tue, 23 Sep 2025 19:48:21 +0000",
            "direction": direction,
            "duration": null,
            "end_time": null,
            "forwarded_from": null,
            "from": "+15005550006",
            "from_formatted": "(500) 555-0006",
            "group_sid": null,
            "parent_call_sid": null,
            "phone_number_sid": "PN0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "price": null,
            "price_unit": "USD",
            "sid": sid,
            "start_time": "Tue, 23 Sep 2025 19:48:20 +0000",
            "status": status,
            "subresource_uris": {
                "notifications": sub("Notifications"),
                "recordings": sub("Recordings"),
                "payments": sub("Payments"),
                "events": sub("Events"),
                "siprec": sub("Siprec"),
                "streams": sub("Streams"),
                "transcriptions": sub("Transcriptions"),
                "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
                "user_defined_messages": sub("UserDefinedMessages"),
            },
            "to": "+14155550123",
            "to_formatted": "(415) 555-0123",
            "trunk_sid": null,
            "uri": format!("{call_uri}.json"),
            "queue_time": "0",
        })
    }

    /// A list page in Twilio's documented envelope.
    pub fn twilio_page(calls: Vec<Value>, next_page_uri: Option<&str>) -> Value {
        let first = format!("{CALLS_PATH}?PageSize=1000&Page=0");
        json!({
            "calls": calls,
            "end": calls.len().saturating_sub(1),
            "first_page_uri": first,
            "next_page_uri": next_page_uri,
            "page": 0,
            "page_size": 1000,
            "previous_page_uri": null,
            "start": 0,
            "uri": first,
        })
    }

    /// `next_page_uri` as Twilio writes it: the list's path, its query, Page and PageToken.
    pub fn next_uri(status: &str, page: u32) -> String {
        format!(
            "{CALLS_PATH}?Status={status}&PageSize=1000&Page={page}&PageToken=PA{}",
            sid(page)
        )
    }
}

/// Retell's call object and its v3 list pages.
pub mod retell {
    use serde_json::{json, Value};

    /// The call object of the reference's v3 example, exactly as documented (a web call, still
    /// `registered`), less the transcript fields the v3 list leaves out.
    pub fn documented_web_call() -> Value {
        json!({
            "call_type": "web_call",
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJ2aWRlbyI6eyJyb29tSm9p",
            "call_id": "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6",
            "agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD",
            "agent_version": 1,
            "call_status": "registered",
            "agent_name": "My Agent",
            "metadata": {},
            "retell_llm_dynamic_variables": {"customer_name": "John Doe"},
            "collected_dynamic_variables": {"last_node_name": "Test node"},
            "custom_sip_headers": {"X-Custom-Header": "Custom Value"},
            "data_storage_setting": "everything",
            "opt_in_signed_url": true,
            "start_timestamp": 1703302407333u64,
            "end_timestamp": 1703302428855u64,
            "transfer_end_timestamp": 1703302628855u64,
            "duration_ms": 10000,
            "latency": {"e2e": {"p50": 800, "p90": 1200, "p95": 1500, "p99": 2500,
                                "max": 2700, "min": 500, "num": 10, "values": [123]}},
        })
    }

    /// A phone call as the reference's call object describes one, numbers from its
    /// create-phone-call example.
    pub fn phone_call(id: &str, status: &str, twilio_call_sid: &str) -> Value {
        json!({
            "call_type": "phone_call",
            "from_number": "+14157774444",
            "to_number": "+12137774445",
            "direction": "outbound",
            "call_id": id,
            "agent_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD",
            "agent_version": 1,
            "call_status": status,
            "agent_name": "My Agent",
            "metadata": {},
            "retell_llm_dynamic_variables": {"customer_name": "John Doe"},
            "data_storage_setting": "everything",
            "opt_in_signed_url": true,
            "start_timestamp": 1703302407333u64,
            "telephony_identifier": {"twilio_call_sid": twilio_call_sid},
        })
    }

    /// One v3 page.
    pub fn page(items: Vec<Value>, has_more: bool, pagination_key: Option<&str>) -> Value {
        let mut body = json!({"has_more": has_more, "items": items});
        if let Some(key) = pagination_key {
            body["pagination_key"] = key.into();
        }
        body
    }
}
