//! Change notifications between server nodes.
//!
//! Every store write that can change whether a credential is accepted (a token's status or
//! existence, an application's existence, a session ending) records a [`Change`]. On
//! PostgreSQL the change is sent with `pg_notify` inside the same transaction, so other nodes
//! hear of it exactly when it commits; the node that made the change applies it to its own
//! caches synchronously, then waits for the others (see [`crate::cluster`]) before answering.
//! SQLite serves one node, which needs no messages.
//!
//! Two kinds of channel:
//! * [`CHANNEL`], which every node listens on: changes, and *barriers* (`barrier:<node>:<n>`)
//!   that a node sends after committing a change, to learn when every other node has
//!   applied it;
//! * one channel per node ([`node_channel`]): its own heartbeats, and other nodes'
//!   acknowledgements of its barriers (`ack:<node>:<n>`).
//!
//! [`Listener`] is the receiving end: one dedicated connection. PostgreSQL delivers
//! notifications in commit order over one global queue, so when a heartbeat the node sent at
//! time *t* comes back, every change committed before *t* has already been delivered, and
//! when a node receives a barrier it has already received every change committed before it:
//! that is what lets nodes bound how stale their caches can be and confirm revocations (see
//! the server's `changes` module).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::{Backend, Id, Result, StoreError};

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
    /// State reports of a device were stored (`device.sendState`): cached state answers of
    /// that device go; nobody waits for other nodes.
    State(Id),
    /// A login session ended (logout); carried as the hex digest of its secret.
    Session(String),
    /// Every session of this user may have ended (a disabled user, a new password).
    User(Id),
    /// Anything may have changed (bulk copy): drop every cache.
    All,
    /// What one of an application's read actions answers changed (`None`: any application's),
    /// without any credential changing: read caches drop it; nobody waits for other nodes.
    Reads { application: Option<Id>, part: Part },
}

/// Which of an application's read answers a [`Change::Reads`] concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// `application.get`.
    Application,
    /// `applicationApiTokens.get`, `applicationApiToken.get`.
    Tokens,
    /// `flows.get`.
    Flows,
    /// `devices.get`.
    Devices,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Application, Part::Tokens, Part::Flows, Part::Devices];

    pub fn name(self) -> &'static str {
        match self {
            Part::Application => "application",
            Part::Tokens => "tokens",
            Part::Flows => "flows",
            Part::Devices => "devices",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Token { id, digest } => write!(f, "token:{id}:{}", crate::users::hex(digest)),
            Change::Application(id) => write!(f, "application:{id}"),
            Change::Device(id) => write!(f, "device:{id}"),
            Change::State(id) => write!(f, "state:{id}"),
            Change::Session(d) => write!(f, "session:{d}"),
            Change::User(id) => write!(f, "user:{id}"),
            Change::All => f.write_str("all"),
            Change::Reads {
                application: Some(app),
                part,
            } => write!(f, "reads:{}:{app}", part.name()),
            Change::Reads {
                application: None,
                part,
            } => write!(f, "reads:{}:*", part.name()),
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
            "state" => arg.parse().map(Change::State).map_err(|_| ()),
            "session" => Ok(Change::Session(arg.to_owned())),
            "user" => arg.parse().map(Change::User).map_err(|_| ()),
            "all" => Ok(Change::All),
            "reads" => {
                let (part, app) = arg.split_once(':').ok_or(())?;
                let part = Part::ALL.into_iter().find(|p| p.name() == part).ok_or(())?;
                let application = match app {
                    "*" => None,
                    id => Some(id.parse().map_err(|_| ())?),
                };
                Ok(Change::Reads { application, part })
            }
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

/// The channel of one node (or `tollgate` command): its heartbeats and the acknowledgements
/// of its barriers arrive there.
pub fn node_channel(node: Id) -> String {
    format!("tollgate_node_{node}")
}

/// The payload of a barrier: sent on [`CHANNEL`] by `origin` after it committed changes;
/// a node that receives it has applied everything committed before it.
pub fn barrier_payload(origin: Id, n: u64) -> String {
    format!("barrier:{origin}:{n}")
}

/// The payload of a heartbeat on a node's own channel.
pub fn beat_payload(stamp: &str) -> String {
    format!("beat:{stamp}")
}

/// The payload by which node `from` acknowledges barrier `n` (sent on the barrier's origin's
/// [`node_channel`]).
pub fn ack_payload(from: Id, n: u64) -> String {
    format!("ack:{from}:{n}")
}

/// What arrived on a [`Listener`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A change announced on [`CHANNEL`].
    Change(Change),
    /// A barrier on [`CHANNEL`]: `origin` wants to know when this node has applied everything
    /// committed before it.
    Barrier { origin: Id, n: u64 },
    /// One of this node's heartbeats came back, with its stamp.
    Heartbeat(String),
    /// Node `from` has applied everything committed before this node's barrier `n`.
    Ack { from: Id, n: u64 },
    /// A payload this version does not understand (a newer node's): the receiver should drop
    /// every cache rather than guess.
    Unknown,
}

fn id_and_number(s: &str) -> Option<(Id, u64)> {
    let (id, n) = s.split_once(':')?;
    Some((id.parse().ok()?, n.parse().ok()?))
}

impl Notice {
    /// A payload received on [`CHANNEL`].
    pub fn on_changes(payload: &str) -> Notice {
        if let Some(rest) = payload.strip_prefix("barrier:") {
            return id_and_number(rest)
                .map_or(Notice::Unknown, |(origin, n)| Notice::Barrier { origin, n });
        }
        payload
            .parse::<Change>()
            .map_or(Notice::Unknown, Notice::Change)
    }

    /// A payload received on a node's own channel.
    pub fn on_node(payload: &str) -> Notice {
        if let Some(stamp) = payload.strip_prefix("beat:") {
            return Notice::Heartbeat(stamp.to_owned());
        }
        if let Some(rest) = payload.strip_prefix("ack:") {
            return id_and_number(rest)
                .map_or(Notice::Unknown, |(from, n)| Notice::Ack { from, n });
        }
        Notice::Unknown
    }
}

/// A dedicated PostgreSQL connection listening for changes, heartbeats and acknowledgements.
///
/// It never reconnects by itself: a lost connection is an error from [`Listener::recv`], so
/// the caller knows notifications may have been missed and must drop its caches.
pub struct Listener {
    inner: PgListener,
    own: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("own", &self.own).finish()
    }
}

impl Listener {
    /// Connect to the PostgreSQL database at `url` and `LISTEN` on the channel `own` (see
    /// [`node_channel`]) and, when `changes` is set, on [`CHANNEL`]. `application_name`
    /// shows in `pg_stat_activity` (to tell nodes apart). Gives up after `timeout`.
    pub async fn connect(
        url: &str,
        own: &str,
        changes: bool,
        application_name: &str,
        timeout: Duration,
    ) -> Result<Listener> {
        if Backend::from_url(url)? != Backend::Postgres {
            return Err(StoreError::UnsupportedUrl);
        }
        let options: PgConnectOptions = url
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
            if changes {
                inner.listen_all([CHANNEL, own]).await?;
            } else {
                inner.listen(own).await?;
            }
            Ok::<_, sqlx::Error>(inner)
        };
        let inner = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r.map_err(StoreError::from_sqlx)?,
            Err(_) => return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        };
        Ok(Listener {
            inner,
            own: own.to_owned(),
        })
    }

    /// The next notice. Any error, including a lost connection, ends this listener: some
    /// notifications may have been missed, so connect a new one and drop every cache.
    pub async fn recv(&mut self) -> Result<Notice> {
        match self.inner.try_recv().await {
            Ok(Some(n)) if n.channel() == CHANNEL => Ok(Notice::on_changes(n.payload())),
            Ok(Some(n)) if n.channel() == self.own => Ok(Notice::on_node(n.payload())),
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
            Change::State(id),
            Change::Session("ab12".into()),
            Change::User(id),
            Change::All,
            Change::Reads {
                application: Some(id),
                part: Part::Flows,
            },
            Change::Reads {
                application: None,
                part: Part::Tokens,
            },
        ] {
            assert_eq!(c.to_string().parse::<Change>(), Ok(c));
        }
        assert!("reads:nothing:*".parse::<Change>().is_err());
        assert!("reads:devices:zz".parse::<Change>().is_err());
        assert!("bogus:1".parse::<Change>().is_err());
        assert!("token:nothex".parse::<Change>().is_err());
    }

    #[test]
    fn barriers_beats_and_acks_round_trip() {
        let (a, b) = (Id::generate(), Id::generate());
        assert_eq!(
            Notice::on_changes(&barrier_payload(a, 7)),
            Notice::Barrier { origin: a, n: 7 }
        );
        assert_eq!(
            Notice::on_changes(&Change::Device(b).to_string()),
            Notice::Change(Change::Device(b))
        );
        assert_eq!(Notice::on_changes("barrier:zz:1"), Notice::Unknown);
        assert_eq!(Notice::on_changes("newfangled:1"), Notice::Unknown);
        assert_eq!(
            Notice::on_node(&ack_payload(b, 9)),
            Notice::Ack { from: b, n: 9 }
        );
        assert_eq!(
            Notice::on_node(&beat_payload("123")),
            Notice::Heartbeat("123".into())
        );
        assert_eq!(Notice::on_node("ack:x"), Notice::Unknown);
    }

    #[test]
    fn node_channels_are_distinct_lowercase_identifiers() {
        let (a, b) = (node_channel(Id::generate()), node_channel(Id::generate()));
        assert_ne!(a, b);
        assert!(a.len() < 64, "PostgreSQL truncates identifiers at 63 bytes");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        );
    }
}
