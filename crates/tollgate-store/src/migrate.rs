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

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_devices.sql")),
    (3, include_str!("../migrations/0003_invites_console.sql")),
    (4, include_str!("../migrations/0004_cluster.sql")),
    (5, include_str!("../migrations/0005_accounts.sql")),
    (6, include_str!("../migrations/0006_audit.sql")),
    (7, include_str!("../migrations/0007_restrictions.sql")),
    (8, include_str!("../migrations/0008_lifecycle.sql")),
    (9, include_str!("../migrations/0009_lineage.sql")),
    (10, include_str!("../migrations/0010_policy.sql")),
    (11, include_str!("../migrations/0011_webhooks.sql")),
    (12, include_str!("../migrations/0012_job_indexes.sql")),
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

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

async fn apply_pending(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<()> {
    for (version, sql) in MIGRATIONS {
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
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Migration)?;
        sqlx::query("INSERT INTO tollgate_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
