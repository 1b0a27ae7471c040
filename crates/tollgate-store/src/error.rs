use thiserror::Error;

/// What can go wrong in the store. Messages never include query parameters (which may hold
/// digests or password hashes).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the string names what was duplicated.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The database could not be reached, or the pool gave up waiting for it.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The last administrator of an organization cannot be demoted or removed.
    #[error("an organization must keep at least one administrator")]
    LastAdmin,
    /// A referenced record does not exist (or does not belong where it must).
    #[error("{0} does not name a record here")]
    UnknownReference(crate::Id),
    /// A field of the change names a device that is not one of the application's (checked
    /// when the change commits).
    #[error("{field} does not name a device of this application")]
    UnknownDevice { field: String },
    /// The credential the write was authorized by no longer holds: nothing was written.
    #[error("the acting credential was revoked ({0:?})")]
    Revoked(crate::Revoked),
    /// The acting user is no longer an administrator of the organization they act on
    /// (another administrator changed their role meanwhile): nothing was written.
    #[error("the acting user is no longer an administrator of this organization")]
    NoLongerAdmin,
    /// PostgreSQL chose this transaction to break a deadlock or a serialization conflict;
    /// trying again will do.
    #[error("the write conflicted with a concurrent one")]
    Contention(#[source] sqlx::Error),
    /// A child token's usage limit is more than its creator has left to give (`remaining`
    /// uses not yet leased or carved out): nothing was created.
    #[error("the creator has only {remaining} uses left")]
    QuotaExceeded { remaining: i64 },
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("the database URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("migration failed")]
    Migration(#[source] sqlx::Error),
    /// The write committed, but the process that must apply it (the server running on the
    /// same SQLite file) did not confirm that it had; the string says what happened.
    #[error("the change was saved, but {0}")]
    Unconfirmed(String),
    /// The disk under the database is full (SQLite `SQLITE_FULL`, PostgreSQL `53100`), or a
    /// SQLite file reached its page limit: nothing was written; reads still work.
    #[error("the database's disk is full")]
    StorageFull(#[source] Option<sqlx::Error>),
    /// A SQLite file that is not a database, or is damaged.
    #[error("cannot open the database file {path}: {message}")]
    CannotOpen { path: String, message: String },
    /// A 0-byte SQLite file where a database was (its marker or journal files remain).
    #[error(
        "the database file {path} is empty (0 bytes), but it held a Tollgate database \
         (found {evidence}): refusing to start a fresh installation over it. Restore the \
         file from a backup; to really start afresh, delete it and the files named"
    )]
    EmptiedDatabase { path: String, evidence: String },
    /// The database was written by a later version of Tollgate.
    #[error(
        "the database's schema is version {found}, newer than the newest this Tollgate \
         knows (version {supported}): run the Tollgate release that wrote it (or a later one)"
    )]
    NewerSchema { found: i64, supported: i64 },
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("a record with the same unique value")
            }
            sqlx::Error::Database(db) if is_storage_full(db.code().as_deref()) => {
                StoreError::StorageFull(Some(e))
            }
            sqlx::Error::Database(db) => {
                // PostgreSQL: class 08 (connection exception), 57P01..03 (shutdown), 53300
                // (too many connections) mean "unavailable", not "bad query".
                let code = db.code().unwrap_or_default();
                // 57014 is a statement cancelled at `statement_timeout`: the database is too
                // busy (or the query too costly) to answer in time.
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    || code == "57014"
                {
                    StoreError::Unavailable(e)
                } else if code == "40P01" || code == "40001" {
                    StoreError::Contention(e)
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }

    /// True when the disk under the database is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull(_))
    }

    /// True when the database cancelled the statement at its `statement_timeout`.
    pub fn is_timeout(&self) -> bool {
        match self {
            StoreError::Unavailable(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|c| c == "57014")
            }
            _ => false,
        }
    }

    /// True when no connection could be had within the pool's acquire timeout.
    pub fn is_pool_timeout(&self) -> bool {
        matches!(self, StoreError::Unavailable(sqlx::Error::PoolTimedOut))
    }

    /// True when retrying later might succeed (the server answers 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// SQLite reports a full disk as `SQLITE_FULL` (13, in the low byte of extended codes);
/// PostgreSQL as SQLSTATE 53100 (`disk_full`). SQLSTATEs have five characters; SQLite's
/// codes are numbers below 10,000.
fn is_storage_full(code: Option<&str>) -> bool {
    match code {
        Some(c) if c.len() == 5 => c == "53100",
        Some(c) => c.parse::<i32>().is_ok_and(|n| n & 0xff == 13),
        None => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from_sqlx(e)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    /// A database that is down, restarting or unreachable must be a 503 (retry), not a 500.
    #[test]
    fn lost_connections_and_pool_timeouts_are_unavailable() {
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
            ErrorKind::UnexpectedEof,
            ErrorKind::TimedOut,
        ] {
            let e = StoreError::from_sqlx(sqlx::Error::Io(Error::from(kind)));
            assert!(e.is_unavailable(), "{kind:?}");
        }
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            assert!(StoreError::from_sqlx(e).is_unavailable());
        }
        assert!(matches!(
            StoreError::from_sqlx(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
        assert!(!StoreError::from_sqlx(sqlx::Error::ColumnNotFound("x".into())).is_unavailable());
    }

    #[test]
    fn full_disk_codes() {
        assert!(is_storage_full(Some("13")));
        assert!(is_storage_full(Some("53100")));
        assert!(!is_storage_full(Some("5"))); // SQLITE_BUSY
        assert!(!is_storage_full(Some("2067"))); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!is_storage_full(Some("23505")));
        assert!(!is_storage_full(None));
    }
}
