//! The request deadline: every request, and so all of its database work, ends within
//! `--db-timeout-ms`.
//!
//! The pool's acquire timeout bounds only the wait for a connection. A request that already
//! holds one (inside a transaction, say) would otherwise wait as long as the database stays
//! frozen or the network partitioned: writes hung for whole outages. Past the deadline the
//! request is answered 503 and its work is dropped: an open transaction is never committed
//! (it is rolled back, by the server when the connection is closed if need be). On PostgreSQL
//! the session's `statement_timeout` (the same value) also stops the statement on the server,
//! so an abandoned query does not keep a backend busy.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let timeout = state.settings().db_timeout;
    let method = req.method().clone();
    // The route template, shared (an `Arc`): no copy of the path per request, and no ids in
    // the warning.
    let route = req.extensions().get::<MatchedPath>().cloned();
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
            tracing::warn!(%method, route, timeout_ms = timeout.as_millis() as u64, "request abandoned at its deadline");
            ApiError::database_timeout(timeout).into_response()
        }
    }
}
