//! Usage limits, exact across nodes: a node leases a block of uses from the database (one
//! `UPDATE`, which never hands out more than the quota, see
//! `tollgate_store::Store::lease_uses`) and spends it from memory, one atomic decrement per
//! request; only when its block is spent does a request wait for the next lease. So however
//! many nodes there are, no more requests are authorized than the quota. Blocks are a
//! sixteenth of what remained at the last lease (at most 1000, at least 1): near the end the
//! blocks shrink to single uses, so what one node holds unspent does not starve the others.
//! Uses a node leased and did not spend when it stops are lost (counted as used).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tollgate_core::restrictions::Quota;
use tollgate_store::{Id, Store};

use super::{Check, Context, Verdict};
use crate::error::ApiError;

pub const MAX_BLOCK: i64 = 1000;

/// This node's lease of one token's uses.
#[derive(Debug)]
pub struct Lease {
    /// Uses leased and not yet spent.
    unspent: AtomicI64,
    /// The next block to ask for.
    next_block: AtomicI64,
    /// The database said no uses remain: refuse without asking again.
    exhausted: AtomicBool,
    /// One lease at a time per token on this node.
    refill: tokio::sync::Mutex<()>,
}

fn block_for(remaining: i64) -> i64 {
    (remaining / 16).clamp(1, MAX_BLOCK)
}

impl Lease {
    /// Take one use from memory, if any is left.
    fn take(&self) -> bool {
        let mut n = self.unspent.load(Ordering::Relaxed);
        while n > 0 {
            match self
                .unspent
                .compare_exchange_weak(n, n - 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => n = seen,
            }
        }
        false
    }
}

/// Every leased token on this node, kept across cache reloads of the token.
#[derive(Default)]
pub struct Leases {
    leases: Mutex<HashMap<Id, Arc<Lease>>>,
}

impl Leases {
    pub fn check(&self, token: Id, quota: Quota, store: Store) -> QuotaCheck {
        let first = block_for(i64::try_from(quota.uses).unwrap_or(i64::MAX));
        let lease = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(token)
            .or_insert_with(|| {
                Arc::new(Lease {
                    unspent: AtomicI64::new(0),
                    next_block: AtomicI64::new(first),
                    exhausted: AtomicBool::new(false),
                    refill: tokio::sync::Mutex::new(()),
                })
            })
            .clone();
        QuotaCheck {
            token,
            quota,
            lease,
            store,
        }
    }

    pub fn unspent(&self, token: Id) -> i64 {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token)
            .map_or(0, |l| l.unspent.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
pub struct QuotaCheck {
    token: Id,
    quota: Quota,
    lease: Arc<Lease>,
    store: Store,
}

fn reached(quota: Quota) -> ApiError {
    let mut e = ApiError::too_many_requests(
        format!(
            "Usage limit reached: this API token's usageLimit of {} requests is used up. Create a new token for more",
            quota.uses
        ),
        0,
    );
    e.retry_after = None;
    e
}

impl Check for QuotaCheck {
    fn check(&self, _: &Context<'_>) -> Verdict {
        if self.lease.take() {
            return Verdict::Pass;
        }
        if self.lease.exhausted.load(Ordering::Relaxed) {
            return Verdict::Refuse(reached(self.quota));
        }
        let lease = self.lease.clone();
        let store = self.store.clone();
        let token = self.token;
        let quota = self.quota;
        Verdict::Later(Box::pin(async move {
            let _one = lease.refill.lock().await;
            // Another request may have leased meanwhile.
            if lease.take() {
                return Ok(());
            }
            if lease.exhausted.load(Ordering::Relaxed) {
                return Err(reached(quota));
            }
            let want = lease.next_block.load(Ordering::Relaxed);
            match store.lease_uses(token, want).await? {
                Some((granted, remaining)) if granted > 0 => {
                    lease
                        .next_block
                        .store(block_for(remaining), Ordering::Relaxed);
                    // One of the granted uses is this request's.
                    lease.unspent.fetch_add(granted - 1, Ordering::AcqRel);
                    Ok(())
                }
                _ => {
                    lease.exhausted.store(true, Ordering::Relaxed);
                    Err(reached(quota))
                }
            }
        }))
    }
}
