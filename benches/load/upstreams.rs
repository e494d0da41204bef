//! The fake upstreams and the floor: in-process axum servers serving precomputed bytes in
//! the calls' wire shapes, counting requests, one of them flapping on demand.

use super::*;

#[derive(Clone, Copy)]
pub enum Kind {
    Agent,
    Bland,
}

impl Kind {
    pub fn route(self) -> &'static str {
        match self {
            Self::Agent => CALLS_ROUTE,
            Self::Bland => BLAND_ROUTE,
        }
    }

    /// `n` active calls in this kind's wire shape, with ids distinct across `server`s.
    pub fn body(self, server: usize, n: usize) -> Bytes {
        let calls: Vec<serde_json::Value> = (0..n)
            .map(|i| match self {
                Self::Agent => agent_server_call(server, i),
                Self::Bland => bland_server_call(server, i),
            })
            .collect();
        let body = match self {
            Self::Agent => serde_json::json!({"calls": calls, "count": n}),
            Self::Bland => serde_json::json!({"data": calls, "errors": null}),
        };
        serde_json::to_vec(&body).expect("JSON").into()
    }
}

pub fn call_id(server: usize, i: usize) -> String {
    format!(
        "{server:08x}-{:04x}-4{:03x}-8abc-{i:012x}",
        i >> 16,
        i & 0xfff
    )
}

/// The `i`th agent-server call of `server`.
pub fn agent_server_call(server: usize, i: usize) -> serde_json::Value {
    let to_number = format!("+1{:03}{:07}", 200 + server, i);
    let status = ["in-progress", "ringing", "initiating"][i % 3];
    let direction = ["outbound", "incoming"][i % 2];
    agent_call(&call_id(server, i), &to_number, status, direction)
}

/// The `i`th Bland call of `server`.
pub fn bland_server_call(server: usize, i: usize) -> serde_json::Value {
    let status = ["QUEUED", "IN_PROGRESS"][i % 2];
    let timestamp = (1_758_656_817_432u64 + 37 * i as u64).to_string();
    bland_call(&call_id(server, i), status, &timestamp)
}

/// One fake server's state: its answer, its request counter, and whether it flaps.
pub struct Upstream {
    pub body: Bytes,
    pub hits: AtomicU64,
    /// Bland checks the provider's own credentials.
    pub check_bland_credentials: bool,
    pub base: Instant,
    /// Milliseconds after `base` (plus one) when flapping began; 0: steady.
    pub flapping_since: AtomicU64,
}

pub enum Phase {
    Up,
    Down,
    Stalled,
}

impl Upstream {
    pub fn new(body: Bytes, check_bland_credentials: bool) -> Arc<Self> {
        Arc::new(Self {
            body,
            hits: AtomicU64::new(0),
            check_bland_credentials,
            base: Instant::now(),
            flapping_since: AtomicU64::new(0),
        })
    }

    pub fn set_flapping(&self, on: bool) {
        let since = if on {
            self.base.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.flapping_since.store(since, Relaxed);
    }

    pub fn phase(&self) -> Phase {
        let since = self.flapping_since.load(Relaxed);
        if since == 0 {
            return Phase::Up;
        }
        let t = (self.base.elapsed().as_millis() as u64 + 1).saturating_sub(since);
        let into_cycle = t % (2 * FLAP_HALF_PERIOD_MS);
        if into_cycle < FLAP_HALF_PERIOD_MS {
            Phase::Up
        } else if into_cycle < FLAP_HALF_PERIOD_MS * 3 / 2 {
            Phase::Down
        } else {
            Phase::Stalled
        }
    }
}

pub async fn answer(State(up): State<Arc<Upstream>>, headers: HeaderMap) -> Response {
    up.hits.fetch_add(1, Relaxed);
    if up.check_bland_credentials && !has_bland_credentials(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match up.phase() {
        Phase::Up => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            up.body.clone(),
        )
            .into_response(),
        Phase::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Phase::Stalled => {
            tokio::time::sleep(FLAP_STALL).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

pub fn has_bland_credentials(headers: &HeaderMap) -> bool {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
    key == Some(BLAND_KEY)
        && headers
            .get("x-bland-org-id")
            .is_some_and(|v| v == BLAND_ORG)
}

/// A server running on a loopback port; dropping it shuts it down.
pub struct Served {
    pub url: String,
    pub _stop: oneshot::Sender<()>,
}

pub fn serve(rt: &Handle, route: &str, state: Arc<Upstream>) -> Served {
    serve_router(
        rt,
        Router::new().route(route, get(answer)).with_state(state),
    )
}

/// `router` on a free loopback port, on `rt`, until the returned `Served` is dropped.
pub fn serve_router(rt: &Handle, router: Router) -> Served {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("non-blocking socket");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let (stop, stopped) = oneshot::channel::<()>();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let shutdown = async {
            let _ = stopped.await;
        };
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Served { url, _stop: stop }
}

/// One of the three upstreams callmux lists for the org.
pub struct FakeProvider {
    pub id: &'static str,
    pub kind: Kind,
    pub timeout_ms: u64,
    pub state: Arc<Upstream>,
    pub served: Served,
}

impl FakeProvider {
    pub fn url(&self) -> String {
        format!("{}{}", self.served.url, self.kind.route())
    }
}

/// The org's providers, in its list's order: two agent servers and one Bland.
pub const FLEET: [(&str, Kind); PROVIDERS] = [
    ("agents_a", Kind::Agent),
    ("agents_b", Kind::Agent),
    ("bland", Kind::Bland),
];
pub const PROVIDERS: usize = 3;

/// The fleet's servers, `n` calls each, with per-provider timeouts.
pub fn start_fleet(rt: &Handle, n: usize, timeouts_ms: [u64; PROVIDERS]) -> Vec<FakeProvider> {
    FLEET
        .into_iter()
        .zip(timeouts_ms)
        .enumerate()
        .map(|(server, ((id, kind), timeout_ms))| {
            let state = Upstream::new(kind.body(server, n), matches!(kind, Kind::Bland));
            let served = serve(rt, kind.route(), state.clone());
            FakeProvider {
                id,
                kind,
                timeout_ms,
                state,
                served,
            }
        })
        .collect()
}
