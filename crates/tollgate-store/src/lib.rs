//! Tollgate's persistence.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: the database URL picks
//! SQLite (`sqlite://…`, the embedded default) or PostgreSQL (`postgres://…`). Every query is
//! written once, in the SQL both understand (`$1` placeholders, `ON CONFLICT`, `RETURNING`),
//! and the same test suite runs against both. Where the backends differ (connection set-up,
//! migration locking, change notifications, row locks) the difference is confined to this
//! module, [`actor`] and [`notify`].
//!
//! **How writes are made.** Every write applies one intent inside one transaction, correct at
//! PostgreSQL's default READ COMMITTED: a single statement, or a row read `FOR UPDATE` and
//! then written in the same transaction. Never a read-modify-write of a whole row read without
//! a lock: between the read and the write another transaction may commit a change, and the
//! write would undo it. A PATCH is merged inside the transaction into the row as it is then;
//! an invariant that spans rows (an organization keeps an administrator) is checked under a
//! lock that makes the changes it concerns take turns. And every write a request performs
//! takes the [`Actor`] it was authorized for and re-checks its credential as its first
//! statement (see [`actor`]).

pub mod actor;
pub mod applications;
pub mod audit;
pub mod backup;
pub mod check;
mod checkpointer;
pub mod cluster;
pub mod console;
pub mod copy;
pub mod devices;
mod error;
pub mod flows;
mod group_commit;
pub use group_commit::GroupCommitStats;
pub mod ids;
pub mod invites;
pub mod lifecycle;
pub mod lineage;
pub mod list;
mod migrate;
pub mod notify;
pub mod orgs;
pub mod policy;
pub mod posture;
pub mod states;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

pub use actor::{Actor, Credential, Revoked};
pub use error::StoreError;
pub use ids::Id;
pub use notify::{Change, Part};

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
    /// SQLite: the most pages the database file may grow to (`PRAGMA max_page_count`, set on
    /// every connection). A write that needs more fails exactly as on a full disk. For tests
    /// and quotas; `None` leaves SQLite's default (no practical limit).
    pub sqlite_max_page_count: Option<u64>,
    /// PostgreSQL: the session's `statement_timeout`, so that a statement nobody waits for
    /// any more (the request gave up at its deadline) does not keep a backend busy. `None`
    /// for no limit (copying a whole deployment, say). Migrations run without it.
    pub statement_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_max_page_count: None,
            statement_timeout: None,
        }
    }
}

/// The SQL run on every new SQLite connection. The busy timeout comes first, so that even
/// switching to WAL waits for another process that holds a lock (two servers starting on one
/// new file) instead of failing. WAL lets readers proceed while one writer commits; foreign
/// keys give us ON DELETE CASCADE. `synchronous = NORMAL` in WAL mode: a commit is written to
/// the log (to the operating system, not fsynced) before it returns, so it survives the
/// process being killed; a power loss can lose the last commits, never consistency.
/// Checkpoints are a background task's ([`checkpointer`]): a commit runs one only when the
/// log has grown past 32,768 pages (the task fell far behind).
const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                            PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                            PRAGMA wal_autocheckpoint = 32768;";

/// The file a SQLite URL names (`None` for in-memory databases).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

/// The marker written beside a SQLite database once it has been initialised: while it exists,
/// an empty (0-byte) database file is refused rather than silently re-initialised.
pub fn init_marker(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".initialized");
    db.with_file_name(name)
}

/// Refuse an empty database file that has signs of having held data.
fn refuse_emptied_database(db: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(db) else {
        return Ok(()); // a new installation: the file is created
    };
    if meta.len() > 0 {
        return Ok(());
    }
    let mut evidence = Vec::new();
    for sibling in [
        init_marker(db),
        with_suffix(db, "-wal"),
        with_suffix(db, "-shm"),
    ] {
        if sibling.exists() {
            evidence.push(sibling.display().to_string());
        }
    }
    if evidence.is_empty() {
        return Ok(()); // an empty file in a new place: initialised like a missing one
    }
    Err(StoreError::EmptiedDatabase {
        path: db.display().to_string(),
        evidence: evidence.join(", "),
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_init_marker(db: &Path) {
    let marker = init_marker(db);
    if marker.exists() {
        return;
    }
    let text = format!(
        "This file records that {} holds a Tollgate database.\n\
         While it exists, Tollgate refuses to start over an empty (0-byte) database file\n\
         instead of creating a fresh installation. Remove it only to start afresh.\n",
        db.file_name().unwrap_or_default().to_string_lossy()
    );
    if let Err(e) = std::fs::write(&marker, text) {
        tracing::warn!(error = %e, path = %marker.display(), "could not write the database marker");
    }
}

/// Open one connection to the SQLite file first, outside the pool: a file that is not a
/// database or is damaged then fails with SQLite's own message and the file's name at once
/// (the pool would retry a failing connection until its timeout and say only that it timed
/// out). Another process holding a lock (two starting at once) is waited for, up to `wait`.
async fn probe_sqlite(
    connect: &AnyConnectOptions,
    db: &Path,
    wait: Duration,
    read_tables: bool,
) -> Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let error = match probe_sqlite_once(connect, read_tables).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let busy = matches!(&error, sqlx::Error::Database(d)
            if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)));
        if busy && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        return Err(StoreError::CannotOpen {
            path: db.display().to_string(),
            message: match &error {
                sqlx::Error::Database(d) => d.message().to_owned(),
                e => e.to_string(),
            },
        });
    }
}

async fn probe_sqlite_once(
    connect: &AnyConnectOptions,
    read_tables: bool,
) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::AnyConnection::connect_with(connect).await?;
    let result = async {
        sqlx::raw_sql(SQLITE_SETUP).execute(&mut conn).await?;
        if !read_tables {
            return Ok(());
        }
        // Reads the schema page and the root pages of the tables read at start-up.
        sqlx::query("SELECT name, rootpage FROM sqlite_master")
            .fetch_all(&mut conn)
            .await?;
        for table in ["tollgate_migrations", "users", "api_tokens"] {
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(table)
                    .fetch_optional(&mut conn)
                    .await?;
            if exists.is_some() {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT 1 FROM \"{table}\" LIMIT 1"
                )))
                .fetch_optional(&mut conn)
                .await?;
            }
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    conn.close().await.ok();
    result
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
    /// SQLite: the database file.
    path: Option<PathBuf>,
    max_page_count: Option<u64>,
    /// SQLite: state reports committed together ([`group_commit`]).
    group: Arc<group_commit::GroupCommit>,
}

/// A write transaction; on SQLite it also holds this process's turn to write until it ends.
/// Dereferences to the connection, so `&mut *tx` is what queries execute on.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// Which SQL dialect the row locks are written in (see [`actor::Lock`]).
    pub(crate) backend: Backend,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// This process's turn to write on SQLite, held across several transactions by
/// [`group_commit`].
pub(crate) type WriteTurn = tokio::sync::OwnedMutexGuard<()>;

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Commit, and keep the turn to write for another transaction.
    pub(crate) async fn commit_keeping_turn(self) -> (Result<()>, Option<WriteTurn>) {
        let WriteTx { tx, turn, .. } = self;
        (tx.commit().await.map_err(StoreError::from), turn)
    }

    /// Roll back, and keep the turn to write for another transaction.
    pub(crate) async fn rollback_keeping_turn(self) -> Option<WriteTurn> {
        let WriteTx { tx, turn, .. } = self;
        let _ = tx.rollback().await;
        turn
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

/// The schema version this build migrates databases to (its last migration).
pub fn schema_version() -> i64 {
    migrate::SCHEMA_VERSION
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
    ///
    /// Refused before anything is written: a SQLite file that is not a database or is damaged
    /// ([`StoreError::CannotOpen`], with the file and SQLite's message), an empty file where a
    /// database was ([`StoreError::EmptiedDatabase`]), a schema newer than this build knows
    /// ([`StoreError::NewerSchema`]).
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store> {
        let store = Self::open_unmigrated(url, options, true).await?;
        migrate::run(&store).await?;
        if let Some(path) = &store.path {
            write_init_marker(path);
            checkpointer::start(store.pool.clone(), Arc::downgrade(&store.writer));
        }
        Ok(store)
    }

    /// Open an existing database as it is: no file is created and no migration applied (for
    /// `tollgate db check`).
    pub async fn open_existing(url: &str, options: &StoreOptions) -> Result<Store> {
        if let Some(path) = sqlite_path(url)
            && !path.exists()
        {
            return Err(StoreError::CannotOpen {
                path: path.display().to_string(),
                message: "no such file".into(),
            });
        }
        Self::open_unmigrated(url, options, false).await
    }

    async fn open_unmigrated(url: &str, options: &StoreOptions, create: bool) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            let mode = if create { "mode=rwc" } else { "mode=rw" };
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(mode);
        }
        let path = match backend {
            Backend::Sqlite => sqlite_path(&url),
            Backend::Postgres => None,
        };
        let connect = AnyConnectOptions::from_str(&url).map_err(StoreError::from_sqlx)?;
        if let Some(path) = &path {
            refuse_emptied_database(path)?;
            // `db check` reads a damaged file to list its problems; start-up refuses it.
            probe_sqlite(&connect, path, options.acquire_timeout, create).await?;
        }
        let max_page_count = options.sqlite_max_page_count;
        let statement_timeout_ms = options
            .statement_timeout
            .map(|t| t.as_millis().max(1))
            .filter(|_| backend == Backend::Postgres);
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // sqlx pings every connection it hands out by default. A PostgreSQL connection
            // can die with its server, and the ping finds that before a query does; a SQLite
            // connection is a thread of this process over an open file, which has nothing
            // to find, and its ping was one more round trip to that thread inside every
            // write's turn (BENCHMARKS.md, *No ping before a SQLite connection is used*).
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_SETUP).await?;
                        if let Some(pages) = max_page_count {
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA max_page_count = {pages}"
                            )))
                            .await?;
                        }
                    }
                    if let Some(ms) = statement_timeout_ms {
                        sqlx::query(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            // A connection whose transaction could not be ended (a COMMIT that failed on a
            // full disk, after which SQLite rolled back by itself and the driver's ROLLBACK
            // failed too) still counts as inside a transaction: every later BEGIN on it would
            // fail. Such a connection is closed, not reused. The ping first lets the driver
            // finish a rollback queued when the transaction was dropped.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !conn.is_in_transaction() {
                        // The usual case: no round trip on the hot path.
                        return Ok(true);
                    }
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a database connection left inside a failed transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(connect)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Store {
            pool,
            backend,
            url,
            hook: Arc::default(),
            propagation: Arc::default(),
            writer: Arc::default(),
            path,
            max_page_count,
            group: Arc::default(),
        })
    }

    /// SQLite: how many transactions committed state reports together, and how many
    /// requests they held ([`group_commit`]; zero on PostgreSQL).
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.group.stats()
    }

    /// SQLite: the database file.
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.path.as_deref()
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

    /// Tell this node's hook of `changes` committed without [`Store::commit_with`] (the group
    /// commit of state reports, which commits many requests in one transaction). Only for
    /// changes nobody else waits for: nothing is announced to other nodes or propagated.
    pub(crate) fn applied(&self, changes: &[Change]) {
        let hook = self.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            for change in changes {
                hook(change);
            }
        }
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
        self.begin_write_in(None).await
    }

    /// SQLite: wait for this process's turn to write (see [`Store::begin_write_in`]).
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        self.writer.clone().lock_owned().await
    }

    /// SQLite: begin a write transaction in `turn`; when it cannot begin, the turn is given
    /// back with the error (see [`group_commit`]).
    pub(crate) async fn begin_keeping_turn(
        &self,
        turn: WriteTurn,
    ) -> std::result::Result<WriteTx, (StoreError, WriteTurn)> {
        match self.pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => Ok(WriteTx {
                tx,
                backend: self.backend,
                turn: Some(turn),
            }),
            Err(e) => Err((e.into(), turn)),
        }
    }

    /// Begin a write transaction in `turn` (SQLite; `None`: wait for a turn).
    pub(crate) async fn begin_write_in(&self, turn: Option<WriteTurn>) -> Result<WriteTx> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let turn = match turn {
                    Some(t) => t,
                    None => self.write_turn().await,
                };
                WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    backend: self.backend,
                    turn: Some(turn),
                }
            }
            Backend::Postgres => WriteTx {
                tx: self.pool.begin().await?,
                backend: self.backend,
                turn: None,
            },
        })
    }

    /// Begin a write by `actor`: its credential is checked (and, on PostgreSQL, locked) as the
    /// transaction's first statement, see [`actor`].
    pub(crate) async fn begin_as(&self, actor: &Actor) -> Result<WriteTx> {
        let mut tx = self.begin_write().await?;
        actor::check(&mut tx, actor, actor::Lock::KeyShare).await?;
        Ok(tx)
    }

    /// Begin a write by `actor` inside application `app`: the application row is locked with
    /// `app_lock` (`NotFound` when it is gone) and the credential checked, in the lock order of
    /// [`actor`]. A token of another application is refused as revoked there.
    pub(crate) async fn begin_in_application(
        &self,
        actor: &Actor,
        app: Id,
        app_lock: actor::Lock,
    ) -> Result<WriteTx> {
        let mut tx = self.begin_write().await?;
        check_in_application(&mut tx, actor, app, app_lock).await?;
        Ok(tx)
    }

    /// Can the database take a write now? Commits a write that changes nothing (so a disk
    /// that cannot take the write-ahead log's next page fails it), and on SQLite also
    /// checks the file against its page limit. [`StoreError::StorageFull`] when full.
    pub async fn check_writes(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE tollgate_migrations SET applied_at = applied_at \
             WHERE version = (SELECT MIN(version) FROM tollgate_migrations)",
        )
        .execute(&mut *tx)
        .await?;
        if self.backend == Backend::Sqlite && self.max_page_count.is_some() {
            let (pages, max, free): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT page_count FROM pragma_page_count()), \
                 (SELECT max_page_count FROM pragma_max_page_count()), \
                 (SELECT freelist_count FROM pragma_freelist_count())",
            )
            .fetch_one(&mut *tx)
            .await?;
            if pages >= max && free == 0 {
                return Err(StoreError::StorageFull(None));
            }
        }
        tx.commit().await
    }

    /// SQLite: copy the write-ahead log into the database file and empty it (`PRAGMA
    /// wal_checkpoint(TRUNCATE)`), so the file alone holds everything. Called at shutdown.
    /// Returns whether the checkpoint completed (false: a reader held it back).
    pub async fn checkpoint(&self) -> Result<bool> {
        if self.backend != Backend::Sqlite {
            return Ok(true);
        }
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await?;
        Ok(busy == 0)
    }

    /// Close every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The checks of [`Store::begin_in_application`], in a transaction already begun: `actor`'s
/// credential holds and application `app` exists, locked with `app_lock`.
pub(crate) async fn check_in_application(
    tx: &mut WriteTx,
    actor: &Actor,
    app: Id,
    app_lock: actor::Lock,
) -> Result<()> {
    match actor.credential() {
        Credential::ApiToken { application, .. } if *application != app => {
            Err(StoreError::Revoked(Revoked::TokenDeleted))
        }
        // The token's check locks its application first.
        Credential::ApiToken { .. } => actor::check(tx, actor, app_lock).await,
        _ => {
            actor::check(tx, actor, app_lock).await?;
            actor::lock_application(tx, app, app_lock).await
        }
    }
}
