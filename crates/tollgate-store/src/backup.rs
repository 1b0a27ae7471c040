//! Online backups of the embedded SQLite database, and restoring them (`tollgate db backup`,
//! `tollgate db restore`). PostgreSQL deployments use `pg_dump` / `pg_restore` instead (see
//! docs/deployment.md).
//!
//! * **Backup** is SQLite's `VACUUM INTO`: it reads the database in one read transaction, so
//!   the copy is exactly the database as of the moment that transaction began: every write
//!   committed (and so acknowledged to a client) before then is in it, none after. Writers
//!   are not blocked (WAL mode), so it runs while the server serves. The copy is compact, has
//!   no `-wal` file, and is checked (`PRAGMA integrity_check`) before the command reports
//!   success.
//! * **Restore** checks the backup (SQLite's integrity check, Tollgate's migrations table, a
//!   schema no newer than this version's), keeps the database it replaces as
//!   `tollgate.db.before-restore-<time>` (itself a consistent copy), and moves the backup into
//!   place in one rename. The caller must make sure no server uses the database meanwhile
//!   (the command holds the lock that `serve` takes).

use std::path::{Path, PathBuf};

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: choose a new file name (a backup never overwrites anything)")]
    TargetExists(PathBuf),
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} is not a Tollgate backup: {why}. Nothing was changed")]
    NotABackup { path: PathBuf, why: String },
    #[error(
        "{path} was made by a newer Tollgate (schema version {found}; this one knows {known}): \
         restore it with that version. Nothing was changed"
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the backup failed its integrity check ({0}); it was removed")]
    Damaged(String),
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Store(StoreError::from_sqlx(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a backup or restore found in the database it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The schema version (last migration applied).
    pub schema_version: i64,
    /// Rows per table of [`crate::copy::TABLES`].
    pub rows: Vec<(&'static str, i64)>,
    /// Size of the file, in bytes.
    pub bytes: u64,
}

async fn open(path: &Path, read_only: bool) -> Result<SqliteConnection, BackupError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .create_if_missing(false);
    Ok(SqliteConnection::connect_with(&options).await?)
}

async fn summarize(conn: &mut SqliteConnection, path: &Path) -> Result<BackupSummary, BackupError> {
    let not_backup = |why: String| BackupError::NotABackup {
        path: path.to_owned(),
        why,
    };
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| not_backup(format!("SQLite cannot read it ({e})")))?;
    if check != "ok" {
        return Err(BackupError::Damaged(check));
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM tollgate_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(|_| not_backup("it has no Tollgate migrations table".to_owned()))?;
    let schema_version =
        version.ok_or_else(|| not_backup("no migration was ever applied".into()))?;
    let mut rows = Vec::new();
    for table in crate::copy::TABLES {
        // Tables of later migrations may be missing from an older backup.
        let n: Option<i64> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut *conn)
                .await
                .ok();
        if let Some(n) = n {
            rows.push((*table, n));
        }
    }
    let bytes = std::fs::metadata(path).map_err(io(path))?.len();
    Ok(BackupSummary {
        schema_version,
        rows,
        bytes,
    })
}

/// Copy the SQLite database `db` (which a server may be using) to the new file `to`.
pub async fn backup_sqlite(db: &Path, to: &Path) -> Result<BackupSummary, BackupError> {
    if to.exists() {
        return Err(BackupError::TargetExists(to.to_owned()));
    }
    if !db.exists() {
        return Err(BackupError::Missing(db.to_owned()));
    }
    {
        let mut conn = open(db, false).await?;
        // Wait for the write lock if a commit is checkpointing; readers are never blocked.
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await?;
        sqlx::query("VACUUM INTO $1")
            .bind(to.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
        conn.close().await?;
    }
    let mut copy = open(to, true).await?;
    let summary = summarize(&mut copy, to).await;
    copy.close().await.ok();
    if summary.is_err() {
        std::fs::remove_file(to).ok();
    }
    summary
}

/// Check that `from` is a Tollgate backup this version can restore (known schema, intact).
pub async fn check_backup(from: &Path, known_version: i64) -> Result<BackupSummary, BackupError> {
    if !from.exists() {
        return Err(BackupError::Missing(from.to_owned()));
    }
    let mut conn = open(from, true)
        .await
        .map_err(|e| BackupError::NotABackup {
            path: from.to_owned(),
            why: format!("SQLite cannot open it ({e})"),
        })?;
    let summary = summarize(&mut conn, from).await;
    conn.close().await.ok();
    let summary = summary?;
    if summary.schema_version > known_version {
        return Err(BackupError::Newer {
            path: from.to_owned(),
            found: summary.schema_version,
            known: known_version,
        });
    }
    Ok(summary)
}

/// Replace the database `db` with the backup `from` (checked first). The database replaced,
/// if any, is kept as a consistent copy named `<db>.before-restore-<unix ms>`, returned. The
/// caller holds the database's lock, so no server uses it meanwhile.
pub async fn restore_sqlite(
    from: &Path,
    db: &Path,
    known_version: i64,
) -> Result<(BackupSummary, Option<PathBuf>), BackupError> {
    let summary = check_backup(from, known_version).await?;
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate.db".to_owned());
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // 1. The backup, copied beside the database (same file system: the rename is atomic).
    let incoming = db.with_file_name(format!("{name}.restoring"));
    std::fs::remove_file(&incoming).ok();
    std::fs::copy(from, &incoming).map_err(io(&incoming))?;
    std::fs::File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(io(&incoming))?;
    // 2. The current database, kept as a consistent copy (its WAL included).
    let kept = if db.exists() {
        let kept = db.with_file_name(format!("{name}.before-restore-{}", crate::now_ms()));
        let mut conn = open(db, false).await?;
        sqlx::query("VACUUM INTO $1")
            .bind(kept.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Some(kept)
    } else {
        None
    };
    // 3. Into place: the old WAL and shared-memory files belong to the old database.
    for suffix in ["-wal", "-shm"] {
        let f = db.with_file_name(format!("{name}{suffix}"));
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&f)(e)),
        }
    }
    std::fs::rename(&incoming, db).map_err(io(db))?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok((summary, kept))
}

/// The path of the database file of a `sqlite:` URL (`None` for other URLs).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}
