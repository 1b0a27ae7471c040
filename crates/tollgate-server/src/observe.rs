//! One layer that sees every request: its log line and its latency.
//!
//! * **The request log**: one event per request at `info` (target `tollgate::request`) with
//!   the method, the route template (`/applications/{applicationId}/devices/{deviceId}`, never
//!   the concrete path), the status, the latency, and who asked: `credential` is `token`
//!   (with the token's id), `user` (with the user's id), `none` or `rejected` (a credential
//!   that was refused). Never a header, a body or a secret. A 5xx is logged at `error` and a
//!   503 at `warn`, with what went wrong (`error`), so the cause is tied to its request.
//! * **Latency histograms** for `/metrics`: per registry action (and `other` for the console,
//!   health, metrics and unmatched paths) and status class, in fixed buckets of atomic
//!   counters: no lock and no allocation per request.
//! * **Response counts** by status (`/metrics`) and the **write check** of `/health` (a
//!   successful write clears "disk full", a 507 sets it; see `health.rs`).
//!
//! These were two more middlewares (a `from_fn` and a `map_response`, each boxing its future
//! per request); here they cost a few atomic additions in a future that exists anyway, and
//! this layer is the one place that sees every response.
//!
//! The authorization guard tells this layer which action and credential a request had by
//! putting a [`Seen`] into the response's extensions; handlers' errors put their detail there
//! as an [`ErrorDetail`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response, StatusCode};
use tollgate_core::{Action, REGISTRY};
use tollgate_store::Id;
use tower::{Layer, Service};

use crate::state::AppState;

/// Who a request came from, as far as the log may say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    Token(Id),
    User(Id),
    /// A credential that was refused (malformed, unknown, expired, inactive, ended).
    Rejected,
}

impl Credential {
    fn kind(self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Token(_) => "token",
            Credential::User(_) => "user",
            Credential::Rejected => "rejected",
        }
    }
}

/// Put into a response's extensions by the authorization guard.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub action: Action,
    pub credential: Credential,
}

/// What went wrong behind a 5xx (put into the response's extensions by `ApiError`), logged
/// with the request it belongs to. Never holds a secret.
#[derive(Clone, Debug)]
pub struct ErrorDetail(pub String);

/// Upper bounds of the latency buckets, in microseconds (then +Inf).
pub const BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];
const SLOTS: usize = BUCKETS_US.len() + 1;

/// One histogram: a count per bucket (not cumulative), the sum and the count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        let slot = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Cumulative counts per bucket bound (the last is +Inf), as Prometheus wants them.
    pub fn cumulative(&self) -> [u64; SLOTS] {
        let mut out = [0; SLOTS];
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            out[i] = total;
        }
        out
    }
}

/// Latency histograms by action (`REGISTRY.len()` is "other") and status class (1xx..5xx).
pub struct Latencies {
    by: Vec<[Histogram; 5]>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            by: (0..=REGISTRY.len()).map(|_| Default::default()).collect(),
        }
    }
}

impl Latencies {
    fn observe(&self, action: Option<Action>, status: u16, us: u64) {
        let row = action.map_or(REGISTRY.len(), Action::index);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by[row][class].observe(us);
    }

    /// Every histogram with at least one observation: (action name or "other", class, it).
    pub fn each(&self) -> impl Iterator<Item = (&'static str, usize, &Histogram)> {
        self.by.iter().enumerate().flat_map(|(row, classes)| {
            let name = REGISTRY.get(row).map_or("other", |d| d.name);
            classes
                .iter()
                .enumerate()
                .filter(|(_, h)| h.count() > 0)
                .map(move |(class, h)| (name, class + 1, h))
        })
    }
}

/// The layer (see the module's documentation).
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    pub fn new(state: AppState) -> ObserveLayer {
        ObserveLayer { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S, B, RB> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        ObserveFuture {
            inner: self.inner.call(req),
            started,
            method,
            route,
            state: self.state.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: Method,
        route: Option<MatchedPath>,
        state: AppState,
    }
}

impl<F, RB, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &result {
            let us = u64::try_from(this.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let seen = res.extensions().get::<Seen>().copied();
            let status = res.status().as_u16();
            let state = &*this.state;
            state
                .latencies()
                .observe(seen.map(|s| s.action), status, us);
            state.responses().count(status);
            let writes = !matches!(*this.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if status == StatusCode::INSUFFICIENT_STORAGE.as_u16() {
                state.write_check().note_full();
            } else if writes && res.status().is_success() {
                state.write_check().note_written();
            }
            log(
                this.method,
                this.route
                    .as_ref()
                    .map_or("(unmatched)", MatchedPath::as_str),
                status,
                us,
                seen.map_or(Credential::None, |s| s.credential),
                res.extensions().get::<ErrorDetail>(),
            );
        }
        Poll::Ready(result)
    }
}

fn log(
    method: &Method,
    route: &str,
    status: u16,
    us: u64,
    credential: Credential,
    error: Option<&ErrorDetail>,
) {
    let latency_ms = us as f64 / 1000.0;
    let kind = credential.kind();
    let error = error.map(|e| e.0.as_str());
    macro_rules! event {
        ($level:ident) => {
            match (credential, error) {
                (Credential::Token(id), None) => tracing::$level!(target: "tollgate::request", %method, route = %route, status, latency_ms, credential = %kind, token = %id, "request"),
                (Credential::User(id), None) => tracing::$level!(target: "tollgate::request", %method, route = %route, status, latency_ms, credential = %kind, user = %id, "request"),
                (Credential::Token(id) | Credential::User(id), Some(error)) => tracing::$level!(target: "tollgate::request", %method, route = %route, status, latency_ms, credential = %kind, id = %id, error, "request failed"),
                (_, None) => tracing::$level!(target: "tollgate::request", %method, route = %route, status, latency_ms, credential = %kind, "request"),
                (_, Some(error)) => tracing::$level!(target: "tollgate::request", %method, route = %route, status, latency_ms, credential = %kind, error, "request failed"),
            }
        };
    }
    if status >= 500 && status != 503 {
        event!(error);
    } else if status == 503 {
        event!(warn);
    } else {
        event!(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_in_the_right_buckets() {
        let h = Histogram::default();
        for us in [100, 250, 251, 4_000, 9_000_000] {
            h.observe(us);
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_us(), 100 + 250 + 251 + 4_000 + 9_000_000);
        let c = h.cumulative();
        assert_eq!(c[0], 2, "≤ 250 µs");
        assert_eq!(c[1], 3, "≤ 500 µs");
        assert_eq!(c[4], 4, "≤ 5 ms");
        assert_eq!(c[BUCKETS_US.len() - 1], 4, "≤ 5 s");
        assert_eq!(c[BUCKETS_US.len()], 5, "+Inf");
    }

    #[test]
    fn latencies_are_kept_per_action_and_class() {
        let l = Latencies::default();
        l.observe(Some(Action::DeviceGet), 200, 300);
        l.observe(Some(Action::DeviceGet), 204, 300);
        l.observe(Some(Action::DeviceGet), 401, 50);
        l.observe(None, 404, 10);
        let seen: Vec<(&str, usize, u64)> = l.each().map(|(n, c, h)| (n, c, h.count())).collect();
        assert_eq!(
            seen,
            vec![("device.get", 2, 2), ("device.get", 4, 1), ("other", 4, 1)]
        );
    }
}
