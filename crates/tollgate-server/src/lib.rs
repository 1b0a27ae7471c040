//! The Tollgate server: the REST API (Losant-compatible), its authorization layer, and the
//! console. `main.rs` is the command line; everything else is here so tests can run the
//! application in-process.

pub mod api;
pub mod auth;
pub mod changes;
pub mod confirm;
pub mod console;
pub mod device_cache;
pub mod error;
pub mod extract;
pub mod freshness;
pub mod health;
pub mod local;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod serve;
pub mod state;
pub mod time;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;

pub use state::{AppState, Settings};

/// Largest request body accepted (state reports can be batched; 1 MiB is plenty).
pub const MAX_BODY: usize = 1 << 20;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    routes::api_router(&state)
        .merge(health::router())
        .merge(openapi::router())
        .merge(metrics::router())
        .merge(console::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            metrics::count_response,
        ))
        // Logs method, path and status at debug level (`RUST_LOG=tollgate_server=debug`),
        // never headers (they carry credentials) or bodies. At the default level the span is
        // disabled and costs next to nothing on the hot path.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}
