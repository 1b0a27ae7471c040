//! Waiting until every other node has applied a change this node committed: the bookkeeping
//! of barriers and acknowledgements (the I/O is in `changes.rs`).
//!
//! After a write commits changes, [`Confirmations::confirm`] asks for a *barrier*: a numbered
//! notice on the change channel, sent after the commit, together with a fresh read of the
//! registered nodes (their ids and leases). A node that receives the barrier has already
//! received and applied every change committed before it (notices arrive in commit order, and
//! a node's listener applies them one after the other), and acknowledges it. The wait ends
//! when, for each node registered at the time of the barrier, either
//!
//! * it acknowledged that barrier or a later one, or
//! * [`lapse_bound`] of its lease has passed since the commit: by then it cannot be answering
//!   from a cache that predates the change (its lease was last renewed by a heartbeat sent
//!   before the commit; any heartbeat sent after would have come back behind the change).
//!
//! Barriers are sent again every [`resend_interval`] while someone waits, so a node whose
//! listener was reconnecting when the first barrier went out (and so missed it) acknowledges
//! the next one. A node not registered when the barrier's read ran cannot renew its lease
//! without registering first, and every heartbeat it sends from then on commits after the
//! change, so it comes back behind the change: such a node is not waited for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tollgate_store::Id;
use tollgate_store::cluster::{MAX_LEASE, Peer};

/// How long after a commit a node with `lease` must have stopped answering from a cache that
/// predates it, measured on this node's monotonic clock: the lease, 5 % for the two clocks'
/// rates (each node measures durations on its own monotonic clock; they may differ in rate,
/// never by 5 %), and 5 ms.
pub fn lapse_bound(lease: Duration) -> Duration {
    lease + lease / 20 + Duration::from_millis(5)
}

/// How often a waiting node sends a new barrier while some node has not acknowledged.
pub fn resend_interval(lease: Duration) -> Duration {
    (lease / 30).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every registered node acknowledged (or none was registered).
    Confirmed,
    /// These nodes did not acknowledge; the answer waited until their leases had run out.
    Lapsed(Vec<Id>),
    /// The registered nodes could not be read: the answer waited for the longest lease any
    /// node may have ([`MAX_LEASE`]).
    Unknown,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ConfirmCounts {
    pub confirmed: AtomicU64,
    pub lapsed: AtomicU64,
    pub unknown: AtomicU64,
    /// Total time spent waiting, in microseconds.
    pub waited_us: AtomicU64,
    pub barriers_sent: AtomicU64,
    pub acks_sent: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// The number the next barrier will carry (from 1).
    next: u64,
    /// The latest barrier sent, with the nodes registered when it was sent.
    latest: Option<(u64, Arc<[Peer]>)>,
    /// The highest barrier each node acknowledged.
    acked: HashMap<Id, u64>,
    /// Someone waits for a barrier that has not been taken yet.
    barrier_wanted: bool,
    /// Barriers of other nodes this node owes an acknowledgement: origin → highest number.
    owed: HashMap<Id, u64>,
}

/// Barriers sent, acknowledgements received and owed; shared by the waiting writes, the
/// listener and the task that owns the cluster connection.
pub struct Confirmations {
    lease: Duration,
    inner: Mutex<Inner>,
    /// A barrier was sent or an acknowledgement arrived: waiters look again.
    changed: Notify,
    /// There is work for the connection's task (a barrier to send, acknowledgements owed).
    work: Notify,
    pub counts: ConfirmCounts,
}

impl Confirmations {
    /// `lease` paces the resending of barriers.
    pub fn new(lease: Duration) -> Confirmations {
        Confirmations {
            lease,
            inner: Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            }),
            changed: Notify::new(),
            work: Notify::new(),
            counts: ConfirmCounts::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn want_barrier(&self) {
        self.lock().barrier_wanted = true;
        self.work.notify_one();
    }

    /// Wait until every other node has applied what this node committed before `committed`
    /// (an instant taken after the commit returned), or until it cannot be answering from a
    /// cache that predates it. (Tokio's clock is the monotonic clock, paused in tests.)
    pub async fn confirm(&self, committed: Instant) -> Outcome {
        let need = {
            let mut inner = self.lock();
            inner.barrier_wanted = true;
            inner.next
        };
        self.work.notify_one();
        let resend = resend_interval(self.lease);
        let mut requested = Instant::now();
        let mut peers: Option<Arc<[Peer]>> = None;
        let outcome = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (done, wake) = {
                let inner = self.lock();
                if peers.is_none()
                    && let Some((n, p)) = &inner.latest
                    && *n >= need
                {
                    peers = Some(p.clone());
                }
                match &peers {
                    None => {
                        let deadline = committed + lapse_bound(MAX_LEASE);
                        (
                            (now >= deadline).then_some(Outcome::Unknown),
                            Some(deadline),
                        )
                    }
                    Some(peers) => {
                        let mut lapsed = Vec::new();
                        let mut wake: Option<Instant> = None;
                        for p in peers.iter() {
                            if inner.acked.get(&p.id).is_some_and(|a| *a >= need) {
                                continue;
                            }
                            let deadline = committed + lapse_bound(p.lease);
                            if now >= deadline {
                                lapsed.push(p.id);
                            } else {
                                wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
                            }
                        }
                        match wake {
                            Some(w) => (None, Some(w)),
                            None if lapsed.is_empty() => (Some(Outcome::Confirmed), None),
                            None => (Some(Outcome::Lapsed(lapsed)), None),
                        }
                    }
                }
            };
            if let Some(outcome) = done {
                break outcome;
            }
            if now >= requested + resend {
                self.want_barrier();
                requested = now;
            }
            let until = wake.map_or(requested + resend, |w| w.min(requested + resend));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        };
        let counter = match &outcome {
            Outcome::Confirmed => &self.counts.confirmed,
            Outcome::Lapsed(_) => &self.counts.lapsed,
            Outcome::Unknown => &self.counts.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let waited = u64::try_from(committed.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counts.waited_us.fetch_add(waited, Ordering::Relaxed);
        outcome
    }

    /// For the connection's task: the number of the barrier to send now, if one is wanted.
    /// Waiters registered from now on need a later one.
    pub fn take_barrier(&self) -> Option<u64> {
        let mut inner = self.lock();
        if !inner.barrier_wanted {
            return None;
        }
        inner.barrier_wanted = false;
        let n = inner.next;
        inner.next += 1;
        Some(n)
    }

    /// A barrier could not be sent: ask for another.
    pub fn barrier_failed(&self) {
        self.want_barrier();
    }

    /// Barrier `n` was sent after reading `peers` (every registered node but this one).
    pub fn barrier_sent(&self, n: u64, peers: Vec<Peer>) {
        {
            let mut inner = self.lock();
            if inner.latest.as_ref().is_none_or(|(m, _)| *m < n) {
                inner.latest = Some((n, peers.into()));
            }
        }
        self.counts.barriers_sent.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Node `from` acknowledged this node's barrier `n`.
    pub fn acknowledged(&self, from: Id, n: u64) {
        {
            let mut inner = self.lock();
            let a = inner.acked.entry(from).or_insert(0);
            *a = (*a).max(n);
        }
        self.changed.notify_waiters();
    }

    /// This node received `origin`'s barrier `n` (having applied everything before it).
    pub fn owe(&self, origin: Id, n: u64) {
        {
            let mut inner = self.lock();
            let o = inner.owed.entry(origin).or_insert(0);
            *o = (*o).max(n);
        }
        self.work.notify_one();
    }

    /// For the connection's task: the acknowledgements to send now.
    pub fn take_owed(&self) -> Vec<(Id, u64)> {
        self.lock().owed.drain().collect()
    }

    /// Acknowledgements that could not be sent: keep them for the next attempt.
    pub fn owed_again(&self, acks: &[(Id, u64)]) {
        {
            let mut inner = self.lock();
            for (origin, n) in acks {
                let o = inner.owed.entry(*origin).or_insert(0);
                *o = (*o).max(*n);
            }
        }
        self.work.notify_one();
    }

    /// Acknowledgements were sent.
    pub fn acks_sent(&self, count: usize) {
        self.counts
            .acks_sent
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Resolves when there is work for the connection's task.
    pub async fn work(&self) {
        self.work.notified().await
    }

    /// Whether there is work right now (checked before waiting).
    pub fn has_work(&self) -> bool {
        let inner = self.lock();
        inner.barrier_wanted || !inner.owed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(lease_ms: u64) -> Peer {
        Peer {
            id: Id::generate(),
            incarnation: "i".into(),
            lease: Duration::from_millis(lease_ms),
            beats: 0,
        }
    }

    #[test]
    fn bounds() {
        let lease = Duration::from_millis(750);
        assert_eq!(lapse_bound(lease), Duration::from_micros(792_500));
        assert_eq!(resend_interval(lease), Duration::from_millis(25));
        assert_eq!(
            resend_interval(Duration::from_secs(10)),
            Duration::from_millis(50)
        );
    }

    /// A waiter is satisfied by acknowledgements of a barrier taken after it started, never
    /// by one taken before.
    #[tokio::test]
    async fn only_a_later_barrier_counts() {
        let c = Arc::new(Confirmations::new(Duration::from_millis(750)));
        let (b, d) = (peer(750), peer(750));
        // A barrier taken and acknowledged before the change committed.
        c.lock().barrier_wanted = true;
        let early = c.take_barrier().unwrap();
        c.barrier_sent(early, vec![b.clone(), d.clone()]);
        c.acknowledged(b.id, early);
        c.acknowledged(d.id, early);

        let committed = Instant::now();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.confirm(committed).await }
        });
        // The waiter asked for a barrier; it gets a new number.
        let n = loop {
            if let Some(n) = c.take_barrier() {
                break n;
            }
            tokio::task::yield_now().await;
        };
        assert!(n > early);
        c.barrier_sent(n, vec![b.clone(), d.clone()]);
        c.acknowledged(b.id, n);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "d has not acknowledged yet");
        c.acknowledged(d.id, n + 1);
        assert_eq!(waiter.await.unwrap(), Outcome::Confirmed);
        assert!(committed.elapsed() < Duration::from_millis(500));
        assert_eq!(c.counts.confirmed.load(Ordering::Relaxed), 1);
    }

    /// A node that never acknowledges holds the answer for its lease bound, no longer.
    #[tokio::test(start_paused = true)]
    async fn a_silent_node_costs_its_lease() {
        let c = Arc::new(Confirmations::new(Duration::from_millis(300)));
        let (quick, silent) = (peer(300), peer(600));
        let committed = Instant::now();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.confirm(committed).await }
        });
        let mut sent = 0;
        let n = loop {
            if let Some(n) = c.take_barrier() {
                break n;
            }
            tokio::task::yield_now().await;
        };
        c.barrier_sent(n, vec![quick.clone(), silent.clone()]);
        c.acknowledged(quick.id, n);
        // Barriers keep being asked for while the silent node says nothing.
        while !waiter.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(m) = c.take_barrier() {
                c.barrier_sent(m, vec![quick.clone(), silent.clone()]);
                sent += 1;
            }
        }
        assert_eq!(waiter.await.unwrap(), Outcome::Lapsed(vec![silent.id]));
        let waited = committed.elapsed();
        assert!(
            waited >= lapse_bound(Duration::from_millis(600)),
            "{waited:?}"
        );
        assert!(waited < lapse_bound(Duration::from_millis(600)) + Duration::from_millis(20));
        assert!(sent >= 10, "barriers were resent {sent} times");
    }

    /// No registered node could be read: the answer waits for the longest lease any node may
    /// have.
    #[tokio::test(start_paused = true)]
    async fn unknown_nodes_cost_the_longest_lease() {
        let c = Arc::new(Confirmations::new(Duration::from_millis(750)));
        let committed = Instant::now();
        let outcome = c.confirm(committed).await;
        assert_eq!(outcome, Outcome::Unknown);
        assert!(committed.elapsed() >= lapse_bound(MAX_LEASE));
    }

    #[test]
    fn owed_acknowledgements_coalesce() {
        let c = Confirmations::new(Duration::from_millis(750));
        let a = Id::generate();
        c.owe(a, 3);
        c.owe(a, 5);
        c.owe(a, 4);
        assert!(c.has_work());
        assert_eq!(c.take_owed(), vec![(a, 5)]);
        assert!(!c.has_work());
        c.owed_again(&[(a, 5)]);
        assert_eq!(c.take_owed(), vec![(a, 5)]);
    }
}
