//! Starting the server: open the store, make sure an administrator exists, run background
//! work, serve until asked to stop.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::users::NewUser;
use tollgate_store::{Backend, Store, StoreError};

use crate::auth::passwords;
use crate::connections::ConnectionLimits;
use crate::state::{AppState, Settings};

/// Where the first administrator's credentials come from.
pub struct AdminSeed {
    pub email: Option<String>,
    pub password: Option<String>,
}

pub const DEFAULT_ADMIN_EMAIL: &str = "admin@tollgate.local";

/// The file in the data directory that holds a generated first-administrator password.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// On an empty database, create the first administrator. A generated password is written to
/// `initial-admin-password` in `data_dir` (readable by this user only) and only that file's
/// path is printed; the password itself is shown too when standard output is a terminal
/// (never when it is a log). It never reaches the logs.
pub async fn ensure_admin(
    store: &Store,
    seed: AdminSeed,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let email = seed.email.unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
    let (password, generated) = match seed.password {
        Some(p) => (p, false),
        None => (
            Secret::generate(SecretKind::UserSession).expose()[5..29].to_owned(),
            true,
        ),
    };
    if password.len() < 8 {
        anyhow::bail!("TOLLGATE_ADMIN_PASSWORD must be at least 8 characters");
    }
    let hash = passwords::hash(password.clone()).await?;
    // Written before the user exists: a server that cannot keep the password must not create
    // an administrator nobody can log in as.
    let file = if generated {
        Some(crate::datadir::write_secret_file(
            data_dir,
            INITIAL_PASSWORD_FILE,
            &format!("{email}\n{password}\n"),
        )?)
    } else {
        None
    };
    let created = store
        .create_user(&NewUser {
            email: &email,
            password_hash: &hash,
            first_name: "Admin",
            last_name: "",
        })
        .await;
    match created {
        Ok(user) => {
            tracing::info!(user = %user.id, email = %user.email, "created the first administrator");
            if let Some(file) = &file {
                use std::io::IsTerminal;
                let shown = if std::io::stdout().is_terminal() {
                    format!("\n    password: {password}")
                } else {
                    String::new()
                };
                println!(
                    "\n  Tollgate created the first administrator.\n    email:    {email}{shown}\n  The password is in {} (readable by this user only): log in, change it, and delete that file.\n",
                    file.display()
                );
            }
            Ok(())
        }
        // Another node created it first: the file this node wrote holds nothing valid.
        Err(StoreError::Conflict(_)) => {
            if let Some(file) = &file {
                let _ = std::fs::remove_file(file);
            }
            Ok(())
        }
        Err(e) => {
            if let Some(file) = &file {
                let _ = std::fs::remove_file(file);
            }
            Err(e.into())
        }
    }
}

/// Run background work: flush last-used times and token usage, purge expired sessions.
pub fn spawn_background(state: &AppState, flush_every: Duration) {
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(flush_every);
        loop {
            tick.tick().await;
            if let Err(e) = s.credentials().flush_last_used().await {
                tracing::warn!(error = %e, "could not record last-used times; will retry");
            }
            if let Err(e) = s.usage().flush(s.store()).await {
                tracing::warn!(error = %e, "could not record token usage; will retry");
            }
        }
    });
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match s
                .store()
                .purge_expired_sessions(tollgate_store::now_ms())
                .await
            {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "purged expired sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
            }
        }
    });
}

/// Where and how to serve (besides the store and the settings).
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// How often last-used times are written.
    pub flush_every: Duration,
    /// How long audit log entries are kept.
    pub audit_retention: Duration,
    /// How often the background jobs run (on the node holding their lease).
    pub background_interval: Duration,
    /// Bounds on client connections.
    pub limits: ConnectionLimits,
    /// PostgreSQL: the database URL for the change listener's own connection (default: the
    /// store's). Holds credentials; never printed.
    pub listener_url: Option<String>,
    /// SQLite: the lock this server holds on its database ([`crate::datadir::lock_for_server`]);
    /// its control socket is served for commands beside it.
    pub local: Option<crate::datadir::LocalLock>,
    /// `--health-listen`: also answer `GET /health` here, on a thread of its own
    /// ([`crate::health_listener`]).
    pub health_listen: Option<SocketAddr>,
}

/// Serve within `options.limits` until SIGINT/SIGTERM; then leave the cluster, flush
/// last-used times and checkpoint the database.
pub async fn serve(store: Store, settings: Settings, options: ServeOptions) -> anyhow::Result<()> {
    let ServeOptions {
        listen,
        flush_every,
        audit_retention,
        background_interval,
        limits,
        listener_url,
        local,
        health_listen,
    } = options;
    crate::schemas::preload();
    let state = AppState::new(store, settings);
    // A secret key file that exists but cannot be used is reported now, not at someone's
    // login.
    state.secret_key().check()?;
    if let Some(lock) = &local {
        crate::datadir::serve_control(lock, state.clone())?;
    }
    let cluster = if state.store().backend() == Backend::Postgres {
        // Other nodes may share this database: hear their changes, and until the feed is up
        // answer every request from the database.
        Some(crate::changes::spawn(&state, listener_url))
    } else {
        None
    };
    if state.settings().preload_tokens {
        if state.freshness().usable() {
            // Warm the cache while already serving: start-up does not wait for a million rows,
            // and a token asked for before its turn is simply loaded on demand.
            let s = state.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                match s.credentials().preload().await {
                    Ok(loaded) => tracing::info!(
                        tokens = loaded,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "preloaded tokens"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "token preload stopped; tokens load on use")
                    }
                }
            });
        } else {
            tracing::info!("not preloading tokens: with several nodes they load on first use");
        }
    }
    spawn_background(&state, flush_every);
    let background = crate::background::spawn(
        &state,
        crate::background::Options {
            interval: background_interval,
            audit_retention,
        },
    );
    crate::webhooks::spawn(
        state.clone(),
        state.settings().webhook_interval,
        state.settings().webhook_policy.clone(),
        background.holding(),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let health = match health_listen {
        Some(addr) => Some(crate::health_listener::HealthListener::start(
            addr,
            state.clone(),
            limits,
        )?),
        None => None,
    };
    tracing::info!(
        %address,
        max_connections = limits.max_connections,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "Tollgate is listening"
    );
    crate::connections::serve(listener, crate::app(state.clone()), limits, async move {
        shutdown_signal().await;
        // Stop answering from cache and leave the cluster first: from then on other nodes do
        // not wait for this one, and requests still in flight here go to the database.
        if let Some(cluster) = cluster {
            cluster.leave(Duration::from_secs(2)).await;
        }
    })
    .await?;
    background.stop().await;
    state.credentials().flush_last_used().await.ok();
    if let Err(e) = state.usage().flush(state.store()).await {
        tracing::warn!(error = %e, "could not record token usage at shutdown");
    }
    // Leave the database file complete on its own: copy the write-ahead log into it and
    // empty the log, then close every connection.
    match state.store().checkpoint().await {
        Ok(true) => tracing::info!("database checkpointed"),
        Ok(false) => tracing::warn!("database checkpoint incomplete: a reader held it back"),
        Err(e) => tracing::warn!(error = %e, "database checkpoint failed"),
    }
    state.store().close().await;
    // Only now: a database connection the health listener's runtime opened needs it until
    // the store is closed.
    if let Some(health) = health {
        health.stop(Duration::from_secs(2));
    }
    if let Some(lock) = local {
        let _ = std::fs::remove_file(&lock.paths().socket);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
