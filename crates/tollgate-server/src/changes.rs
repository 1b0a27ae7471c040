//! Hearing what other nodes change (PostgreSQL only).
//!
//! Two tasks per node:
//!
//! * the **listener** keeps one dedicated connection that `LISTEN`s for change notices and
//!   applies each to this node's caches ([`AppState::apply_change`]). When the connection is lost
//!   (an error, or nothing at all heard for [`silence_limit`]), it stops cache use at once
//!   ([`AppState::set_change_feed`]`(false)`: every request then goes to the database),
//!   reconnects with backoff, and once `LISTEN` is in place again drops every cache and
//!   resumes ([`AppState::set_change_feed`]`(true)`). Notices missed in between cannot matter:
//!   nothing was cached then, and nothing cached before survives.
//! * the **heartbeat** sends a notice to this node's own channel every lease/3 through the
//!   ordinary pool, stamped with its send time. When it comes back, the listener renews the
//!   cache lease ([`Freshness::renew_lease`]) to that send time plus the lease: notices are
//!   delivered in commit order, so every change committed before the stamp has been applied.
//!
//! Consequently a revocation committed through any node is refused by every node
//! * within milliseconds while notices flow (the usual case: the notice is applied as soon as
//!   it arrives), and
//! * within the lease (default 750 ms) whatever fails, including a connection that dies
//!   without closing, a stalled listener, or a lost database: past the lease the cache is
//!   not used, and the database either answers with the revocation or fails (503).

use std::time::Duration;

use tollgate_store::notify::{self, Listener, Notice};
use tollgate_store::{Change, Store};

use crate::freshness::monotonic_us;
use crate::state::AppState;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often a node sends itself a heartbeat: a third of the lease, so one late or lost
/// heartbeat does not yet lapse the lease.
pub fn heartbeat_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// How long the listener waits without hearing anything (heartbeats included) before it
/// treats its connection as dead and reconnects. Correctness does not depend on it (the lease
/// already stopped cache use); it bounds how long a silently dead connection is kept.
pub fn silence_limit(lease: Duration) -> Duration {
    (lease * 2).max(Duration::from_millis(100))
}

/// Start the listener and heartbeat tasks, and make the caches wait for them.
pub fn spawn(state: &AppState) {
    let lease = state.settings().change_lease;
    state.freshness().require_lease(lease);
    state.clear_caches();
    let channel = notify::heartbeat_channel();
    tokio::spawn(heartbeats(
        state.store().clone(),
        channel.clone(),
        heartbeat_interval(lease),
    ));
    tokio::spawn(listen(state.clone(), channel, lease));
}

async fn heartbeats(store: Store, channel: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Stamped before sending: the stamp is never later than the notice's commit.
        let sent = monotonic_us(std::time::Instant::now());
        // A send stuck on a dead connection must not stop the beat: a late heartbeat is
        // worthless anyway (it renews the lease from its send time).
        let payload = sent.to_string();
        let send = store.send_heartbeat(&channel, &payload);
        match tokio::time::timeout(every * 4, send).await {
            Ok(Ok(())) => {}
            // The listener reports the consequences; one line per failed beat would flood.
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not sent"),
            Err(_) => tracing::debug!("heartbeat send timed out"),
        }
    }
}

async fn listen(state: AppState, channel: String, lease: Duration) {
    // Shows in pg_stat_activity, to tell the nodes' listeners apart.
    let application_name = format!("tollgate-listener-{}", std::process::id());
    let connect_timeout = lease.max(Duration::from_secs(2));
    let mut backoff = MIN_BACKOFF;
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        let listener =
            Listener::connect(state.store(), &channel, &application_name, connect_timeout).await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for changes; answering from the database meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Every change committed from here on reaches this listener; whatever was cached
        // before may have missed some, so start from nothing.
        state.set_change_feed(true);
        backoff = MIN_BACKOFF;
        match down_since.take() {
            Some(t) => tracing::info!(
                down_ms = t.elapsed().as_millis() as u64,
                "listening for changes again; caches were dropped"
            ),
            None => tracing::info!("listening for changes from other nodes"),
        }
        let why = receive(&mut listener, &state, silence_limit(lease)).await;
        state.set_change_feed(false);
        down_since = Some(std::time::Instant::now());
        tracing::warn!(reason = %why,
            "lost the change feed: caches dropped, answering from the database until it is back");
    }
}

/// Apply notices until the connection fails or falls silent; say why it ended.
async fn receive(listener: &mut Listener, state: &AppState, silence: Duration) -> String {
    loop {
        match tokio::time::timeout(silence, listener.recv()).await {
            Err(_) => return format!("nothing heard for {} ms", silence.as_millis()),
            Ok(Err(e)) => return e.to_string(),
            Ok(Ok(Notice::Change(change))) => {
                match &change {
                    Change::Token { id, .. } => tracing::debug!(token = %id, "change notice"),
                    Change::Application(id) => {
                        tracing::debug!(application = %id, "change notice")
                    }
                    Change::Device(id) => tracing::debug!(device = %id, "change notice"),
                    // A session digest is not a secret, but there is no need to log it.
                    Change::Session(_) => tracing::debug!("change notice: a session ended"),
                    Change::All => tracing::info!("change notice: drop every cache"),
                }
                state.apply_change(&change);
            }
            Ok(Ok(Notice::Unknown)) => {
                tracing::warn!("a change notice this version does not understand: caches dropped");
                state.clear_caches();
            }
            Ok(Ok(Notice::Heartbeat(payload))) => match payload.parse::<i64>() {
                Ok(sent) => state.freshness().renew_lease(sent),
                Err(_) => tracing::warn!("malformed heartbeat ignored"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_come_three_times_per_lease_and_silence_is_two_leases() {
        let lease = Duration::from_millis(750);
        assert_eq!(heartbeat_interval(lease), Duration::from_millis(250));
        assert_eq!(silence_limit(lease), Duration::from_millis(1500));
        assert_eq!(
            heartbeat_interval(Duration::ZERO),
            Duration::from_millis(10)
        );
    }
}
