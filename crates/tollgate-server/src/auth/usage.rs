//! Per-token usage on the hot path: what each token asked for, counted in memory and written
//! in batches, like last-used times (`Credentials::flush_last_used`).
//!
//! The guard calls [`Usage::record`] once per request that presented a token it could
//! identify: admitted (`outcome` 0) or refused (401 for an inactive or expired token, 403 for
//! an action outside its scope, 404 for another application). A record is one lock of one of
//! [`SHARDS`] small maps (chosen by the token id, so requests of different tokens rarely meet)
//! and an increment, plus a push onto the shard's list of recent requests. Nothing is
//! allocated for it in the common case: the recent request holds the action, the address and
//! the status as plain values and shares the shard's last user agent (clients send the same
//! one on every request); the text the database stores is made at flush. The background
//! flush ([`Usage::flush`], every `--last-used-flush-secs`, and at a clean stop) swaps the
//! maps out and *adds* them to the database (`Store::add_token_usage`), so every node's counts
//! sum and none is lost when a node stops cleanly. What a failed flush held is merged back
//! for the next one.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tollgate_core::Action;
use tollgate_store::usage::{DAY_MS, RECENT_PER_TOKEN, RecentRequest, UsageCount};
use tollgate_store::{Id, Store, StoreError};

/// Shards of the counters (a power of two).
const SHARDS: usize = 16;

/// Recent requests held per shard between flushes, at most: the oldest go first (a token
/// hammering the server cannot grow memory without bound; each token's newest 100 are what is
/// kept anyway).
const MAX_RECENT_PER_SHARD: usize = 4096;

/// Longest user agent kept (the rest is cut).
const MAX_USER_AGENT: usize = 256;

/// The counters' key: token, action, day, outcome.
type CountKey = (Id, Action, i64, u16);

/// A recent request as held in memory until the flush turns it into a [`RecentRequest`].
struct Recent {
    token: Id,
    at: i64,
    action: Action,
    status: u16,
    client: Option<IpAddr>,
    user_agent: Option<Arc<str>>,
}

impl Recent {
    fn to_stored(&self) -> RecentRequest {
        RecentRequest {
            token: self.token,
            at: self.at,
            action: self.action.name().to_owned(),
            status: self.status,
            client_address: self.client.map(|c| c.to_string()),
            user_agent: self.user_agent.as_deref().map(str::to_owned),
        }
    }
}

#[derive(Default)]
struct Shard {
    counts: HashMap<CountKey, u64, foldhash::fast::RandomState>,
    /// Recent requests since the last flush (at most [`RECENT_PER_TOKEN`] per token are
    /// written; older ones are dropped at flush).
    recent: VecDeque<Recent>,
    /// The user agent last recorded in this shard, as received and as kept.
    last_user_agent: Option<(Box<str>, Arc<str>)>,
}

impl Shard {
    /// What is kept of `ua`: the shard's last one again when it is the same text.
    fn user_agent(&mut self, ua: &str) -> Arc<str> {
        if let Some((received, kept)) = &self.last_user_agent
            && **received == *ua
        {
            return kept.clone();
        }
        let kept: Arc<str> = kept_user_agent(ua).into();
        self.last_user_agent = Some((ua.into(), kept.clone()));
        kept
    }
}

/// What is kept of a user agent: at most [`MAX_USER_AGENT`] bytes, and nothing of it if it
/// carries a bearer secret (a client may put anything there).
fn kept_user_agent(ua: &str) -> String {
    if ua.contains("tgat_") || ua.contains("tgus_") {
        return "[redacted]".to_owned();
    }
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}

/// This node's unflushed usage.
pub struct Usage {
    enabled: bool,
    shards: Vec<Mutex<Shard>>,
}

impl Usage {
    /// `enabled: false` records nothing (`serve --token-usage off`).
    pub fn new(enabled: bool) -> Usage {
        Usage {
            enabled,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn shard(&self, token: Id) -> &Mutex<Shard> {
        // The id's last hexadecimal digit: the low bits of its creation counter.
        let last = char::from(token.hex_bytes()[23]).to_digit(16).unwrap_or(0);
        &self.shards[last as usize % SHARDS]
    }

    /// Count one request of `token` for `action` (`outcome` 0: admitted; else the refusal's
    /// status) and add it to the token's recent requests with the response's `status`.
    pub fn record(
        &self,
        token: Id,
        action: Action,
        outcome: u16,
        status: u16,
        client: Option<IpAddr>,
        user_agent: Option<&str>,
    ) {
        if !self.enabled {
            return;
        }
        let now = tollgate_store::now_ms();
        let day = now.div_euclid(DAY_MS);
        let mut shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        *shard
            .counts
            .entry((token, action, day, outcome))
            .or_default() += 1;
        let user_agent = user_agent.map(|ua| shard.user_agent(ua));
        if shard.recent.len() >= MAX_RECENT_PER_SHARD {
            shard.recent.pop_front();
        }
        shard.recent.push_back(Recent {
            token,
            at: now,
            action,
            status,
            client,
            user_agent,
        });
    }

    /// Add everything counted since the last flush to the database. On failure it is kept
    /// for the next attempt.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let mut counts: HashMap<CountKey, u64> = HashMap::new();
        let mut recent: Vec<Recent> = Vec::new();
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (k, n) in s.counts.drain() {
                *counts.entry(k).or_default() += n;
            }
            recent.extend(s.recent.drain(..));
        }
        if counts.is_empty() && recent.is_empty() {
            return Ok(());
        }
        // Only the newest RECENT_PER_TOKEN of each token can survive the trim: write no more.
        recent.sort_by_key(|r| std::cmp::Reverse(r.at));
        let mut per_token: HashMap<Id, i64> = HashMap::new();
        recent.retain(|r| {
            let n = per_token.entry(r.token).or_default();
            *n += 1;
            *n <= RECENT_PER_TOKEN
        });
        let rows: Vec<UsageCount> = counts
            .iter()
            .map(|(&(token, action, day, outcome), &count)| UsageCount {
                token,
                action: action.name(),
                day,
                outcome,
                count,
            })
            .collect();
        let stored: Vec<RecentRequest> = recent.iter().map(Recent::to_stored).collect();
        if let Err(e) = store.add_token_usage(&rows, &stored).await {
            for ((token, action, day, outcome), n) in counts {
                let mut s = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
                *s.counts.entry((token, action, day, outcome)).or_default() += n;
            }
            for r in recent {
                let mut s = self
                    .shard(r.token)
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                s.recent.push_back(r);
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_and_never_carry_a_secret() {
        assert_eq!(kept_user_agent("curl/8.5"), "curl/8.5");
        assert_eq!(kept_user_agent("x tgat_abc"), "[redacted]");
        assert_eq!(kept_user_agent(&"é".repeat(200)).len(), 256);
    }

    #[test]
    fn a_repeated_user_agent_is_shared_and_still_redacted() {
        let usage = Usage::new(true);
        let t = Id::generate();
        usage.record(t, Action::DeviceGet, 0, 200, None, Some("gw/1"));
        usage.record(t, Action::DeviceGet, 0, 200, None, Some("gw/1"));
        usage.record(t, Action::DeviceGet, 0, 200, None, Some("gw/2 tgat_x"));
        usage.record(t, Action::DeviceGet, 0, 200, None, Some("gw/2 tgat_x"));
        usage.record(t, Action::DeviceGet, 0, 200, None, Some("gw/1"));
        let shard = usage.shard(t).lock().unwrap();
        let kept: Vec<&Arc<str>> = shard
            .recent
            .iter()
            .map(|r| r.user_agent.as_ref().unwrap())
            .collect();
        let texts: Vec<&str> = kept.iter().map(|k| &***k).collect();
        assert_eq!(texts, ["gw/1", "gw/1", "[redacted]", "[redacted]", "gw/1"]);
        assert!(Arc::ptr_eq(kept[0], kept[1]));
        assert!(Arc::ptr_eq(kept[2], kept[3]));
        assert!(!Arc::ptr_eq(kept[1], kept[4]));
        let stored = shard.recent[2].to_stored();
        assert_eq!(stored.user_agent.as_deref(), Some("[redacted]"));
        assert_eq!(stored.action, "device.get");
    }

    #[test]
    fn counts_gather_per_token_action_day_and_outcome() {
        let usage = Usage::new(true);
        let (a, b) = (Id::generate(), Id::generate());
        for _ in 0..3 {
            usage.record(a, Action::DeviceGet, 0, 200, None, None);
        }
        usage.record(a, Action::DeviceGet, 403, 403, None, None);
        usage.record(b, Action::DeviceGet, 0, 200, None, Some("ua"));
        let mut total = HashMap::new();
        let mut recent = 0;
        for shard in &usage.shards {
            let s = shard.lock().unwrap();
            for ((t, _, _, o), n) in &s.counts {
                *total.entry((*t, *o)).or_insert(0) += n;
            }
            recent += s.recent.len();
        }
        assert_eq!(total[&(a, 0)], 3);
        assert_eq!(total[&(a, 403)], 1);
        assert_eq!(total[&(b, 0)], 1);
        assert_eq!(recent, 5);
        let off = Usage::new(false);
        off.record(a, Action::DeviceGet, 0, 200, None, None);
        assert!(
            off.shards
                .iter()
                .all(|s| s.lock().unwrap().recent.is_empty())
        );
    }
}
