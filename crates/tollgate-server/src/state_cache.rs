//! Device state answered from memory: `device.getState` and `device.getCompositeState` in their
//! default form (no time range: the newest reports, the latest value of each attribute) and
//! `data.lastValueQuery` by device ids keep what they read from the database here, per
//! device, under the same [`Freshness`] gate and change feed as every other cache
//! (`read_cache`, `device_cache`):
//!
//! * every store write that changes a device's state records a change: state reports
//!   ([`Change::State`], recorded by the group commit after its commit and before any of its
//!   requests is answered, and by a report written alone in its own commit), a device changed
//!   or deleted ([`Change::Device`]: removed or retyped attributes lose their points), an
//!   application deleted, anything ([`Change::All`]). Each is applied on this node before the
//!   write answers, and on other nodes when its notice arrives;
//! * a load from the database is kept only if no change was applied while it ran (the epoch,
//!   checked again under the write lock). State reports are far more frequent than any other
//!   write (a fleet reports all day), so they do not move the shared epoch, which would stop
//!   every other cache from keeping what it loads: they move one of [`STRIPES`] counters
//!   chosen by the device, which a load of that device's state checks too;
//! * while the change feed is down or the lease has run out, nothing here answers.
//!
//! Answers also depend on the clock: a report may be up to a day ahead of it, and becomes part
//! of "the newest report" only when its time comes. A load at time *t* also reads the first
//! report after *t*; the answer holds until then ([`StateAnswer::holds_at`]). And on the
//! device's declared attributes: an answer is used only for the attributes (and types) it was
//! read for.
//!
//! **Bound.** Answers are weighed (about the bytes they hold); at most [`MAX_BYTES`] are kept
//! (all devices together), after which the cache starts again empty, and an answer heavier
//! than [`MAX_ANSWER_BYTES`] is never kept. Only `device.getState` answers of at most
//! [`MAX_KEPT_REPORTS`] reports are kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Bytes;
use tollgate_core::attribute::{DataType, Stored};
use tollgate_store::states::StoredReport;
use tollgate_store::{Change, Id};

use crate::freshness::Freshness;

/// The most bytes (as weighed by [`StateAnswer::weight`]) kept for all devices together.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// An answer heavier than this is used for its request only.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// `device.getState` answers of more reports than this are not kept.
pub const MAX_KEPT_REPORTS: i64 = 100;
/// Counters moved by state reports, by device (see the module's comment).
pub const STRIPES: usize = 1024;

/// The declared attributes an answer was read for, in the device's order.
pub type Types = Vec<(String, DataType)>;

/// What is kept of a device's state.
#[derive(Debug)]
pub enum Held {
    /// The newest reports (`device.getState` with a limit and a direction, no range).
    Reports(Vec<StoredReport>),
    /// The latest value of each declared attribute that has one: (name, time, value).
    Latest(Vec<(String, i64, Stored)>),
}

/// One kept answer.
#[derive(Debug)]
pub struct StateAnswer {
    pub types: Types,
    pub held: Held,
    /// The first report after the load's time: the answer holds until then.
    pub until: Option<i64>,
    /// The response body in its default form, rendered the first time it is asked for.
    rendered: OnceLock<Bytes>,
}

impl StateAnswer {
    pub fn new(types: Types, held: Held, until: Option<i64>) -> StateAnswer {
        StateAnswer {
            types,
            held,
            until,
            rendered: OnceLock::new(),
        }
    }

    /// Whether this answer is the database's at `now` for a device declaring `types`.
    pub fn holds_at(&self, now: i64, types: &[(&str, DataType)]) -> bool {
        self.until.is_none_or(|u| now < u)
            && self.types.len() == types.len()
            && self
                .types
                .iter()
                .zip(types)
                .all(|((n, t), (m, u))| n == m && t == u)
    }

    /// The response body, rendered by `render` the first time it is asked for.
    pub fn rendered(&self, render: impl FnOnce(&StateAnswer) -> Bytes) -> Bytes {
        self.rendered.get_or_init(|| render(self)).clone()
    }

    /// About the bytes this answer holds.
    pub fn weight(&self) -> usize {
        fn stored(v: &Stored) -> usize {
            match v {
                Stored::Num(_) => 8,
                Stored::Txt(s) => s.len(),
            }
        }
        let types: usize = self.types.iter().map(|(n, _)| n.len() + 32).sum();
        let held: usize = match &self.held {
            Held::Reports(reports) => reports
                .iter()
                .map(|r| {
                    64 + r.meta.as_ref().map_or(0, |m| m.to_string().len())
                        + r.values
                            .iter()
                            .map(|(n, v)| 48 + n.len() + stored(v))
                            .sum::<usize>()
                })
                .sum(),
            Held::Latest(values) => values
                .iter()
                .map(|(n, _, v)| 48 + n.len() + stored(v))
                .sum(),
        };
        128 + types + held
    }
}

struct Answers {
    application: Id,
    by_query: HashMap<Box<str>, (Arc<StateAnswer>, usize), foldhash::fast::RandomState>,
}

type Devices = HashMap<Id, Answers, foldhash::fast::RandomState>;

pub struct StateCache {
    freshness: Arc<Freshness>,
    devices: RwLock<Devices>,
    bytes: AtomicUsize,
    answers: AtomicUsize,
    /// Moved by every state report of a device hashed to the stripe.
    stripes: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
    /// Answers `[from cache, from the database]`.
    counts: [AtomicU64; 2],
}

impl StateCache {
    pub fn new(freshness: Arc<Freshness>) -> StateCache {
        StateCache {
            freshness,
            devices: RwLock::default(),
            bytes: AtomicUsize::new(0),
            answers: AtomicUsize::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
            counts: Default::default(),
        }
    }

    fn stripe(&self, device: Id) -> &AtomicU64 {
        use std::hash::BuildHasher;
        &self.stripes[(self.hasher.hash_one(device) as usize) % STRIPES]
    }

    /// The answer kept for `what` of `device` (of `application`) if the gate allows it and
    /// `still_good` says it holds now; otherwise `load` it and keep it if `keep` allows and
    /// nothing changed meanwhile. Errors are never kept.
    pub async fn get<E, Fut>(
        &self,
        application: Id,
        device: Id,
        what: &str,
        still_good: impl Fn(&StateAnswer) -> bool,
        keep: bool,
        load: impl FnOnce() -> Fut,
    ) -> Result<Arc<StateAnswer>, E>
    where
        Fut: Future<Output = Result<StateAnswer, E>>,
    {
        if self.freshness.usable()
            && let Some(found) = read(&self.devices)
                .get(&device)
                .filter(|a| a.application == application)
                .and_then(|a| a.by_query.get(what))
                .map(|(a, _)| a.clone())
            && still_good(&found)
        {
            self.counts[0].fetch_add(1, Ordering::Relaxed);
            return Ok(found);
        }
        self.counts[1].fetch_add(1, Ordering::Relaxed);
        let stripe = self.stripe(device);
        let reports = stripe.load(Ordering::Acquire);
        let epoch = self.freshness.epoch();
        let loaded = Arc::new(load().await?);
        let weight = loaded.weight();
        let unchanged =
            || self.freshness.may_keep(epoch) && stripe.load(Ordering::Acquire) == reports;
        if keep && weight <= MAX_ANSWER_BYTES && unchanged() {
            let mut devices = write(&self.devices);
            // Checked again under the lock: a change applied meanwhile wins.
            if unchanged() {
                if self.bytes.load(Ordering::Relaxed) + weight > MAX_BYTES {
                    self.clear_locked(&mut devices);
                }
                let answers = devices.entry(device).or_insert_with(|| Answers {
                    application,
                    by_query: HashMap::default(),
                });
                if answers.application == application {
                    if let Some((_, old)) = answers
                        .by_query
                        .insert(what.into(), (loaded.clone(), weight))
                    {
                        self.bytes.fetch_sub(old, Ordering::Relaxed);
                    } else {
                        self.answers.fetch_add(1, Ordering::Relaxed);
                    }
                    self.bytes.fetch_add(weight, Ordering::Relaxed);
                }
            }
        }
        Ok(loaded)
    }

    /// Apply a change made by this node or announced by another.
    pub fn apply(&self, change: &Change) {
        if let Change::State(id) = change {
            // Only this device's stripe moves (see the module's comment).
            let stripe = self.stripe(*id);
            stripe.fetch_add(1, Ordering::AcqRel);
            if let Some(gone) = write(&self.devices).remove(id) {
                self.forget(&gone);
            }
            stripe.fetch_add(1, Ordering::AcqRel);
            return;
        }
        self.freshness.bump();
        {
            let mut devices = write(&self.devices);
            match change {
                Change::Device(id) => {
                    if let Some(gone) = devices.remove(id) {
                        self.forget(&gone);
                    }
                }
                Change::Application(app) => devices.retain(|_, a| {
                    let kept = a.application != *app;
                    if !kept {
                        self.forget(a);
                    }
                    kept
                }),
                Change::All => self.clear_locked(&mut devices),
                // Tokens, sessions, users and the other read answers are no part of a
                // device's state (and reports were handled above).
                Change::State(_)
                | Change::Token { .. }
                | Change::Session(_)
                | Change::User(_)
                | Change::Reads { .. } => {}
            }
        }
        self.freshness.bump();
    }

    fn forget(&self, gone: &Answers) {
        let bytes: usize = gone.by_query.values().map(|(_, w)| w).sum();
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.answers
            .fetch_sub(gone.by_query.len(), Ordering::Relaxed);
    }

    fn clear_locked(&self, devices: &mut Devices) {
        devices.clear();
        self.bytes.store(0, Ordering::Relaxed);
        self.answers.store(0, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.freshness.bump();
        self.clear_locked(&mut write(&self.devices));
    }

    /// How many answers are kept, and about how many bytes they hold.
    pub fn cached(&self) -> (usize, usize) {
        (
            self.answers.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// How many answers came from memory and how many from the database.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
        )
    }
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

    fn latest(v: f64, until: Option<i64>) -> StateAnswer {
        StateAnswer::new(
            vec![("t".into(), DataType::Number)],
            Held::Latest(vec![("t".into(), 1, Stored::Num(v))]),
            until,
        )
    }

    async fn get(c: &StateCache, app: Id, dev: Id, v: f64) -> f64 {
        let a = c
            .get(
                app,
                dev,
                "latest",
                |_| true,
                true,
                || async { Ok::<_, ()>(latest(v, None)) },
            )
            .await
            .unwrap();
        match &a.held {
            Held::Latest(values) => match values[0].2 {
                Stored::Num(n) => n,
                _ => unreachable!(),
            },
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn changes_drop_exactly_the_devices_they_affect_and_the_weight_follows() {
        let c = StateCache::new(Arc::new(Freshness::default()));
        let (app, other) = (Id::generate(), Id::generate());
        let (d1, d2, d3) = (Id::generate(), Id::generate(), Id::generate());
        assert_eq!(get(&c, app, d1, 1.0).await, 1.0);
        assert_eq!(get(&c, app, d1, 2.0).await, 1.0, "kept");
        get(&c, app, d2, 1.0).await;
        get(&c, other, d3, 1.0).await;
        assert_eq!(c.cached().0, 3);
        let one = latest(1.0, None).weight();
        assert_eq!(c.cached().1, 3 * one);
        assert_eq!(c.counts(), (1, 3));
        c.apply(&Change::State(d1));
        assert_eq!(get(&c, app, d1, 3.0).await, 3.0, "reloaded");
        assert_eq!(get(&c, app, d2, 9.0).await, 1.0, "other device kept");
        c.apply(&Change::Device(d2));
        assert_eq!(get(&c, app, d2, 4.0).await, 4.0);
        c.apply(&Change::Token {
            id: d1,
            digest: [0; 32],
        });
        assert_eq!(get(&c, app, d1, 9.0).await, 3.0, "tokens do not matter");
        c.apply(&Change::Application(app));
        assert_eq!(c.cached(), (1, one), "only the other application's device");
        assert_eq!(get(&c, other, d3, 9.0).await, 1.0);
        c.apply(&Change::All);
        assert_eq!(c.cached(), (0, 0));
    }

    #[tokio::test]
    async fn a_raced_load_an_unusable_gate_and_the_clock_are_obeyed() {
        let f = Arc::new(Freshness::default());
        let c = StateCache::new(f.clone());
        let (app, dev) = (Id::generate(), Id::generate());
        c.get(
            app,
            dev,
            "latest",
            |_| true,
            true,
            || async {
                c.apply(&Change::State(dev));
                Ok::<_, ()>(latest(1.0, None))
            },
        )
        .await
        .unwrap();
        assert_eq!(
            c.cached().0,
            0,
            "a load that raced with a report is not kept"
        );
        let epoch = f.epoch();
        c.apply(&Change::State(Id::generate()));
        assert_eq!(
            f.epoch(),
            epoch,
            "reports leave the other caches' epoch alone"
        );
        get(&c, app, dev, 1.0).await;
        f.set_trusted(false);
        assert_eq!(get(&c, app, dev, 2.0).await, 2.0, "the feed is down");
        f.set_trusted(true);
        c.clear();
        let types = [("t", DataType::Number)];
        let a = latest(1.0, Some(100));
        assert!(a.holds_at(99, &types));
        assert!(!a.holds_at(100, &types), "a report's time has come");
        assert!(!a.holds_at(1, &[("t", DataType::String)]), "retyped");
        assert!(!a.holds_at(1, &[]), "removed");
        // Another application's request for the same device id is not answered from here.
        get(&c, app, dev, 5.0).await;
        assert_eq!(get(&c, Id::generate(), dev, 6.0).await, 6.0);
    }

    #[tokio::test]
    async fn the_bound_starts_the_cache_again() {
        let c = StateCache::new(Arc::new(Freshness::default()));
        let app = Id::generate();
        let big = |n: usize| {
            StateAnswer::new(
                vec![("t".into(), DataType::String)],
                Held::Latest(vec![("t".into(), 1, Stored::Txt("x".repeat(n)))]),
                None,
            )
        };
        c.get(
            app,
            Id::generate(),
            "latest",
            |_| true,
            true,
            || async { Ok::<_, ()>(big(MAX_ANSWER_BYTES)) },
        )
        .await
        .unwrap();
        assert_eq!(c.cached().0, 0, "too heavy to keep");
        let each = big(MAX_ANSWER_BYTES / 2).weight();
        for _ in 0..MAX_BYTES / each + 1 {
            c.get(
                app,
                Id::generate(),
                "latest",
                |_| true,
                true,
                || async { Ok::<_, ()>(big(MAX_ANSWER_BYTES / 2)) },
            )
            .await
            .unwrap();
        }
        assert!(c.cached().1 <= MAX_BYTES, "{:?}", c.cached());
        assert!(c.cached().0 >= 1);
    }
}
