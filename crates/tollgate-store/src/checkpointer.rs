//! SQLite: checkpoints off the commit path.
//!
//! In WAL mode a commit appends its pages to the write-ahead log; a checkpoint copies them
//! into the database file. By default the connection whose commit takes the log past 1,000
//! pages runs that checkpoint inside its `COMMIT`, and with `synchronous = NORMAL` a
//! checkpoint is where the fsyncs are (the log before copying, the database file after), so
//! that commit, and every write waiting for its turn behind it, waited for two fsyncs of a few
//! milliseconds each about every 0.15 s under state report load; and the next commit, which
//! starts the log over, fsyncs its header once more (BENCHMARKS.md, issue 17).
//!
//! Here a task checkpoints instead, every [`TICK`], on a pooled connection, without the turn
//! to write: writers go on appending while it copies and syncs (`PASSIVE` never waits for
//! them). The log can start over only once everything in it is copied, which a checkpoint
//! running beside steady writes never quite reaches; so when the log holds more than
//! [`RESTART_FRAMES`] pages the task takes the turn to write for one more `PASSIVE` pass,
//! which has only what was appended meanwhile to copy, and the next write starts the log over.
//!
//! Durability is unchanged: a commit is in the log (written to the operating system) before
//! it is acknowledged, and survives the process being killed; as before, `synchronous =
//! NORMAL` does not fsync at commit, so a power loss can lose the last commits (never the
//! database's consistency). Connections keep SQLite's own checkpoint as a bound should the
//! task fall behind (`wal_autocheckpoint`, four times [`RESTART_FRAMES`], set with the
//! connection's other pragmas).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;

/// How often the task looks at the log.
const TICK: Duration = Duration::from_millis(100);
/// Log pages past which the task makes the log start over (32 MiB at 4 KiB pages).
pub(crate) const RESTART_FRAMES: i64 = 8192;

/// Start the task for a store's `pool` (a SQLite file). It ends once the store is gone
/// (`writer` can no longer be upgraded) or its pool is closed.
pub(crate) fn start(pool: AnyPool, writer: Weak<tokio::sync::Mutex<()>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            let Some(writer) = writer.upgrade() else {
                return;
            };
            if let Err(e) = round(&pool, writer).await {
                // A busy checkpoint (another process's) or a closing pool: try again later.
                tracing::debug!(error = %e, "background checkpoint failed");
            }
        }
    });
}

/// One look: copy what the log holds; if it has grown long, once more in the turn to write.
async fn round(pool: &AnyPool, writer: Arc<tokio::sync::Mutex<()>>) -> Result<(), sqlx::Error> {
    let (_, log, copied) = passive(pool).await?;
    if log < RESTART_FRAMES {
        return Ok(());
    }
    let _turn = writer.lock_owned().await;
    let (busy, log_now, copied_now) = passive(pool).await?;
    tracing::debug!(
        log,
        copied,
        log_now,
        copied_now,
        busy,
        "checkpointed in the turn to write: the log starts over"
    );
    Ok(())
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (busy, pages in the log, pages copied).
async fn passive(pool: &AnyPool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn connections_checkpoint_at_commit_only_past_the_bound() {
        let pragma = format!("wal_autocheckpoint = {};", 4 * super::RESTART_FRAMES);
        assert!(
            crate::SQLITE_SETUP.contains(&pragma),
            "{}",
            crate::SQLITE_SETUP
        );
    }
}
