//! Verifying bearer secrets, from memory when it is safe to.
//!
//! A presented secret is first checked for shape and checksum (no lookup at all when that
//! fails), then hashed with SHA-256 and looked up: in the verified-credential cache, then in
//! the cache of digests known not to exist, and only then in the database.
//!
//! The caches never make a revoked credential pass: every change to a token, application or
//! session is applied here synchronously by the node that makes it (the store's change hook,
//! see `AppState`), and by every other node when the database's change notification arrives;
//! whether the caches may answer at all, and whether a load that raced with a change may be
//! kept, is decided by the node's [`Freshness`] gate. Expiry and status are checked on every
//! request against the current time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tollgate_core::secret::{self, Digest, FormatError, SecretKind};
use tollgate_core::{ActionSet, Scope};
use tollgate_store::tokens::{TokenKey, TokenStatus};
use tollgate_store::{Change, Id, Store, now_ms};

use crate::error::ApiError;
use crate::freshness::Freshness;

/// Digests are SHA-256 outputs, but an attacker chooses the tokens they come from, so maps
/// keyed by them use a keyed hash (seeded per process), which is also fast.
type DigestMap<V> = HashMap<Digest, V, foldhash::fast::RandomState>;
type DigestSet = HashSet<Digest, foldhash::fast::RandomState>;

/// An application API token, as the authorization layer needs it.
#[derive(Debug)]
pub struct TokenEntry {
    pub id: Id,
    pub application_id: Id,
    /// Shared by every cached token with the same scope strings.
    pub scope: Arc<TokenScope>,
    pub active: bool,
    pub expires: Option<i64>,
    /// Start of the minute it was last seen in use (0: not since it was loaded).
    last_used: AtomicI64,
}

/// A scope, parsed and compiled once for all tokens that carry it.
#[derive(Debug)]
pub struct TokenScope {
    pub scope: Scope,
    /// The scope compiled over the registry: one bit per action.
    pub allowed: ActionSet,
}

impl TokenEntry {
    pub fn allowed(&self) -> &ActionSet {
        &self.scope.allowed
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
    by_digest: DigestMap<Arc<TokenEntry>>,
    digest_of: HashMap<Id, Digest>,
}

/// What verification did, counted (exported as metrics; the load benchmark uses them to show
/// that rejected tokens never reach the database on repeat).
#[derive(Default)]
pub struct VerifyCounts {
    pub malformed: AtomicU64,
    pub from_cache: AtomicU64,
    pub unknown_from_cache: AtomicU64,
    pub from_database: AtomicU64,
}

pub struct Credentials {
    store: Store,
    freshness: Arc<Freshness>,
    tokens: RwLock<TokenCache>,
    sessions: RwLock<DigestMap<Arc<SessionEntry>>>,
    unknown: RwLock<DigestSet>,
    /// Parsed scopes, by their stored JSON text, so equal scopes are parsed and held once.
    scopes: Mutex<HashMap<String, Arc<TokenScope>>>,
    /// Tokens seen in use since the last flush: id → minute.
    used: Mutex<HashMap<Id, i64>>,
    pub counts: VerifyCounts,
}

impl Credentials {
    pub fn new(store: Store, freshness: Arc<Freshness>) -> Credentials {
        Credentials {
            store,
            freshness,
            tokens: RwLock::default(),
            sessions: RwLock::default(),
            unknown: RwLock::default(),
            scopes: Mutex::default(),
            used: Mutex::default(),
            counts: VerifyCounts::default(),
        }
    }

    /// Verify a presented secret. Every failure is a 401 whose message says what is wrong
    /// without repeating the secret.
    pub async fn verify(&self, presented: &str) -> Result<Principal, ApiError> {
        let kind = secret::check(presented).map_err(|e| {
            self.counts.malformed.fetch_add(1, Ordering::Relaxed);
            ApiError::unauthorized(match e {
                FormatError::Length => {
                    "Invalid token: it does not have the length of a Tollgate token"
                }
                FormatError::Prefix => {
                    "Invalid token: it does not start with a Tollgate token prefix"
                }
                FormatError::Alphabet => {
                    "Invalid token: it contains characters a Tollgate token never has"
                }
                FormatError::Checksum => {
                    "Invalid token: its checksum does not match (mistyped or truncated)"
                }
            })
        })?;
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

    async fn token(&self, digest: &Digest) -> Result<Arc<TokenEntry>, ApiError> {
        if self.freshness.usable() {
            if let Some(e) = read(&self.tokens).by_digest.get(digest) {
                self.counts.from_cache.fetch_add(1, Ordering::Relaxed);
                return Ok(e.clone());
            }
            if read(&self.unknown).contains(digest) {
                self.counts
                    .unknown_from_cache
                    .fetch_add(1, Ordering::Relaxed);
                return Err(unknown_token());
            }
        }
        self.counts.from_database.fetch_add(1, Ordering::Relaxed);
        let epoch = self.freshness.epoch();
        let key = self.store.token_by_digest(digest).await?;
        let Some(key) = key else {
            if self.freshness.may_keep(epoch) {
                let mut unknown = write(&self.unknown);
                if unknown.len() >= MAX_UNKNOWN {
                    unknown.clear();
                }
                if self.freshness.may_keep(epoch) {
                    unknown.insert(*digest);
                }
            }
            return Err(unknown_token());
        };
        let entry = self.entry(&key)?;
        self.keep(digest, &entry, epoch);
        Ok(entry)
    }

    /// A cache entry for a stored token (its scope interned).
    fn entry(&self, key: &TokenKey) -> Result<Arc<TokenEntry>, ApiError> {
        let scope = {
            let mut scopes = lock(&self.scopes);
            match scopes.get(&key.scope_json) {
                Some(s) => s.clone(),
                None => {
                    let scope = serde_json::from_str::<Vec<String>>(&key.scope_json)
                        .ok()
                        .and_then(|items| Scope::parse(&items).ok())
                        .ok_or_else(|| {
                            tracing::error!(token = %key.id, "stored token scope no longer parses");
                            ApiError::internal()
                        })?;
                    let s = Arc::new(TokenScope {
                        allowed: scope.compile(),
                        scope,
                    });
                    scopes.insert(key.scope_json.clone(), s.clone());
                    s
                }
            }
        };
        Ok(Arc::new(TokenEntry {
            id: key.id,
            application_id: key.application_id,
            scope,
            active: key.status == TokenStatus::Active,
            expires: key.expiration_date,
            last_used: AtomicI64::new(key.last_used.unwrap_or(0)),
        }))
    }

    /// Cache `entry` under `digest` unless a change was applied since the load began at
    /// `epoch` (checked again under the lock: a change applied meanwhile wins).
    fn keep(&self, digest: &Digest, entry: &Arc<TokenEntry>, epoch: u64) {
        if self.freshness.may_keep(epoch) {
            let mut cache = write(&self.tokens);
            if self.freshness.may_keep(epoch) {
                cache.digest_of.insert(entry.id, *digest);
                cache.by_digest.insert(*digest, entry.clone());
            }
        }
    }

    /// Load every stored token into the cache (`serve --preload-tokens`), so that even a
    /// token's first request is answered from memory. Returns how many were loaded.
    pub async fn preload(&self) -> Result<usize, tollgate_store::StoreError> {
        let epoch = self.freshness.epoch();
        let mut loaded = 0;
        let mut failed = None;
        self.store
            .for_each_token_key(|digest, key| match self.entry(&key) {
                Ok(entry) => {
                    self.keep(&digest, &entry, epoch);
                    loaded += 1;
                }
                Err(e) => failed = Some(e),
            })
            .await?;
        if failed.is_some() {
            tracing::warn!("some stored token scopes did not parse; those tokens load on use");
        }
        Ok(loaded)
    }

    async fn session(&self, digest: &Digest) -> Result<Arc<SessionEntry>, ApiError> {
        if self.freshness.usable()
            && let Some(s) = read(&self.sessions).get(digest)
        {
            return Ok(s.clone());
        }
        let epoch = self.freshness.epoch();
        let session = self.store.session_by_digest(digest).await?.ok_or_else(|| {
            ApiError::unauthorized("Invalid token: this session does not exist or has ended")
        })?;
        let entry = Arc::new(SessionEntry {
            user_id: session.user_id,
            expires: session.expiration_date,
        });
        if self.freshness.may_keep(epoch) {
            let mut sessions = write(&self.sessions);
            if self.freshness.may_keep(epoch) {
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
        self.freshness.bump();
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
            Change::Device(_) => {}
        }
        self.freshness.bump();
    }

    /// Drop every cached credential.
    pub fn clear(&self) {
        self.freshness.bump();
        *write(&self.tokens) = TokenCache::default();
        write(&self.sessions).clear();
        write(&self.unknown).clear();
    }

    /// How many verified tokens are cached (for metrics and tests).
    pub fn cached_tokens(&self) -> usize {
        read(&self.tokens).by_digest.len()
    }
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
