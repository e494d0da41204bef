//! What `list_body` checks of every body a reader accepts: callmux writes its calls in
//! both client shapes as valid JSON, and reads back the same calls, every string intact (so
//! the hand-written writers escape exactly right).

use std::sync::Arc;

use callmux::call::Call;

pub fn check(calls: &[Call], provider: &Arc<str>) {
    // `org` is the `user_id` written for calls whose upstream named no owner.
    let bland = callmux::wire::bland::write(calls, "org", &[]);
    let calls_shape = callmux::wire::calls::write(calls, &[]);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&bland).is_ok(),
        "bland::write produced invalid JSON"
    );
    assert!(
        serde_json::from_slice::<serde_json::Value>(&calls_shape).is_ok(),
        "calls::write produced invalid JSON"
    );
    let again = callmux::wire::bland::parse(&bland, provider).expect("re-read bland output");
    assert_eq!(again.len(), calls.len());
    for (a, c) in again.iter().zip(calls) {
        assert_eq!(a.call_id, c.call_id);
        assert_eq!(a.from, c.from);
        assert_eq!(a.to, c.to);
        assert_eq!(a.objective, c.objective);
        assert_eq!(a.pathway_id, c.pathway_id);
        assert_eq!(a.started_at, c.started_at);
        assert_eq!(a.created_at, c.created_at);
        assert_eq!(a.international, c.international);
        assert_eq!(a.org.as_deref(), Some(c.org.as_deref().unwrap_or("org")));
    }
    let again = callmux::wire::calls::parse(&calls_shape, provider).expect("re-read calls output");
    assert_eq!(again.len(), calls.len());
    for (a, c) in again.iter().zip(calls) {
        assert_eq!(a.call_id, c.call_id);
    }
}
