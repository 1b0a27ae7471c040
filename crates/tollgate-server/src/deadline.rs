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
//!
//! A tower layer rather than `axum::middleware::from_fn`: that would clone the boxed route
//! and box one more future for every request; here the deadline is a field of the route's own
//! future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::state::AppState;

/// Bounds every request by the state's `db_timeout`.
#[derive(Clone)]
pub struct DeadlineLayer {
    state: AppState,
}

impl DeadlineLayer {
    pub fn new(state: AppState) -> DeadlineLayer {
        DeadlineLayer { state }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let timeout = self.state.settings().db_timeout;
        // For the warning at the deadline: the route template (shared, an `Arc`), so no copy
        // of the path per request and no ids in the log.
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        DeadlineFuture {
            inner: tokio::time::timeout(timeout, self.inner.call(req)),
            timeout,
            method,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        timeout: Duration,
        method: Method,
        route: Option<MatchedPath>,
    }
}

impl<F> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match std::task::ready!(this.inner.poll(cx)) {
            Ok(res) => Poll::Ready(res),
            Err(_) => {
                let route = this
                    .route
                    .as_ref()
                    .map_or("(unmatched)", MatchedPath::as_str);
                let timeout = *this.timeout;
                tracing::warn!(method = %this.method, route, timeout_ms = timeout.as_millis() as u64, "request abandoned at its deadline");
                Poll::Ready(Ok(ApiError::database_timeout(timeout).into_response()))
            }
        }
    }
}
