//! Change notifications between server nodes.
//!
//! Every store write that can change whether a credential is accepted (a token's status or
//! existence, an application's existence, a session ending) records a [`Change`]. On
//! PostgreSQL the change is sent with `pg_notify` inside the same transaction, so other nodes
//! hear of it exactly when it commits; the node that made the change applies it to its own
//! caches synchronously before answering. SQLite serves one node, which needs no messages.

use std::fmt;
use std::str::FromStr;

use crate::{Backend, Id, Result};

/// The PostgreSQL channel the nodes listen on.
pub const CHANNEL: &str = "tollgate_changes";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An application token was created, changed or deleted.
    Token(Id),
    /// An application and everything in it were deleted.
    Application(Id),
    /// A login session ended (logout); carried as the hex digest of its secret.
    Session(String),
    /// Anything may have changed (bulk copy): drop every cache.
    All,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Token(id) => write!(f, "token:{id}"),
            Change::Application(id) => write!(f, "application:{id}"),
            Change::Session(d) => write!(f, "session:{d}"),
            Change::All => f.write_str("all"),
        }
    }
}

impl FromStr for Change {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "token" => arg.parse().map(Change::Token).map_err(|_| ()),
            "application" => arg.parse().map(Change::Application).map_err(|_| ()),
            "session" => Ok(Change::Session(arg.to_owned())),
            "all" => Ok(Change::All),
            _ => Err(()),
        }
    }
}

/// Send `change` to the other nodes as part of the transaction `conn` is in (PostgreSQL);
/// nothing to do on SQLite, which serves a single node.
pub(crate) async fn send(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    change: &Change,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.to_string())
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let id = Id::generate();
        for c in [
            Change::Token(id),
            Change::Application(id),
            Change::Session("ab12".into()),
            Change::All,
        ] {
            assert_eq!(c.to_string().parse::<Change>(), Ok(c));
        }
        assert!("bogus:1".parse::<Change>().is_err());
    }
}
