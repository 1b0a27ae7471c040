//! `GET /metrics`: counters in the Prometheus text format (no credentials; no secrets or ids
//! in it). The load benchmark reads `tollgate_credential_checks_total` to show that rejected
//! tokens never reach the database on repeat.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::observe::BUCKETS_US;
use crate::state::AppState;

/// Responses by status class (index: 1xx..5xx).
#[derive(Default)]
pub struct ResponseCounts([AtomicU64; 5]);

impl ResponseCounts {
    pub(crate) fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.settings().metrics_token {
        let presented = crate::auth::bearer(&headers).ok();
        if !presented.is_some_and(|p| crate::console::same_text(p, expected)) {
            return crate::error::ApiError::unauthorized(
                "GET /metrics needs the scraping secret: send Authorization: Bearer <the secret in --metrics-token-file>",
            )
            .into_response();
        }
    }
    let c = &state.credentials().counts;
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP tollgate_credential_checks_total Bearer secrets checked, by where the answer came from."
    );
    let _ = writeln!(out, "# TYPE tollgate_credential_checks_total counter");
    for (result, v) in [
        ("malformed", load(&c.malformed)),
        ("cache", load(&c.from_cache)),
        ("unknown_cached", load(&c.unknown_from_cache)),
        ("database", load(&c.from_database)),
    ] {
        let _ = writeln!(
            out,
            "tollgate_credential_checks_total{{result=\"{result}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_session_checks_total Login-session secrets checked (after the shape check), by where the answer came from."
    );
    let _ = writeln!(out, "# TYPE tollgate_session_checks_total counter");
    for (result, v) in [
        ("cache", load(&c.session_from_cache)),
        ("unknown_cached", load(&c.unknown_session_from_cache)),
        ("database", load(&c.session_from_database)),
    ] {
        let _ = writeln!(
            out,
            "tollgate_session_checks_total{{result=\"{result}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_http_responses_total HTTP responses, by status class."
    );
    let _ = writeln!(out, "# TYPE tollgate_http_responses_total counter");
    for (i, n) in state.responses().0.iter().enumerate() {
        let _ = writeln!(
            out,
            "tollgate_http_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            load(n)
        );
    }
    let _ = writeln!(out, "# TYPE tollgate_cached_tokens gauge");
    let _ = writeln!(
        out,
        "tollgate_cached_tokens {}",
        state.credentials().cached_tokens()
    );
    let _ = writeln!(out, "# TYPE tollgate_cached_devices gauge");
    let _ = writeln!(out, "tollgate_cached_devices {}", state.devices().cached());
    let _ = writeln!(
        out,
        "# HELP tollgate_read_answers_total Answers of the cached read actions (application, tokens, flows, devices lists, device state), by where they came from: memory, or a database lookup."
    );
    let _ = writeln!(out, "# TYPE tollgate_read_answers_total counter");
    for part in tollgate_store::Part::ALL {
        let (cache, database) = state.reads().counts(part);
        for (from, v) in [("cache", cache), ("database", database)] {
            let _ = writeln!(
                out,
                "tollgate_read_answers_total{{part=\"{}\",from=\"{from}\"}} {v}",
                part.name()
            );
        }
    }
    let (cache, database) = state.states().counts();
    for (from, v) in [("cache", cache), ("database", database)] {
        let _ = writeln!(
            out,
            "tollgate_read_answers_total{{part=\"state\",from=\"{from}\"}} {v}"
        );
    }
    let _ = writeln!(out, "# TYPE tollgate_cached_states gauge");
    let (answers, bytes) = state.states().cached();
    let _ = writeln!(out, "tollgate_cached_states {answers}");
    let _ = writeln!(out, "# TYPE tollgate_cached_state_bytes gauge");
    let _ = writeln!(out, "tollgate_cached_state_bytes {bytes}");
    let group = state.store().group_commit_stats();
    let _ = writeln!(
        out,
        "# HELP tollgate_state_group_commits_total Transactions that committed device.sendState requests together, the requests they held, and those rolled back (their requests then written each alone)."
    );
    let _ = writeln!(out, "# TYPE tollgate_state_group_commits_total counter");
    let _ = writeln!(out, "tollgate_state_group_commits_total {}", group.batches);
    let _ = writeln!(
        out,
        "# TYPE tollgate_state_group_commit_requests_total counter"
    );
    let _ = writeln!(
        out,
        "tollgate_state_group_commit_requests_total {}",
        group.requests
    );
    let _ = writeln!(
        out,
        "# TYPE tollgate_state_group_commit_failures_total counter"
    );
    let _ = writeln!(
        out,
        "tollgate_state_group_commit_failures_total {}",
        group.failed
    );
    let _ = writeln!(out, "# TYPE tollgate_cached_reads gauge");
    let _ = writeln!(out, "tollgate_cached_reads {}", state.reads().cached());
    let _ = writeln!(
        out,
        "# HELP tollgate_cache_lease_lapses_total Heartbeats that came back after the cache lease ran out."
    );
    let _ = writeln!(out, "# TYPE tollgate_cache_lease_lapses_total counter");
    let _ = writeln!(
        out,
        "tollgate_cache_lease_lapses_total {}",
        state.freshness().lease_lapses()
    );
    if let Some(cluster) = state.cluster() {
        let k = &cluster.confirm.counts;
        let _ = writeln!(
            out,
            "# HELP tollgate_change_confirmations_total Writes that changed credentials, by how the wait for the other nodes ended: every node acknowledged, some node's lease had to run out, or the registered nodes could not be read (waited for the longest lease)."
        );
        let _ = writeln!(out, "# TYPE tollgate_change_confirmations_total counter");
        for (outcome, v) in [
            ("confirmed", load(&k.confirmed)),
            ("lease_lapsed", load(&k.lapsed)),
            ("unknown_nodes", load(&k.unknown)),
        ] {
            let _ = writeln!(
                out,
                "tollgate_change_confirmations_total{{outcome=\"{outcome}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_change_confirmation_seconds_total Time writes spent waiting for the other nodes."
        );
        let _ = writeln!(
            out,
            "# TYPE tollgate_change_confirmation_seconds_total counter"
        );
        let _ = writeln!(
            out,
            "tollgate_change_confirmation_seconds_total {:.6}",
            load(&k.waited_us) as f64 / 1e6
        );
        let _ = writeln!(out, "# TYPE tollgate_barriers_sent_total counter");
        let _ = writeln!(
            out,
            "tollgate_barriers_sent_total {}",
            load(&k.barriers_sent)
        );
        let _ = writeln!(out, "# TYPE tollgate_acks_sent_total counter");
        let _ = writeln!(out, "tollgate_acks_sent_total {}", load(&k.acks_sent));
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_http_request_duration_seconds Time from request to response head, by registry action (other: console, health, metrics, unimplemented and unknown paths) and status class."
    );
    let _ = writeln!(
        out,
        "# TYPE tollgate_http_request_duration_seconds histogram"
    );
    for (action, class, h) in state.latencies().each() {
        let labels = format!("action=\"{action}\",class=\"{class}xx\"");
        let cumulative = h.cumulative();
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                *bound as f64 / 1e6,
                cumulative[i]
            );
        }
        let _ = writeln!(
            out,
            "tollgate_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            cumulative[BUCKETS_US.len()]
        );
        let _ = writeln!(
            out,
            "tollgate_http_request_duration_seconds_sum{{{labels}}} {}",
            h.sum_us() as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "tollgate_http_request_duration_seconds_count{{{labels}}} {}",
            h.count()
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
