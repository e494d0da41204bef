//! One endpoint's deliveries: a bounded queue in memory (or, with Redis, the fleet's queue
//! of [`super::shared`]), sent by one worker with a few attempts in flight, each signed as Standard Webhooks says (the `standardwebhooks` crate),
//! retried on the endpoint's schedule with jitter, and given up after the last. Every
//! connect resolves the host again and refuses a non-public address unless the endpoint
//! allows private ones; redirects are not followed and answers' bodies are never read, so a
//! slow, silent or huge endpoint holds up only its own queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::shared::{Claimed, Settle, SharedQueue};
use super::OutEvent;
use crate::config::WebhookSpec;
use crate::provider::vapi::is_public;
use crate::state::redis::Redis;
use crate::telemetry::Telemetry;

/// Attempts one endpoint has in flight at once: a slow endpoint delays its own events, a
/// few at a time, and nothing else.
const IN_FLIGHT: usize = 16;
/// Event ids remembered per endpoint, so one change seen by two topics (callers of one org)
/// is sent once.
const RECENT: usize = 4096;
/// How long an idle worker sleeps before looking whether its endpoint is still served.
const IDLE: Duration = Duration::from_secs(60);
/// With Redis, how often an idle worker looks for events other replicas queued or left
/// (their own replica wakes it at once for the ones it queues).
const SHARED_IDLE: Duration = Duration::from_secs(1);

/// How host names are resolved before each connect (tests give their own; nothing in them
/// resolves a public name).
#[async_trait]
pub trait Lookup: Send + Sync {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver.
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, 0)).await?.collect())
    }
}

/// reqwest's resolver for one endpoint: `Lookup`, then every address must be public unless
/// the endpoint allows private ones, so a name that later points inside is refused.
struct Guarded {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.lookup.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = lookup.lookup(name.as_str()).await?;
            if addrs.is_empty() {
                return Err("the endpoint's host did not resolve".into());
            }
            if !allow_private && !addrs.iter().all(|a| is_public(a.ip())) {
                return Err(
                    "the endpoint's host resolves to a private, loopback or link-local address; nothing was sent"
                        .into(),
                );
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

struct Pending {
    event: OutEvent,
    /// Attempts made so far.
    attempts: usize,
    due: Instant,
}

/// A retry waiting for its time, ordered by it (then by when it was queued).
struct Later(Instant, u64, Pending);

impl PartialEq for Later {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Later {}
impl PartialOrd for Later {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Later {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

#[derive(Default)]
struct Queue {
    /// Due now, oldest first: new events.
    ready: VecDeque<Pending>,
    /// Retries, soonest first: taking the due ones costs a heap pop each, so many retries
    /// waiting do not make every take a scan of them all.
    later: BinaryHeap<Reverse<Later>>,
    queued: u64,
    in_flight: usize,
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
    last_success: Option<SystemTime>,
    last_failure: Option<(SystemTime, String)>,
    /// With Redis: events the state store did not take, kept here (at most `max_pending`,
    /// oldest dropped) and offered again until it does, so an outage loses none of them.
    unshared: VecDeque<OutEvent>,
}

/// What `GET /webhooks` shows of one endpoint: never its secret.
#[derive(Debug, Clone)]
pub struct EndpointView {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub pending: usize,
    pub last_success: Option<SystemTime>,
    pub last_failure: Option<(SystemTime, String)>,
}

/// One endpoint of one org, and its deliveries.
pub struct Endpoint {
    org: String,
    spec: WebhookSpec,
    signer: Option<standardwebhooks::Webhook>,
    client: Option<reqwest::Client>,
    queue: Mutex<Queue>,
    wake: Notify,
    started: OnceLock<()>,
    telemetry: Arc<Telemetry>,
    /// With Redis: the fleet's queue, and its pending count as last read.
    shared: Option<SharedQueue>,
    shared_pending: AtomicUsize,
}

/// How one attempt went.
enum Outcome {
    Delivered,
    Failed(String),
}

impl Endpoint {
    pub fn new(
        org: &str,
        spec: WebhookSpec,
        telemetry: Arc<Telemetry>,
        lookup: Arc<dyn Lookup>,
        redis: Option<Arc<Redis>>,
    ) -> Arc<Self> {
        // Validated at config time; a key that still fails here sends nothing, and says so.
        let signer = standardwebhooks::Webhook::new(spec.secret.expose_secret().trim()).ok();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout)
            .no_proxy()
            .dns_resolver(Arc::new(Guarded {
                lookup,
                allow_private: spec.allow_private,
            }))
            .build()
            .ok();
        let shared = redis.map(|r| SharedQueue::new(r, org, &spec.name, spec.timeout));
        let endpoint = Arc::new(Self {
            org: org.to_owned(),
            spec,
            signer,
            client,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            started: OnceLock::new(),
            telemetry,
            shared,
            shared_pending: AtomicUsize::new(0),
        });
        // With Redis, events other replicas queued (or left when they died) are sent by
        // whichever replica is up, so every replica works from the start.
        if endpoint.shared.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            endpoint.start();
        }
        endpoint
    }

    fn start(self: &Arc<Self>) {
        if self.started.set(()).is_ok() {
            match self.shared {
                Some(_) => tokio::spawn(work_shared(Arc::downgrade(self))),
                None => tokio::spawn(work(Arc::downgrade(self))),
            };
        }
    }

    pub fn spec(&self) -> &WebhookSpec {
        &self.spec
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, outcome: &'static str) {
        self.telemetry
            .counter(
                "callmux_webhook_deliveries_total",
                &[
                    ("org", &self.org),
                    ("endpoint", &self.spec.name),
                    ("outcome", outcome),
                ],
            )
            .increment(1);
    }

    fn gauge(&self, q: &Queue) {
        self.telemetry
            .gauge(
                "callmux_webhook_pending",
                &[("org", &self.org), ("endpoint", &self.spec.name)],
            )
            .set(self.pending(q) as f64);
    }

    fn pending(&self, q: &Queue) -> usize {
        match self.shared {
            Some(_) => self.shared_pending.load(Ordering::Relaxed) + q.unshared.len(),
            None => q.ready.len() + q.later.len() + q.in_flight,
        }
    }

    /// Queues `event` (once per id); at `max_pending`, the oldest waiting event is dropped
    /// and counted. Starts the worker on first use.
    pub fn enqueue(self: &Arc<Self>, event: &OutEvent) {
        let mut q = self.queue();
        if !q.recent.insert(event.id.clone()) {
            return;
        }
        q.recent_order.push_back(event.id.clone());
        if q.recent_order.len() > RECENT {
            if let Some(old) = q.recent_order.pop_front() {
                q.recent.remove(&old);
            }
        }
        if self.shared.is_some() {
            drop(q);
            let (endpoint, event) = (self.clone(), event.clone());
            tokio::spawn(async move {
                let Some(shared) = &endpoint.shared else {
                    return;
                };
                endpoint.share(shared, event).await;
            });
            self.start();
            return;
        }
        if q.ready.len() + q.later.len() + q.in_flight >= self.spec.max_pending {
            let oldest = q.ready.pop_front().is_some() || {
                let mut all = std::mem::take(&mut q.later).into_vec();
                let first = (0..all.len()).min_by_key(|&i| all[i].0 .1);
                let dropped = first.map(|i| all.swap_remove(i)).is_some();
                q.later = all.into();
                dropped
            };
            if oldest {
                self.count("dropped");
            }
        }
        q.ready.push_back(Pending {
            event: event.clone(),
            attempts: 0,
            due: Instant::now(),
        });
        self.gauge(&q);
        drop(q);
        self.start();
        self.wake.notify_one();
    }

    /// Queues `event` in the fleet's store; one the store does not take waits here, and the
    /// worker offers it again.
    async fn share(&self, shared: &SharedQueue, event: OutEvent) {
        match shared.add(&event, self.spec.max_pending).await {
            Some((queued, dropped)) => {
                if dropped {
                    self.count("dropped");
                }
                if queued {
                    self.wake.notify_one();
                }
            }
            None => {
                tracing::warn!(org = %self.org, endpoint = %self.spec.name, event = %event.id,
                    "webhook event kept on this replica until the state store answers");
                let mut q = self.queue();
                if q.unshared.len() >= self.spec.max_pending {
                    q.unshared.pop_front();
                    drop(q);
                    self.count("dropped");
                    q = self.queue();
                }
                q.unshared.push_back(event);
            }
        }
    }

    /// Offers the events the store did not take to it again, oldest first, until it fails.
    async fn reshare(&self, shared: &SharedQueue) {
        loop {
            let Some(event) = self.queue().unshared.pop_front() else {
                return;
            };
            if shared.add(&event, self.spec.max_pending).await.is_none() {
                self.queue().unshared.push_front(event);
                return;
            }
        }
    }

    /// The endpoint as `GET /webhooks` shows it.
    pub fn view(&self) -> EndpointView {
        let q = self.queue();
        EndpointView {
            name: self.spec.name.clone(),
            url: crate::settings::redacted_url(self.spec.url.as_str()),
            events: self.spec.events.clone(),
            pending: self.pending(&q),
            last_success: q.last_success,
            last_failure: q.last_failure.clone(),
        }
    }

    /// The due events this worker may start now, or when the next one falls due: retries
    /// whose time came join the new events, oldest first.
    fn take_due(&self) -> Result<Vec<Pending>, Option<Instant>> {
        let mut q = self.queue();
        let now = Instant::now();
        while q.later.peek().is_some_and(|Reverse(l)| l.0 <= now) {
            let Some(Reverse(Later(_, _, p))) = q.later.pop() else {
                break;
            };
            q.ready.push_back(p);
        }
        let mut taken = Vec::new();
        while q.in_flight < IN_FLIGHT {
            let Some(p) = q.ready.pop_front() else { break };
            q.in_flight += 1;
            taken.push(p);
        }
        if !taken.is_empty() {
            return Ok(taken);
        }
        if q.in_flight >= IN_FLIGHT {
            return Err(None);
        }
        Err(q.later.peek().map(|Reverse(l)| l.0))
    }

    /// One attempt: signed at its own time, sent, and judged by the status alone.
    async fn attempt(&self, event: &OutEvent) -> Outcome {
        let (Some(signer), Some(client)) = (&self.signer, &self.client) else {
            return Outcome::Failed("the endpoint's secret or client could not be set up".into());
        };
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let Ok(signature) = signer.sign(&event.id, ts, &event.body) else {
            return Outcome::Failed("the event could not be signed".into());
        };
        let sent = client
            .post(self.spec.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(Bytes::clone(&event.body))
            .send()
            .await;
        // The answer's body is never read: dropping it closes the connection.
        match sent {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) if r.status().is_redirection() => Outcome::Failed(format!(
                "answered HTTP {} (redirects are not followed)",
                r.status().as_u16()
            )),
            Ok(r) => Outcome::Failed(format!("answered HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Outcome::Failed(format!(
                "did not answer within {} ms",
                self.spec.timeout.as_millis()
            )),
            Err(e) => Outcome::Failed(reason(&e)),
        }
    }

    /// Records how attempt number `attempts` of `event` went (its outcome counted, the
    /// last success or failure noted); the delay before the next attempt, or `None` when
    /// there is none (delivered, or given up after the last).
    fn judge(
        &self,
        q: &mut Queue,
        event: &OutEvent,
        attempts: usize,
        outcome: Outcome,
    ) -> Option<Duration> {
        match outcome {
            Outcome::Delivered => {
                q.last_success = Some(SystemTime::now());
                self.count("delivered");
                None
            }
            Outcome::Failed(why) => {
                tracing::info!(org = %self.org, endpoint = %self.spec.name, event = %event.id, attempt = attempts, why = %why, "webhook delivery failed");
                q.last_failure = Some((SystemTime::now(), why));
                match self.spec.retry_delays.get(attempts - 1) {
                    Some(delay) => {
                        self.count("retried");
                        Some(jittered(*delay))
                    }
                    None => {
                        tracing::warn!(org = %self.org, endpoint = %self.spec.name, event = %event.id, "webhook delivery given up after the last retry");
                        self.count("given_up");
                        None
                    }
                }
            }
        }
    }

    /// Records how `p`'s attempt went: delivered, retried after the next delay (with up to
    /// 10 % jitter), or given up after the last.
    fn settle(&self, mut p: Pending, outcome: Outcome) {
        let mut q = self.queue();
        q.in_flight -= 1;
        p.attempts += 1;
        if let Some(delay) = self.judge(&mut q, &p.event, p.attempts, outcome) {
            p.due = Instant::now() + delay;
            q.queued += 1;
            let seq = q.queued;
            q.later.push(Reverse(Later(p.due, seq, p)));
        }
        self.gauge(&q);
    }

    /// [`Endpoint::settle`] for an event claimed from the fleet's queue: it is retried from
    /// there, by whichever replica claims it when due.
    async fn settle_shared(&self, shared: &SharedQueue, c: Claimed, outcome: Outcome) {
        let attempts = c.attempts + 1;
        let next = {
            let mut q = self.queue();
            q.in_flight -= 1;
            self.judge(&mut q, &c.event, attempts, outcome)
        };
        let how = match next {
            Some(delay) => Settle::Retry {
                due_ms: crate::call::time::now_ms() + delay.as_millis() as u64,
                attempts,
            },
            None => Settle::Done,
        };
        if !shared.settle(&c.event, how).await {
            tracing::info!(org = %self.org, endpoint = %self.spec.name, event = %c.event.id, "webhook delivery's claim had lapsed: another replica has the event");
        }
    }
}

/// `delay` and up to 10 % more, so retries of many events do not arrive together.
fn jittered(delay: Duration) -> Duration {
    delay + delay.mul_f64(fastrand::f64() * 0.1)
}

/// Why a send failed, without the URL (it may hold a capability): the innermost cause.
fn reason(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let text = source.to_string();
    if e.is_connect() {
        format!("could not connect: {text}")
    } else {
        format!("could not send: {text}")
    }
}

/// The endpoint's worker: starts due attempts, at most `IN_FLIGHT` at once, and sleeps until
/// the next is due or a new event arrives. Ends within `IDLE` once the endpoint is dropped.
async fn work(endpoint: std::sync::Weak<Endpoint>) {
    loop {
        let Some(e) = endpoint.upgrade() else { return };
        match e.take_due() {
            Ok(taken) => {
                for p in taken {
                    let e = e.clone();
                    tokio::spawn(async move {
                        let outcome = e.attempt(&p.event).await;
                        e.settle(p, outcome);
                        e.wake.notify_one();
                    });
                }
            }
            Err(next) => {
                let sleep = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => tokio::time::sleep(IDLE).await,
                    }
                };
                let wake = e.wake.notified();
                tokio::select! {
                    () = sleep => {}
                    () = wake => {}
                }
            }
        }
    }
}

/// The endpoint's worker with Redis: claims the fleet's due events, at most `IN_FLIGHT` in
/// flight here, and sleeps until the soonest falls due (at most `SHARED_IDLE`, to find what
/// other replicas queued or left) or this replica queues one. Ends within `SHARED_IDLE`
/// once the endpoint is dropped.
async fn work_shared(endpoint: std::sync::Weak<Endpoint>) {
    loop {
        let Some(e) = endpoint.upgrade() else { return };
        let Some(shared) = &e.shared else { return };
        e.reshare(shared).await;
        let free = IN_FLIGHT.saturating_sub(e.queue().in_flight);
        let claimed = shared.claim(free).await;
        let got = !claimed.is_empty();
        for c in claimed {
            e.queue().in_flight += 1;
            let e = e.clone();
            tokio::spawn(async move {
                let outcome = e.attempt(&c.event).await;
                if let Some(shared) = &e.shared {
                    e.settle_shared(shared, c, outcome).await;
                }
                e.wake.notify_one();
            });
        }
        let soonest = match shared.pending().await {
            Some((count, soonest)) => {
                e.shared_pending.store(count, Ordering::Relaxed);
                e.gauge(&e.queue());
                soonest
            }
            None => None,
        };
        if got {
            continue;
        }
        let wait = soonest
            .map(|due| Duration::from_millis(due.saturating_sub(crate::call::time::now_ms())))
            .unwrap_or(SHARED_IDLE)
            .min(SHARED_IDLE);
        let wake = e.wake.notified();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookSpec;

    /// Every name resolves to one loopback address: a public-looking name that turned
    /// private after the configuration was checked.
    struct ToLoopback(SocketAddr);

    #[async_trait]
    impl Lookup for ToLoopback {
        async fn lookup(&self, _host: &str) -> std::io::Result<Vec<SocketAddr>> {
            Ok(vec![self.0])
        }
    }

    fn spec(url: &str, allow_private: bool) -> WebhookSpec {
        WebhookSpec {
            name: "ops".into(),
            url: url::Url::parse(url).unwrap(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            secret_env: "HOOK_SECRET".into(),
            events: vec!["call.started".into()],
            allow_private,
            timeout: Duration::from_secs(5),
            retry_delays: vec![],
            max_pending: 2,
        }
    }

    fn event(id: &str) -> OutEvent {
        OutEvent {
            id: id.into(),
            kind: "call.started",
            body: Bytes::from_static(b"{}"),
        }
    }

    async fn listening() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((_sock, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_at_connect_time_is_refused_and_nothing_is_sent(
    ) {
        let (addr, accepted) = listening().await;
        let url = format!("http://hooks.example.test:{}/in", addr.port());
        let endpoint = Endpoint::new(
            "acme",
            spec(&url, false),
            Arc::new(Telemetry::default()),
            Arc::new(ToLoopback(addr)),
            None,
        );
        let Outcome::Failed(why) = endpoint.attempt(&event("evt_1")).await else {
            panic!("sent to a loopback address");
        };
        assert!(why.contains("private, loopback or link-local"), "{why}");
        assert!(!why.contains("hooks.example.test"), "{why}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_event_and_an_id_seen_before_is_queued_once() {
        let (addr, _) = listening().await;
        let url = format!("http://hooks.example.test:{}/in", addr.port());
        let endpoint = Endpoint::new(
            "acme",
            spec(&url, true),
            Arc::new(Telemetry::default()),
            Arc::new(ToLoopback(addr)),
            None,
        );
        // Every slot taken, so the worker starts nothing while the queue is looked at.
        {
            let mut q = endpoint.queue();
            q.in_flight = IN_FLIGHT;
        }
        for id in ["a", "b", "a", "c"] {
            endpoint.enqueue(&event(id));
        }
        let q = endpoint.queue();
        let waiting: Vec<&str> = q.ready.iter().map(|p| p.event.id.as_str()).collect();
        // max_pending 2 counts the in-flight ones too: at least the newest is kept, the
        // oldest dropped, and "a" queued once.
        assert_eq!(waiting, ["c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn new_events_go_first_and_due_retries_follow_soonest_first() {
        let (addr, _) = listening().await;
        let url = format!("http://hooks.example.test:{}/in", addr.port());
        let endpoint = Endpoint::new(
            "acme",
            spec(&url, true),
            Arc::new(Telemetry::default()),
            Arc::new(ToLoopback(addr)),
            None,
        );
        let start = Instant::now();
        {
            let mut q = endpoint.queue();
            for (id, secs) in [("r30", 30), ("r10", 10), ("r20", 20)] {
                q.queued += 1;
                let due = start + Duration::from_secs(secs);
                let p = Pending {
                    event: event(id),
                    attempts: 1,
                    due,
                };
                let seq = q.queued;
                q.later.push(Reverse(Later(due, seq, p)));
            }
            q.ready.push_back(Pending {
                event: event("new"),
                attempts: 0,
                due: start,
            });
        }
        let ids = |taken: Vec<Pending>| -> Vec<String> {
            taken.into_iter().map(|p| p.event.id).collect()
        };
        assert_eq!(ids(endpoint.take_due().unwrap()), ["new"]);
        assert_eq!(
            endpoint.take_due().err(),
            Some(Some(start + Duration::from_secs(10)))
        );
        tokio::time::advance(Duration::from_secs(25)).await;
        assert_eq!(ids(endpoint.take_due().unwrap()), ["r10", "r20"]);
        assert_eq!(endpoint.queue().later.len(), 1);
    }
}
