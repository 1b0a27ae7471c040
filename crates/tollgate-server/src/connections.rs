//! Accepting and serving connections, with the bounds a public server needs: a connection
//! cap, a header-read timeout and an idle (keep-alive) timeout.
//!
//! * **Connection cap.** At most `max_connections` connections are served at once. Past it the
//!   server stops accepting: new connections wait in the kernel's listen queue (and are refused
//!   by the kernel when that is full) instead of being accepted and failing with "Too many
//!   open files". The cap is kept below the file-descriptor limit (see [`fd_limit`]).
//! * **Header timeout.** From the moment a connection is accepted, or the first byte of a
//!   further request on a kept-alive connection arrives, the whole request head must arrive
//!   within `header_timeout`, else the connection is closed. A client that sends half a
//!   request and waits (slowloris) holds its connection for that long and no longer.
//! * **Idle timeout.** A kept-alive connection with no request in flight and nothing received
//!   for `idle_timeout` is closed.
//!
//! A request being handled is not timed here: its database work is bounded by the request
//! deadline (`--db-timeout-ms`, see [`crate::deadline`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The connection bounds (options `--header-timeout-ms`, `--idle-timeout-secs`,
/// `--max-connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors kept free of connections: database connections, the data files, logs.
pub const FD_RESERVE: u64 = 128;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Raise the soft limit on open files to the hard limit and return it (`None` where the
/// limit cannot be read). A server with the common default of 1024 runs out at about a
/// thousand connections.
pub fn fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap to use: `wanted`, lowered (with a warning) to stay [`FD_RESERVE`] below
/// the open-file limit `fds`.
pub fn cap_below_fd_limit(wanted: usize, fds: Option<u64>) -> usize {
    let Some(fds) = fds else {
        return wanted;
    };
    let room = usize::try_from(fds.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1);
    if wanted > room {
        tracing::warn!(
            wanted,
            open_file_limit = fds,
            cap = room,
            "max-connections lowered to stay below the open-file limit"
        );
        room
    } else {
        wanted
    }
}

/// What the watcher of one connection knows about it. Times are milliseconds since the
/// connection was accepted.
struct Activity {
    start: Instant,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// When the last request finished (or the connection was accepted).
    idle_since: AtomicU64,
    /// 1 + when the first byte of a request head arrived; 0 when none is pending.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection owes us a request head from the start.
            head_since: AtomicU64::new(1),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == 0
        {
            self.head_since.store(self.now() + 1, Ordering::Release);
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
    }

    fn end(&self) {
        self.idle_since.store(self.now(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the connection is due to be closed, if nothing changes (ms since accept), and
    /// why.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(u64, &'static str)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            0 => Some((
                self.idle_since
                    .load(Ordering::Acquire)
                    .saturating_add(ms(limits.idle_timeout)),
                "idle",
            )),
            since => Some((
                (since - 1).saturating_add(ms(limits.header_timeout)),
                "request head not received in time",
            )),
        }
    }
}

/// `d` in whole milliseconds (saturating).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Ends a request's in-flight mark even when the connection drops the request half-way.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A TCP stream that tells the watcher when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Logs a condition at most once per interval, with how often it happened in between.
struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new(what: &'static str) -> Throttled {
        Throttled {
            what,
            last: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, detail: &dyn std::fmt::Display) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                detail = %detail,
                more_since_last_warning = self.suppressed,
                "{}",
                self.what
            );
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` resolves; then stop accepting,
/// let connections finish their requests (at most 10 s) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ConnectionLimits {
        max_connections: limits.max_connections.max(1),
        ..limits
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop = stop_rx.clone();
    let mut accept_errors = Throttled::new("cannot accept connections");
    let mut at_cap = Throttled::new("connection cap reached: new connections wait to be accepted");
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                at_cap.warn(&format_args!("{} connections", limits.max_connections));
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.changed() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or memory, or a connection reset before it was
                    // accepted: wait a little rather than spin, and do not flood the log.
                    accept_errors.warn(&e);
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Responses are small and written whole: do not let Nagle's algorithm hold them back
        // waiting for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Wait for the connections to finish (every permit returned), for a while.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(all)).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            activity.begin();
            let in_flight = InFlight(activity.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let res = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(in_flight);
                res
            }
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    // The watcher is not told of each request (that would wake this task and re-arm a timer
    // twice per request): it looks at the connection's activity at most `check_every` apart
    // and at each deadline it computes. A request head that starts between two looks is due
    // `header_timeout` after its first byte, which is never before the next look, so every
    // deadline is kept exactly.
    let check_every = limits.header_timeout.min(limits.idle_timeout);
    let sleep = tokio::time::sleep(check_every);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = sleep.as_mut() => {
                let now = activity.now();
                let next = match activity.deadline(&limits) {
                    Some((at, why)) if now >= at => {
                        tracing::debug!(%peer, reason = why, "closing connection");
                        return;
                    }
                    Some((at, _)) => at.min(now.saturating_add(ms(check_every))),
                    None => now.saturating_add(ms(check_every)),
                };
                let at = activity.start + Duration::from_millis(next);
                sleep.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
