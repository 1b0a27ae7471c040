//! Verifying bearer secrets, from memory when it is safe to.
//!
//! A presented secret is first checked for shape and checksum (no lookup at all when that
//! fails), then hashed with SHA-256 and looked up: in the verified-credential cache, then in
//! the cache of digests known not to exist, and only then in the database.
//!
//! The caches never make a revoked credential pass:
//! * every change to a token, application or session is applied here synchronously by the
//!   node that makes it (the store calls [`Credentials::apply`] after commit), and by every
//!   other node when the database's change notification arrives;
//! * a load from the database that raced with a change is used for that one request but not
//!   cached (the `epoch` check);
//! * while this node cannot hear change notifications (`trusted == false`), nothing is served
//!   from cache at all, and everything is dropped when it hears them again;
//! * with several nodes (PostgreSQL), the cache is also used only under a *lease*: the change
//!   listener renews it each time one of this node's heartbeats comes back through the
//!   database, to the heartbeat's send time plus the lease length. Notifications arrive in
//!   commit order, so every change committed before that send time has been applied. Whatever
//!   goes wrong (a connection that dies without a word, a stalled listener, a database gone),
//!   an answer from cache is never older than the lease: after it, every request goes to the
//!   database, which answers or fails (503), never a cached "yes".
//!
//! Expiry and status are checked on every request against the current time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tollgate_core::secret::{self, Digest, SecretKind};
use tollgate_core::{ActionSet, Scope};
use tollgate_store::tokens::{TokenRecord, TokenStatus};
use tollgate_store::{Change, Id, Store, now_ms};

use crate::error::ApiError;

/// An application API token, as the authorization layer needs it.
#[derive(Debug)]
pub struct TokenEntry {
    pub id: Id,
    pub application_id: Id,
    pub name: String,
    pub scope: Scope,
    /// The scope compiled over the registry: one bit per action.
    pub allowed: ActionSet,
    pub active: bool,
    pub expires: Option<i64>,
    /// Start of the minute it was last seen in use (0: not since it was loaded).
    last_used: AtomicI64,
}

impl TokenEntry {
    fn from_record(r: &TokenRecord) -> Result<TokenEntry, ApiError> {
        let scope = Scope::parse(&r.scope).map_err(|e| {
            tracing::error!(token = %r.id, error = %e, "stored token scope no longer parses");
            ApiError::internal()
        })?;
        Ok(TokenEntry {
            id: r.id,
            application_id: r.application_id,
            name: r.name.clone(),
            allowed: scope.compile(),
            scope,
            active: r.status == TokenStatus::Active,
            expires: r.expiration_date,
            last_used: AtomicI64::new(r.last_used.unwrap_or(0)),
        })
    }

    pub fn last_used(&self) -> Option<i64> {
        Some(self.last_used.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

/// A user's login session.
#[derive(Debug)]
pub struct SessionEntry {
    pub user_id: Id,
    pub expires: i64,
}

/// Who a verified secret belongs to.
#[derive(Clone, Debug)]
pub enum Principal {
    Token(Arc<TokenEntry>),
    User(Arc<SessionEntry>),
}

/// Digests remembered as unknown, at most; then the set starts over.
const MAX_UNKNOWN: usize = 100_000;

#[derive(Default)]
struct TokenCache {
    by_digest: HashMap<Digest, Arc<TokenEntry>>,
    digest_of: HashMap<Id, Digest>,
}

pub struct Credentials {
    store: Store,
    tokens: RwLock<TokenCache>,
    sessions: RwLock<HashMap<Digest, Arc<SessionEntry>>>,
    unknown: RwLock<HashSet<Digest>>,
    /// Bumped by every applied change; a load that saw it move is not cached.
    epoch: AtomicU64,
    /// False while this node may be missing change notifications.
    trusted: AtomicBool,
    /// Length of the cache lease in microseconds; 0 when no lease is needed (one node).
    lease_us: AtomicI64,
    /// The cache may be used until this time (microseconds on [`monotonic_us`]'s clock).
    lease_until: AtomicI64,
    /// How often a heartbeat came back after the lease had already run out.
    lease_lapses: AtomicU64,
    /// Tokens seen in use since the last flush: id → minute.
    used: Mutex<HashMap<Id, i64>>,
}

impl Credentials {
    pub fn new(store: Store) -> Credentials {
        monotonic_us(Instant::now());
        Credentials {
            store,
            tokens: RwLock::default(),
            sessions: RwLock::default(),
            unknown: RwLock::default(),
            epoch: AtomicU64::new(0),
            trusted: AtomicBool::new(true),
            lease_us: AtomicI64::new(0),
            lease_until: AtomicI64::new(0),
            lease_lapses: AtomicU64::new(0),
            used: Mutex::default(),
        }
    }

    /// Verify a presented secret. Every failure is a 401 whose message says what is wrong
    /// without repeating the secret.
    pub async fn verify(&self, presented: &str) -> Result<Principal, ApiError> {
        let kind = secret::check(presented)
            .map_err(|e| ApiError::unauthorized(format!("Invalid token: {e}")))?;
        let digest = secret::digest(presented);
        let now = now_ms();
        match kind {
            SecretKind::ApplicationToken => {
                let entry = self.token(&digest).await?;
                if !entry.active {
                    return Err(ApiError::unauthorized("This API token is inactive"));
                }
                if entry.expires.is_some_and(|e| e <= now) {
                    return Err(ApiError::unauthorized("This API token has expired"));
                }
                self.note_use(&entry, now);
                Ok(Principal::Token(entry))
            }
            SecretKind::UserSession => {
                let session = self.session(&digest).await?;
                if session.expires <= now {
                    return Err(ApiError::unauthorized(
                        "This session has expired: log in again",
                    ));
                }
                Ok(Principal::User(session))
            }
        }
    }

    fn cache_usable(&self) -> bool {
        if !self.trusted.load(Ordering::Acquire) {
            return false;
        }
        let lease = self.lease_us.load(Ordering::Acquire);
        lease == 0 || monotonic_us(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    async fn token(&self, digest: &Digest) -> Result<Arc<TokenEntry>, ApiError> {
        if self.cache_usable() {
            if let Some(e) = read(&self.tokens).by_digest.get(digest) {
                return Ok(e.clone());
            }
            if read(&self.unknown).contains(digest) {
                return Err(unknown_token());
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let record = self.store.token_by_digest(digest).await?;
        let cacheable = self.cache_usable() && self.epoch.load(Ordering::Acquire) == epoch;
        let Some(record) = record else {
            if cacheable {
                let mut unknown = write(&self.unknown);
                if unknown.len() >= MAX_UNKNOWN {
                    unknown.clear();
                }
                unknown.insert(*digest);
            }
            return Err(unknown_token());
        };
        let entry = Arc::new(TokenEntry::from_record(&record)?);
        if cacheable {
            let mut cache = write(&self.tokens);
            // Re-check under the lock: a change applied between the load and here wins.
            if self.epoch.load(Ordering::Acquire) == epoch {
                cache.digest_of.insert(entry.id, *digest);
                cache.by_digest.insert(*digest, entry.clone());
            }
        }
        Ok(entry)
    }

    async fn session(&self, digest: &Digest) -> Result<Arc<SessionEntry>, ApiError> {
        if self.cache_usable()
            && let Some(s) = read(&self.sessions).get(digest)
        {
            return Ok(s.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let session = self.store.session_by_digest(digest).await?.ok_or_else(|| {
            ApiError::unauthorized("Invalid token: this session does not exist or has ended")
        })?;
        let entry = Arc::new(SessionEntry {
            user_id: session.user_id,
            expires: session.expiration_date,
        });
        if self.cache_usable() {
            let mut sessions = write(&self.sessions);
            if self.epoch.load(Ordering::Acquire) == epoch {
                sessions.insert(*digest, entry.clone());
            }
        }
        Ok(entry)
    }

    fn note_use(&self, entry: &TokenEntry, now: i64) {
        let minute = now - now.rem_euclid(60_000);
        if entry.last_used.load(Ordering::Relaxed) < minute {
            entry.last_used.store(minute, Ordering::Relaxed);
            lock(&self.used).insert(entry.id, minute);
        }
    }

    /// When a token was last seen in use by this node, if more recent than the database knows.
    pub fn last_used(&self, id: Id) -> Option<i64> {
        let cache = read(&self.tokens);
        let digest = cache.digest_of.get(&id)?;
        cache.by_digest.get(digest)?.last_used()
    }

    /// Write the last-used times gathered since the previous flush (one transaction).
    pub async fn flush_last_used(&self) -> Result<(), tollgate_store::StoreError> {
        let pending: Vec<(Id, i64)> = lock(&self.used).drain().collect();
        if let Err(e) = self.store.record_last_used(&pending).await {
            // Keep them for the next attempt.
            let mut used = lock(&self.used);
            for (id, at) in pending {
                used.entry(id).or_insert(at);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Apply a change made by this node or announced by another.
    pub fn apply(&self, change: &Change) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Token(id) => {
                let mut cache = write(&self.tokens);
                if let Some(d) = cache.digest_of.remove(id) {
                    cache.by_digest.remove(&d);
                }
                drop(cache);
                // A new token's digest may have been presented (and remembered as unknown)
                // before it was created.
                write(&self.unknown).clear();
            }
            Change::Application(app) => {
                let mut cache = write(&self.tokens);
                let TokenCache {
                    by_digest,
                    digest_of,
                } = &mut *cache;
                by_digest.retain(|_, e| {
                    let keep = e.application_id != *app;
                    if !keep {
                        digest_of.remove(&e.id);
                    }
                    keep
                });
            }
            Change::Session(hex) => {
                write(&self.sessions).retain(|d, _| tollgate_store::users::hex(d) != *hex);
            }
            Change::All => self.clear(),
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drop every cached credential.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *write(&self.tokens) = TokenCache::default();
        write(&self.sessions).clear();
        write(&self.unknown).clear();
    }

    /// Mark whether change notifications are being received. Losing them stops all cache
    /// use; regaining them starts from an empty cache (and, under a lease, with no lease until
    /// the first heartbeat on the new connection comes back).
    pub fn set_trusted(&self, trusted: bool) {
        if trusted {
            self.clear();
        } else {
            self.lease_until.store(0, Ordering::Release);
        }
        self.trusted.store(trusted, Ordering::Release);
        if !trusted {
            self.clear();
        }
    }

    /// Other nodes change the database too: answer from cache only while the change feed is
    /// up ([`Credentials::set_trusted`]) and under a lease of `lease`, renewed by
    /// [`Credentials::renew_lease`]. Until then nothing is served from cache.
    pub fn require_lease(&self, lease: Duration) {
        let us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX).max(1);
        self.trusted.store(false, Ordering::Release);
        self.lease_until.store(0, Ordering::Release);
        self.lease_us.store(us, Ordering::Release);
        self.clear();
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

    /// Whether cached answers may be used right now, and why not (for `/health`).
    pub fn cache_state(&self) -> CacheState {
        if self.lease_us.load(Ordering::Acquire) == 0 {
            CacheState::SingleNode
        } else if !self.trusted.load(Ordering::Acquire) {
            CacheState::FeedDown
        } else if self.cache_usable() {
            CacheState::Live
        } else {
            CacheState::LeaseLapsed
        }
    }

    /// How many verified tokens are cached (for metrics and tests).
    pub fn cached_tokens(&self) -> usize {
        read(&self.tokens).by_digest.len()
    }
}

/// Whether this node answers from its credential cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// One node (SQLite): every change is made here and applied at once.
    SingleNode,
    /// The change feed is up and the lease is current: the cache is used.
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

/// Microseconds since a fixed instant of this process (a monotonic clock for leases).
pub fn monotonic_us(at: Instant) -> i64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    i64::try_from(at.saturating_duration_since(base).as_micros()).unwrap_or(i64::MAX)
}

fn unknown_token() -> ApiError {
    ApiError::unauthorized("Invalid token: no such API token (it may have been deleted)")
}

// Lock poisoning only follows a panic while holding the lock, which these short sections do
// not do; recover the data rather than take the server down.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}
