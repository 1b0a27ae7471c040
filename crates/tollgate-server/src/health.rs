//! `GET /health` (no authentication): 200 when the database answers reads and takes writes;
//! 503 when it does not answer (`database: unavailable`) or refuses writes (`status:
//! degraded`, `writes: failing`, `writeError` saying why, e.g. "the database's disk is
//! full"): reads still work then. Whether writes work is checked by committing a write that
//! changes nothing, at most once a second whatever the request rate (callers in between get
//! the last result).
//!
//! `cache` says whether this node answers credentials from memory: `single-node` (SQLite),
//! `live`, `lease-lapsed` or `down` (the last two: every request goes to the database);
//! `cachedTokens` how many verified tokens it holds in memory; `leaseLapses` how often the
//! cache lease ran out while the change feed was up.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tollgate_store::StoreError;

use crate::state::AppState;

/// How long one write check's result is reused.
const WRITE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The last write check: when, and what it found (`None`: writes work).
#[derive(Default)]
pub struct WriteCheck(tokio::sync::Mutex<Option<(Instant, Option<String>)>>);

impl WriteCheck {
    /// Why writes fail now, if they do (checked at most once per [`WRITE_CHECK_EVERY`]).
    async fn failure(&self, state: &AppState) -> Option<String> {
        let mut last = self.0.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < WRITE_CHECK_EVERY
        {
            return result.clone();
        }
        let result = match state.store().check_writes().await {
            Ok(()) => None,
            Err(e @ StoreError::StorageFull(_)) => Some(e.to_string()),
            Err(e) if e.is_unavailable() => Some("the database is unavailable".to_owned()),
            Err(e) => {
                tracing::warn!(error = ?e, "health check: a write failed");
                Some("a write failed; see the server log".to_owned())
            }
        };
        if let Some(why) = &result {
            tracing::warn!(reason = %why, "health check: the database refuses writes");
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let cache = state.freshness().state().as_str();
    let cached = state.credentials().cached_tokens();
    let lapses = state.freshness().lease_lapses();
    if let Err(e) = state.store().ping().await {
        tracing::warn!(error = %e, "health check: database unavailable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable", "database": "unavailable", "writes": "failing",
                "cache": cache, "cachedTokens": cached, "leaseLapses": lapses
            })),
        );
    }
    match state.write_check().failure(&state).await {
        None => (
            StatusCode::OK,
            Json(json!({
                "status": "ok", "database": "ok", "writes": "ok",
                "cache": cache, "cachedTokens": cached, "leaseLapses": lapses
            })),
        ),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "degraded", "database": "ok", "writes": "failing", "writeError": why,
                "cache": cache, "cachedTokens": cached, "leaseLapses": lapses
            })),
        ),
    }
}
