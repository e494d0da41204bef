//! Properties over generated inputs: both wire shapes, Bland round trips, org isolation, the merge.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::common::*;
use callmux::call::{Call, CallStatus};
use callmux::provider::ProviderError;
use callmux::service::merge::{self, Answer};
use callmux::wire::{bland, calls};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

const BLAND_WORDS: [&str; 7] = [
    "QUEUED",
    "IN_PROGRESS",
    "COMPLETED",
    "FAILED",
    "BUSY",
    "NO_ANSWER",
    "CANCELED",
];
const CALLS_WORDS: [&str; 8] = [
    "initiating",
    "ringing",
    "in-progress",
    "completed",
    "failed",
    "busy",
    "no-answer",
    "canceled",
];
/// Near misses of documented words: statuses are matched exactly as each shape spells them,
/// so these must come back as sent rather than be normalised into a known status.
const NEAR_MISSES: [&str; 8] = [
    "queued",
    "In_Progress",
    "in_progress",
    "IN-PROGRESS",
    " QUEUED",
    "Ringing",
    "completed ",
    "on-hold",
];
const BLAND_FIELDS: [&str; 10] = [
    "call_id",
    "user_id",
    "from",
    "to",
    "objective",
    "pathway_id",
    "start_time",
    "international",
    "status",
    "timestamp",
];
const CALLS_FIELDS: [&str; 4] = ["call_id", "to_number", "status", "direction"];

/// The org a list is written for: the Bland writer names it as the owner of calls whose
/// upstream named none.
const ORG: &str = "org-of-the-request";

/// Characters JSON must escape, or that break naive escaping, are rare in uniformly drawn
/// unicode; this asks for them outright.
const TRICKY: &str =
    "[\"\\\\/\\x00-\\x1f\\x7f\\x{2028}\\x{2029}\\x{feff}\\x{10ffff}a-zA-Z0-9 é😀_-]{0,12}";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failure is reported with its shrunk input; a regressions file would be a stray
        // file in the repository.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- the wire layer, behind one seam so an API change is one edit ----

fn parse_bland(body: &Value) -> Result<Vec<Call>, callmux::wire::ParseError> {
    bland::parse(
        &serde_json::to_vec(body).unwrap(),
        &Arc::from("bland-upstream"),
    )
}

fn parse_calls(body: &Value) -> Result<Vec<Call>, callmux::wire::ParseError> {
    calls::parse(
        &serde_json::to_vec(body).unwrap(),
        &Arc::from("agent-upstream"),
    )
}

/// Both client shapes of `calls`, each checked to be JSON before anything else looks at it.
fn write_both(list: &[Call]) -> Result<(Value, Value), TestCaseError> {
    let b = bland::write(list, ORG, &[]);
    let c = calls::write(list, &[]);
    let b = serde_json::from_slice(&b)
        .map_err(|e| TestCaseError::fail(format!("Bland output is not JSON: {e}")))?;
    let c = serde_json::from_slice(&c)
        .map_err(|e| TestCaseError::fail(format!("calls output is not JSON: {e}")))?;
    Ok((b, c))
}

/// The merged list, owned, for answers given in the org's providers order.
fn merge_answers(answers: &Answers) -> Vec<Call> {
    let answers: Vec<Answer> = answers
        .iter()
        .map(|(_, a)| a.clone().map(std::sync::Arc::new))
        .collect();
    merge::merge(&answers).into_iter().cloned().collect()
}

// ---- the documented mappings, written out again: the test must not trust the code it checks ----

/// An upstream's text for a field: strings as sent, numbers and booleans as their text, and
/// `""`, `null` or absence as "not given".
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => panic!("the generators make no {other}"),
    }
}

fn bland_word_in_calls_shape(s: &str) -> &str {
    match s {
        "QUEUED" => "initiating",
        "IN_PROGRESS" => "in-progress",
        "COMPLETED" => "completed",
        "FAILED" => "failed",
        "BUSY" => "busy",
        "NO_ANSWER" => "no-answer",
        "CANCELED" => "canceled",
        other => other,
    }
}

fn calls_word_in_bland_shape(s: &str) -> &str {
    match s {
        "initiating" | "ringing" => "QUEUED",
        "in-progress" => "IN_PROGRESS",
        "completed" => "COMPLETED",
        "failed" => "FAILED",
        "busy" => "BUSY",
        "no-answer" => "NO_ANSWER",
        "canceled" => "CANCELED",
        other => other,
    }
}

fn is_canonical_u64(s: &str) -> bool {
    s.parse::<u64>().is_ok_and(|n| n.to_string() == s)
}

// ---- generators ----

fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), TRICKY, Just(String::new())]
}

fn non_empty_text() -> impl Strategy<Value = String> {
    tricky_text().prop_filter("call_id and status must be given", |s| !s.is_empty())
}

/// What an upstream may put where text belongs: mostly text, sometimes a number or a bool
/// (read as their text), `null`, or nothing at all (`None`: the key is left out).
fn loose_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => tricky_text().prop_map(|s| Some(Value::String(s))),
        1 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => any::<u64>().prop_map(|n| Some(json!(n))),
        1 => any::<bool>().prop_map(|b| Some(json!(b))),
        1 => Just(Some(Value::Null)),
        1 => Just(None),
    ]
}

/// A field that must be given (`call_id`): non-empty text, or a number read as text.
fn required_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => non_empty_text().prop_map(Value::String),
        1 => any::<u64>().prop_map(|n| json!(n)),
    ]
}

fn status_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => select(BLAND_WORDS.to_vec()).prop_map(|s| json!(s)),
        2 => select(CALLS_WORDS.to_vec()).prop_map(|s| json!(s)),
        1 => select(NEAR_MISSES.to_vec()).prop_map(|s| json!(s)),
        2 => required_field(),
    ]
}

fn timestamp_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        // Leading zeros and values past u64::MAX included.
        2 => "[0-9]{1,22}".prop_map(|s| Some(Value::String(s))),
        2 => any::<u64>().prop_map(|n| Some(Value::String(n.to_string()))),
        1 => any::<u64>().prop_map(|n| Some(json!(n))),
        2 => loose_field(),
    ]
}

fn international_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        select(vec!["true", "false", ""]).prop_map(|s| Some(json!(s))),
        any::<bool>().prop_map(|b| Some(json!(b))),
        loose_field(),
    ]
}

fn direction_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => select(vec!["outbound", "incoming", "inbound", "Outbound", "INCOMING", ""])
            .prop_map(|s| Some(json!(s))),
        1 => loose_field(),
    ]
}

/// A field neither shape defines: upstreams add their own, and they must be ignored.
fn extra_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![3 => Just(None), 1 => loose_field()]
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect()
}

/// One call as an arbitrary Bland upstream might send it.
fn bland_upstream_call() -> impl Strategy<Value = Map<String, Value>> {
    (
        (
            required_field(),
            loose_field(),
            loose_field(),
            loose_field(),
        ),
        (loose_field(), loose_field(), loose_field()),
        (international_field(), status_field(), timestamp_field()),
        extra_field(),
    )
        .prop_map(
            |(
                (call_id, user_id, from, to),
                (objective, pathway_id, start_time),
                (international, status, timestamp),
                extra,
            )| {
                object(vec![
                    ("call_id", Some(call_id)),
                    ("user_id", user_id),
                    ("from", from),
                    ("to", to),
                    ("objective", objective),
                    ("pathway_id", pathway_id),
                    ("start_time", start_time),
                    ("international", international),
                    ("status", Some(status)),
                    ("timestamp", timestamp),
                    ("answered_by", extra),
                ])
            },
        )
}

/// One call as an arbitrary agent server might send it.
fn calls_upstream_call() -> impl Strategy<Value = Map<String, Value>> {
    (
        required_field(),
        loose_field(),
        status_field(),
        direction_field(),
        extra_field(),
    )
        .prop_map(|(call_id, to_number, status, direction, extra)| {
            object(vec![
                ("call_id", Some(call_id)),
                ("to_number", to_number),
                ("status", Some(status)),
                ("direction", direction),
                ("stream_sid", extra),
            ])
        })
}

/// One call as Bland itself sends it: every field a string, in Bland's own formats.
fn well_formed_bland_call() -> impl Strategy<Value = Value> {
    (
        (
            non_empty_text(),
            tricky_text(),
            tricky_text(),
            tricky_text(),
        ),
        (tricky_text(), tricky_text(), tricky_text()),
        select(vec!["true", "false", ""]),
        prop_oneof![
            select(BLAND_WORDS.to_vec()).prop_map(String::from),
            non_empty_text()
        ],
        prop_oneof![
            Just(String::new()),
            any::<u64>().prop_map(|n| n.to_string())
        ],
    )
        .prop_map(
            |(
                (call_id, user_id, from, to),
                (objective, pathway_id, start_time),
                international,
                status,
                timestamp,
            )| {
                json!({
                    "call_id": call_id,
                    "user_id": user_id,
                    "from": from,
                    "to": to,
                    "objective": objective,
                    "pathway_id": pathway_id,
                    "start_time": start_time,
                    "international": international,
                    "status": status,
                    "timestamp": timestamp,
                })
            },
        )
}

// ---- 1. any upstream call maps to valid wire output in both shapes ----

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The envelope checks both shapes share: exactly the documented keys, no `errors` when
/// nothing failed, and one output call per input call (the wire layer filters nothing).
fn check_envelopes(bland_out: &Value, calls_out: &Value, n: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(keys(bland_out), BTreeSet::from(["data", "errors"]));
    prop_assert_eq!(&bland_out["errors"], &Value::Null);
    let data = bland_out["data"].as_array();
    prop_assert_eq!(data.map(Vec::len), Some(n), "data: {}", bland_out);
    for call in data.into_iter().flatten() {
        prop_assert_eq!(keys(call), BTreeSet::from(BLAND_FIELDS));
        for field in BLAND_FIELDS {
            prop_assert!(
                call[field].is_string(),
                "{} is not a string in {}",
                field,
                call
            );
        }
        let international = call["international"].as_str().unwrap();
        prop_assert!(["true", "false", ""].contains(&international), "{}", call);
        let timestamp = call["timestamp"].as_str().unwrap();
        prop_assert!(
            timestamp.is_empty() || is_canonical_u64(timestamp),
            "{}",
            call
        );
    }

    prop_assert_eq!(keys(calls_out), BTreeSet::from(["calls", "count"]));
    let list = calls_out["calls"].as_array();
    prop_assert_eq!(list.map(Vec::len), Some(n), "calls: {}", calls_out);
    prop_assert_eq!(calls_out["count"].as_u64(), Some(n as u64));
    for call in list.into_iter().flatten() {
        prop_assert_eq!(keys(call), BTreeSet::from(CALLS_FIELDS));
        prop_assert!(call["call_id"].is_string() && call["status"].is_string());
        prop_assert!(call["to_number"].is_string() || call["to_number"].is_null());
        let direction = &call["direction"];
        prop_assert!(
            [json!("outbound"), json!("incoming"), Value::Null].contains(direction),
            "{}",
            call
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bland_upstream_call_maps_to_valid_output_in_both_shapes(
        upstream in prop::collection::vec(bland_upstream_call(), 0..6)
    ) {
        let body = json!({"data": upstream, "errors": null});
        let parsed = parse_bland(&body);
        prop_assert!(parsed.is_ok(), "{:?} for {}", parsed, body);
        let (b, c) = write_both(&parsed.unwrap())?;
        check_envelopes(&b, &c, upstream.len())?;

        for (i, inp) in upstream.iter().enumerate() {
            let text = |k: &str| text_of(inp.get(k)).unwrap_or_default();
            let status = text("status");
            let expected = json!({
                "call_id": text("call_id"),
                "user_id": text_of(inp.get("user_id")).unwrap_or_else(|| ORG.to_string()),
                "from": text("from"),
                "to": text("to"),
                "objective": text("objective"),
                "pathway_id": text("pathway_id"),
                "start_time": text("start_time"),
                "international": match text("international").as_str() {
                    t @ ("true" | "false") => t.to_string(),
                    _ => String::new(),
                },
                "status": status,
                "timestamp": b["data"][i]["timestamp"],
            });
            prop_assert_eq!(&b["data"][i], &expected, "for {:?}", inp);
            // A timestamp Bland spelled canonically is kept; others may only be read or dropped.
            if is_canonical_u64(&text("timestamp")) {
                prop_assert_eq!(&b["data"][i]["timestamp"], &json!(text("timestamp")));
            }

            let out = &c["calls"][i];
            prop_assert_eq!(&out["call_id"], &json!(text("call_id")));
            prop_assert_eq!(&out["status"], &json!(bland_word_in_calls_shape(&status)));
            // Bland names no direction, and callmux invents none.
            prop_assert_eq!(&out["direction"], &Value::Null);
            let to_number = text_of(inp.get("to")).or_else(|| text_of(inp.get("from")));
            prop_assert_eq!(&out["to_number"], &json!(to_number));
        }
    }

    #[test]
    fn any_agent_server_call_maps_to_valid_output_in_both_shapes(
        upstream in prop::collection::vec(calls_upstream_call(), 0..6)
    ) {
        let body = json!({"calls": upstream, "count": upstream.len()});
        let parsed = parse_calls(&body);
        prop_assert!(parsed.is_ok(), "{:?} for {}", parsed, body);
        let (b, c) = write_both(&parsed.unwrap())?;
        check_envelopes(&b, &c, upstream.len())?;

        for (i, inp) in upstream.iter().enumerate() {
            let text = |k: &str| text_of(inp.get(k)).unwrap_or_default();
            let status = text("status");
            let direction = match text("direction").as_str() {
                "outbound" => Some("outbound"),
                "incoming" | "inbound" => Some("incoming"),
                _ => None,
            };
            let to_number = text_of(inp.get("to_number"));
            prop_assert_eq!(
                &c["calls"][i],
                &json!({
                    "call_id": text("call_id"),
                    "to_number": to_number,
                    "status": status,
                    "direction": direction,
                }),
                "for {:?}",
                inp
            );

            // The number is the callee of an outbound call and the caller of an incoming one.
            let number = to_number.unwrap_or_default();
            let (from, to) = if direction == Some("incoming") {
                (number, String::new())
            } else {
                (String::new(), number)
            };
            prop_assert_eq!(
                &b["data"][i],
                &json!({
                    "call_id": text("call_id"),
                    "user_id": ORG,
                    "from": from,
                    "to": to,
                    "objective": "",
                    "pathway_id": "",
                    "start_time": "",
                    "international": "",
                    "status": calls_word_in_bland_shape(&status),
                    "timestamp": "",
                }),
                "for {:?}",
                inp
            );
        }
    }

    /// Counts are never short without an error: a call that cannot be identified makes the
    /// provider's whole answer unreadable instead of vanishing.
    #[test]
    fn a_call_without_call_id_or_status_makes_the_answer_unreadable_in_either_shape(
        call_id in prop_oneof![loose_field(), required_field().prop_map(Some)],
        status in prop_oneof![loose_field(), status_field().prop_map(Some)],
        shape_is_bland in any::<bool>(),
    ) {
        let identifiable =
            text_of(call_id.as_ref()).is_some() && text_of(status.as_ref()).is_some();
        let call = object(vec![("call_id", call_id), ("status", status)]);
        let parsed = if shape_is_bland {
            parse_bland(&json!({"data": [call], "errors": null}))
        } else {
            parse_calls(&json!({"calls": [call], "count": 1}))
        };
        prop_assert_eq!(parsed.is_ok(), identifiable, "{:?}", parsed);
    }

    // ---- 2. Bland → canonical → Bland ----

    #[test]
    fn a_bland_call_survives_bland_to_canonical_to_bland_unchanged(
        data in prop::collection::vec(well_formed_bland_call(), 0..6)
    ) {
        let body = json!({"data": data, "errors": null});
        let parsed = parse_bland(&body);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let written = bland::write(&parsed.unwrap(), ORG, &[]);
        let back: Value = serde_json::from_slice(&written).unwrap();

        // `""` is Bland's "not given", so an unowned call is written as owned by the org the
        // list is for; every other field, and every given owner, comes back as it was sent.
        let mut expected = body.clone();
        for call in expected["data"].as_array_mut().unwrap() {
            if call["user_id"] == "" {
                call["user_id"] = json!(ORG);
            }
        }
        prop_assert_eq!(back, expected);
    }

    // ---- 4. the merge ----

    #[test]
    fn the_merge_lists_each_live_call_once_in_the_documented_order(answers in answers()) {
        let listing = merge_answers(&answers);
        let rank = |p: &str| answers.iter().position(|(q, _)| &**q == p).unwrap();

        let mut seen = HashSet::new();
        for call in &listing {
            prop_assert!(seen.insert(call.call_id.clone()), "{} twice", call.call_id);
            prop_assert!(call.status.is_active(), "ended {:?} listed", call);
        }
        let keys: Vec<_> = listing
            .iter()
            .map(|c| (c.created_at.is_none(), c.created_at, rank(&c.provider), c.call_id.clone()))
            .collect();
        prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "out of order: {:?}", keys);

        // Each live id is listed, as the first provider in the org's list that reported it live
        // (an ended report hides nothing).
        let mut first_live: BTreeMap<&str, &str> = BTreeMap::new();
        for (p, answer) in &answers {
            for c in answer.iter().flatten().filter(|c| c.status.is_active()) {
                first_live.entry(&c.call_id).or_insert(p);
            }
        }
        let listed: BTreeMap<&str, &str> = listing
            .iter()
            .map(|c| (c.call_id.as_str(), &*c.provider))
            .collect();
        prop_assert_eq!(listed, first_live);
    }

    #[test]
    fn shuffling_a_provider_answer_without_repeated_ids_does_not_change_the_merge(
        (answers, shuffled) in answers_and_one_shuffled(true)
    ) {
        prop_assert_eq!(merge_answers(&answers), merge_answers(&shuffled));
    }

    #[test]
    fn shuffling_the_calls_within_one_provider_answer_does_not_change_the_merge(
        (answers, shuffled) in answers_and_one_shuffled(false)
    ) {
        prop_assert_eq!(merge_answers(&answers), merge_answers(&shuffled));
    }
}

/// The smallest input the shuffle property found (before the merge was fixed): one upstream
/// listing one id twice. The report kept must not depend on the upstream's order.
#[test]
fn one_id_listed_twice_by_one_provider_is_merged_the_same_whichever_report_comes_first() {
    let p: Arc<str> = Arc::from("p0");
    let mut early = Call::new("c0", p.clone(), CallStatus::Ringing);
    early.created_at = Some(1);
    let late = Call::new("c0", p.clone(), CallStatus::InProgress);
    let one_way: Answers = vec![(p.clone(), Ok(vec![early.clone(), late.clone()]))];
    let other_way: Answers = vec![(p, Ok(vec![late, early]))];
    assert_eq!(merge_answers(&one_way), merge_answers(&other_way));
}

type Answers = Vec<(Arc<str>, Result<Vec<Call>, ProviderError>)>;

fn any_status() -> impl Strategy<Value = CallStatus> {
    prop_oneof![
        Just(CallStatus::Queued),
        Just(CallStatus::Ringing),
        Just(CallStatus::InProgress),
        Just(CallStatus::Completed),
        Just(CallStatus::Failed),
        Just(CallStatus::Busy),
        Just(CallStatus::NoAnswer),
        Just(CallStatus::Canceled),
        select(vec!["on-hold", "TRANSFERRING"]).prop_map(|s| CallStatus::Other(s.into())),
    ]
}

/// Answers from 1–4 providers. Ids come from a pool of six and times from four values, so
/// duplicates across and within providers, and ties in every sort key, are common.
fn answers() -> impl Strategy<Value = Answers> {
    (1..=4usize).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                let p: Arc<str> = Arc::from(format!("p{i}"));
                let call = {
                    let p = p.clone();
                    (0..6u8, prop::option::of(0..4u64), any_status()).prop_map(
                        move |(id, created, status)| {
                            let mut c = Call::new(format!("c{id}"), p.clone(), status);
                            c.created_at = created;
                            c
                        },
                    )
                };
                let answer = prop_oneof![
                    6 => prop::collection::vec(call, 0..8).prop_map(Ok),
                    1 => Just(Err(ProviderError::Status(500))),
                ];
                answer.prop_map(move |a| (p.clone(), a))
            })
            .collect::<Vec<_>>()
    })
}

/// Answers, and the same answers with one provider's calls in another order. With
/// `distinct_within`, no provider reports one id twice.
fn answers_and_one_shuffled(distinct_within: bool) -> impl Strategy<Value = (Answers, Answers)> {
    answers()
        .prop_map(move |mut answers| {
            if distinct_within {
                for calls in answers.iter_mut().filter_map(|(_, a)| a.as_mut().ok()) {
                    let mut seen = HashSet::new();
                    calls.retain(|c| seen.insert(c.call_id.clone()));
                }
            }
            answers
        })
        .prop_flat_map(|answers| {
            let n = answers.len();
            (Just(answers), 0..n)
        })
        .prop_flat_map(|(answers, which)| {
            let calls = answers[which].1.clone().unwrap_or_default();
            (Just(answers), Just(which), Just(calls).prop_shuffle())
        })
        .prop_map(|(answers, which, calls)| {
            let mut shuffled = answers.clone();
            if let Ok(c) = &mut shuffled[which].1 {
                *c = calls;
            }
            (answers, shuffled)
        })
}

// ---- 3. isolation over random configurations ----

#[derive(Debug, Clone)]
struct Org {
    id: String,
    key: String,
    bearer: bool,
    /// Indexes into `World::providers`, in the org's `providers` order.
    sees: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Provider {
    id: String,
    /// The statuses of its calls, whose ids are `<provider id>:<index>`.
    statuses: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct World {
    providers: Vec<Provider>,
    orgs: Vec<Org>,
}

impl Provider {
    fn call_id(&self, i: usize) -> String {
        // `:` is in no generated id, so a call id names its provider unambiguously.
        format!("{}:{i}", self.id)
    }

    fn live_call_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = (0..self.statuses.len())
            .filter(|&i| !["completed", "failed", "no-answer"].contains(&self.statuses[i]))
            .map(|i| self.call_id(i))
            .collect();
        ids.sort();
        ids
    }
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,7}"
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::btree_set(ident(), 2..=5),
        prop::collection::btree_set(ident(), 2..=4),
    )
        .prop_flat_map(|(provider_ids, org_ids)| {
            let np = provider_ids.len();
            let statuses = select(vec![
                "initiating",
                "ringing",
                "in-progress",
                "on-hold",
                "completed",
                "failed",
                "no-answer",
            ]);
            let providers: Vec<_> = provider_ids
                .into_iter()
                .map(|id| {
                    prop::collection::vec(statuses.clone(), 0..4).prop_map(move |statuses| {
                        Provider {
                            id: id.clone(),
                            statuses,
                        }
                    })
                })
                .collect();
            let orgs: Vec<_> = org_ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| {
                    (
                        // The index keeps two orgs from ever drawing the same key.
                        "[A-Za-z0-9._~+/=-]{8,24}".prop_map(move |k| format!("{k}{i}")),
                        any::<bool>(),
                        subsequence((0..np).collect::<Vec<_>>(), 1..=np).prop_shuffle(),
                    )
                        .prop_map(move |(key, bearer, sees)| Org {
                            id: id.clone(),
                            key,
                            bearer,
                            sees,
                        })
                })
                .collect();
            (providers, orgs)
        })
        .prop_map(|(providers, orgs)| World { providers, orgs })
}

fn agent_calls(p: &Provider) -> Value {
    p.statuses
        .iter()
        .enumerate()
        .map(|(i, status)| {
            let direction = if i % 2 == 0 { "outbound" } else { "incoming" };
            agent_call(&p.call_id(i), &format!("+1555{i:07}"), status, direction)
        })
        .collect()
}

fn listed_ids(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            c["call_id"]
                .as_str()
                .unwrap_or("<not a string>")
                .to_string()
        })
        .collect()
}

/// providers.toml for `world`, its providers the agent servers `servers`.
fn world_toml(world: &World, servers: &[wiremock::MockServer]) -> String {
    let mut toml = String::new();
    for org in &world.orgs {
        let providers: Vec<String> = org
            .sees
            .iter()
            .map(|&i| format!("\"{}\"", world.providers[i].id))
            .collect();
        toml += &format!(
            "[orgs.{}]\napi_key_sha256 = \"{}\"\nproviders = [{}]\n\n",
            org.id,
            sha256_hex(&org.key),
            providers.join(", ")
        );
    }
    for (p, server) in world.providers.iter().zip(servers) {
        toml += &format!(
            "[providers.{}]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\n\n",
            p.id,
            server.uri()
        );
    }
    toml
}

async fn check_isolation(world: &World) -> Result<(), TestCaseError> {
    let mut servers = Vec::new();
    for p in &world.providers {
        servers.push(agent_server(agent_calls(p)).await);
    }
    let app = spawn_app_with_env(&world_toml(world, &servers), &[]).await;

    for (n, org) in world.orgs.iter().enumerate() {
        let key = if org.bearer {
            format!("Bearer {}", org.key)
        } else {
            org.key.clone()
        };
        // No created_at in the calls shape, so the order is the org's providers, then call_id.
        let expected: Vec<String> = org
            .sees
            .iter()
            .flat_map(|&i| world.providers[i].live_call_ids())
            .collect();

        let calls = app.calls(&key, &org.id).await;
        prop_assert_eq!(calls.status, 200, "{}", calls.body);
        prop_assert_eq!(keys(&calls.body), BTreeSet::from(["calls", "count"]));
        prop_assert_eq!(
            listed_ids(&calls.body, "calls"),
            expected.clone(),
            "org {}",
            org.id
        );

        let bland = app.bland(&key, &org.id).await;
        prop_assert_eq!(bland.status, 200, "{}", bland.body);
        prop_assert_eq!(&bland.body["errors"], &Value::Null);
        prop_assert_eq!(listed_ids(&bland.body, "data"), expected, "org {}", org.id);
        for call in bland.body["data"].as_array().into_iter().flatten() {
            prop_assert_eq!(&call["user_id"], &json!(org.id));
        }

        // Another org's id with this key names an org the key does not belong to.
        let other = &world.orgs[(n + 1) % world.orgs.len()];
        let refused = app.calls(&key, &other.id).await;
        prop_assert_eq!(refused.status, 401, "{}", refused.body);
        prop_assert_eq!(listed_ids(&refused.body, "calls"), Vec::<String>::new());
    }

    for (i, (p, server)) in world.providers.iter().zip(&servers).enumerate() {
        let allowed = 2 * world.orgs.iter().filter(|o| o.sees.contains(&i)).count();
        let asked = hits(server).await;
        prop_assert!(
            asked <= allowed,
            "provider {} asked {} times, but orgs that see it made {} requests",
            p.id,
            asked,
            allowed
        );
    }
    Ok(())
}

proptest! {
    // Each case starts real servers: few cases, each a whole configuration.
    #![proptest_config(config(24))]

    #[test]
    fn each_org_sees_exactly_its_own_providers_calls_and_no_provider_is_asked_for_another_org(
        world in world()
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(check_isolation(&world))?;
    }
}

// ---- 4. control over random configurations ----

/// Every end request the fakes have received, in all.
async fn all_ends(servers: &[wiremock::MockServer]) -> usize {
    let mut n = 0;
    for s in servers {
        n += ends(s).await;
    }
    n
}

async fn check_control_isolation(world: &World, stopper: usize) -> Result<(), TestCaseError> {
    let mut servers = Vec::new();
    let mut listed = Vec::new();
    for p in &world.providers {
        let calls = agent_calls(p).as_array().unwrap().clone();
        let (server, l) = live_agent_server(calls).await;
        servers.push(server);
        listed.push(l);
    }
    let app = spawn_app_with_env(&world_toml(world, &servers), &[]).await;
    let mut ended: HashSet<String> = HashSet::new();

    for (n, org) in world.orgs.iter().enumerate() {
        // Half the orgs list first, so their index is filled; the others end cold.
        if n % 2 == 0 {
            prop_assert_eq!(app.calls(&org.key, &org.id).await.status, 200);
        }
        for (i, p) in world.providers.iter().enumerate() {
            for c in 0..p.statuses.len() {
                let id = p.call_id(c);
                let before = all_ends(&servers).await;
                let reply = if c % 2 == 0 {
                    app.end(&id, &org.key, &org.id).await
                } else {
                    app.stop(&id, &org.key, &org.id).await
                };
                let sent = all_ends(&servers).await - before;
                let visible = org.sees.contains(&i) && p.live_call_ids().contains(&id);
                if visible && ended.insert(id.clone()) {
                    prop_assert_eq!(
                        reply.status,
                        200,
                        "{} ending {}: {}",
                        org.id,
                        id,
                        reply.body
                    );
                    prop_assert_eq!(sent, 1);
                } else {
                    prop_assert_eq!(
                        reply.status,
                        404,
                        "{} ending {}: {}",
                        org.id,
                        id,
                        reply.body
                    );
                    prop_assert_eq!(&reply.body["code"], &json!("CALL_NOT_FOUND"));
                    prop_assert!(reply.body.get("provider").is_none(), "{}", reply.body);
                    if !org.sees.contains(&i) {
                        prop_assert_eq!(sent, 0, "{} reached {} for {}", org.id, p.id, id);
                    }
                }
            }
        }
    }

    // Stop-all from one org ends nothing on a provider it does not see.
    let org = &world.orgs[stopper % world.orgs.len()];
    let untouched: Vec<usize> = (0..world.providers.len())
        .filter(|i| !org.sees.contains(i))
        .collect();
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for &i in &untouched {
            v.push(ends(&servers[i]).await);
        }
        v
    };
    let stopped = app
        .post(
            "/v1/calls/active/stop",
            &[("authorization", &org.key), ("x-bland-org-id", &org.id)],
        )
        .await;
    prop_assert_eq!(stopped.status, 200, "{}", stopped.body);
    for (&i, had) in untouched.iter().zip(before) {
        prop_assert_eq!(
            ends(&servers[i]).await,
            had,
            "stop-all reached {}",
            world.providers[i].id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn no_org_ever_ends_or_reaches_the_provider_of_a_call_it_may_not_see(
        world in world(),
        stopper in 0usize..4,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(check_control_isolation(&world, stopper))?;
    }
}
