//! `GET /health`: 200 when the database answers, 503 when it does not. No authentication.
//! `cache` says whether this node answers credentials from memory: `single-node` (SQLite),
//! `live`, `lease-lapsed` or `down` (the last two: every request goes to the database);
//! `cachedTokens` how many verified tokens it holds in memory; `leaseLapses` how often the
//! cache lease ran out while the change feed was up.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let cache = state.credentials().cache_state().as_str();
    let cached = state.credentials().cached_tokens();
    let lapses = state.credentials().lease_lapses();
    match state.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(
                json!({ "status": "ok", "database": "ok", "cache": cache, "cachedTokens": cached, "leaseLapses": lapses }),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "database": "unavailable", "cache": cache, "cachedTokens": cached, "leaseLapses": lapses }),
                ),
            )
        }
    }
}
