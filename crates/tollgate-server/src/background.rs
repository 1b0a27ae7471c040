//! Cluster-wide background work (issue 15): idle deactivation, expiry warnings, expiry and
//! retirement announcements, and audit log pruning, run by exactly one node at a time.
//!
//! Every node runs the loop. Each tick it reloads the warning lead times of the token
//! policies (for its own `Tollgate-Token-Expires` headers), then tries to take or renew the
//! database lease on the jobs (`Store::take_lease`, one conditional statement, lasting three
//! ticks). Only the node holding it runs the jobs; if that node stops renewing, another takes
//! the lease once it has run out and carries on. The jobs look at the tokens as they are, not
//! at timers, so whatever was due while no node ran them is done on the first run; each
//! announcement is a conditional write with its audit entry, so even two nodes running them
//! at once (a holder stalled past its lease) announce each thing once.

use std::time::{Duration, Instant};

use tollgate_store::Id;
use tollgate_store::policy::JOBS_LEASE;

use crate::state::AppState;

/// How often the pruning job runs on the lease holder.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The default tick: once a minute.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// What the background loop needs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How often each node tries the lease and the holder runs the jobs.
    pub interval: Duration,
    /// How long audit log entries are kept.
    pub audit_retention: Duration,
}

/// This node's background loop, until dropped or stopped.
pub struct Background {
    node: Id,
    runs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    holding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    state: AppState,
}

impl Background {
    /// The id this node holds the lease by.
    pub fn node(&self) -> Id {
        self.node
    }

    /// Whether this node held the lease at its last tick: work that must run on one node at
    /// a time outside this loop (webhook delivery) runs only while it is set.
    pub fn holding(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.holding.clone()
    }

    /// How many times this node has run the jobs (holding the lease).
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop the loop and give the lease up (if held), so another node takes over at its
    /// next tick rather than when the lease runs out.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(e) = self
            .state
            .store()
            .release_lease(JOBS_LEASE, self.node)
            .await
        {
            tracing::warn!(error = %e, "could not give up the background jobs' lease");
        }
    }

    /// Stop the loop without giving the lease up (as a node that dies does).
    pub fn abandon(self) {
        self.task.abort();
    }
}

/// Start this node's loop.
pub fn spawn(state: &AppState, options: Options) -> Background {
    let node = Id::generate();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = runs.clone();
    let holding_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = holding_flag.clone();
    let s = state.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<Instant> = None;
        let mut holding = false;
        loop {
            tick.tick().await;
            holding = run_once(&s, node, options, &mut last_prune, holding).await;
            flag.store(holding, std::sync::atomic::Ordering::Relaxed);
            if holding {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    Background {
        node,
        runs,
        holding: holding_flag,
        task,
        state: state.clone(),
    }
}

/// One tick on one node: reload the lead times; with the lease, run the jobs. Returns
/// whether this node holds the lease.
async fn run_once(
    state: &AppState,
    node: Id,
    options: Options,
    last_prune: &mut Option<Instant>,
    was_holding: bool,
) -> bool {
    if let Err(e) = state.leads().refresh(state.store()).await {
        tracing::warn!(error = %e, "could not reload the token policies' warning lead times");
    }
    let ttl = i64::try_from(options.interval.as_millis().saturating_mul(3)).unwrap_or(i64::MAX);
    let holding = match state.store().take_lease(JOBS_LEASE, node, ttl).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "could not take the background jobs' lease; will retry");
            return false;
        }
    };
    if holding != was_holding {
        if holding {
            tracing::info!(node = %node, "this node runs the background jobs");
        } else {
            tracing::info!(node = %node, "another node runs the background jobs");
            *last_prune = None;
        }
    }
    if !holding {
        return false;
    }
    // Idleness is judged by the last-used times in the database: write this node's first.
    if let Err(e) = state.credentials().flush_last_used().await {
        tracing::warn!(error = %e, "could not record last-used times before the idle check");
    }
    match state.store().run_token_jobs(tollgate_store::now_ms()).await {
        Ok(r) => {
            for t in &r.idle_deactivated {
                tracing::warn!(token = %t.id, application = %t.application_id, "API token deactivated: idle");
            }
            if !(r.expiring.is_empty() && r.expired.is_empty() && r.retired.is_empty()) {
                tracing::info!(
                    expiring = r.expiring.len(),
                    expired = r.expired.len(),
                    retired = r.retired.len(),
                    "announced API token expiry"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "the token jobs failed; will retry"),
    }
    if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
        prune(state, options.audit_retention).await;
        *last_prune = Some(Instant::now());
    }
    true
}

/// Delete audit entries older than `retention`, and token usage counts older than the 90
/// days reports look back.
pub async fn prune(state: &AppState, retention: Duration) {
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = tollgate_store::now_ms().saturating_sub(keep);
    match state.store().prune_audit_logs(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "pruned audit log entries past retention"),
        Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
    }
    let today = tollgate_store::now_ms().div_euclid(tollgate_store::usage::DAY_MS);
    if let Err(e) = state.store().prune_token_usage(today - 90).await {
        tracing::warn!(error = %e, "could not prune token usage counts");
    }
}
