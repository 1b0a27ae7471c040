//! `--health-listen`: `GET /health` on a listener of its own, served by a thread and a Tokio
//! runtime of its own.
//!
//! Why: on the main listener every request takes turns on the same async workers. Under a
//! flood (a thousand clients sending wrong passwords, say) a probe waits behind every request
//! in flight, and a load balancer or orchestrator may take a busy node for a dead one. This
//! listener's thread is asleep between probes, so the kernel runs it as soon as a probe
//! arrives, whatever the request workers are doing; it answers the same body as the main
//! listener's `/health` (the database ping and the write check are the same code).
//!
//! It answers only `GET /health` (anything else is a 404 naming that), writes no request log
//! lines (probes every second would flood the log), and serves at most
//! [`MAX_PROBE_CONNECTIONS`] connections at once with the main listener's header and idle
//! timeouts.
//!
//! The thread runs until [`HealthListener::stop`], which `serve` calls only after the store
//! is closed: a database connection this runtime opened may be in use by the main runtime
//! until then, and it needs this runtime's I/O driver.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::sync::watch;

use crate::connections::ConnectionLimits;
use crate::error::ApiError;
use crate::state::AppState;

/// Connections the health listener serves at once; more wait in the kernel's queue.
pub const MAX_PROBE_CONNECTIONS: usize = 64;

/// A running health listener.
pub struct HealthListener {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl HealthListener {
    /// Bind `addr` (now, so that a taken address stops start-up) and serve it on a new thread.
    pub fn start(
        addr: SocketAddr,
        state: AppState,
        limits: ConnectionLimits,
    ) -> anyhow::Result<HealthListener> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} (--health-listen)"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let limits = ConnectionLimits {
            max_connections: MAX_PROBE_CONNECTIONS,
            ..limits
        };
        let (stop, mut stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("tollgate-health")
            .build()
            .context("cannot start the health listener's runtime")?;
        let thread = std::thread::Builder::new()
            .name("tollgate-health".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "health listener stopped");
                            return;
                        }
                    };
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    if let Err(e) =
                        crate::connections::serve(listener, app(state), limits, shutdown).await
                    {
                        tracing::error!(error = %e, "health listener stopped");
                    }
                })
            })
            .context("cannot start the health listener's thread")?;
        tracing::info!(%address, "health checks are also answered on their own listener");
        Ok(HealthListener {
            address,
            stop,
            thread,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stop serving and wait (at most `within`) for the thread to end.
    pub fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let deadline = std::time::Instant::now() + within;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

/// `GET /health` and nothing else.
fn app(state: AppState) -> Router {
    crate::health::router()
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "this listener (--health-listen) answers only GET /health",
            )
            .into_response()
        })
        .with_state(state)
}
