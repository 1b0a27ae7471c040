//! What a token's restrictions do to a request: one list of checks, evaluated by the guard
//! with the request's context (client address, target device, time).
//!
//! A token's restrictions (`tollgate_core::restrictions`, fixed at its creation) are compiled
//! into a [`Compiled`] list of [`Check`]s when the token is loaded into the credential cache,
//! so a request pays only the checks themselves: no parsing, no database round trip (a usage
//! limit goes to the database once per block of uses, see [`quota`]). The guard, after the
//! scope has allowed the action, builds a [`Context`] and asks every check in order; the
//! first refusal is the answer. Adding a kind of restriction is its module in core (fields,
//! "within its creator") and here (its check, added in [`compile`]), and its form fields.

pub mod addresses;
pub mod devices;
pub mod quota;
pub mod rate;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use tollgate_core::Action;
use tollgate_core::restrictions::{Devices, Restrictions};
use tollgate_store::devices::Device;
use tollgate_store::{Id, Store};

use crate::error::ApiError;

/// What a check may know about a request.
pub struct Context<'a> {
    pub action: Action,
    /// The client's address (the connection's peer, or `X-Forwarded-For` from a trusted
    /// proxy); `None` when there is no socket (in-process callers).
    pub client: Option<IpAddr>,
    /// The device the path names (`deviceId`), as it is now, if the action has one.
    pub device: Option<&'a Device>,
    /// When the request arrived (for rate limits).
    pub now: std::time::Instant,
}

/// A check's answer.
pub enum Verdict {
    Pass,
    Refuse(ApiError),
    /// The answer needs I/O (a usage limit whose local lease ran out): await it. Rare by
    /// design: once per block of uses.
    Later(Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send>>),
}

/// One restriction, ready to judge requests.
pub trait Check: Send + Sync + std::fmt::Debug {
    fn check(&self, ctx: &Context<'_>) -> Verdict;
}

/// A token's restrictions, compiled: what the credential cache holds beside the scope.
#[derive(Debug)]
pub struct Compiled {
    pub restrictions: Restrictions,
    checks: Vec<Box<dyn Check>>,
}

impl Compiled {
    /// Run every check in order; the first refusal wins.
    pub async fn check(&self, ctx: &Context<'_>) -> Result<(), ApiError> {
        for c in &self.checks {
            match c.check(ctx) {
                Verdict::Pass => {}
                Verdict::Refuse(e) => return Err(e),
                Verdict::Later(f) => f.await?,
            }
        }
        Ok(())
    }

    /// The device restriction, for handlers that list or query devices.
    pub fn devices(&self) -> Option<&Devices> {
        self.restrictions.devices.as_ref()
    }

    /// Whether the guard must look up the device the path names before checking.
    pub fn needs_device(&self) -> bool {
        self.restrictions.devices.is_some()
    }
}

/// What the checks of every token share on this node: the counters of rate and usage limits,
/// which outlive a token's cache entry (a cache drop must not refill a bucket or forget a
/// lease).
pub struct Counters {
    store: Store,
    rates: rate::Buckets,
    quotas: quota::Leases,
}

impl Counters {
    pub fn new(store: Store) -> Counters {
        Counters {
            store,
            rates: rate::Buckets::default(),
            quotas: quota::Leases::default(),
        }
    }

    /// This node's unspent leased uses of `token` (for `usesRemaining`).
    pub fn leased_here(&self, token: Id) -> i64 {
        self.quotas.unspent(token)
    }
}

/// Compile `restrictions` of token `token` (`None` when there are none: the hot path then
/// checks nothing).
pub fn compile(
    restrictions: Restrictions,
    token: Id,
    counters: &Arc<Counters>,
) -> Option<Arc<Compiled>> {
    if restrictions.is_empty() {
        return None;
    }
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    if let Some(a) = &restrictions.addresses {
        checks.push(Box::new(addresses::AddressCheck::new(a.clone())));
    }
    if let Some(d) = &restrictions.devices {
        checks.push(Box::new(devices::DeviceCheck::new(d.clone())));
    }
    // Counting checks last, so a request another check refuses uses up nothing.
    if let Some(r) = &restrictions.rate {
        checks.push(Box::new(counters.rates.check(token, r)));
    }
    if let Some(q) = restrictions.quota {
        checks.push(Box::new(counters.quotas.check(
            token,
            q,
            counters.store.clone(),
        )));
    }
    Some(Arc::new(Compiled {
        restrictions,
        checks,
    }))
}
