//! A request refused before its body was read (401, 403, 404, 413, …) is answered with
//! `Connection: close`: the server will not read the rest of the body, so the connection
//! cannot carry another request, and saying so lets the client stop sending and read the
//! answer instead of writing into a socket that is about to close.
//!
//! A tower layer rather than `axum::middleware::from_fn`, which would clone the boxed route
//! and box one more future for every request, bodiless GETs included.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use tower::{Layer, Service};

#[derive(Clone, Copy, Default)]
pub struct CloseIfBodyUnreadLayer;

impl<S> Layer<S> for CloseIfBodyUnreadLayer {
    type Service = CloseIfBodyUnread<S>;
    fn layer(&self, inner: S) -> CloseIfBodyUnread<S> {
        CloseIfBodyUnread { inner }
    }
}

#[derive(Clone)]
pub struct CloseIfBodyUnread<S> {
    inner: S,
}

impl<S> Service<Request> for CloseIfBodyUnread<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CloseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
        if !http1 || req.body().is_end_stream() {
            return CloseFuture {
                inner: self.inner.call(req),
                finished: None,
            };
        }
        let finished = Arc::new(AtomicBool::new(false));
        let (parts, body) = req.into_parts();
        let body = Body::new(Tracked {
            inner: body,
            finished: finished.clone(),
        });
        CloseFuture {
            inner: self.inner.call(Request::from_parts(parts, body)),
            finished: Some(finished),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct CloseFuture<F> {
        #[pin]
        inner: F,
        // Set when the request has a body: whether it was read to its end.
        finished: Option<Arc<AtomicBool>>,
    }
}

impl<F> Future for CloseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = std::task::ready!(this.inner.poll(cx));
        if let Some(finished) = this.finished
            && !finished.load(Ordering::Relaxed)
        {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(res))
    }
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
