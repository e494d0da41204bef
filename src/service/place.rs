//! Placing calls (`POST /api/call`): the client's body sent to the org's agent server with the
//! most room, a place reserved before it is sent so that concurrent placements never take a
//! server past its `max_active_calls`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::auth::{self, Presented};
use super::control::ControlError;
use super::place_fleet::{FleetLock, Refused};
use super::Service;
use crate::call::Text;
use crate::provider::ProviderError;

/// The largest body `POST /api/call` takes.
pub const MAX_PLACE_BODY_BYTES: usize = 64 * 1024;

/// How long a place stays reserved after the call was sent: long enough for the agent
/// server to list the call (it does at once), after which its list counts it.
pub const HOLD: Duration = Duration::from_secs(30);

/// A call placed.
#[derive(Debug)]
pub struct Placed {
    pub provider: Arc<str>,
    /// The agent server's id for the call, if its answer gave one.
    pub call_id: Option<Text>,
    /// The agent server's own status and body, `"provider"` added.
    pub status: u16,
    pub body: Bytes,
}

/// The places reserved on one provider. Kept with the provider across reloads.
#[derive(Debug, Default)]
pub struct Reserved {
    pending: Mutex<Vec<Pending>>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Pending {
    token: u64,
    /// The agent server's id for the call, once it answered.
    call_id: Option<Text>,
    /// The start of the earliest list that showed the call: a list started later that no
    /// longer shows it means the call has ended, and its place is free.
    seen_from: Option<Instant>,
    until: Instant,
}

/// A provider's active calls as one list showed them, and when that list was asked.
struct Load {
    asked: Instant,
    active: Vec<Text>,
}

impl Reserved {
    /// Active calls on the provider: those `load` lists, plus those reserved and not (or no
    /// longer) in a list that could show them.
    fn count(pending: &mut [Pending], load: &Load) -> usize {
        let mut reserved = 0;
        for p in pending.iter_mut() {
            let listed = p
                .call_id
                .as_ref()
                .is_some_and(|id| load.active.contains(id));
            if listed {
                p.seen_from = Some(p.seen_from.map_or(load.asked, |s| s.min(load.asked)));
            } else if p.seen_from.is_none_or(|s| s > load.asked) {
                reserved += 1;
            }
        }
        load.active.len() + reserved
    }

    /// Calls being placed through callmux that no list has shown yet: the one count of
    /// "being placed" on this provider, which capacity adds to what was listed. Placing on
    /// other kinds reserves here too, so capacity counts it with no change of its own.
    pub fn being_placed(&self) -> usize {
        let now = Instant::now();
        self.pending
            .lock()
            .expect("reservations lock")
            .iter()
            .filter(|p| p.seen_from.is_none() && p.until > now)
            .count()
    }

    /// Held places whose calls `listed` does not show: reserved and not answered yet, or
    /// placed and not listed yet. A held call once listed and then no longer listed has
    /// ended, and holds nothing.
    pub fn unlisted(&self, listed: impl Fn(&str) -> bool) -> usize {
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("reservations lock");
        pending.retain(|p| p.until > now);
        let mut held = 0;
        for p in pending.iter_mut() {
            match &p.call_id {
                Some(id) if listed(id) => p.seen_from = Some(p.seen_from.unwrap_or(now)),
                _ if p.seen_from.is_none() => held += 1,
                _ => {}
            }
        }
        held
    }

    /// Reserves a place for a route's placement if the provider has room: `listed` calls
    /// (as capacity counts them) plus the held places no list shows are under `limit`.
    /// Checked and taken under one lock, so concurrent placements never pass the limit.
    pub fn hold(
        self: &Arc<Self>,
        listed_count: u64,
        limit: Option<u32>,
        listed: impl Fn(&str) -> bool,
    ) -> Option<Hold> {
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("reservations lock");
        pending.retain(|p| p.until > now);
        let held = pending
            .iter()
            .filter(|p| p.seen_from.is_none() && !p.call_id.as_deref().is_some_and(&listed))
            .count() as u64;
        if limit.is_some_and(|max| listed_count + held >= u64::from(max)) {
            return None;
        }
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pending.push(Pending {
            token,
            call_id: None,
            seen_from: None,
            until: now + HOLD,
        });
        Some(Hold {
            reserved: self.clone(),
            token,
        })
    }

    /// A call placed through callmux was ended through callmux: its place is free at once.
    pub fn ended(&self, call_id: &str) {
        self.pending
            .lock()
            .expect("reservations lock")
            .retain(|p| p.call_id.as_deref() != Some(call_id));
    }

    fn release(&self, token: u64) {
        self.pending
            .lock()
            .expect("reservations lock")
            .retain(|p| p.token != token);
    }

    fn placed(&self, token: u64, call_id: Option<Text>) {
        let mut pending = self.pending.lock().expect("reservations lock");
        if let Some(p) = pending.iter_mut().find(|p| p.token == token) {
            p.call_id = call_id;
        }
    }
}

/// A place held for one route placement: released if the target refused before the call
/// existed, kept (until a list shows the call, or `HOLD` passes) once it may exist.
#[derive(Debug)]
pub struct Hold {
    reserved: Arc<Reserved>,
    token: u64,
}

impl Hold {
    /// The target refused: nothing holds the place.
    pub fn release(self) {
        self.reserved.release(self.token);
    }

    /// The call exists (or may): the place stays held, known by `call_id` once there is one.
    pub fn keep(self, call_id: Option<&str>) {
        self.reserved.placed(self.token, call_id.map(Text::from));
    }
}

/// The checked body: a JSON object with `to`, and `prompt`, `webhook_url` and `metadata` of
/// the types the agent server documents. Sent on as the client wrote it.
fn check_body(body: &[u8]) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidBody(m));
    if body.len() > MAX_PLACE_BODY_BYTES {
        return invalid(format!(
            "the body is over {MAX_PLACE_BODY_BYTES} bytes; send {{\"to\": \"+1...\"}} with \
             at most a prompt, a webhook_url and metadata"
        ));
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return invalid(format!(
                "the body is not JSON ({e}); send {{\"to\": \"+1...\"}}"
            ))
        }
    };
    let Some(fields) = value.as_object() else {
        return invalid("the body must be a JSON object such as {\"to\": \"+1...\"}".into());
    };
    match fields.get("to") {
        Some(serde_json::Value::String(to)) if !to.trim().is_empty() => {}
        Some(serde_json::Value::String(_)) => {
            return invalid("field `to` is empty; give the number to call, e.g. \"+1...\"".into())
        }
        Some(_) => return invalid("field `to` must be a string such as \"+1...\"".into()),
        None => {
            return invalid("field `to` is missing; give the number to call, e.g. \"+1...\"".into())
        }
    }
    for field in ["prompt", "webhook_url"] {
        if fields
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return invalid(format!("field `{field}` must be a string"));
        }
    }
    if fields
        .get("metadata")
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        return invalid("field `metadata` must be a JSON object".into());
    }
    Ok(())
}

impl Service {
    /// Places a call for the caller's org on the agent server with the fewest active calls
    /// under its `max_active_calls`, ties by the org's list order. Logged and counted.
    pub async fn place_call(
        &self,
        presented: &Presented,
        body: impl std::future::Future<Output = Result<Bytes, ControlError>>,
    ) -> Result<Placed, ControlError> {
        let (org, result) = self.place(presented, body).await;
        let (provider, outcome) = match &result {
            Ok(placed) if (200..300).contains(&placed.status) => (Some(&placed.provider), "placed"),
            Ok(placed) => (Some(&placed.provider), "refused"),
            Err(e) => (e.provider(), e.outcome()),
        };
        let call_id = match &result {
            Ok(placed) => placed.call_id.as_deref().unwrap_or(""),
            Err(_) => "",
        };
        let code = result.as_ref().err().map_or("", |e| e.code().as_str());
        self.audit(
            "place",
            org.as_deref(),
            self.key_name(presented),
            provider.map_or("", |p| p),
            call_id,
            outcome,
            code,
        );
        result
    }

    async fn place(
        &self,
        presented: &Presented,
        body: impl std::future::Future<Output = Result<Bytes, ControlError>>,
    ) -> (Option<Arc<str>>, Result<Placed, ControlError>) {
        let identity = match auth::identify(&self.config, presented) {
            Ok(identity) => identity,
            Err(e) => return (None, Err(e.into())),
        };
        let org = identity.org();
        let org_id = Some(self.orgs[&org.id].id.clone());
        if let Err(e) = self.vouch(&identity, presented).await {
            return (org_id, Err(e.into()));
        }
        // The body is read only now, the caller known: a made-up key holds no request's
        // place while it sends a body slowly.
        let body = match body.await {
            Ok(body) => body,
            Err(e) => return (org_id, Err(e)),
        };
        let body = &body;
        if let Err(e) = check_body(body) {
            return (org_id, Err(e));
        }
        let ctx = self.context(&identity, presented);
        let candidates: Vec<_> = org
            .providers
            .iter()
            .filter_map(|id| self.providers.iter().find(|b| b.spec.id == *id))
            .filter(|b| b.backend.place.is_some())
            .collect();
        if candidates.is_empty() {
            return (org_id, Err(ControlError::NoPlacer));
        }
        // Across a fleet, placements through different replicas take turns on these servers
        // from before they are counted until the chosen one has answered.
        let _fleet = match self.store().redis() {
            Some(redis) => {
                let ids: Vec<&str> = candidates.iter().map(|b| b.spec.id.as_str()).collect();
                // Long enough to count the servers and send the call, each within its timeout.
                let longest = candidates
                    .iter()
                    .map(|b| b.spec.common.http.timeout)
                    .max()
                    .unwrap_or_default();
                let hold = longest * 2 + Duration::from_secs(1);
                match FleetLock::take(redis, &ids, hold, hold).await {
                    Ok(lock) => lock,
                    Err(Refused::Busy) => return (org_id, Err(ControlError::AtCapacity)),
                }
            }
            None => None,
        };
        // A fresh count from each server, as the reference dashboard's capacity check does
        // before every call, and never a cached one: a cached list may predate a call that
        // another placement has since seen listed.
        let loads = futures::future::join_all(candidates.iter().map(|b| async {
            let asked = Instant::now();
            b.backend.list.active_calls(&ctx).await.map(|calls| Load {
                asked,
                active: calls
                    .iter()
                    .filter(|c| c.status.is_active())
                    .map(|c| c.call_id.clone())
                    .collect(),
            })
        }))
        .await;
        let (chosen, token) = {
            let mut best: Option<(usize, usize)> = None;
            // The candidates' locks held together for the choice and the reservation, so that
            // two placements never both take a server's last place. Taken in config order,
            // whatever the org's order, so two orgs listing the same servers in opposite
            // orders cannot each hold one and wait for the other.
            let mut by_config: Vec<usize> = (0..candidates.len()).collect();
            by_config.sort_by_key(|&i| {
                self.providers
                    .iter()
                    .position(|b| std::ptr::eq(b, candidates[i]))
            });
            let mut locked: Vec<_> = (0..candidates.len()).map(|_| None).collect();
            for i in by_config {
                locked[i] = Some(
                    candidates[i]
                        .reserved
                        .pending
                        .lock()
                        .expect("reservations lock"),
                );
            }
            let mut guards: Vec<_> = locked.into_iter().flatten().collect();
            let now = Instant::now();
            for (i, (load, pending)) in loads.iter().zip(guards.iter_mut()).enumerate() {
                pending.retain(|p| p.until > now);
                let Ok(load) = load else { continue };
                let active = Reserved::count(pending, load);
                let limit = candidates[i]
                    .backend
                    .place
                    .as_ref()
                    .and_then(|p| p.max_active_calls());
                let room = limit.is_none_or(|max| active < max as usize);
                if room && best.is_none_or(|(_, fewest)| active < fewest) {
                    best = Some((i, active));
                }
            }
            let Some((i, _)) = best else {
                drop(guards);
                // Every server's list failed: its room is unknown, not known to be full.
                let first_failure = loads.iter().zip(&candidates).find_map(|(l, b)| {
                    l.as_ref().err().map(|error| ControlError::Failed {
                        provider: Arc::from(b.spec.id.as_str()),
                        error: error.clone(),
                    })
                });
                let error = match first_failure {
                    Some(failed) if loads.iter().all(|l| l.is_err()) => failed,
                    _ => ControlError::AtCapacity,
                };
                return (org_id, Err(error));
            };
            let reserved = &candidates[i].reserved;
            let token = reserved
                .next
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            guards[i].push(Pending {
                token,
                call_id: None,
                seen_from: None,
                until: now + HOLD,
            });
            (candidates[i], token)
        };
        let provider: Arc<str> = Arc::from(chosen.spec.id.as_str());
        let placer = chosen
            .backend
            .place
            .as_ref()
            .expect("a candidate places calls");
        let result = placer.place_call(&ctx, body.clone()).await;
        (org_id, answer(result, provider, &chosen.reserved, token))
    }
}

/// The agent server's answer with `"provider"` added; the reservation kept while the call
/// may exist, released when it surely does not.
fn answer(
    result: Result<crate::provider::Placed, ProviderError>,
    provider: Arc<str>,
    reserved: &Reserved,
    token: u64,
) -> Result<Placed, ControlError> {
    let placed = match result {
        Ok(placed) => placed,
        // Sent and not answered whole: the call may have been placed, so its place stays
        // taken until the hold runs out.
        Err(error) if error.outcome_unknown() => {
            return Err(ControlError::OutcomeUnknown { provider, error })
        }
        Err(error) => {
            reserved.release(token);
            return Err(ControlError::Failed { provider, error });
        }
    };
    let ok = (200..300).contains(&placed.status);
    let fields = match serde_json::from_slice::<serde_json::Value>(&placed.body) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => {
            let error = if ok {
                ProviderError::BadBody("not a JSON object answering the placed call".into())
            } else {
                reserved.release(token);
                ProviderError::Status(placed.status)
            };
            return Err(ControlError::Failed { provider, error });
        }
    };
    let success = fields.get("success").and_then(|s| s.as_bool()) != Some(false);
    let call_id = fields
        .get("call_id")
        .and_then(|v| v.as_str())
        .map(Text::from);
    if ok && success {
        reserved.placed(token, call_id.clone());
    } else {
        reserved.release(token);
    }
    Ok(Placed {
        body: with_provider(&placed.body, fields, &provider),
        provider,
        call_id,
        status: placed.status,
    })
}

/// The agent server's JSON object with `"provider"` added at the end, its own bytes kept as
/// sent (field order, spacing) unless it already had a `provider` of its own.
fn with_provider(
    body: &Bytes,
    mut fields: serde_json::Map<String, serde_json::Value>,
    provider: &str,
) -> Bytes {
    let named = serde_json::Value::from(provider).to_string();
    let text = body.trim_ascii_end();
    if !fields.contains_key("provider") {
        if let Some(open) = text.strip_suffix(b"}") {
            let mut out = Vec::with_capacity(text.len() + named.len() + 12);
            out.extend_from_slice(open.trim_ascii_end());
            if !fields.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"provider\":");
            out.extend_from_slice(named.as_bytes());
            out.push(b'}');
            return Bytes::from(out);
        }
    }
    fields.insert("provider".into(), serde_json::Value::from(provider));
    Bytes::from(serde_json::Value::Object(fields).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(asked: Instant, active: &[&str]) -> Load {
        Load {
            asked,
            active: active.iter().map(|&s| Text::from(s)).collect(),
        }
    }

    fn pending(call_id: Option<&str>, until: Instant) -> Pending {
        Pending {
            token: 0,
            call_id: call_id.map(Text::from),
            seen_from: None,
            until,
        }
    }

    #[test]
    fn a_placed_call_counts_once_whether_or_not_a_list_shows_it_yet() {
        let t0 = Instant::now();
        let until = t0 + HOLD;
        let mut p = vec![pending(None, until), pending(Some("c1"), until)];
        // In flight, and placed but not listed yet: both count.
        assert_eq!(Reserved::count(&mut p, &load(t0, &["other"])), 3);
        // Listed: counted by the list, not again.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(Reserved::count(&mut p, &load(t1, &["other", "c1"])), 3);
        // A list asked earlier than the one that showed it still counts it.
        assert_eq!(Reserved::count(&mut p, &load(t0, &["other"])), 3);
        // A list asked later that no longer shows it: the call ended, its place is free.
        let t2 = t1 + Duration::from_millis(10);
        assert_eq!(Reserved::count(&mut p, &load(t2, &["other"])), 2);
    }

    #[test]
    fn the_provider_is_added_to_the_servers_own_bytes() {
        let add = |body: &str| {
            let fields = match serde_json::from_str(body).unwrap() {
                serde_json::Value::Object(f) => f,
                _ => unreachable!(),
            };
            String::from_utf8(with_provider(&Bytes::from(body.to_owned()), fields, "a\"b").to_vec())
                .unwrap()
        };
        assert_eq!(
            add("{\"success\": true, \"call_id\": \"x\"}\n"),
            "{\"success\": true, \"call_id\": \"x\",\"provider\":\"a\\\"b\"}"
        );
        assert_eq!(add("{ }"), "{\"provider\":\"a\\\"b\"}");
        assert_eq!(add("{\"provider\": 1}"), "{\"provider\":\"a\\\"b\"}");
    }

    #[test]
    fn a_body_without_a_usable_to_is_refused_naming_the_field() {
        for (body, names) in [
            (&b"not json"[..], "not JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "`to` is missing"),
            (br#"{"to": 5}"#, "`to` must be a string"),
            (br#"{"to": " "}"#, "`to` is empty"),
            (br#"{"to": "+1", "prompt": 1}"#, "`prompt`"),
            (br#"{"to": "+1", "webhook_url": []}"#, "`webhook_url`"),
            (br#"{"to": "+1", "metadata": "x"}"#, "`metadata`"),
        ] {
            match check_body(body) {
                Err(ControlError::InvalidBody(m)) => assert!(m.contains(names), "{m}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert!(check_body(&vec![b' '; MAX_PLACE_BODY_BYTES + 1]).is_err());
        assert!(check_body(br#"{"to": "+1", "prompt": "hi", "metadata": {"a": 1}}"#).is_ok());
    }
}
