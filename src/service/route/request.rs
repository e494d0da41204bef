//! A placement's request as clients send it: `POST /calls` (callmux's shape) and
//! `POST /api/call` (the agent servers'), checked field by field into one canonical
//! [`Placement`], and the `Idempotency-Key` header.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::place::MAX_PLACE_BODY_BYTES;

/// A placement, checked: what every route target is sent, less the target's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub to: String,
    /// The route asked for; `None`: the org's default (its first).
    pub route: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub metadata: Option<Map<String, Value>>,
    /// The agent servers' own fields, from `POST /api/call`.
    pub prompt: Option<String>,
    pub webhook_url: Option<String>,
}

/// The longest `Idempotency-Key` taken (DESIGN §16).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Whether `to` is an E.164 number: `+`, a first digit 1–9, at most 15 digits in all.
pub fn is_e164(to: &str) -> bool {
    let Some(digits) = to.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn object(body: &[u8], example: &str) -> Result<Map<String, Value>, String> {
    if body.len() > MAX_PLACE_BODY_BYTES {
        return Err(format!(
            "the body is over {MAX_PLACE_BODY_BYTES} bytes; send {example}"
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(format!("the body must be a JSON object such as {example}")),
        Err(e) => Err(format!("the body is not JSON ({e}); send {example}")),
    }
}

fn text(fields: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field `{field}` must be a string")),
    }
}

fn metadata(fields: &Map<String, Value>) -> Result<Option<Map<String, Value>>, String> {
    match fields.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err("field `metadata` must be a JSON object".into()),
    }
}

/// Field `to`, an E.164 number: every platform a route reaches dials only those.
fn e164_field(fields: &Map<String, Value>) -> Result<String, String> {
    match fields.get("to") {
        Some(Value::String(to)) if is_e164(to) => Ok(to.clone()),
        Some(Value::String(to)) => {
            let shown: String = to.chars().take(40).collect();
            Err(format!(
                "field `to` is {shown:?}, not an E.164 number; write it as + and the country \
                 code and number, e.g. \"+14155550123\""
            ))
        }
        Some(_) => Err("field `to` must be a string such as \"+14155550123\"".into()),
        None => Err("field `to` is missing; give the number to call, e.g. \"+14155550123\"".into()),
    }
}

/// `POST /calls`: `{"to": E.164, "route"?, "variables"?: {string: string}, "metadata"?}`.
pub fn own(body: &[u8]) -> Result<Placement, String> {
    const EXAMPLE: &str = "{\"to\": \"+14155550123\", \"route\": \"sales\"}";
    let fields = object(body, EXAMPLE)?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "to" | "route" | "variables" | "metadata"))
    {
        return Err(format!(
            "field `{unknown}` is not one callmux takes; send only to, route, variables and \
             metadata"
        ));
    }
    let to = e164_field(&fields)?;
    let route = text(&fields, "route")?;
    if route.as_deref().is_some_and(str::is_empty) {
        return Err(
            "field `route` is empty; give a route id, or leave it out for the \
                    organisation's default"
                .into(),
        );
    }
    let mut variables = BTreeMap::new();
    match fields.get("variables") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let Value::String(value) = value else {
                    return Err(format!(
                        "field `variables.{name}` must be a string; variables are text the \
                         agent's prompt takes by name"
                    ));
                };
                variables.insert(name.clone(), value.clone());
            }
        }
        Some(_) => {
            return Err(
                "field `variables` must be a JSON object of strings, e.g. {\"name\": \"Ada\"}"
                    .into(),
            )
        }
    }
    Ok(Placement {
        to,
        route,
        variables,
        metadata: metadata(&fields)?,
        prompt: None,
        webhook_url: None,
    })
}

/// `POST /api/call` on an org with routes: the agent servers' body (`to`, `prompt`,
/// `webhook_url`, `metadata`), on the org's default route; `to` must be E.164 here, as every
/// platform a route reaches needs.
pub fn agent(body: &[u8]) -> Result<Placement, String> {
    const EXAMPLE: &str = "{\"to\": \"+1...\"}";
    let fields = object(body, EXAMPLE)?;
    let to = e164_field(&fields)?;
    Ok(Placement {
        to,
        route: None,
        variables: BTreeMap::new(),
        metadata: metadata(&fields)?,
        prompt: text(&fields, "prompt")?,
        webhook_url: text(&fields, "webhook_url")?,
    })
}

/// The `Idempotency-Key` header's value, if sent: 1 to 255 visible ASCII characters.
pub fn idempotency_key(value: Option<&[u8]>) -> Result<Option<String>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY {
        return Err(format!(
            "header `idempotency-key` must be 1 to {MAX_IDEMPOTENCY_KEY} characters; it is {}",
            value.len()
        ));
    }
    if !value.iter().all(|b| (b'!'..=b'~').contains(b)) {
        return Err(
            "header `idempotency-key` must be visible ASCII characters only (no spaces \
                    or control characters); a UUID is a good key"
                .into(),
        );
    }
    Ok(Some(
        String::from_utf8(value.to_vec()).expect("visible ASCII is UTF-8"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_are_a_plus_and_up_to_fifteen_digits() {
        for good in ["+14155550123", "+442071838750", "+12"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "14155550123",
            "+",
            "+0123",
            "+1 415",
            "+1234567890123456",
            "+1a",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        for (body, names) in [
            (&b"nope"[..], "not JSON"),
            (b"[]", "JSON object"),
            (b"{}", "`to` is missing"),
            (br#"{"to": 1}"#, "`to` must be a string"),
            (br#"{"to": "555"}"#, "not an E.164"),
            (br#"{"to": "+14155550123", "route": 1}"#, "`route`"),
            (
                br#"{"to": "+14155550123", "route": ""}"#,
                "`route` is empty",
            ),
            (br#"{"to": "+14155550123", "variables": []}"#, "`variables`"),
            (
                br#"{"to": "+14155550123", "variables": {"n": 1}}"#,
                "`variables.n`",
            ),
            (br#"{"to": "+14155550123", "metadata": 1}"#, "`metadata`"),
            (br#"{"to": "+14155550123", "prompt": "x"}"#, "`prompt`"),
        ] {
            let e = own(body).unwrap_err();
            assert!(e.contains(names), "{e}");
        }
        let big = format!(
            "{{\"to\": \"+14155550123\", \"metadata\": {{\"x\": \"{}\"}}}}",
            "a".repeat(MAX_PLACE_BODY_BYTES)
        );
        assert!(own(big.as_bytes()).unwrap_err().contains("over"));
        let ok = own(br#"{"to": "+14155550123", "variables": {"name": "Ada"}}"#).unwrap();
        assert_eq!(ok.variables["name"], "Ada");
    }

    #[test]
    fn idempotency_keys_are_one_to_255_visible_ascii_characters() {
        assert_eq!(idempotency_key(None), Ok(None));
        assert_eq!(idempotency_key(Some(b"k-1")), Ok(Some("k-1".into())));
        assert!(idempotency_key(Some(&[b'a'; 255])).is_ok());
        for bad in [&b""[..], &[b'a'; 256], b"a b", b"a\x01", "é".as_bytes()] {
            assert!(idempotency_key(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
