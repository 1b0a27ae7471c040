//! The Tollgate server: the REST API (Losant-compatible), its authorization layer, and the
//! console. `main.rs` is the command line; everything else is here so tests can run the
//! application in-process.

pub mod admin;
pub mod api;
pub mod auth;
pub mod background;
pub mod catalog;
pub mod changes;
pub mod confirm;
pub mod connections;
pub mod console;
pub mod datadir;
pub mod deadline;
pub mod device_cache;
pub mod error;
pub mod extract;
pub mod freshness;
pub mod health;
pub mod health_listener;
pub mod limits;
pub mod log_format;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod read_cache;
pub mod restrict;
pub mod routes;
pub mod schemas;
pub mod serve;
pub mod service;
pub mod state;
pub mod state_cache;
pub mod time;
pub mod validate;
pub mod webhooks;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use state::{AppState, Settings};

/// Largest request body accepted (state reports can be batched; 1 MiB is plenty).
pub const MAX_BODY: usize = 1 << 20;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    // What browsers on other origins may call (CORS): the REST API, its OpenAPI document and
    // the health check, never the console or /metrics.
    let mut api = routes::api_router(&state)
        .merge(health::router())
        .merge(openapi::router());
    if let Some(cors) = cors_layer(&state.settings().cors_origins) {
        api = api.layer(cors);
    }
    let app = api
        .merge(metrics::router())
        .merge(console::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline::limit,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(close_if_body_unread))
        // One log line, one latency observation, one response count and the write check of
        // /health per request (route template, status, latency, credential kind and id; never
        // a secret).
        .layer(observe::ObserveLayer::new(state.clone()));
    // Logs method, path and status at debug level (`RUST_LOG=tollgate_server=debug`), never
    // headers (they carry credentials) or bodies. Only when that level is on: even disabled,
    // the layer wraps every response body and calls its hooks per request.
    let app = if tracing::enabled!(tracing::Level::DEBUG) {
        app.layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
    } else {
        app
    };
    app.with_state(state)
}

/// CORS for `origins` (none: no CORS headers at all). `*` allows any origin; credentials
/// (cookies, HTTP authentication) are never allowed: the API's credential is a bearer token in
/// the `Authorization` header, which a page sends explicitly, so a browser never sends one on
/// its own for another site.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    use axum::http::{HeaderName, Method};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("accept-version"),
            ])
            .expose_headers([
                error::REQUIRED_ACTION_HEADER,
                header::WWW_AUTHENTICATE,
                header::RETRY_AFTER,
            ])
            .allow_credentials(false)
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// A request body that records whether it was read to its end.
struct Tracked {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.finished.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request refused before its body was read (401, 403, 404, 413, …) is answered with
/// `Connection: close`: the server will not read the rest of the body, so the connection
/// cannot carry another request, and saying so lets the client stop sending and read the
/// answer instead of writing into a socket that is about to close.
async fn close_if_body_unread(req: Request, next: Next) -> Response {
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    if !http1 || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(Tracked {
        inner: body,
        finished: finished.clone(),
    });
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if !finished.load(Ordering::Relaxed) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
