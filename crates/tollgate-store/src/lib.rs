//! Tollgate's persistence.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: the database URL picks
//! SQLite (`sqlite://…`, the embedded default) or PostgreSQL (`postgres://…`). Every query is
//! written once, in the SQL both understand (`$1` placeholders, `ON CONFLICT`, `RETURNING`),
//! and the same test suite runs against both. Where the backends differ (connection set-up,
//! migration locking, change notifications) the difference is confined to this module and
//! [`notify`].

pub mod applications;
pub mod cluster;
pub mod copy;
pub mod devices;
mod error;
pub mod flows;
pub mod ids;
pub mod list;
mod migrate;
pub mod notify;
pub mod orgs;
pub mod states;
pub mod tokens;
pub mod users;

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use error::StoreError;
pub use ids::Id;
pub use notify::Change;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// How the connection pool behaves.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Pooled connections, at most.
    pub max_connections: u32,
    /// How long a query waits for a connection (including reconnecting to a database that is
    /// down) before it fails as [`StoreError::Unavailable`], which the server answers with 503.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Called after commit with every change a write made (see [`Store::on_change`]).
pub type ChangeHook = Arc<dyn Fn(&Change) + Send + Sync>;

/// Makes committed changes take effect beyond this process's caches before a write returns
/// (see [`Store::set_propagation`]): on a node of a PostgreSQL cluster, every other node
/// confirms it has applied them (or its cache lease has run out); in a `tollgate` command
/// beside a server on the same SQLite file, the server confirms it has applied them.
pub trait Propagate: Send + Sync {
    /// `changes` have been committed (and applied by this process's [`ChangeHook`]): return
    /// once they are in effect wherever an answer could still depend on the state before them.
    /// An error means the change is saved but that could not be confirmed.
    fn propagate<'a>(
        &'a self,
        changes: &'a [Change],
    ) -> futures_util::future::BoxFuture<'a, Result<()>>;
}

/// The database, with the schema migrated.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    hook: Arc<RwLock<Option<ChangeHook>>>,
    propagation: Arc<RwLock<Option<Arc<dyn Propagate>>>>,
    /// SQLite: whose turn it is to write (see [`Store::begin_write`]).
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction; on SQLite it also holds this process's turn to write until it ends.
/// Dereferences to the connection, so `&mut *tx` is what queries execute on.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Merge kept-but-uninterpreted fields from a PATCH into a record's; `null` removes a field.
pub fn merge_extra(
    target: &mut serde_json::Map<String, serde_json::Value>,
    change: &serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in change {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

impl Store {
    /// Connect to `url`, create the SQLite file if needed, and apply pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, 16).await
    }

    /// As [`Store::connect`], with at most `max_connections` pooled connections.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store> {
        Self::open(
            url,
            &StoreOptions {
                max_connections,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// Connect with `options`, create the SQLite file if needed (unless the URL says another
    /// `mode=`), and apply pending migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let connect = AnyConnectOptions::from_str(&url).map_err(StoreError::from_sqlx)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed while one writer commits; a busy timeout
                        // makes concurrent writers (another `tollgate` process, say) wait
                        // instead of failing; foreign keys give us ON DELETE CASCADE.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(StoreError::from_sqlx)?;
        let store = Store {
            pool,
            backend,
            url,
            hook: Arc::default(),
            propagation: Arc::default(),
            writer: Arc::default(),
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL this store was opened with (for the change listener). Holds credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Does the database answer?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Have `hook` called, right after commit, with every change this store's writes make,
    /// so caches on this node are updated before the write returns.
    pub fn on_change(&self, hook: ChangeHook) {
        *self.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Have every write that records changes wait, after its commit, until `propagation`
    /// says they are in effect beyond this process (see [`Propagate`]).
    pub fn set_propagation(&self, propagation: Arc<dyn Propagate>) {
        *self.propagation.write().unwrap_or_else(|p| p.into_inner()) = Some(propagation);
    }

    /// Announce `changes` to other nodes inside `tx`, commit, tell this node's hook, then
    /// wait until they are in effect everywhere ([`Store::propagate`]).
    pub(crate) async fn commit_with(&self, mut tx: WriteTx, changes: &[Change]) -> Result<()> {
        for change in changes {
            notify::send(self.backend, &mut tx, change).await?;
        }
        tx.commit().await?;
        let hook = self.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            for change in changes {
                hook(change);
            }
        }
        self.propagate(changes).await
    }

    /// Wait until `changes`, already committed, are in effect wherever they matter (the
    /// [`Propagate`] set with [`Store::set_propagation`]; nothing to wait for without one).
    pub async fn propagate(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let propagation = self
            .propagation
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match propagation {
            Some(p) => p.propagate(changes).await,
            None => Ok(()),
        }
    }

    /// Begin a transaction that writes (every write transaction of the store uses this).
    ///
    /// On SQLite, writers take turns in this process (first come, first served) and the
    /// transaction takes the database's write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that has read and then tries to write fails at once with "database is
    /// locked" when another connection wrote in between, and writers left to SQLite's busy
    /// handler wait by sleeping and polling, which under concurrent ingestion gave a p99 of
    /// hundreds of milliseconds (see BENCHMARKS.md). Other processes on the same file (the
    /// `tollgate` command) still wait through the busy timeout.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let turn = self.writer.clone().lock_owned().await;
                WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: Some(turn),
                }
            }
            Backend::Postgres => WriteTx {
                tx: self.pool.begin().await?,
                _turn: None,
            },
        })
    }

    /// Close every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
