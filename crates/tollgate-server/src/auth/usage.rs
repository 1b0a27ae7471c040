//! Per-token usage on the hot path: what each token asked for, counted in memory and written
//! in batches, like last-used times (`Credentials::flush_last_used`).
//!
//! The guard calls [`Usage::record`] once per request that presented a token it could
//! identify: admitted (`outcome` 0) or refused (401 for an inactive or expired token, 403 for
//! an action outside its scope, 404 for another application). A record is one lock of one of
//! [`SHARDS`] small maps (chosen by the token id, so requests of different tokens rarely meet)
//! and an increment, plus a push onto the shard's list of recent requests. The background
//! flush ([`Usage::flush`], every `--last-used-flush-secs`, and at a clean stop) swaps the
//! maps out and *adds* them to the database (`Store::add_token_usage`), so every node's counts
//! sum and none is lost when a node stops cleanly. What a failed flush held is merged back
//! for the next one.

use std::collections::HashMap;
use std::sync::Mutex;

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

#[derive(Default)]
struct Shard {
    counts: HashMap<(Id, Action, i64, u16), u64>,
    /// Recent requests since the last flush (at most [`RECENT_PER_TOKEN`] per token are
    /// written; older ones are dropped at flush).
    recent: std::collections::VecDeque<RecentRequest>,
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
        client: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
    ) {
        if !self.enabled {
            return;
        }
        let now = tollgate_store::now_ms();
        let day = now.div_euclid(DAY_MS);
        let request = RecentRequest {
            token,
            at: now,
            action: action.name().to_owned(),
            status,
            client_address: client.map(|c| c.to_string()),
            user_agent: user_agent.map(kept_user_agent),
        };
        let mut shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        *shard
            .counts
            .entry((token, action, day, outcome))
            .or_default() += 1;
        if shard.recent.len() >= MAX_RECENT_PER_SHARD {
            shard.recent.pop_front();
        }
        shard.recent.push_back(request);
    }

    /// Add everything counted since the last flush to the database. On failure it is kept
    /// for the next attempt.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let mut counts: HashMap<(Id, Action, i64, u16), u64> = HashMap::new();
        let mut recent: Vec<RecentRequest> = Vec::new();
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
        if let Err(e) = store.add_token_usage(&rows, &recent).await {
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
