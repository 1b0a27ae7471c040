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
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hashbrown::HashTable;
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
    pub digest: Digest,
    pub id: Id,
    pub application_id: Id,
    /// Shared by every cached token with the same scope strings.
    pub scope: Arc<TokenScope>,
    pub active: bool,
    pub expires: Option<i64>,
    /// Its restrictions, compiled at load (`None`: unrestricted, the common case).
    pub restrictions: Option<Arc<crate::restrict::Compiled>>,
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
    /// The session's id (what the console's sessions page names it by).
    pub id: Id,
    pub user_id: Id,
    pub expires: i64,
    /// Start of the minute it was last seen in use (0: not since it was loaded).
    last_used: AtomicI64,
    /// SHA-256 of the session secret: what ends it, and how writes name the session they
    /// act with (see `tollgate_store::Actor`).
    pub digest: Digest,
}

/// Who a verified secret belongs to.
#[derive(Clone, Debug)]
pub enum Principal {
    Token(Arc<TokenEntry>),
    User(Arc<SessionEntry>),
}

/// Digests remembered as unknown, at most; then the set starts over.
const MAX_UNKNOWN: usize = 100_000;

/// Verified tokens, found by digest. A `HashTable` of entries that carry their own digest:
/// one pointer per slot instead of a 32-byte key beside it, which with a million tokens is the
/// difference between about 150 and 270 MB (see BENCHMARKS.md).
#[derive(Default)]
struct TokenCache {
    table: HashTable<Arc<TokenEntry>>,
    hasher: foldhash::fast::RandomState,
}

impl TokenCache {
    fn hash(&self, digest: &Digest) -> u64 {
        self.hasher.hash_one(digest)
    }

    fn get(&self, digest: &Digest) -> Option<&Arc<TokenEntry>> {
        self.table.find(self.hash(digest), |e| e.digest == *digest)
    }

    fn insert(&mut self, entry: Arc<TokenEntry>) {
        let hash = self.hash(&entry.digest);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |e| e.digest == entry.digest,
            |e| hasher.hash_one(e.digest),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
    }

    fn remove(&mut self, digest: &Digest) {
        let hash = self.hash(digest);
        if let Ok(o) = self.table.find_entry(hash, |e| e.digest == *digest) {
            o.remove();
        }
    }
}

/// What verification did, counted (exported as metrics; the load benchmark uses them to show
/// that rejected tokens never reach the database on repeat).
#[derive(Default)]
pub struct VerifyCounts {
    pub malformed: AtomicU64,
    /// Application tokens.
    pub from_cache: AtomicU64,
    pub unknown_from_cache: AtomicU64,
    pub from_database: AtomicU64,
    /// Login sessions.
    pub session_from_cache: AtomicU64,
    pub unknown_session_from_cache: AtomicU64,
    pub session_from_database: AtomicU64,
}

pub struct Credentials {
    store: Store,
    freshness: Arc<Freshness>,
    tokens: RwLock<TokenCache>,
    sessions: RwLock<DigestMap<Arc<SessionEntry>>>,
    unknown: RwLock<DigestSet>,
    /// Parsed scopes, by their stored JSON text, so equal scopes are parsed and held once.
    scopes: Mutex<HashMap<String, Arc<TokenScope>>>,
    /// Tokens seen in use since the last flush: id → (minute, digest).
    used: Mutex<HashMap<Id, (i64, Digest)>>,
    /// Bumped whenever the last-used time this node shows for a token may have changed (a
    /// use noted, an entry loaded): answers rendered with those times say which they saw.
    shown_uses: AtomicU64,
    /// Bumped after every flush that recorded last-used times.
    flushes: AtomicU64,
    /// Sessions seen in use since the last flush: id → minute.
    used_sessions: Mutex<HashMap<Id, i64>>,
    pub counts: VerifyCounts,
    /// Rate and usage-limit counters of restricted tokens on this node.
    counters: Arc<crate::restrict::Counters>,
}

impl Credentials {
    pub fn new(store: Store, freshness: Arc<Freshness>) -> Credentials {
        Credentials {
            store: store.clone(),
            freshness,
            tokens: RwLock::default(),
            sessions: RwLock::default(),
            unknown: RwLock::default(),
            scopes: Mutex::default(),
            used: Mutex::default(),
            used_sessions: Mutex::default(),
            shown_uses: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            counts: VerifyCounts::default(),
            counters: Arc::new(crate::restrict::Counters::new(store.clone())),
        }
    }

    /// Verify a presented secret. Every failure is a 401 whose message says what is wrong
    /// without repeating the secret.
    pub async fn verify(&self, presented: &str) -> Result<Principal, ApiError> {
        match self.verify_in_memory(presented) {
            InMemory::Answer(answer) => answer,
            InMemory::AskDatabase(SecretKind::ApplicationToken, digest) => {
                let entry = self.token_from_database(&digest).await?;
                self.admit_token(entry, now_ms())
            }
            InMemory::AskDatabase(SecretKind::UserSession, digest) => {
                let session = self.session_from_database(&digest).await?;
                self.admit_session(session, now_ms())
            }
        }
    }

    /// The part of verification that runs from memory: shape and checksum, SHA-256, the
    /// caches, status and expiry. Answers unless the database must be asked.
    pub fn verify_in_memory(&self, presented: &str) -> InMemory {
        let kind = match secret::check(presented) {
            Ok(kind) => kind,
            Err(e) => {
                self.counts.malformed.fetch_add(1, Ordering::Relaxed);
                return InMemory::Answer(Err(ApiError::unauthorized(malformed_message(e))));
            }
        };
        let digest = secret::digest(presented);
        if kind == SecretKind::ApplicationToken && self.freshness.usable() {
            if let Some(entry) = read(&self.tokens).get(&digest).cloned() {
                self.counts.from_cache.fetch_add(1, Ordering::Relaxed);
                return InMemory::Answer(self.admit_token(entry, now_ms()));
            }
            if read(&self.unknown).contains(&digest) {
                self.counts
                    .unknown_from_cache
                    .fetch_add(1, Ordering::Relaxed);
                return InMemory::Answer(Err(unknown_token()));
            }
        }
        if kind == SecretKind::UserSession && self.freshness.usable() {
            if let Some(session) = read(&self.sessions).get(&digest).cloned() {
                self.counts
                    .session_from_cache
                    .fetch_add(1, Ordering::Relaxed);
                return InMemory::Answer(self.admit_session(session, now_ms()));
            }
            // Session secrets are remembered as unknown in the same set as tokens' (they
            // cannot collide: the digests are of secrets with different prefixes).
            if read(&self.unknown).contains(&digest) {
                self.counts
                    .unknown_session_from_cache
                    .fetch_add(1, Ordering::Relaxed);
                return InMemory::Answer(Err(unknown_session()));
            }
        }
        InMemory::AskDatabase(kind, digest)
    }

    /// A known token is let in if it is active and not expired.
    fn admit_token(&self, entry: Arc<TokenEntry>, now: i64) -> Result<Principal, ApiError> {
        if !entry.active {
            return Err(ApiError::unauthorized("This API token is inactive"));
        }
        if entry.expires.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthorized("This API token has expired"));
        }
        self.note_use(&entry, now);
        Ok(Principal::Token(entry))
    }

    async fn token_from_database(&self, digest: &Digest) -> Result<Arc<TokenEntry>, ApiError> {
        self.counts.from_database.fetch_add(1, Ordering::Relaxed);
        let epoch = self.freshness.epoch();
        let key = self.store.token_by_digest(digest).await?;
        let Some(key) = key else {
            self.remember_unknown(digest, epoch);
            return Err(unknown_token());
        };
        let entry = self.entry(digest, &key)?;
        self.keep(&entry, epoch);
        Ok(entry)
    }

    /// The rate and usage-limit counters of this node.
    pub fn counters(&self) -> &crate::restrict::Counters {
        &self.counters
    }

    /// Put a stored token into the cache as if it had just been loaded (the preload does this
    /// for every token; benchmarks use it to fill the cache without a database).
    pub fn prime(&self, digest: &Digest, key: &TokenKey) -> Result<(), ApiError> {
        let entry = self.entry(digest, key)?;
        self.keep(&entry, self.freshness.epoch());
        Ok(())
    }

    /// A cache entry for a stored token (its scope interned).
    fn entry(&self, digest: &Digest, key: &TokenKey) -> Result<Arc<TokenEntry>, ApiError> {
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
        let restrictions =
            tollgate_core::restrictions::Restrictions::from_stored(key.restrictions_json.as_deref())
                .map_err(|e| {
                    tracing::error!(token = %key.id, error = %e, "stored token restrictions no longer parse");
                    ApiError::internal()
                })?;
        Ok(Arc::new(TokenEntry {
            digest: *digest,
            id: key.id,
            application_id: key.application_id,
            restrictions: crate::restrict::compile(restrictions, key.id, &self.counters),
            scope,
            active: key.status == TokenStatus::Active,
            expires: key.expiration_date,
            last_used: AtomicI64::new(key.last_used.unwrap_or(0)),
        }))
    }

    /// Cache `entry` unless a change was applied since the load began at `epoch` (checked
    /// again under the lock: a change applied meanwhile wins).
    fn keep(&self, entry: &Arc<TokenEntry>, epoch: u64) {
        if self.freshness.may_keep(epoch) {
            let mut cache = write(&self.tokens);
            if self.freshness.may_keep(epoch) {
                cache.insert(entry.clone());
                self.shown_uses.fetch_add(1, Ordering::Release);
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
            .for_each_token_key(|digest, key| match self.entry(&digest, &key) {
                Ok(entry) => {
                    self.keep(&entry, epoch);
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

    /// Remember that no credential has `digest`, unless a change was applied since the lookup
    /// began at `epoch` (a digest is never created after it was looked up: secrets are random
    /// and shown only once created, and a token's creation removes it anyway).
    fn remember_unknown(&self, digest: &Digest, epoch: u64) {
        if self.freshness.may_keep(epoch) {
            let mut unknown = write(&self.unknown);
            if unknown.len() >= MAX_UNKNOWN {
                unknown.clear();
            }
            if self.freshness.may_keep(epoch) {
                unknown.insert(*digest);
            }
        }
    }

    async fn session_from_database(&self, digest: &Digest) -> Result<Arc<SessionEntry>, ApiError> {
        self.counts
            .session_from_database
            .fetch_add(1, Ordering::Relaxed);
        let epoch = self.freshness.epoch();
        let Some(session) = self.store.session_by_digest(digest).await? else {
            self.remember_unknown(digest, epoch);
            return Err(unknown_session());
        };
        let entry = Arc::new(SessionEntry {
            id: session.id,
            user_id: session.user_id,
            expires: session.expiration_date,
            last_used: AtomicI64::new(0),
            digest: *digest,
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
            lock(&self.used).insert(entry.id, (minute, entry.digest));
            self.shown_uses.fetch_add(1, Ordering::Release);
        }
    }

    /// A known session is let in if it has not expired; its use is noted (minute precision).
    fn admit_session(&self, session: Arc<SessionEntry>, now: i64) -> Result<Principal, ApiError> {
        if session.expires <= now {
            return Err(ApiError::unauthorized(
                "This session has expired: log in again",
            ));
        }
        let minute = now - now.rem_euclid(60_000);
        if session.last_used.load(Ordering::Relaxed) < minute {
            session.last_used.store(minute, Ordering::Relaxed);
            lock(&self.used_sessions).insert(session.id, minute);
        }
        Ok(Principal::User(session))
    }

    /// The id of the cached token whose secret is `presented`, if any (to count a refused
    /// request against its token: an inactive or expired token is cached when verified).
    pub fn cached_token_id(&self, presented: &str) -> Option<Id> {
        if secret::check(presented).ok()? != SecretKind::ApplicationToken {
            return None;
        }
        let digest = secret::digest(presented);
        read(&self.tokens).get(&digest).map(|e| e.id)
    }

    /// When a token was last seen in use by this node, if more recent than the database knows.
    pub fn last_used(&self, digest: &Digest) -> Option<i64> {
        read(&self.tokens).get(digest)?.last_used()
    }

    /// Write the last-used times of tokens and sessions gathered since the previous flush
    /// (one transaction for each).
    pub async fn flush_last_used(&self) -> Result<(), tollgate_store::StoreError> {
        let pending: Vec<(Id, (i64, Digest))> = lock(&self.used).drain().collect();
        // Cached token answers on this node show each token's time as the later of the
        // database's and this node's memory: if, once committed, memory still holds every
        // time flushed, the flush changes none of them (the posture counts, read from the
        // database, follow `flushes`). Otherwise (an entry was dropped, and perhaps loaded
        // again from the database) they go.
        let uses: Vec<(Id, i64)> = pending.iter().map(|(id, (at, _))| (*id, *at)).collect();
        let shown_here = || {
            let tokens = read(&self.tokens);
            pending.iter().all(|(id, (at, digest))| {
                tokens
                    .get(digest)
                    .is_some_and(|e| e.id == *id && e.last_used.load(Ordering::Relaxed) >= *at)
            })
        };
        let recorded = self.store.record_last_used_unless(&uses, shown_here).await;
        if let Err(e) = recorded {
            // Keep them for the next attempt.
            let mut used = lock(&self.used);
            for (id, at) in pending {
                used.entry(id).or_insert(at);
            }
            return Err(e);
        }
        if !uses.is_empty() {
            self.flushes.fetch_add(1, Ordering::Release);
        }
        let pending: Vec<(Id, i64)> = lock(&self.used_sessions).drain().collect();
        if let Err(e) = self.store.record_session_last_used(&pending).await {
            let mut used = lock(&self.used_sessions);
            for (id, at) in pending {
                used.entry(id).or_insert(at);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Changes whenever a last-used time this node shows may have changed (see `shown_uses`).
    pub fn shown_uses(&self) -> u64 {
        self.shown_uses.load(Ordering::Acquire)
    }

    /// How many flushes have recorded last-used times.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// When a session was last seen in use by this node (minute), if since it was loaded.
    pub fn session_last_used(&self, digest: &Digest) -> Option<i64> {
        let sessions = read(&self.sessions);
        let t = sessions.get(digest)?.last_used.load(Ordering::Relaxed);
        (t > 0).then_some(t)
    }

    /// Apply a change made by this node or announced by another.
    pub fn apply(&self, change: &Change) {
        self.freshness.bump();
        match change {
            Change::Token { digest, .. } => {
                write(&self.tokens).remove(digest);
                self.shown_uses.fetch_add(1, Ordering::Release);
                // A new token's digest may have been presented (and remembered as unknown)
                // before it was created.
                write(&self.unknown).remove(digest);
            }
            Change::Application(app) => {
                write(&self.tokens)
                    .table
                    .retain(|e| e.application_id != *app);
                self.shown_uses.fetch_add(1, Ordering::Release);
            }
            Change::Session(hex) => {
                write(&self.sessions).retain(|d, _| tollgate_store::users::hex(d) != *hex);
            }
            Change::User(user) => {
                write(&self.sessions).retain(|_, s| s.user_id != *user);
            }
            Change::All => self.clear(),
            Change::Device(_) | Change::State(_) | Change::Reads { .. } => {}
        }
        self.freshness.bump();
    }

    /// Drop every cached credential.
    pub fn clear(&self) {
        self.freshness.bump();
        *write(&self.tokens) = TokenCache::default();
        self.shown_uses.fetch_add(1, Ordering::Release);
        write(&self.sessions).clear();
        write(&self.unknown).clear();
    }

    /// How many verified tokens are cached (for metrics and tests).
    pub fn cached_tokens(&self) -> usize {
        read(&self.tokens).table.len()
    }
}

/// What the in-memory part of verification found.
pub enum InMemory {
    /// Decided without the database.
    Answer(Result<Principal, ApiError>),
    /// Not in memory: the database must be asked about this digest.
    AskDatabase(SecretKind, Digest),
}

fn malformed_message(e: FormatError) -> &'static str {
    match e {
        FormatError::Length => "Invalid token: it does not have the length of a Tollgate token",
        FormatError::Prefix => "Invalid token: it does not start with a Tollgate token prefix",
        FormatError::Alphabet => "Invalid token: it contains characters a Tollgate token never has",
        FormatError::Checksum => {
            "Invalid token: its checksum does not match (mistyped or truncated)"
        }
    }
}

fn unknown_token() -> ApiError {
    ApiError::unauthorized("Invalid token: no such API token (it may have been deleted)")
}

fn unknown_session() -> ApiError {
    ApiError::unauthorized("Invalid token: this session does not exist or has ended")
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
