//! `GET /health` (no authentication): 200 when the database answers reads and takes writes;
//! 503 when it does not answer (`database: unavailable`) or refuses writes (`status:
//! degraded`, `writes: failing`, `writeError` saying why, e.g. "the database's disk is
//! full"): reads still work then. Whether writes work is checked by committing a write that
//! changes nothing, at most once a second whatever the request rate (callers in between get
//! the last result). In WAL mode that write can succeed on a full disk (it reuses space the
//! log already has) while every write that needs more space fails, so a write refused for a
//! full disk also counts: writes are reported failing until a write succeeds again or, on
//! SQLite, the database's file system has at least 1 MiB free.
//!
//! `cache` says whether this node answers credentials from memory: `single-node` (SQLite),
//! `live`, `lease-lapsed` or `down` (the last two: every request goes to the database);
//! `cachedTokens` how many verified tokens it holds in memory; `leaseLapses` how often the
//! cache lease ran out while the change feed was up.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// Free space that counts as "space has returned" after a full disk.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// The last write check: when, and what it found (`None`: writes work); and whether a write
/// was refused for a full disk with no write succeeding since.
#[derive(Default)]
pub struct WriteCheck {
    last: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
    full_seen: AtomicBool,
}

impl WriteCheck {
    /// A write was refused because the disk is full.
    pub fn note_full(&self) {
        self.full_seen.store(true, Ordering::Relaxed);
    }

    /// A write succeeded.
    pub fn note_written(&self) {
        self.full_seen.store(false, Ordering::Relaxed);
    }

    /// Why writes fail now, if they do (checked at most once per [`WRITE_CHECK_EVERY`]).
    async fn failure(&self, state: &AppState) -> Option<String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < WRITE_CHECK_EVERY
        {
            return result.clone();
        }
        let mut result = match state.store().check_writes().await {
            Ok(()) => None,
            Err(e @ StoreError::StorageFull(_)) => Some(e.to_string()),
            Err(e) if e.is_unavailable() => Some("the database is unavailable".to_owned()),
            Err(e) => {
                tracing::warn!(error = ?e, "health check: a write failed");
                Some("a write failed; see the server log".to_owned())
            }
        };
        if result.is_none() && self.full_seen.load(Ordering::Relaxed) {
            match free_bytes(state) {
                Some(free) if free >= MIN_FREE_BYTES => self.note_written(),
                _ => result = Some(StoreError::StorageFull(None).to_string()),
            }
        }
        if let Some(why) = &result {
            tracing::warn!(reason = %why, "health check: the database refuses writes");
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Bytes free for unprivileged use on the SQLite database's file system.
#[cfg(unix)]
fn free_bytes(state: &AppState) -> Option<u64> {
    let dir = state.store().sqlite_file()?.parent()?.to_owned();
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        dir
    };
    let stat = rustix::fs::statvfs(&dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_: &AppState) -> Option<u64> {
    None
}

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let cache = state.freshness().state().as_str();
    let cached = state.credentials().cached_tokens();
    let lapses = state.freshness().lease_lapses();
    // Bounded well inside the request deadline, so a database that does not answer is
    // reported in this body rather than cut off by the deadline's bare 503.
    let within = state.settings().db_timeout / 2;
    let ping = match tokio::time::timeout(within, state.store().ping()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", within.as_millis())),
    };
    if let Err(e) = ping {
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
