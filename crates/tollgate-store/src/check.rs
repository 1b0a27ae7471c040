//! `tollgate db check`: is the database sound?
//!
//! SQLite: `PRAGMA integrity_check` (every page, index and constraint of the file) and
//! `PRAGMA foreign_key_check`. PostgreSQL keeps its own pages' integrity, so there the check
//! is about Tollgate's schema: its version, every table present, constraints validated, no
//! state rows of a missing device (those two tables have no foreign key there). Both:
//! the schema version against this build's, and each table's row count.

use sqlx::Row;

use crate::copy::{self, TABLES};
use crate::migrate::{self, SCHEMA_VERSION};
use crate::{Backend, Result, Store, StoreError};

/// What [`Store::check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The schema version recorded in the database (`None`: not a Tollgate database yet).
    pub schema_version: Option<i64>,
    /// The schema version this build expects.
    pub expected_version: i64,
    /// Rows per table that exists.
    pub counts: Vec<(&'static str, i64)>,
    /// Everything wrong; empty when the database is sound.
    pub problems: Vec<String>,
    /// Worth saying but not wrong (an older schema is migrated at the next start).
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Most problems listed from SQLite's integrity check (it can find thousands).
const MAX_LISTED: usize = 100;

impl Store {
    /// Check the database without changing it (see the module documentation).
    pub async fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport {
            expected_version: SCHEMA_VERSION,
            ..CheckReport::default()
        };
        if self.backend == Backend::Sqlite {
            match sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "PRAGMA integrity_check({MAX_LISTED})"
            )))
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) if rows == ["ok"] => {}
                Ok(rows) => report
                    .problems
                    .extend(rows.into_iter().map(|r| format!("integrity: {r}"))),
                Err(e) => report.problems.push(format!(
                    "integrity: the check could not finish: {}",
                    message_of(&e.into())
                )),
            }
            match sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(&self.pool)
                .await
            {
                Ok(orphans) => {
                    for row in orphans.iter().take(MAX_LISTED) {
                        let table: String = row.try_get(0).unwrap_or_default();
                        let parent: String = row.try_get(2).unwrap_or_default();
                        report.problems.push(format!(
                            "foreign key: a row of {table} refers to a missing row of {parent}"
                        ));
                    }
                }
                Err(e) => report.problems.push(format!(
                    "foreign keys: the check could not finish: {}",
                    message_of(&e.into())
                )),
            }
        }
        if let Err(e) = self.check_schema(&mut report).await {
            // A damaged file can fail the reads below; that is one more problem to list.
            report.problems.push(format!(
                "reading the schema and row counts failed: {}",
                message_of(&e)
            ));
        }
        Ok(report)
    }

    async fn check_schema(&self, report: &mut CheckReport) -> Result<()> {
        let tables = copy::tables(self).await?;
        if !tables.iter().any(|t| t == "tollgate_migrations") {
            report
                .problems
                .push("no tollgate_migrations table: this is not a Tollgate database".into());
            return Ok(());
        }
        report.schema_version = migrate::applied_version(self).await?;
        match report.schema_version {
            Some(v) if v > SCHEMA_VERSION => report.problems.push(format!(
                "the schema is version {v}, newer than this Tollgate knows (version {SCHEMA_VERSION})"
            )),
            Some(v) if v < SCHEMA_VERSION => report.notes.push(format!(
                "the schema is version {v}; the next `tollgate serve` migrates it to version {SCHEMA_VERSION}"
            )),
            None => report
                .problems
                .push("no migration is recorded in tollgate_migrations".into()),
            Some(_) => {}
        }
        for table in TABLES {
            if tables.iter().any(|t| t == table) {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM \"{table}\""
                )))
                .fetch_one(&self.pool)
                .await?;
                report.counts.push((table, n));
            } else if report.schema_version == Some(SCHEMA_VERSION) {
                report
                    .problems
                    .push(format!("the table {table} is missing"));
            }
        }
        if self.backend == Backend::Postgres {
            let invalid: Vec<String> = sqlx::query_scalar(
                "SELECT conname::text FROM pg_constraint c JOIN pg_namespace n \
                 ON n.oid = c.connamespace WHERE n.nspname = current_schema() \
                 AND NOT c.convalidated",
            )
            .fetch_all(&self.pool)
            .await?;
            for name in invalid {
                report
                    .problems
                    .push(format!("the constraint {name} is not validated"));
            }
            // These two tables have no foreign key on PostgreSQL (migration 14): what it
            // guaranteed is checked here, as SQLite's foreign_key_check does for its keys.
            for table in ["device_reports", "device_points"] {
                if !tables.iter().any(|t| t == table) {
                    continue;
                }
                let stray: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS \
                     (SELECT 1 FROM devices d WHERE d.id = x.device_id)"
                )))
                .fetch_one(&self.pool)
                .await?;
                if stray > 0 {
                    let rows = if stray == 1 { "row" } else { "rows" };
                    report.problems.push(format!(
                        "{table}: {stray} {rows} of a device that does not exist"
                    ));
                }
            }
        }
        Ok(())
    }
}
/// The database's own words where there are some.
fn message_of(e: &StoreError) -> String {
    match e {
        StoreError::Database(sqlx::Error::Database(d))
        | StoreError::StorageFull(Some(sqlx::Error::Database(d))) => d.message().to_owned(),
        e => e.to_string(),
    }
}
