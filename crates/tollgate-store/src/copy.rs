//! Copying a whole deployment from one database to another (typically the embedded SQLite
//! file to PostgreSQL when a team moves to several nodes): `tollgate db copy`.
//!
//! * Both databases are first brought to the current schema (as starting the server would);
//!   they must then have applied the same migrations.
//! * The source is read in one transaction, so the copy is one consistent snapshot even if
//!   something writes to it meanwhile (stop the servers anyway: later writes are not copied).
//! * The target is written in one transaction: every table of [`TABLES`], in that order
//!   (parents before children, so foreign keys hold), in multi-row batches. Row counts of the
//!   source snapshot, the rows written and the target's own count are compared per table
//!   before commit; any difference rolls everything back.
//! * A target that already holds data is refused unless [`CopyOptions::replace_target`] is
//!   set, in which case its rows are deleted in the same transaction.
//! * Columns are copied by name, with the types the target declares. Digests and password
//!   hashes are copied as they are: no secret is ever in clear, before or after.
//! * On PostgreSQL the commit carries a `Change::All` notification, so nodes already running
//!   on the target drop every cached credential.
//!
//! A table the copier does not know makes it refuse (it would be left behind); the tests
//! check that [`TABLES`] names every table the migrations create.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row, ValueRef};

use crate::notify::Change;
use crate::{Backend, Store, StoreError};

/// Every table of the schema, parents before children. A migration that adds a table adds it
/// here too (a test fails otherwise).
pub const TABLES: &[&str] = &[
    "users",
    "sessions",
    "recovery_codes",
    "orgs",
    "org_members",
    "applications",
    "application_token_policies",
    "org_token_policies",
    "member_application_roles",
    "api_tokens",
    "token_usage",
    "token_requests",
    "token_quotas",
    "devices",
    "device_tags",
    "device_reports",
    "device_points",
    "device_commands",
    "flows",
    "org_invites",
    "console_form_keys",
    "console_reveals",
    "audit_logs",
    "webhooks",
    "webhook_deliveries",
];

/// The migration runner's own table: each database keeps its own.
const MIGRATIONS_TABLE: &str = "tollgate_migrations";

/// Tables of running nodes' state (which nodes serve the database), not of the deployment:
/// never copied, never cleared.
pub const RUNTIME_TABLES: &[&str] = &["cluster_nodes", "leases"];

/// Most bound parameters in one INSERT (SQLite allows 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 10_000;
/// Most rows in one INSERT.
const MAX_ROWS: usize = 500;

#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Delete whatever the target holds (in the same transaction) instead of refusing.
    pub replace_target: bool,
}

/// What was copied from one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    /// Rows in the source snapshot.
    pub source: i64,
    /// Rows written.
    pub copied: i64,
    /// Rows the target holds afterwards (counted before commit).
    pub target: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the target database already holds data ({table} has {rows} rows): copy into an empty \
         database, or pass --replace-target to delete everything it holds first"
    )]
    TargetNotEmpty { table: &'static str, rows: i64 },
    #[error(
        "the {which} database has a table this version does not know ({table}): it would not be \
         copied, so nothing was; use the Tollgate version that created that database"
    )]
    UnknownTable { which: &'static str, table: String },
    #[error("the two databases have different schemas: {0}")]
    SchemaMismatch(String),
    #[error("column {column} of {table} has type {declared}, which the copier does not handle")]
    UnsupportedType {
        table: &'static str,
        column: String,
        declared: String,
    },
    #[error(
        "row counts of {table} differ (source {source_rows}, written {copied}, target \
         {target_rows}): nothing was committed"
    )]
    CountMismatch {
        table: &'static str,
        source_rows: i64,
        copied: i64,
        target_rows: i64,
    },
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(StoreError::from_sqlx(e))
    }
}

/// Copy every record of `source` into `target`. Returns the per-table counts, verified.
pub async fn copy(
    source: &Store,
    target: &Store,
    options: &CopyOptions,
) -> Result<Vec<TableCount>, CopyError> {
    for (which, store) in [("source", source), ("target", target)] {
        if let Some(table) = unlisted_tables(store).await?.into_iter().next() {
            return Err(CopyError::UnknownTable { which, table });
        }
    }
    let (from_versions, to_versions) = (
        migration_versions(source).await?,
        migration_versions(target).await?,
    );
    if from_versions != to_versions {
        return Err(CopyError::SchemaMismatch(format!(
            "the source has applied migrations {from_versions:?}, the target {to_versions:?}"
        )));
    }

    let mut src = source.pool.begin().await?;
    if source.backend == Backend::Postgres {
        // One snapshot for every table and every count.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *src)
            .await?;
    }
    let mut dst = target.begin_write().await?;

    for table in TABLES {
        let rows = count(&mut dst, table).await?;
        if rows > 0 && !options.replace_target {
            return Err(CopyError::TargetNotEmpty { table, rows });
        }
    }
    if options.replace_target {
        for table in TABLES.iter().rev() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM \"{table}\"")))
                .execute(&mut *dst)
                .await?;
        }
    }

    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = columns(&mut dst, target.backend, table).await?;
        let mut source_columns: Vec<String> = columns_of(&mut src, source.backend, table)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        source_columns.sort();
        names.sort();
        if source_columns != names {
            return Err(CopyError::SchemaMismatch(format!(
                "{table} has columns {source_columns:?} in the source, {names:?} in the target"
            )));
        }
        let source_rows = count(&mut src, table).await?;
        let copied = copy_table(&mut src, &mut dst, table, &columns).await?;
        let target_rows = count(&mut dst, table).await?;
        if source_rows != copied || copied != target_rows {
            return Err(CopyError::CountMismatch {
                table,
                source_rows,
                copied,
                target_rows,
            });
        }
        counts.push(TableCount {
            table,
            source: source_rows,
            copied,
            target: target_rows,
        });
    }
    // Nodes already serving from the target must forget everything they cached (a server
    // running on a SQLite target hears it through its control socket, PostgreSQL nodes
    // through the change feed); the copy returns once they have.
    src.rollback().await?;
    target.commit_with(dst, &[Change::All]).await?;
    Ok(counts)
}

/// Tables in `store`'s database that [`TABLES`] does not name (the migration table aside).
pub async fn unlisted_tables(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut conn = store.pool.acquire().await?;
    let mut out: Vec<String> = table_names(&mut conn, store.backend)
        .await?
        .into_iter()
        .filter(|t| {
            t != MIGRATIONS_TABLE
                && !TABLES.contains(&t.as_str())
                && !RUNTIME_TABLES.contains(&t.as_str())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Every table in `store`'s database (the migration table included).
pub async fn tables(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut conn = store.pool.acquire().await?;
    let mut out = table_names(&mut conn, store.backend).await?;
    out.sort();
    Ok(out)
}

/// Rows per table of [`TABLES`] in `store`'s database.
pub async fn row_counts(store: &Store) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut conn = store.pool.acquire().await?;
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        out.push((*table, count(&mut conn, table).await?));
    }
    Ok(out)
}

async fn migration_versions(store: &Store) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM tollgate_migrations ORDER BY version")
            .fetch_all(&store.pool)
            .await?,
    )
}

async fn count(conn: &mut AnyConnection, table: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM \"{table}\""
    )))
    .fetch_one(conn)
    .await?)
}

async fn table_names(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<String>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        }
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    Ok(sqlx::query_scalar(sql).fetch_all(conn).await?)
}

/// Column names and declared types, in table order.
async fn columns_of(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    let rows = sqlx::query(sql).bind(table).fetch_all(conn).await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bytes,
    Bool,
}

impl Kind {
    /// The kind of a declared column type, as either backend spells it.
    fn of_declared(declared: &str) -> Option<Kind> {
        let d = declared.to_ascii_uppercase();
        Some(if d.contains("INT") {
            Kind::Int
        } else if d.contains("BOOL") {
            Kind::Bool
        } else if d.contains("BYTEA") || d.contains("BLOB") {
            Kind::Bytes
        } else if d.contains("DOUBLE") || d.contains("REAL") || d.contains("FLOAT") {
            Kind::Float
        } else if d.contains("TEXT") || d.contains("CHAR") || d.contains("CLOB") {
            Kind::Text
        } else {
            return None;
        })
    }
}

struct Column {
    name: String,
    kind: Kind,
}

async fn columns(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &'static str,
) -> Result<Vec<Column>, CopyError> {
    columns_of(conn, backend, table)
        .await?
        .into_iter()
        .map(|(name, declared)| match Kind::of_declared(&declared) {
            Some(kind) => Ok(Column { name, kind }),
            None => Err(CopyError::UnsupportedType {
                table,
                column: name,
                declared,
            }),
        })
        .collect()
}

/// One value, typed as the target column is.
enum Value {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

impl Value {
    fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Int(None)
                | Value::Float(None)
                | Value::Text(None)
                | Value::Bytes(None)
                | Value::Bool(None)
        )
    }
}

fn decode(row: &AnyRow, i: usize, kind: Kind) -> Result<Value, sqlx::Error> {
    let null = row.try_get_raw(i)?.is_null();
    Ok(match kind {
        Kind::Int if null => Value::Int(None),
        Kind::Float if null => Value::Float(None),
        Kind::Text if null => Value::Text(None),
        Kind::Bytes if null => Value::Bytes(None),
        Kind::Bool if null => Value::Bool(None),
        Kind::Int => Value::Int(Some(row.try_get(i)?)),
        // SQLite may hand back a whole number stored in a REAL column as an integer.
        Kind::Float => Value::Float(Some(
            row.try_get::<f64, _>(i)
                .or_else(|_| row.try_get::<i64, _>(i).map(|v| v as f64))?,
        )),
        Kind::Text => Value::Text(Some(row.try_get(i)?)),
        Kind::Bytes => Value::Bytes(Some(row.try_get(i)?)),
        // SQLite keeps booleans as 0 and 1.
        Kind::Bool => Value::Bool(Some(
            row.try_get::<bool, _>(i)
                .or_else(|_| row.try_get::<i64, _>(i).map(|v| v != 0))?,
        )),
    })
}

async fn copy_table(
    src: &mut AnyConnection,
    dst: &mut AnyConnection,
    table: &'static str,
    columns: &[Column],
) -> Result<i64, CopyError> {
    let list = columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let per_batch = (MAX_PARAMS / columns.len().max(1)).clamp(1, MAX_ROWS);
    let select = format!("SELECT {list} FROM \"{table}\"");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(src);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_batch);
    let mut copied = 0i64;
    while let Some(row) = rows.try_next().await? {
        let values = columns
            .iter()
            .enumerate()
            .map(|(i, c)| decode(&row, i, c.kind))
            .collect::<Result<Vec<_>, _>>()?;
        batch.push(values);
        if batch.len() == per_batch {
            copied += insert(dst, table, &list, columns.len(), &mut batch).await?;
        }
    }
    if !batch.is_empty() {
        copied += insert(dst, table, &list, columns.len(), &mut batch).await?;
    }
    Ok(copied)
}

async fn insert(
    dst: &mut AnyConnection,
    table: &str,
    list: &str,
    width: usize,
    batch: &mut Vec<Vec<Value>>,
) -> Result<i64, CopyError> {
    let mut sql = format!("INSERT INTO \"{table}\" ({list}) VALUES ");
    let mut n = 0;
    for (r, row) in batch.iter().enumerate() {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (c, v) in row.iter().enumerate().take(width) {
            if c > 0 {
                sql.push_str(", ");
            }
            // NULLs are written as literals, never bound: sqlx 0.9's Any driver sends a NULL
            // f64 to PostgreSQL as float4, and the statement prepared with that type then
            // rejects a real f64 in the same place in the next batch.
            if v.is_null() {
                sql.push_str("NULL");
            } else {
                n += 1;
                sql.push_str(&format!("${n}"));
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in batch.drain(..) {
        for v in row.into_iter().filter(|v| !v.is_null()) {
            q = match v {
                Value::Int(v) => q.bind(v),
                Value::Float(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
            };
        }
    }
    let done = q.execute(&mut *dst).await?;
    Ok(i64::try_from(done.rows_affected()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(Kind::of_declared("BIGINT"), Some(Kind::Int));
        assert_eq!(Kind::of_declared("bigint"), Some(Kind::Int));
        assert_eq!(Kind::of_declared("integer"), Some(Kind::Int));
        assert_eq!(Kind::of_declared("BYTEA"), Some(Kind::Bytes));
        assert_eq!(Kind::of_declared("bytea"), Some(Kind::Bytes));
        assert_eq!(Kind::of_declared("TEXT"), Some(Kind::Text));
        assert_eq!(Kind::of_declared("character varying"), Some(Kind::Text));
        assert_eq!(Kind::of_declared("DOUBLE PRECISION"), Some(Kind::Float));
        assert_eq!(Kind::of_declared("boolean"), Some(Kind::Bool));
        assert_eq!(Kind::of_declared("jsonb"), None);
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap()
    }

    /// Other work adds tables; a table missing from TABLES would be silently left behind by
    /// `tollgate db copy` (well, refused at run time). This catches it at test time.
    #[tokio::test]
    async fn tables_lists_every_table_the_migrations_create() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        assert_eq!(unlisted_tables(&store).await.unwrap(), Vec::<String>::new());
        let all = tables(&store).await.unwrap();
        for t in TABLES {
            assert!(all.iter().any(|a| a == t), "{t} is listed but not created");
        }
        assert!(all.iter().any(|a| a == MIGRATIONS_TABLE));
        for t in RUNTIME_TABLES {
            assert!(all.iter().any(|a| a == t), "{t} is listed but not created");
        }
        assert_eq!(all.len(), TABLES.len() + RUNTIME_TABLES.len() + 1);
    }

    /// Parents before children: every foreign key points to a table earlier in TABLES.
    #[tokio::test]
    async fn tables_come_in_foreign_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        for (i, table) in TABLES.iter().enumerate() {
            let parents: Vec<String> =
                sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                    .bind(*table)
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
            for p in parents {
                let at = TABLES.iter().position(|t| *t == p).unwrap();
                assert!(
                    at < i,
                    "{table} references {p}, which comes later in TABLES"
                );
            }
        }
        // The check is not vacuous: api_tokens does reference applications.
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list('api_tokens')")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(parents, vec!["applications".to_owned()]);
    }

    #[tokio::test]
    async fn an_unknown_table_or_a_non_empty_target_is_refused() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (sqlite_store(&d1).await, sqlite_store(&d2).await);
        let user = crate::users::NewUser {
            email: "a@example.com",
            password_hash: "$argon2id$fake",
            first_name: "A",
            last_name: "",
        };
        a.create_user(&user).await.unwrap();
        let counts = copy(&a, &b, &CopyOptions::default()).await.unwrap();
        assert_eq!(counts[0].table, "users");
        assert_eq!((counts[0].source, counts[0].target), (1, 1));
        // Again: the target now holds that user.
        match copy(&a, &b, &CopyOptions::default()).await {
            Err(CopyError::TargetNotEmpty { table, rows }) => {
                assert_eq!((table, rows), ("users", 1));
            }
            other => panic!("expected TargetNotEmpty, got {other:?}"),
        }
        // Replacing works and leaves one copy, not two.
        let replace = CopyOptions {
            replace_target: true,
        };
        copy(&a, &b, &replace).await.unwrap();
        assert_eq!(b.count_users().await.unwrap(), 1);

        sqlx::query("CREATE TABLE gadgets (id TEXT PRIMARY KEY)")
            .execute(a.pool())
            .await
            .unwrap();
        match copy(&a, &b, &replace).await {
            Err(CopyError::UnknownTable { which, table }) => {
                assert_eq!((which, table.as_str()), ("source", "gadgets"));
            }
            other => panic!("expected UnknownTable, got {other:?}"),
        }
    }
}
