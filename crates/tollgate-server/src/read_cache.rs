//! Read actions answered from memory: `application.get`, `applicationApiTokens.get`,
//! `applicationApiToken.get`, `flows.get` and `devices.get` keep what they read from the
//! database here, under the same [`Freshness`] gate and change feed as cached credentials and
//! devices:
//!
//! * every write that changes what one of these reads answers records a change
//!   ([`Change::Reads`], or the token, application and device changes it already recorded),
//!   applied on this node right after its commit and before the write answers, and on other
//!   nodes when its notice arrives;
//! * a load from the database is kept only if no change was applied while it ran (the epoch,
//!   checked again under the write lock), so a load that raced with a write is used for that
//!   one request and never cached;
//! * while the change feed is down or the lease has run out, nothing here answers.
//!
//! So an answer from here is never older than a write this node acknowledged before the
//! request began, and never older than the lease for writes made through other nodes.
//!
//! Entries are grouped by application and [`Part`], so a change drops exactly the answers it
//! can affect. What is kept is what the database answered (a rendered body where the answer
//! depends on nothing else; records where the answer also depends on the time or on this
//! node's memory, which the handler renders per request). At most [`MAX_ENTRIES`] answers are
//! kept; past that the cache starts again empty (the keys include query strings, which
//! clients choose).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tollgate_store::{Change, Id, Part};

use crate::freshness::Freshness;

/// How many answers are kept at most (all applications together).
pub const MAX_ENTRIES: usize = 100_000;

type Answers = HashMap<Box<str>, Arc<dyn Any + Send + Sync>, foldhash::fast::RandomState>;

pub struct ReadCache {
    freshness: Arc<Freshness>,
    entries: RwLock<Groups>,
    len: AtomicUsize,
    /// Answers by part: `[from cache, from the database]`.
    counts: [[AtomicU64; 2]; 4],
}

fn index(part: Part) -> usize {
    match part {
        Part::Application => 0,
        Part::Tokens => 1,
        Part::Flows => 2,
        Part::Devices => 3,
    }
}

impl ReadCache {
    pub fn new(freshness: Arc<Freshness>) -> ReadCache {
        ReadCache {
            freshness,
            entries: RwLock::default(),
            len: AtomicUsize::new(0),
            counts: Default::default(),
        }
    }

    /// The answer kept for `what` of `part` of `application` if the gate allows it and
    /// `still_good` says it holds at this moment (answers that depend on the time say until
    /// when); otherwise `load` it from the database and keep it if `keep` allows (an answer
    /// that changes without a change notice must not be kept) and nothing changed meanwhile.
    /// Errors are never kept.
    pub async fn get<T, E, Fut>(
        &self,
        application: Id,
        part: Part,
        what: &str,
        still_good: impl Fn(&T) -> bool,
        keep: impl FnOnce(&T) -> bool,
        load: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.freshness.usable()
            && let Some(found) = read(&self.entries)
                .get(&(application, part))
                .and_then(|a| a.get(what))
                .cloned()
            && let Ok(found) = found.downcast::<T>()
            && still_good(&found)
        {
            self.counts[index(part)][0].fetch_add(1, Ordering::Relaxed);
            return Ok(found);
        }
        self.counts[index(part)][1].fetch_add(1, Ordering::Relaxed);
        let epoch = self.freshness.epoch();
        let loaded = Arc::new(load().await?);
        if keep(&loaded) && self.freshness.may_keep(epoch) {
            let mut entries = write(&self.entries);
            // Checked again under the lock: a change applied meanwhile wins.
            if self.freshness.may_keep(epoch) {
                if self.len.load(Ordering::Relaxed) >= MAX_ENTRIES {
                    entries.clear();
                    self.len.store(0, Ordering::Relaxed);
                }
                let answers = entries.entry((application, part)).or_default();
                let value: Arc<dyn Any + Send + Sync> = loaded.clone();
                if answers.insert(what.into(), value).is_none() {
                    self.len.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(loaded)
    }

    /// Apply a change made by this node or announced by another.
    pub fn apply(&self, change: &Change) {
        self.freshness.bump();
        {
            let mut entries = write(&self.entries);
            let len = &self.len;
            let entries = &mut *entries;
            match change {
                Change::Reads {
                    application: Some(app),
                    part,
                } => {
                    if let Some(gone) = entries.remove(&(*app, *part)) {
                        len.fetch_sub(gone.len(), Ordering::Relaxed);
                    }
                }
                Change::Reads {
                    application: None,
                    part,
                } => retain(entries, len, |k| k.1 != *part),
                // A token's notice does not say its application: every token answer goes.
                Change::Token { .. } => retain(entries, len, |k| k.1 != Part::Tokens),
                Change::Application(app) => retain(entries, len, |k| k.0 != *app),
                Change::All => retain(entries, len, |_| false),
                // Device lists change with their own `Reads` notice; state (`state_cache`),
                // sessions and users are not part of any answer kept here.
                Change::Device(_) | Change::State(_) | Change::Session(_) | Change::User(_) => {}
            }
        }
        self.freshness.bump();
    }

    pub fn clear(&self) {
        self.freshness.bump();
        write(&self.entries).clear();
        self.len.store(0, Ordering::Relaxed);
    }

    /// How many answers are kept.
    pub fn cached(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// How many answers of `part` came from memory and how many from the database.
    pub fn counts(&self, part: Part) -> (u64, u64) {
        let c = &self.counts[index(part)];
        (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
    }
}

type Groups = HashMap<(Id, Part), Answers, foldhash::fast::RandomState>;

/// Keep the groups of answers `keep` says, counting those dropped off `len`.
fn retain(entries: &mut Groups, len: &AtomicUsize, keep: impl Fn(&(Id, Part)) -> bool) {
    entries.retain(|k, answers| {
        let kept = keep(k);
        if !kept {
            len.fetch_sub(answers.len(), Ordering::Relaxed);
        }
        kept
    });
}

// See `auth::credentials`: these sections never panic while holding the lock.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(c: &ReadCache, app: Id, part: Part, what: &str, v: u32) -> u32 {
        *c.get(
            app,
            part,
            what,
            |_| true,
            |_| true,
            || async { Ok::<_, ()>(v) },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn changes_drop_exactly_the_answers_they_affect() {
        let c = ReadCache::new(Arc::new(Freshness::default()));
        let (a, b) = (Id::generate(), Id::generate());
        assert_eq!(get(&c, a, Part::Application, "", 1).await, 1);
        assert_eq!(get(&c, a, Part::Application, "", 2).await, 1, "kept");
        get(&c, a, Part::Flows, "q", 1).await;
        get(&c, b, Part::Tokens, "q", 1).await;
        get(&c, b, Part::Flows, "q", 1).await;
        assert_eq!(c.cached(), 4);
        assert_eq!(c.counts(Part::Application), (1, 1));

        c.apply(&Change::Reads {
            application: Some(a),
            part: Part::Application,
        });
        assert_eq!(get(&c, a, Part::Application, "", 3).await, 3, "reloaded");
        assert_eq!(get(&c, a, Part::Flows, "q", 9).await, 1, "other part kept");
        c.apply(&Change::Token {
            id: Id::generate(),
            digest: [0; 32],
        });
        assert_eq!(get(&c, b, Part::Tokens, "q", 5).await, 5);
        assert_eq!(get(&c, b, Part::Flows, "q", 9).await, 1);
        c.apply(&Change::Application(b));
        assert_eq!(get(&c, b, Part::Flows, "q", 6).await, 6);
        assert_eq!(
            get(&c, a, Part::Flows, "q", 9).await,
            1,
            "other application kept"
        );
        c.apply(&Change::Reads {
            application: None,
            part: Part::Flows,
        });
        assert_eq!(get(&c, a, Part::Flows, "q", 7).await, 7);
        c.apply(&Change::All);
        assert_eq!(c.cached(), 0);
    }

    #[tokio::test]
    async fn a_load_that_raced_with_a_change_is_not_kept() {
        let c = ReadCache::new(Arc::new(Freshness::default()));
        let app = Id::generate();
        let v = c
            .get(
                app,
                Part::Application,
                "",
                |_| true,
                |_| true,
                || async {
                    // A write commits and is applied while this load is running.
                    c.apply(&Change::Reads {
                        application: Some(app),
                        part: Part::Application,
                    });
                    Ok::<_, ()>(1u32)
                },
            )
            .await
            .unwrap();
        assert_eq!(*v, 1, "used for this request");
        assert_eq!(c.cached(), 0, "but not kept");
        assert_eq!(get(&c, app, Part::Application, "", 2).await, 2);
    }

    #[tokio::test]
    async fn nothing_answers_while_the_feed_is_down_and_keep_and_still_good_are_obeyed() {
        let f = Arc::new(Freshness::default());
        let c = ReadCache::new(f.clone());
        let app = Id::generate();
        get(&c, app, Part::Devices, "", 1).await;
        f.set_trusted(false);
        assert_eq!(get(&c, app, Part::Devices, "", 2).await, 2);
        f.set_trusted(true);
        c.clear();
        let not_kept = c
            .get(
                app,
                Part::Tokens,
                "",
                |_| true,
                |_| false,
                || async { Ok::<_, ()>(1u32) },
            )
            .await
            .unwrap();
        assert_eq!(*not_kept, 1);
        assert_eq!(c.cached(), 0);
        get(&c, app, Part::Tokens, "", 1).await;
        let expired = c
            .get(
                app,
                Part::Tokens,
                "",
                |v: &u32| *v > 1,
                |_| true,
                || async { Ok::<_, ()>(2u32) },
            )
            .await
            .unwrap();
        assert_eq!(*expired, 2, "an answer no longer good is loaded again");
    }
}
