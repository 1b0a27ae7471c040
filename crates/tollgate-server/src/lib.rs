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
pub mod unread_body;
pub mod validate;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use state::{AppState, Settings};

/// Largest request body accepted (state reports can be batched; 1 MiB is plenty).
pub const MAX_BODY: usize = 1 << 20;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    // What browsers on other origins may call (CORS): the REST API, its OpenAPI document and
    // the health check, never the console or /metrics.
    let mut api = routes::api_router()
        .merge(health::router())
        .merge(openapi::router());
    if let Some(cors) = cors_layer(&state.settings().cors_origins) {
        api = api.layer(cors);
    }
    // The layers every request passes, outermost first, applied as one stack: each
    // `Router::layer` call boxes every route once more, so that a request then pays for one
    // boxed future and one boxed clone of its route per layer (measured: six levels of
    // boxing per `device.get` before, BENCHMARKS.md).
    let every_request = tower::ServiceBuilder::new()
        // One log line, one latency observation, one response count and the write check of
        // /health per request (route template, status, latency, credential kind and id;
        // never a secret).
        .layer(observe::ObserveLayer::new(state.clone()))
        .layer(unread_body::CloseIfBodyUnreadLayer)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(deadline::DeadlineLayer::new(state.clone()));
    let app = api
        .merge(metrics::router())
        .merge(console::router())
        .layer(every_request);
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
