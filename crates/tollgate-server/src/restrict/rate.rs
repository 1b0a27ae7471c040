//! Rate limits, per node: a token bucket per token (`requests` deep, refilled at
//! `requests / perSeconds` per second), kept as one atomic "theoretical arrival time" (the
//! generic cell rate algorithm), so a request costs one compare-and-swap and no lock.
//! Past the rate: 429 with `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
//! `Retry-After`. With several nodes each node enforces the whole rate on its own share of the
//! requests: see the README on sizing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tollgate_core::restrictions::Rate;
use tollgate_store::Id;

use super::{Check, Context, Verdict};
use crate::error::ApiError;

/// Every token's bucket on this node, kept across cache reloads of the token.
#[derive(Default)]
pub struct Buckets {
    cells: Mutex<HashMap<Id, Arc<AtomicU64>>>,
}

impl Buckets {
    /// The check for token `token` with `rate` (its bucket created on first use), and, if it
    /// was minted from a rate-limited token, the ancestor's bucket too, which the ancestor and
    /// every token minted from it share.
    pub fn check(&self, token: Id, rate: &Rate) -> RateCheck {
        let family = rate.shared.as_ref().and_then(|s| {
            let id: Id = s.token.parse().ok()?;
            Some(Box::new(self.bucket(
                id,
                Rate {
                    requests: s.requests,
                    per_seconds: s.per_seconds,
                    shared: None,
                },
                None,
                true,
            )))
        });
        self.bucket(token, rate.clone(), family, false)
    }

    fn bucket(
        &self,
        token: Id,
        rate: Rate,
        family: Option<Box<RateCheck>>,
        ancestor: bool,
    ) -> RateCheck {
        let tat = self
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(token)
            .or_default()
            .clone();
        let interval = Duration::from_secs(rate.per_seconds)
            .as_nanos()
            .div_ceil(u128::from(rate.requests));
        let interval = u64::try_from(interval).unwrap_or(u64::MAX);
        RateCheck {
            tolerance: interval.saturating_mul(rate.requests),
            rate,
            interval,
            tat,
            family,
            ancestor: ancestor.then_some(token),
        }
    }
}

/// Nanoseconds since this process's first look at the clock.
fn nanos(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub struct RateCheck {
    rate: Rate,
    /// Nanoseconds between requests at the sustained rate.
    interval: u64,
    /// The bucket's depth in nanoseconds (`requests × interval`).
    tolerance: u64,
    /// When the bucket will be full again if nothing more arrives (ns, see [`nanos`]).
    tat: Arc<AtomicU64>,
    /// The rate-limited ancestor's bucket, shared with every token minted from it.
    family: Option<Box<RateCheck>>,
    /// Set on an ancestor's bucket: that ancestor.
    ancestor: Option<Id>,
}

impl Check for RateCheck {
    fn check(&self, ctx: &Context<'_>) -> Verdict {
        let now = nanos(ctx.now);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let ahead = next - now;
            if ahead > self.tolerance {
                let wait = ahead - self.tolerance;
                return Verdict::Refuse(self.refusal(wait, tat.max(now) - now));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return match &self.family {
                        None => Verdict::Pass,
                        Some(f) => f.check(ctx),
                    };
                }
                Err(seen) => tat = seen,
            }
        }
    }
}

impl RateCheck {
    fn refusal(&self, wait_ns: u64, full_in_ns: u64) -> ApiError {
        let retry = wait_ns.div_ceil(1_000_000_000).max(1);
        let reset = full_in_ns.div_ceil(1_000_000_000).max(1);
        let message = match self.ancestor {
            None => format!(
                "This API token is limited to {} requests per {} s (its rateLimit): try again in {retry} s",
                self.rate.requests, self.rate.per_seconds
            ),
            Some(a) => format!(
                "This API token was minted from token {a}, whose rateLimit of {} requests per {} s it shares with every token minted from it: try again in {retry} s",
                self.rate.requests, self.rate.per_seconds
            ),
        };
        let mut e = ApiError::too_many_requests(message, retry);
        e.headers = vec![
            ("ratelimit-limit", self.rate.requests.to_string()),
            ("ratelimit-remaining", "0".to_owned()),
            ("ratelimit-reset", reset.max(retry).to_string()),
        ];
        e
    }
}
