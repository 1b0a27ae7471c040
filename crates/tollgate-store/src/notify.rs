//! Change notifications between server nodes.
//!
//! Every store write that can change whether a credential is accepted (a token's status or
//! existence, an application's existence, a session ending) records a [`Change`]. On
//! PostgreSQL the change is sent with `pg_notify` inside the same transaction, so other nodes
//! hear of it exactly when it commits; the node that made the change applies it to its own
//! caches synchronously before answering. SQLite serves one node, which needs no messages.
//!
//! [`Listener`] is the receiving end: one dedicated connection that `LISTEN`s on [`CHANNEL`]
//! and on a heartbeat channel of the node's own. PostgreSQL delivers notifications in commit
//! order over one global queue, so when a heartbeat the node sent at time *t* comes back,
//! every change committed before *t* has already been delivered: that is what lets a node
//! bound how stale its caches can be (see the server's `changes` module).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::{Backend, Id, Result, Store, StoreError};

/// The PostgreSQL channel the nodes listen on.
pub const CHANNEL: &str = "tollgate_changes";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An application token was created, changed or deleted; with the digest of its secret
    /// (what caches are keyed by; a digest is what the database stores, not a secret).
    Token { id: Id, digest: [u8; 32] },
    /// An application and everything in it were deleted.
    Application(Id),
    /// A device was changed or deleted.
    Device(Id),
    /// A login session ended (logout); carried as the hex digest of its secret.
    Session(String),
    /// Anything may have changed (bulk copy): drop every cache.
    All,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Token { id, digest } => write!(f, "token:{id}:{}", crate::users::hex(digest)),
            Change::Application(id) => write!(f, "application:{id}"),
            Change::Device(id) => write!(f, "device:{id}"),
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
            "token" => {
                let (id, digest) = arg.split_once(':').ok_or(())?;
                Ok(Change::Token {
                    id: id.parse().map_err(|_| ())?,
                    digest: crate::users::unhex(digest).ok_or(())?,
                })
            }
            "application" => arg.parse().map(Change::Application).map_err(|_| ()),
            "device" => arg.parse().map(Change::Device).map_err(|_| ()),
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

/// A name for one node's heartbeat channel, unique in practice.
pub fn heartbeat_channel() -> String {
    format!("tollgate_hb_{}", Id::generate())
}

/// What arrived on a [`Listener`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A change announced on [`CHANNEL`].
    Change(Change),
    /// A message on the node's heartbeat channel, with its payload.
    Heartbeat(String),
    /// A payload on [`CHANNEL`] this version does not understand (a newer node's): the
    /// receiver should drop every cache rather than guess.
    Unknown,
}

/// A dedicated PostgreSQL connection listening for changes and heartbeats.
///
/// It never reconnects by itself: a lost connection is an error from [`Listener::recv`], so
/// the caller knows notifications may have been missed and must drop its caches.
pub struct Listener {
    inner: PgListener,
    heartbeat: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

impl Listener {
    /// Connect to the store's PostgreSQL database and `LISTEN` on [`CHANNEL`] and
    /// `heartbeat`. `application_name` shows in `pg_stat_activity` (to tell nodes apart).
    /// Gives up after `timeout`.
    pub async fn connect(
        store: &Store,
        heartbeat: &str,
        application_name: &str,
        timeout: Duration,
    ) -> Result<Listener> {
        if store.backend() != Backend::Postgres {
            return Err(StoreError::UnsupportedUrl);
        }
        let options: PgConnectOptions = store
            .url()
            .parse::<PgConnectOptions>()
            .map_err(StoreError::from_sqlx)?
            .application_name(application_name);
        let connect = async {
            // A pool of one, only because that is what PgListener is built on; it must not
            // reconnect on its own (see `recv`), and a lost connection is never reused.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(timeout)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options)
                .await?;
            let mut inner = PgListener::connect_with(&pool).await?;
            inner.ignore_pool_close_event(true);
            inner.eager_reconnect(false);
            inner.listen_all([CHANNEL, heartbeat]).await?;
            Ok::<_, sqlx::Error>(inner)
        };
        let inner = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r.map_err(StoreError::from_sqlx)?,
            Err(_) => return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        };
        Ok(Listener {
            inner,
            heartbeat: heartbeat.to_owned(),
        })
    }

    /// The next notice. Any error, including a lost connection, ends this listener: some
    /// notifications may have been missed, so connect a new one and drop every cache.
    pub async fn recv(&mut self) -> Result<Notice> {
        match self.inner.try_recv().await {
            Ok(Some(n)) if n.channel() == CHANNEL => Ok(n
                .payload()
                .parse::<Change>()
                .map_or(Notice::Unknown, Notice::Change)),
            Ok(Some(n)) if n.channel() == self.heartbeat => {
                Ok(Notice::Heartbeat(n.payload().to_owned()))
            }
            // Only the two channels were listened to; anything else is a newer node's idea.
            Ok(Some(_)) => Ok(Notice::Unknown),
            Ok(None) => Err(StoreError::Unavailable(sqlx::Error::Io(
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the change listener lost its connection",
                ),
            ))),
            Err(e) => Err(StoreError::from_sqlx(e)),
        }
    }
}

impl Store {
    /// Send `payload` on `channel` through the pool (a node's heartbeat to its own listener).
    pub async fn send_heartbeat(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Err(StoreError::UnsupportedUrl);
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let id = Id::generate();
        for c in [
            Change::Token {
                id,
                digest: [7; 32],
            },
            Change::Application(id),
            Change::Device(id),
            Change::Session("ab12".into()),
            Change::All,
        ] {
            assert_eq!(c.to_string().parse::<Change>(), Ok(c));
        }
        assert!("bogus:1".parse::<Change>().is_err());
        assert!("token:nothex".parse::<Change>().is_err());
    }

    #[test]
    fn heartbeat_channels_are_distinct_lowercase_identifiers() {
        let (a, b) = (heartbeat_channel(), heartbeat_channel());
        assert_ne!(a, b);
        assert!(a.len() < 64, "PostgreSQL truncates identifiers at 63 bytes");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        );
    }
}
