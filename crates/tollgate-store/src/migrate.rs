//! A small migration runner: numbered SQL files compiled into the binary, applied in order,
//! each in its own transaction, recorded in `tollgate_migrations`.
//!
//! Several processes may start at once on one database (two servers, or a server and
//! `tollgate user add`, on a new data directory). On PostgreSQL an advisory lock makes them
//! take turns. On SQLite each migration's transaction takes the write lock first (`BEGIN
//! IMMEDIATE`, waiting through the busy timeout) and only then reads which migrations are
//! applied, so the second process finds the first one's work done instead of failing with
//! "table … already exists".
//!
//! A database whose schema is newer than every migration here was written by a later
//! release: it is refused with both version numbers rather than opened.
//!
//! (sqlx's own migrator would need its proc-macro crate at build time; this is short.)

use sqlx::Connection;

use crate::{Backend, Result, Store, StoreError};

/// A migration: its version, its SQL, and the one backend it is for (`None`: both). A
/// migration for one backend is still recorded on the other, so both reach the same version.
struct Migration {
    version: i64,
    sql: &'static str,
    only: Option<Backend>,
}

const fn both(version: i64, sql: &'static str) -> Migration {
    Migration {
        version,
        sql,
        only: None,
    }
}

const MIGRATIONS: &[Migration] = &[
    both(1, include_str!("../migrations/0001_init.sql")),
    both(2, include_str!("../migrations/0002_devices.sql")),
    both(3, include_str!("../migrations/0003_invites_console.sql")),
    both(4, include_str!("../migrations/0004_cluster.sql")),
    both(5, include_str!("../migrations/0005_accounts.sql")),
    both(6, include_str!("../migrations/0006_audit.sql")),
    both(7, include_str!("../migrations/0007_restrictions.sql")),
    both(8, include_str!("../migrations/0008_lifecycle.sql")),
    both(9, include_str!("../migrations/0009_lineage.sql")),
    both(10, include_str!("../migrations/0010_policy.sql")),
    both(11, include_str!("../migrations/0011_webhooks.sql")),
    both(12, include_str!("../migrations/0012_job_indexes.sql")),
    Migration {
        version: 13,
        sql: include_str!("../migrations/0013_sqlite_points_without_rowid.sql"),
        only: Some(Backend::Sqlite),
    },
    Migration {
        version: 14,
        sql: include_str!("../migrations/0014_postgres_state_without_foreign_keys.sql"),
        only: Some(Backend::Postgres),
    },
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const LOCK_KEY: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tollgate_migrations \
     (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

pub(crate) async fn run(store: &Store) -> Result<()> {
    let mut conn = store.pool.acquire().await?;
    if store.backend == Backend::Postgres {
        // A migration may take longer than requests are allowed to; this connection is
        // closed afterwards rather than returned to the pool without its statement timeout.
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_pending(&mut conn, store.backend).await;
    // A new SQLite database leaves its migrations with the pages of the tables migration 13
    // replaced on the free list. A new file should be compact: free pages make a full disk
    // look like room (/health's page check), and there is nothing to keep. (An existing
    // database is not vacuumed: that could take minutes; its free pages are reused.)
    let result = match result {
        Ok(true) if store.backend == Backend::Sqlite => sqlx::raw_sql("VACUUM")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(StoreError::Migration),
        other => other.map(|_| ()),
    };
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        let _ = conn.close().await;
    }
    result
}

/// The highest schema version recorded in the database (`None`: no migration recorded).
pub(crate) async fn applied_version(store: &Store) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MAX(version) FROM tollgate_migrations")
            .fetch_one(&store.pool)
            .await?,
    )
}

/// Applies every migration not yet recorded. True if the database had none recorded (it is
/// new) and this call applied them all.
async fn apply_pending(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<bool> {
    let mut new = false;
    for Migration { version, sql, only } in MIGRATIONS {
        let mut tx = match backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        sqlx::query(CREATE_TABLE).execute(&mut *tx).await?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM tollgate_migrations")
                .fetch_one(&mut *tx)
                .await?;
        if let Some(found) = newest
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM tollgate_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        new |= *version == 1 && newest.is_none();
        if only.is_none_or(|b| b == backend) {
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Migration)?;
        }
        sqlx::query("INSERT INTO tollgate_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(new)
}
