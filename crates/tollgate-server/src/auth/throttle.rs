//! Throttling of guesses (passwords today; any secret a person types, such as a two-factor
//! code, can use the same thing): a bounded, keyed limiter that is asked *before* the expensive
//! or guessable check, and told afterwards whether the guess was right.
//!
//! Each key (an account, a client address, …) has a bucket of `burst` attempts that refills at
//! one attempt per `interval` (the generic cell rate algorithm: one timestamp per key). An
//! attempt takes one from every bucket it names; a *successful* attempt gives them back, so
//! only failures count. When a bucket is empty the attempt is refused with the time until the
//! next one is allowed, and the check is not run at all: the right password does not get
//! through while an account is throttled.
//!
//! Memory is bounded whatever arrives: keys are stored as 64-bit keyed hashes (no emails or
//! addresses are kept), in a table of at most `capacity` entries. A key whose bucket has
//! refilled carries no information and is dropped when room is needed; when the table is full
//! of keys that are all still throttled, further keys share one overflow bucket, so flooding the
//! table with new keys can neither grow memory nor reset a throttled key.
//!
//! ```ignore
//! let attempt = throttle.attempt(&[Key::account(email), Key::address(ip)])?; // 429 when refused
//! let ok = check_the_guess().await;
//! if ok { attempt.succeeded() } // else dropping `attempt` counts the failure
//! ```

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// One bucket's rule: `burst` attempts at once, then one per `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub interval: Duration,
}

impl Rate {
    fn interval_ms(self) -> u64 {
        u64::try_from(self.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// "10 in a row, then one every 60 s", for messages.
    pub fn describe(self) -> String {
        format!(
            "{} in a row, then one every {}",
            self.burst,
            seconds(self.interval)
        )
    }
}

fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// What a bucket is for. The kind is part of the key (an account and an address never share
/// a bucket) and names the limit in the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key<'a> {
    pub kind: Kind,
    pub value: Cow<'a, [u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Attempts against one account (its email, case-folded).
    Account,
    /// Attempts from one client address (IPv4, or an IPv6 /64).
    Address,
    /// Anything else a caller throttles (say, second-factor codes per user).
    Other(&'static str),
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Account => "for this account",
            Kind::Address => "from this address",
            Kind::Other(what) => what,
        }
    }
}

impl<'a> Key<'a> {
    /// An account, by email: case and surrounding spaces do not make a new account.
    pub fn account(email: &str) -> Key<'static> {
        Key {
            kind: Kind::Account,
            value: Cow::Owned(email.trim().to_lowercase().into_bytes()),
        }
    }

    /// A client address. IPv6 clients usually hold a whole /64, so that is one key.
    pub fn address(ip: IpAddr) -> Key<'static> {
        let bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.octets().to_vec(),
                None => v6.octets()[..8].to_vec(),
            },
        };
        Key {
            kind: Kind::Address,
            value: Cow::Owned(bytes),
        }
    }

    /// Any other key, for example `Key::other("for this code", user_id.as_bytes())`.
    pub fn other(what: &'static str, value: &'a [u8]) -> Key<'a> {
        Key {
            kind: Kind::Other(what),
            value: Cow::Borrowed(value),
        }
    }
}

/// An attempt refused: which limit, and when the next attempt will be allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    pub rate: Rate,
    pub retry_after: Duration,
    /// Whether this is the first refusal since the key was last allowed (log that one; the
    /// rest of a flood need not fill the log).
    pub first: bool,
}

impl Refused {
    /// Whole seconds for `Retry-After` (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// The message of the 429: what is limited, the limit, and when to come back.
    pub fn message(&self, what: &str) -> String {
        format!(
            "Too many failed {what} {}: at most {}; try again in {} s",
            self.kind.describe(),
            self.rate.describe(),
            self.retry_after_secs()
        )
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    /// The theoretical arrival time (ms since the throttle's epoch): the bucket is full when
    /// it is not after now, and empty when it is `burst × interval` after now.
    tat: u64,
    /// Refused since it was last allowed (see [`Refused::first`]).
    refusing: bool,
}

struct Table {
    buckets: HashMap<u64, Bucket, foldhash::fast::RandomState>,
    overflow: Bucket,
    last_prune: u64,
}

/// A keyed limiter with one [`Rate`] per kind of key. Cheap to share behind an `Arc`.
pub struct Throttle {
    rates: Vec<(Kind, Rate)>,
    capacity: usize,
    epoch: Instant,
    hasher: foldhash::fast::RandomState,
    table: Mutex<Table>,
}

/// Keys kept at most, by default (about 16 bytes each: a couple of MB in all).
pub const DEFAULT_CAPACITY: usize = 100_000;

impl Throttle {
    /// A throttle applying `rates` (a kind without a rate is not limited), keeping at most
    /// `capacity` keys.
    pub fn new(rates: &[(Kind, Rate)], capacity: usize) -> Throttle {
        Throttle {
            rates: rates.to_vec(),
            capacity: capacity.max(1),
            epoch: Instant::now(),
            hasher: foldhash::fast::RandomState::default(),
            table: Mutex::new(Table {
                buckets: HashMap::with_hasher(foldhash::fast::RandomState::default()),
                overflow: Bucket {
                    tat: 0,
                    refusing: false,
                },
                last_prune: 0,
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn rate(&self, kind: Kind) -> Option<Rate> {
        self.rates.iter().find(|(k, _)| *k == kind).map(|(_, r)| *r)
    }

    fn hash(&self, key: &Key<'_>) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((key.kind, &*key.value))
    }

    /// Keys held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask for one attempt against every key. All or nothing: when one bucket refuses, none
    /// is charged. The returned [`Attempt`] counts as a failure unless
    /// [`Attempt::succeeded`] is called.
    pub fn attempt(&self, keys: &[Key<'_>]) -> Result<Attempt<'_>, Refused> {
        let now = self.now_ms();
        let limited: Vec<(u64, Kind, Rate)> = keys
            .iter()
            .filter_map(|k| self.rate(k.kind).map(|r| (self.hash(k), k.kind, r)))
            .collect();
        let mut table = self.lock();
        // Check every bucket first, then charge them all.
        let mut refused: Option<Refused> = None;
        for (hash, kind, rate) in &limited {
            let bucket = table.get(*hash, now, self.capacity);
            let t = rate.interval_ms();
            let tat = bucket.tat.max(now) + t;
            let allowance = u64::from(rate.burst.max(1)) * t;
            if tat - now > allowance {
                let retry_after = Duration::from_millis(tat - now - allowance);
                let first = !bucket.refusing;
                table.set(*hash, now, self.capacity, |b| b.refusing = true);
                if refused.as_ref().is_none_or(|r| r.retry_after < retry_after) {
                    refused = Some(Refused {
                        kind: *kind,
                        rate: *rate,
                        retry_after,
                        first,
                    });
                }
            }
        }
        if let Some(r) = refused {
            return Err(r);
        }
        let mut charged = Vec::with_capacity(limited.len());
        for (hash, _, rate) in &limited {
            let t = rate.interval_ms();
            table.set(*hash, now, self.capacity, |b| {
                b.tat = b.tat.max(now) + t;
                b.refusing = false;
            });
            charged.push((*hash, t));
        }
        Ok(Attempt {
            throttle: self,
            charged,
        })
    }

    fn refund(&self, charged: &[(u64, u64)]) {
        let now = self.now_ms();
        let mut table = self.lock();
        for (hash, t) in charged {
            table.set(*hash, now, self.capacity, |b| {
                b.tat = b.tat.saturating_sub(*t);
            });
        }
    }
}

impl Table {
    /// Make room when full: drop keys whose buckets have refilled (at most once a second,
    /// so a flood of newcomers does not scan the table on every attempt).
    fn has_room(&mut self, now: u64, capacity: usize) -> bool {
        if self.buckets.len() >= capacity && now >= self.last_prune + 1000 {
            self.buckets.retain(|_, b| b.tat > now);
            self.last_prune = now;
        }
        self.buckets.len() < capacity
    }

    /// The bucket of `hash`: a full one when the key is not held, the shared overflow bucket
    /// when the table has no room for it.
    fn get(&mut self, hash: u64, now: u64, capacity: usize) -> Bucket {
        match self.buckets.get(&hash).copied() {
            Some(b) => b,
            None if self.has_room(now, capacity) => Bucket {
                tat: 0,
                refusing: false,
            },
            None => self.overflow,
        }
    }

    /// Change the bucket of `hash` (see [`Table::get`] for which one that is).
    fn set(&mut self, hash: u64, now: u64, capacity: usize, change: impl FnOnce(&mut Bucket)) {
        if let Some(b) = self.buckets.get_mut(&hash) {
            change(b);
            if b.tat <= now && !b.refusing {
                // Full again: nothing to remember.
                self.buckets.remove(&hash);
            }
            return;
        }
        if !self.has_room(now, capacity) {
            // Every held key is still throttled: newcomers share one bucket.
            change(&mut self.overflow);
            return;
        }
        let mut b = Bucket {
            tat: 0,
            refusing: false,
        };
        change(&mut b);
        if b.tat > now || b.refusing {
            self.buckets.insert(hash, b);
        }
    }
}

/// One allowed attempt. Dropping it counts as a failure; [`Attempt::succeeded`] gives the
/// attempts back.
#[must_use = "an attempt counts as a failure unless succeeded() is called"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    charged: Vec<(u64, u64)>,
}

impl Attempt<'_> {
    /// The guess was right: it does not count against any key.
    pub fn succeeded(self) {
        self.throttle.refund(&self.charged);
    }

    /// The guess was wrong (the same as dropping the attempt; says so at the call site).
    pub fn failed(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(burst: u32, secs: u64, capacity: usize) -> Throttle {
        let rate = Rate {
            burst,
            interval: Duration::from_secs(secs),
        };
        Throttle::new(&[(Kind::Account, rate), (Kind::Address, rate)], capacity)
    }

    #[test]
    fn failures_count_successes_do_not_and_a_refusal_says_when() {
        let t = throttle(3, 60, 100);
        let alice = || Key::account("Alice@Example.com ");
        for _ in 0..10 {
            t.attempt(&[alice()]).unwrap().succeeded();
        }
        assert!(t.is_empty(), "successes leave nothing behind");
        for _ in 0..3 {
            t.attempt(&[alice()]).unwrap().failed();
        }
        let refused = t
            .attempt(&[Key::account("alice@example.com")])
            .err()
            .unwrap();
        assert_eq!(refused.kind, Kind::Account);
        assert!(refused.first);
        assert!(refused.retry_after > Duration::from_secs(58));
        assert_eq!(refused.retry_after_secs(), 60);
        assert_eq!(
            refused.message("logins"),
            "Too many failed logins for this account: at most 3 in a row, then one every 60 s; try again in 60 s"
        );
        let again = t.attempt(&[alice()]).err().unwrap();
        assert!(!again.first, "only the first refusal is marked for the log");
        // Another account is not affected.
        t.attempt(&[Key::account("bob@example.com")])
            .unwrap()
            .succeeded();
    }

    #[test]
    fn a_refused_attempt_charges_no_other_key() {
        let t = throttle(2, 60, 100);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            t.attempt(&[Key::account("a@x"), Key::address(ip)])
                .unwrap()
                .failed();
        }
        // The address is exhausted; trying another account from it is refused, and that
        // refusal does not use up the other account's attempts.
        let r = t
            .attempt(&[Key::account("b@x"), Key::address(ip)])
            .err()
            .unwrap();
        assert_eq!(r.kind, Kind::Address);
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..2 {
            t.attempt(&[Key::account("b@x"), Key::address(other)])
                .unwrap()
                .failed();
        }
        // An IPv6 /64 is one client.
        let same64: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(
            t.attempt(&[Key::address(same64)]).err().unwrap().kind,
            Kind::Address
        );
    }

    #[test]
    fn memory_is_bounded_and_flooding_does_not_reset_a_throttled_key() {
        let t = throttle(1, 3600, 50);
        t.attempt(&[Key::account("victim@x")]).unwrap().failed();
        for i in 0..10_000 {
            let _ = t.attempt(&[Key::account(&format!("spray{i}@x"))]);
        }
        assert!(t.len() <= 50, "{} keys held", t.len());
        assert!(t.attempt(&[Key::account("victim@x")]).is_err());
        // Newcomers past the capacity share the overflow bucket: refused too.
        assert!(t.attempt(&[Key::account("newcomer@x")]).is_err());
    }

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let rate = Rate {
            burst: 2,
            interval: Duration::from_millis(40),
        };
        let t = Throttle::new(&[(Kind::Other("for this code"), rate)], 10);
        let key = || Key::other("for this code", b"user-1");
        t.attempt(&[key()]).unwrap().failed();
        t.attempt(&[key()]).unwrap().failed();
        let r = t.attempt(&[key()]).err().unwrap();
        assert!(r.retry_after <= Duration::from_millis(40));
        std::thread::sleep(r.retry_after + Duration::from_millis(5));
        t.attempt(&[key()]).unwrap().failed();
    }
}
