//! Whether this node's in-memory caches may answer: one gate shared by every cache that
//! answers from memory (verified credentials, devices).
//!
//! * Every change this node makes, or hears of from another node, bumps the `epoch`; a cache
//!   that loads from the database keeps the result only if the epoch did not move meanwhile
//!   ([`Freshness::may_keep`]), so a load that raced with a change is used for that one
//!   request and never cached.
//! * While this node may be missing change notifications (`trusted == false`), no cache
//!   answers; when it hears them again, every cache starts empty.
//! * With several nodes (PostgreSQL), caches answer only under a *lease*: the change listener
//!   renews it each time one of this node's heartbeats comes back through the database, to
//!   the heartbeat's send time plus the lease length. Notifications arrive in commit order,
//!   so every change committed before that send time has been applied. Whatever goes wrong (a
//!   connection that dies without a word, a stalled listener, a database gone), an answer
//!   from cache is never older than the lease: after it, every request goes to the database,
//!   which answers or fails (503), never a cached "yes".

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Freshness {
    /// Bumped by every applied change.
    epoch: AtomicU64,
    /// False while this node may be missing change notifications.
    trusted: AtomicBool,
    /// Length of the cache lease in microseconds; 0 when no lease is needed (one node).
    lease_us: AtomicI64,
    /// Caches may answer until this time (microseconds on [`monotonic_us`]'s clock).
    lease_until: AtomicI64,
    /// How often a heartbeat came back after the lease had already run out.
    lease_lapses: AtomicU64,
}

impl Default for Freshness {
    fn default() -> Self {
        monotonic_us(Instant::now());
        Freshness {
            epoch: AtomicU64::new(0),
            trusted: AtomicBool::new(true),
            lease_us: AtomicI64::new(0),
            lease_until: AtomicI64::new(0),
            lease_lapses: AtomicU64::new(0),
        }
    }
}

/// Whether this node answers from its caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// One node (SQLite): every change is made here and applied at once.
    SingleNode,
    /// The change feed is up and the lease is current: the caches answer.
    Live,
    /// The change feed is up but no heartbeat came back within the lease: every request goes
    /// to the database until one does.
    LeaseLapsed,
    /// The change feed is down: every request goes to the database.
    FeedDown,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::SingleNode => "single-node",
            CacheState::Live => "live",
            CacheState::LeaseLapsed => "lease-lapsed",
            CacheState::FeedDown => "down",
        }
    }
}

impl Freshness {
    /// May a cache answer now?
    #[inline]
    pub fn usable(&self) -> bool {
        if !self.trusted.load(Ordering::Acquire) {
            return false;
        }
        let lease = self.lease_us.load(Ordering::Acquire);
        lease == 0 || monotonic_us(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    /// The current epoch, read before a load from the database.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// May the result of a load that began at `epoch` be kept? (Check it again under the
    /// cache's write lock, so a change applied meanwhile always wins.)
    pub fn may_keep(&self, epoch: u64) -> bool {
        self.usable() && self.epoch() == epoch
    }

    /// Something changed: loads in flight must not be kept.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Mark whether change notifications are being received. The caller empties the caches
    /// (see `AppState::set_change_feed`).
    pub fn set_trusted(&self, trusted: bool) {
        if !trusted {
            self.lease_until.store(0, Ordering::Release);
        }
        self.bump();
        self.trusted.store(trusted, Ordering::Release);
    }

    /// Other nodes change the database too: answer from cache only while the change feed is
    /// up and under a lease of `lease`, renewed by [`Freshness::renew_lease`]. Until then no
    /// cache answers.
    pub fn require_lease(&self, lease: Duration) {
        let us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX).max(1);
        self.trusted.store(false, Ordering::Release);
        self.lease_until.store(0, Ordering::Release);
        self.lease_us.store(us, Ordering::Release);
        self.bump();
    }

    /// A heartbeat sent at `sent_at` (on [`monotonic_us`]'s clock) came back through the
    /// change feed: every change committed before `sent_at` has been applied, so cached
    /// answers are good until `sent_at` plus the lease.
    pub fn renew_lease(&self, sent_at: i64) {
        let lease = self.lease_us.load(Ordering::Acquire);
        let until = sent_at.saturating_add(lease);
        let before = self.lease_until.fetch_max(until, Ordering::AcqRel);
        if before != 0 && before < monotonic_us(Instant::now()) {
            self.lease_lapses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How often the lease ran out while the change feed was up (heartbeats too slow to come
    /// back): each time, requests went to the database until the next heartbeat.
    pub fn lease_lapses(&self) -> u64 {
        self.lease_lapses.load(Ordering::Relaxed)
    }

    /// Whether caches answer right now, and why not (for `/health`).
    pub fn state(&self) -> CacheState {
        if self.lease_us.load(Ordering::Acquire) == 0 {
            CacheState::SingleNode
        } else if !self.trusted.load(Ordering::Acquire) {
            CacheState::FeedDown
        } else if self.usable() {
            CacheState::Live
        } else {
            CacheState::LeaseLapsed
        }
    }
}

/// Microseconds since a fixed instant of this process (a monotonic clock for leases).
pub fn monotonic_us(at: Instant) -> i64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    i64::try_from(at.saturating_duration_since(base).as_micros()).unwrap_or(i64::MAX)
}
