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
            sqlx::Error::Database(db) => {
                // PostgreSQL: class 08 (connection exception), 57P01..03 (shutdown), 53300
                // (too many connections) mean "unavailable", not "bad query".
                let code = db.code().unwrap_or_default();
                if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                    StoreError::Unavailable(e)
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }

    /// True when retrying later might succeed (the server answers 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
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
}
