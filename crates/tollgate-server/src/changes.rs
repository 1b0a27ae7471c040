//! Taking part in a cluster of nodes on one PostgreSQL database.
//!
//! Each node runs two tasks, each with a connection of its own (never the request pool's, so a
//! pool saturated by slow requests delays neither):
//!
//! * the **listener** `LISTEN`s for change notices and applies each to this node's caches
//!   ([`AppState::apply_change`]), renews the cache lease when one of this node's heartbeats
//!   comes back ([`Freshness::renew_lease`](crate::freshness::Freshness::renew_lease)),
//!   records other nodes' barriers this node must acknowledge, and acknowledgements of this
//!   node's own barriers. When its connection is lost (an error, or nothing heard for
//!   [`silence_limit`]), it stops cache use at once ([`AppState::set_change_feed`]`(false)`:
//!   every request then goes to the database), reconnects, and once `LISTEN` is in place again
//!   drops every cache and resumes. Notices missed in between cannot matter: nothing was cached
//!   then, and nothing cached before survives.
//! * the **cluster connection's task** registers this node while its listener is up (and
//!   removes the registration while it is not), sends a heartbeat every lease/3 (only while
//!   registered: [`tollgate_store::cluster`]), sends the acknowledgements this node owes and
//!   the barriers this node's writes ask for, and removes the registrations of nodes that have
//!   sent no heartbeat for a long time.
//!
//! Consequently (the argument is in docs/ARCHITECTURE.md, "Revocation on several nodes"):
//! * a node answers from cache only under a lease renewed by a heartbeat that came back, so
//!   every change committed before that heartbeat was sent has been applied;
//! * a write that changes credentials answers only once every other registered node has
//!   acknowledged a barrier sent after the commit, or its lease must have run out
//!   ([`crate::confirm`]). Once that answer is given, no node accepts the old credential.
//!
//! `tollgate` commands that change a PostgreSQL database join as a *client*
//! ([`join_as_command`]): they listen for acknowledgements and send barriers, but do not
//! register, send heartbeats or cache anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tollgate_store::cluster::{ClusterConnection, Peer};
use tollgate_store::notify::{self, Listener, Notice};
use tollgate_store::{Change, Id, Propagate, Store};

use crate::confirm::{Confirmations, Outcome};
use crate::freshness::monotonic_us;
use crate::state::AppState;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often a node sends itself a heartbeat: a third of the lease, so one late or lost
/// heartbeat does not yet lapse the lease.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// How long the listener waits without hearing anything (heartbeats included) before it
/// treats its connection as dead and reconnects. Correctness does not depend on it (the lease
/// already stopped cache use after one lease); it bounds how long a silently dead connection
/// keeps this node registered (and so how long other nodes' revocations wait for it).
pub fn silence_limit(lease: Duration) -> Duration {
    (lease + lease / 3).max(Duration::from_millis(100))
}

/// How long another node's heartbeat count must stand still before this node removes its
/// registration (it crashed without deregistering): ten of its leases, at least 3 s.
pub fn forget_after(lease: Duration) -> Duration {
    (lease * 10).max(Duration::from_secs(3))
}

/// This process's part in the cluster.
pub struct Cluster {
    id: Id,
    lease: Duration,
    /// A serving node (registers, sends heartbeats, caches); false for a `tollgate` command.
    node: bool,
    pub confirm: Confirmations,
    /// Whether the listener is up (it sets this; the connection's task follows it).
    feed: watch::Sender<bool>,
    /// Set when the process is stopping.
    leaving: watch::Sender<bool>,
    /// Set by the connection's task once the registration is removed for good.
    left: watch::Sender<bool>,
}

impl Cluster {
    fn new(lease: Duration, node: bool) -> Arc<Cluster> {
        Arc::new(Cluster {
            id: Id::generate(),
            lease,
            node,
            confirm: Confirmations::new(lease),
            feed: watch::Sender::new(false),
            leaving: watch::Sender::new(false),
            left: watch::Sender::new(false),
        })
    }

    /// This node's id in `cluster_nodes`.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Stop answering from cache, remove this node's registration and stop (at shutdown).
    /// Waits at most `within`.
    pub async fn leave(&self, within: Duration) {
        self.leaving.send_replace(true);
        let mut left = self.left.subscribe();
        let _ = tokio::time::timeout(within, left.wait_for(|l| *l)).await;
    }
}

/// Whether other nodes must have applied `change` before the write that made it answers:
/// everything that can make a credential stop working. (Device changes only refresh cached
/// device bodies; they do not wait.)
fn needs_confirmation(change: &Change) -> bool {
    !matches!(
        change,
        Change::Device(_) | Change::State(_) | Change::Reads { .. }
    )
}

impl Propagate for Cluster {
    fn propagate<'a>(
        &'a self,
        changes: &'a [Change],
    ) -> futures_util::future::BoxFuture<'a, tollgate_store::Result<()>> {
        let committed = tokio::time::Instant::now();
        Box::pin(async move {
            if !changes.iter().any(needs_confirmation) {
                return Ok(());
            }
            match self.confirm.confirm(committed).await {
                Outcome::Confirmed => {}
                Outcome::Lapsed(nodes) => {
                    let nodes: Vec<String> = nodes.into_iter().map(Id::to_hex).collect();
                    tracing::warn!(
                        nodes = %nodes.join(","),
                        waited_ms = committed.elapsed().as_millis() as u64,
                        "nodes did not confirm a change; answered once their cache leases had run out"
                    );
                }
                Outcome::Unknown => tracing::warn!(
                    waited_ms = committed.elapsed().as_millis() as u64,
                    "could not read which nodes are registered; answered after the longest lease"
                ),
            }
            Ok(())
        })
    }
}

/// Make this server a node of the cluster on its PostgreSQL database: start the listener and
/// the cluster connection's task, make the caches wait for them, and make every write that
/// changes credentials wait for the other nodes. `listener_url` is the database URL for the
/// listener's connection (default: the store's).
pub fn spawn(state: &AppState, listener_url: Option<String>) -> Arc<Cluster> {
    let lease = state.settings().change_lease;
    state.freshness().require_lease(lease);
    state.clear_caches();
    let cluster = Cluster::new(lease, true);
    state.set_cluster(cluster.clone());
    state.store().set_propagation(cluster.clone());
    let url = state.store().url().to_owned();
    tokio::spawn(connection_task(cluster.clone(), url.clone()));
    tokio::spawn(listen(
        cluster.clone(),
        Some(state.clone()),
        listener_url.unwrap_or(url),
    ));
    cluster
}

/// For a `tollgate` command that writes to a PostgreSQL database nodes may be serving: make
/// its writes wait until every node has applied them, as a node's own writes do. Waits until
/// its listener is up (at most `within`; without it, writes wait for the nodes' leases).
pub async fn join_as_command(store: &Store, within: Duration) -> Arc<Cluster> {
    // The longest lease is what a write waits for when nothing answers; a command has no
    // cache, so its own lease only paces resending.
    let cluster = Cluster::new(Duration::from_millis(750), false);
    store.set_propagation(cluster.clone());
    let url = store.url().to_owned();
    tokio::spawn(connection_task(cluster.clone(), url.clone()));
    tokio::spawn(listen(cluster.clone(), None, url));
    let mut feed = cluster.feed.subscribe();
    if tokio::time::timeout(within, feed.wait_for(|up| *up))
        .await
        .is_err()
    {
        tracing::warn!(
            "cannot listen for the nodes' confirmations; changes will wait for their leases instead"
        );
    }
    cluster
}

/// The task that owns the cluster connection: registration, heartbeats, acknowledgements,
/// barriers, forgetting dead nodes.
async fn connection_task(cluster: Arc<Cluster>, url: String) {
    let application_name = format!("tollgate-cluster-{}", std::process::id());
    // A statement on this connection that takes longer than this is abandoned with the
    // connection (a stalled connection must not hold heartbeats or acknowledgements).
    let op_timeout = cluster.lease.max(Duration::from_millis(500));
    let connect_timeout = cluster.lease.max(Duration::from_secs(2));
    let mut conn: Option<ClusterConnection> = None;
    let mut registered = false;
    let mut backoff = MIN_BACKOFF;
    let mut beat = tokio::time::interval(heartbeat_interval(cluster.lease));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collect = tokio::time::interval(cluster.lease.max(Duration::from_secs(1)));
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watched: HashMap<Id, (Peer, Instant)> = HashMap::new();
    let mut feed = cluster.feed.subscribe();
    let mut leaving = cluster.leaving.subscribe();
    loop {
        let is_leaving = *leaving.borrow_and_update();
        let want_registered = cluster.node && *feed.borrow_and_update() && !is_leaving;
        let Some(c) = conn.as_mut() else {
            if is_leaving && !registered {
                cluster.left.send_replace(true);
                return;
            }
            match ClusterConnection::connect(&url, &application_name, connect_timeout).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = MIN_BACKOFF;
                    // What the row says now is unknown: a node that wants to be registered
                    // registers afresh (a new incarnation); one that does not removes any
                    // registration left from before the connection broke.
                    registered = cluster.node && !want_registered;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster connection unavailable; retrying");
                    if is_leaving {
                        // Cannot deregister: other nodes forget this one after a while.
                        cluster.left.send_replace(true);
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = leaving.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };

        // Registration follows the listener: a node that is not listening must not be waited
        // for, and a node that is not registered cannot renew its lease.
        if want_registered != registered {
            let done = if want_registered {
                let incarnation = Id::generate().to_hex();
                tokio::time::timeout(
                    op_timeout,
                    c.register(cluster.id, &incarnation, cluster.lease),
                )
                .await
            } else {
                tokio::time::timeout(op_timeout, c.deregister(cluster.id)).await
            };
            match done {
                Ok(Ok(())) => {
                    registered = want_registered;
                    if registered {
                        tracing::debug!(node = %cluster.id, "registered");
                        // The first heartbeat at once: the cache waits for it.
                        beat.reset_immediately();
                    } else {
                        tracing::debug!(node = %cluster.id, "deregistered");
                    }
                }
                _ => {
                    conn = None;
                    continue;
                }
            }
        }
        if is_leaving && !registered {
            if let Some(c) = conn.take() {
                c.close().await;
            }
            cluster.left.send_replace(true);
            return;
        }

        // Acknowledgements owed to other nodes.
        let owed = cluster.confirm.take_owed();
        if !owed.is_empty() {
            let send = async {
                for (to, n) in &owed {
                    c.ack(*to, cluster.id, *n).await?;
                }
                Ok::<_, tollgate_store::StoreError>(())
            };
            match tokio::time::timeout(op_timeout, send).await {
                Ok(Ok(())) => cluster.confirm.acks_sent(owed.len()),
                _ => {
                    cluster.confirm.owed_again(&owed);
                    conn = None;
                    continue;
                }
            }
        }

        // A barrier for this node's writes: read who is registered, then send it.
        if let Some(n) = cluster.confirm.take_barrier() {
            let send = async {
                let peers = c.peers(cluster.id).await?;
                if !peers.is_empty() {
                    c.barrier(cluster.id, n).await?;
                }
                Ok::<_, tollgate_store::StoreError>(peers)
            };
            match tokio::time::timeout(op_timeout, send).await {
                Ok(Ok(peers)) => cluster.confirm.barrier_sent(n, peers),
                _ => {
                    cluster.confirm.barrier_failed();
                    conn = None;
                    continue;
                }
            }
        }
        // Heartbeats come before more acknowledgements and barriers (biased): a stream of
        // those must not starve the lease. (Work that arrived meanwhile left a permit, so
        // `work()` is ready at once on the next turn.)
        tokio::select! {
            biased;
            _ = beat.tick(), if registered => {
                // Stamped before sending: the stamp is never later than the heartbeat's commit.
                let stamp = monotonic_us(Instant::now()).to_string();
                match tokio::time::timeout(op_timeout, c.beat(cluster.id, &stamp)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::warn!("this node's registration was removed by another node; registering again");
                        registered = false;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "heartbeat not sent");
                        conn = None;
                    }
                    Err(_) => {
                        tracing::debug!("heartbeat timed out");
                        conn = None;
                    }
                }
            }
            _ = collect.tick(), if registered => {
                let run = forget_dead_nodes(c, cluster.id, &mut watched);
                if !matches!(tokio::time::timeout(op_timeout * 2, run).await, Ok(Ok(()))) {
                    conn = None;
                }
            }
            _ = cluster.confirm.work() => {}
            _ = feed.changed() => {}
            _ = leaving.changed() => {}
        }
    }
}

/// Remove the registrations of nodes whose heartbeat count has not moved for
/// [`forget_after`] their lease, as watched by this node (its monotonic clock, not the
/// database's). Each removal is conditional on the count watched, so a node that sent a
/// heartbeat meanwhile keeps its registration.
async fn forget_dead_nodes(
    c: &mut ClusterConnection,
    me: Id,
    watched: &mut HashMap<Id, (Peer, Instant)>,
) -> tollgate_store::Result<()> {
    let now = Instant::now();
    let mut seen = HashMap::new();
    for peer in c.peers(me).await? {
        let since = match watched.get(&peer.id) {
            Some((old, since))
                if old.incarnation == peer.incarnation && old.beats == peer.beats =>
            {
                *since
            }
            _ => now,
        };
        if now.duration_since(since) >= forget_after(peer.lease) {
            if c.forget(&peer).await? {
                tracing::warn!(node = %peer.id, silent_s = now.duration_since(since).as_secs(),
                    "removed the registration of a node that sent no heartbeat");
            }
            continue;
        }
        seen.insert(peer.id, (peer, since));
    }
    *watched = seen;
    Ok(())
}

async fn listen(cluster: Arc<Cluster>, state: Option<AppState>, url: String) {
    // Shows in pg_stat_activity, to tell the nodes' listeners apart.
    let application_name = format!("tollgate-listener-{}", std::process::id());
    let own = notify::node_channel(cluster.id);
    let connect_timeout = cluster.lease.max(Duration::from_secs(2));
    // A command hears nothing but acknowledgements: silence means nothing there.
    let silence = if state.is_some() {
        silence_limit(cluster.lease)
    } else {
        Duration::from_secs(3600)
    };
    let mut leaving = cluster.leaving.subscribe();
    let mut backoff = MIN_BACKOFF;
    let mut down_since: Option<Instant> = None;
    loop {
        if *leaving.borrow_and_update() {
            return;
        }
        let connect = Listener::connect(
            &url,
            &own,
            state.is_some(),
            &application_name,
            connect_timeout,
        );
        let listener = tokio::select! {
            l = connect => l,
            _ = leaving.changed() => return,
        };
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for changes; answering from the database meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = leaving.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Every change committed from here on reaches this listener; whatever was cached
        // before may have missed some, so start from nothing.
        if let Some(state) = &state {
            state.set_change_feed(true);
        }
        cluster.feed.send_replace(true);
        backoff = MIN_BACKOFF;
        match down_since.take() {
            Some(t) => tracing::info!(
                down_ms = t.elapsed().as_millis() as u64,
                "listening for changes again; caches were dropped"
            ),
            None => tracing::info!("listening for changes from other nodes"),
        }
        let why = tokio::select! {
            why = receive(&mut listener, &cluster, state.as_ref(), silence) => why,
            _ = leaving.changed() => "this node is stopping".to_owned(),
        };
        // Stop answering from cache before the registration goes (the connection's task
        // follows `feed`).
        if let Some(state) = &state {
            state.set_change_feed(false);
        }
        cluster.feed.send_replace(false);
        down_since = Some(Instant::now());
        if *leaving.borrow() {
            return;
        }
        tracing::warn!(reason = %why,
            "lost the change feed: caches dropped, answering from the database until it is back");
    }
}

/// Handle notices until the connection fails or falls silent; say why it ended.
async fn receive(
    listener: &mut Listener,
    cluster: &Cluster,
    state: Option<&AppState>,
    silence: Duration,
) -> String {
    loop {
        let notice = match tokio::time::timeout(silence, listener.recv()).await {
            Err(_) => return format!("nothing heard for {} ms", silence.as_millis()),
            Ok(Err(e)) => return e.to_string(),
            Ok(Ok(notice)) => notice,
        };
        match notice {
            Notice::Change(change) => {
                match &change {
                    Change::Token { id, .. } => tracing::debug!(token = %id, "change notice"),
                    Change::Application(id) => {
                        tracing::debug!(application = %id, "change notice")
                    }
                    Change::Device(id) => tracing::debug!(device = %id, "change notice"),
                    Change::State(id) => tracing::trace!(device = %id, "change notice: state"),
                    // A session digest is not a secret, but there is no need to log it.
                    Change::Session(_) => tracing::debug!("change notice: a session ended"),
                    Change::User(id) => {
                        tracing::debug!(user = %id, "change notice: sessions ended")
                    }
                    Change::All => tracing::info!("change notice: drop every cache"),
                    Change::Reads { .. } => tracing::debug!(change = %change, "change notice"),
                }
                if let Some(state) = state {
                    state.apply_change(&change);
                }
            }
            // Every notice committed before the barrier has been applied above: acknowledge.
            Notice::Barrier { origin, n } if origin != cluster.id => cluster.confirm.owe(origin, n),
            Notice::Barrier { .. } => {}
            Notice::Ack { from, n } => cluster.confirm.acknowledged(from, n),
            Notice::Heartbeat(stamp) => match (state, stamp.parse::<i64>()) {
                (Some(state), Ok(sent)) => state.freshness().renew_lease(sent),
                (Some(_), Err(_)) => tracing::warn!("malformed heartbeat ignored"),
                (None, _) => {}
            },
            Notice::Unknown => {
                if let Some(state) = state {
                    tracing::warn!(
                        "a change notice this version does not understand: caches dropped"
                    );
                    state.clear_caches();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_come_three_times_per_lease() {
        let lease = Duration::from_millis(750);
        assert_eq!(heartbeat_interval(lease), Duration::from_millis(250));
        assert_eq!(silence_limit(lease), Duration::from_millis(1000));
        assert_eq!(forget_after(lease), Duration::from_millis(7500));
        assert_eq!(
            forget_after(Duration::from_millis(50)),
            Duration::from_secs(3)
        );
        assert_eq!(
            heartbeat_interval(Duration::ZERO),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn device_changes_do_not_wait_for_other_nodes() {
        let id = Id::generate();
        assert!(!needs_confirmation(&Change::Device(id)));
        assert!(!needs_confirmation(&Change::State(id)));
        assert!(!needs_confirmation(&Change::Reads {
            application: Some(id),
            part: tollgate_store::Part::Flows,
        }));
        for c in [
            Change::Token {
                id,
                digest: [0; 32],
            },
            Change::Application(id),
            Change::Session("00".into()),
            Change::User(id),
            Change::All,
        ] {
            assert!(needs_confirmation(&c), "{c}");
        }
    }
}
