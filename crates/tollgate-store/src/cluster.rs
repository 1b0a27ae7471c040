//! The nodes serving one PostgreSQL database, and the dedicated connection each node uses to
//! take part (PostgreSQL only).
//!
//! A node *registers* (a row in `cluster_nodes`) before its caches may answer. Its heartbeat
//! is one statement that increments its row's `beats` and sends the heartbeat notice only if
//! the row is there ([`ClusterConnection::beat`]); the node renews its cache lease only from
//! heartbeats that come back. So a node whose row is absent cannot renew its lease, and a node
//! that commits a revocation and then reads the rows ([`ClusterConnection::peers`]) knows
//! every node that could still be answering from a cache that predates it.
//!
//! A row is removed by its node when it stops listening ([`ClusterConnection::deregister`]),
//! or by another node that has watched its `beats` stand still for many of its leases
//! ([`ClusterConnection::forget`], conditional on the count it watched): then no heartbeat of
//! that node committed for that long, so its lease has long run out.
//!
//! This connection is not the request pool's: a pool saturated by slow requests does not
//! delay heartbeats, acknowledgements or barriers.

use std::time::Duration;

use sqlx::Connection;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::notify::{self, CHANNEL};
use crate::{Backend, Id, Result, StoreError};

/// The longest cache lease a node may have. A node that commits a change but then cannot read
/// which nodes are registered waits this long (and a margin) before it answers, so that any
/// node's lease has run out by then.
pub const MAX_LEASE: Duration = Duration::from_secs(10);

/// A registered node, as another node reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: Id,
    /// Changes whenever the node registers again.
    pub incarnation: String,
    /// How long the node answers from its caches after one of its heartbeats.
    pub lease: Duration,
    /// Heartbeats that found the row.
    pub beats: i64,
}

/// One node's dedicated connection for heartbeats, barriers and acknowledgements.
pub struct ClusterConnection {
    conn: PgConnection,
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnection").finish_non_exhaustive()
    }
}

impl ClusterConnection {
    /// Connect to the PostgreSQL database at `url` (`application_name` shows in
    /// `pg_stat_activity`), giving up after `timeout`.
    pub async fn connect(
        url: &str,
        application_name: &str,
        timeout: Duration,
    ) -> Result<ClusterConnection> {
        if Backend::from_url(url)? != Backend::Postgres {
            return Err(StoreError::UnsupportedUrl);
        }
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(StoreError::from_sqlx)?
            .application_name(application_name);
        match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
            Ok(conn) => Ok(ClusterConnection {
                conn: conn.map_err(StoreError::from_sqlx)?,
            }),
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Register node `id` with a fresh `incarnation` and its `lease` (at most [`MAX_LEASE`]).
    /// A row already there is replaced (its count starts again).
    pub async fn register(&mut self, id: Id, incarnation: &str, lease: Duration) -> Result<()> {
        let lease_ms = i64::try_from(lease.min(MAX_LEASE).as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO cluster_nodes (id, incarnation, lease_ms, beats, registered) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (id) DO UPDATE SET \
             incarnation = EXCLUDED.incarnation, lease_ms = EXCLUDED.lease_ms, beats = 0, \
             registered = EXCLUDED.registered",
        )
        .bind(id.to_hex())
        .bind(incarnation)
        .bind(lease_ms)
        .bind(crate::now_ms())
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    /// Remove node `id`'s row (it stopped listening, or is shutting down).
    pub async fn deregister(&mut self, id: Id) -> Result<()> {
        sqlx::query("DELETE FROM cluster_nodes WHERE id = $1")
            .bind(id.to_hex())
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// A heartbeat of node `id`: count it in the node's row and send `stamp` to the node's own
    /// channel, in one statement, only if the row is there. False: the node is not registered
    /// (no heartbeat was sent).
    pub async fn beat(&mut self, id: Id, stamp: &str) -> Result<bool> {
        let row = sqlx::query(
            "WITH beat AS (UPDATE cluster_nodes SET beats = beats + 1 WHERE id = $1 RETURNING id) \
             SELECT beat.id FROM beat CROSS JOIN LATERAL pg_notify($2, $3) AS sent",
        )
        .bind(id.to_hex())
        .bind(notify::node_channel(id))
        .bind(notify::beat_payload(stamp))
        .fetch_optional(&mut self.conn)
        .await?;
        Ok(row.is_some())
    }

    /// Every registered node except `except`.
    pub async fn peers(&mut self, except: Id) -> Result<Vec<Peer>> {
        let rows = sqlx::query(
            "SELECT id, incarnation, lease_ms, beats FROM cluster_nodes WHERE id <> $1",
        )
        .bind(except.to_hex())
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter()
            .map(|row| {
                let lease_ms: i64 = row.try_get("lease_ms")?;
                Ok(Peer {
                    id: crate::ids::from_db(row.try_get::<&str, _>("id")?)?,
                    incarnation: row.try_get("incarnation")?,
                    lease: Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0))
                        .min(MAX_LEASE),
                    beats: row.try_get("beats")?,
                })
            })
            .collect()
    }

    /// Send barrier `n` of node `origin` on [`CHANNEL`].
    pub async fn barrier(&mut self, origin: Id, n: u64) -> Result<()> {
        self.notify(CHANNEL, &notify::barrier_payload(origin, n))
            .await
    }

    /// Tell node `to` that node `from` has applied everything before `to`'s barrier `n`.
    pub async fn ack(&mut self, to: Id, from: Id, n: u64) -> Result<()> {
        self.notify(&notify::node_channel(to), &notify::ack_payload(from, n))
            .await
    }

    async fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Remove `peer`'s row if it is still exactly as it was read (same incarnation, no
    /// heartbeat since). True if it was removed.
    pub async fn forget(&mut self, peer: &Peer) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM cluster_nodes WHERE id = $1 AND incarnation = $2 AND beats = $3",
        )
        .bind(peer.id.to_hex())
        .bind(&peer.incarnation)
        .bind(peer.beats)
        .execute(&mut self.conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Close the connection politely.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}
