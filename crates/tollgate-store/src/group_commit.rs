//! Group commit of state reports on SQLite.
//!
//! SQLite has one writer at a time. One transaction per `device.sendState` request means every
//! report pays for taking the turn to write, `BEGIN`, its inserts and `COMMIT`, one after the
//! other, each a round trip to the connection's thread: a few thousand reports a second
//! however many gateways send them. Here concurrent requests are committed together: one task
//! takes the requests waiting (up to [`MAX_JOBS`]), and in one transaction checks each exactly
//! as a transaction of its own would (its credential, its application, its device as this
//! transaction sees it, its own `check` of the reports), writes every accepted report with a
//! handful of multi-row statements sent as one query, and commits once. Only then is each
//! request answered: a report is acknowledged only once it is committed, as before
//! (`synchronous = NORMAL` in WAL mode: a committed report survives the process being
//! killed). A batch is four round trips to SQLite's thread: `BEGIN`, its reads
//! ([`batch_reads`]), its writes, `COMMIT`.
//!
//! Each request gets the answer it would have had alone:
//! * a refused request (revoked credential, unknown device, a report its `check` refuses)
//!   writes nothing and is answered at once; the others are unaffected;
//! * if the shared write or commit fails (a full disk, say), the transaction is rolled back
//!   and each accepted request is written again alone, still in the same turn to write (so
//!   nothing else changed in between and its checks still hold), and answered with its own
//!   result;
//! * a request whose caller has gone (its deadline passed) is dropped before it is checked:
//!   nothing is written for an answer nobody waits for.
//!
//! Ordering against other writes is unchanged: the batch holds the turn to write from its
//! checks to its commit, so a revocation or a device change commits wholly before the batch
//! (and the batch sees it) or after it.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::actor::{Actor, Credential, Lock, token_holds};
use crate::devices::{Device, batch_reads, device_for_write};
use crate::states::{Report, write_reports};
use crate::{Change, Id, Store, StoreError, WriteTurn, check_in_application};

/// Most requests committed together.
pub(crate) const MAX_JOBS: usize = 128;
/// A batch takes no more requests once it holds this many reports (a request's own reports
/// are bounded by the server), so that one transaction stays short.
pub(crate) const MAX_REPORTS: usize = 10_000;
/// A request with this many reports or more commits alone ([`Store::insert_reports_of`]).
pub const ALONE_FROM: usize = 16;
/// Requests that may wait for the committer; more wait to be queued.
const QUEUE: usize = 1024;

/// Group commit is on unless the environment says `TOLLGATE_GROUP_COMMIT=off` (for
/// benchmarks that compare the two in one binary; read once).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TOLLGATE_GROUP_COMMIT").map_or(true, |v| v != "off"))
}

/// A refusal of the caller's own error type, carried back to it.
type Refused = Box<dyn Any + Send>;
type Check = Box<dyn FnOnce(&Device) -> std::result::Result<Vec<Report>, Refused> + Send>;

enum Failure {
    Store(StoreError),
    Refused(Refused),
}

type Answer = std::result::Result<usize, Failure>;

struct Job {
    actor: Actor,
    application: Id,
    device: Id,
    check: Check,
    reply: oneshot::Sender<Answer>,
}

/// The queue to a store's committer task, started at first use.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: OnceLock<mpsc::Sender<Job>>,
    /// Transactions committed with at least one request, and the requests they held.
    batches: AtomicU64,
    requests: AtomicU64,
}

/// What the committer has done so far ([`Store::group_commit_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions that committed requests together.
    pub batches: u64,
    /// Requests those transactions committed.
    pub requests: u64,
}

impl GroupCommit {
    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// [`Store::insert_reports`] on SQLite: queue the request for the committer and wait for its
/// answer.
pub(crate) async fn insert_reports<E: From<StoreError> + Send + 'static>(
    store: &Store,
    actor: &Actor,
    application: Id,
    device: Id,
    check: impl FnOnce(&Device) -> std::result::Result<Vec<Report>, E> + Send + 'static,
) -> std::result::Result<usize, E> {
    let queue = store.group.queue.get_or_init(|| {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store.clone(), rx));
        tx
    });
    let (reply, answer) = oneshot::channel();
    let job = Job {
        actor: actor.clone(),
        application,
        device,
        check: Box::new(move |d| check(d).map_err(|e| Box::new(e) as Refused)),
        reply,
    };
    if let Err(mpsc::error::SendError(job)) = queue.send(job).await {
        // The committer is gone (its runtime ended while this store lives on): write alone.
        let mut pending = VecDeque::from([job]);
        let turn = store.write_turn().await;
        commit_batch(store, &mut pending, turn).await;
    }
    match answer.await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(Failure::Store(e))) => Err(E::from(e)),
        // The box was made from an `E` just above: the downcast cannot fail.
        Ok(Err(Failure::Refused(e))) => Err(*e
            .downcast::<E>()
            .expect("a refusal comes back as the type it was made from")),
        Err(_) => Err(E::from(StoreError::Corrupt(
            "the state report committer stopped before answering".into(),
        ))),
    }
}

/// The committer: take what waits, commit it together, repeat.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(job) => pending.push_back(job),
                None => return,
            }
        }
        while pending.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
        let turn = store.write_turn().await;
        // Requests that arrived while waiting for the turn join this batch too.
        while pending.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
        commit_batch(&store, &mut pending, turn).await;
    }
}

/// A request checked and accepted into the batch, waiting for the commit.
struct Accepted {
    device: Id,
    reports: Vec<Report>,
    reply: oneshot::Sender<Answer>,
}

/// Commit requests from the front of `pending` in one transaction (at most [`MAX_JOBS`], and
/// none more once [`MAX_REPORTS`] are held), in `turn`; answer each.
async fn commit_batch(store: &Store, pending: &mut VecDeque<Job>, turn: WriteTurn) {
    let mut tx = match store.begin_write_in(Some(turn)).await {
        Ok(tx) => tx,
        Err(e) => {
            // Answer the first with the error; the rest are tried again in the next round.
            if let Some(job) = pending.pop_front() {
                let _ = job.reply.send(Err(Failure::Store(e)));
            }
            return;
        }
    };
    // The batch holds the only turn to write from here to its commit, so a check's answer
    // cannot change within it: the devices of the requests and the tokens acting are read
    // together, in one round trip to SQLite's thread, and any other credential is checked
    // once however many of its requests the batch holds (a fleet's gateways often share one
    // token). Every statement is such a round trip, and the batch's round trips made its
    // length and so every request's wait (BENCHMARKS.md).
    let window = pending.len().min(MAX_JOBS);
    let wanted: Vec<Id> = pending.iter().take(window).map(|j| j.device).collect();
    let mut tokens: Vec<Id> = pending
        .iter()
        .take(window)
        .filter_map(|j| match j.actor.credential() {
            Credential::ApiToken { id, application } if *application == j.application => Some(*id),
            _ => None,
        })
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    let read = batch_reads(&mut tx, &wanted, &tokens).await.ok();
    let now = crate::now_ms();
    let mut passed: Vec<(Credential, Id)> = Vec::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut held = 0usize;
    let mut taken = 0usize;
    while taken < MAX_JOBS && held < MAX_REPORTS {
        let Some(job) = pending.pop_front() else {
            break;
        };
        taken += 1;
        if job.reply.is_closed() {
            continue;
        }
        let checked = async {
            match (job.actor.credential(), read.as_ref()) {
                // As `check_in_application` would, from the row read above.
                (Credential::ApiToken { id, application }, Some(read))
                    if *application == job.application =>
                {
                    token_holds(
                        read.tokens
                            .get(id)
                            .filter(|(app, _, _)| app == application)
                            .map(|(_, status, expires)| (status.as_str(), *expires)),
                        now,
                    )?;
                }
                (credential, _) => {
                    let credential = (credential.clone(), job.application);
                    if !passed.contains(&credential) {
                        check_in_application(&mut tx, &job.actor, job.application, Lock::KeyShare)
                            .await?;
                        passed.push(credential);
                    }
                }
            }
            match read.as_ref() {
                Some(read) => match read.devices.get(&job.device) {
                    Some(d) if d.application_id == job.application => Ok(d.clone()),
                    _ => Err(StoreError::NotFound),
                },
                // The batch read failed: each request reads its own (and meets the error).
                None => device_for_write(&mut tx, job.application, job.device).await,
            }
        }
        .await;
        let device = match checked {
            Ok(d) => d,
            Err(e) => {
                let _ = job.reply.send(Err(Failure::Store(e)));
                continue;
            }
        };
        match (job.check)(&device) {
            Ok(reports) => {
                held += reports.len();
                accepted.push(Accepted {
                    device: job.device,
                    reports,
                    reply: job.reply,
                });
            }
            Err(refused) => {
                let _ = job.reply.send(Err(Failure::Refused(refused)));
            }
        }
    }
    let items: Vec<(Id, &[Report])> = accepted
        .iter()
        .map(|a| (a.device, a.reports.as_slice()))
        .collect();
    let written = write_reports(&mut tx, &items).await;
    let (result, turn) = match written {
        Ok(()) => tx.commit_keeping_turn().await,
        Err(e) => (Err(e), tx.rollback_keeping_turn().await),
    };
    match result {
        Ok(()) => {
            if !accepted.is_empty() {
                store.group.batches.fetch_add(1, Ordering::Relaxed);
                store
                    .group
                    .requests
                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
            }
            // Cached state answers of these devices go before any request is answered (once
            // per device: a batch often holds many reports of one).
            let mut devices: Vec<Id> = accepted.iter().map(|a| a.device).collect();
            devices.sort_unstable();
            devices.dedup();
            let changed: Vec<Change> = devices.into_iter().map(Change::State).collect();
            store.applied(&changed);
            for a in accepted {
                let _ = a.reply.send(Ok(a.reports.len()));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, requests = accepted.len(), "a state report batch failed; writing each alone");
            alone(store, accepted, turn).await;
        }
    }
}

/// After a failed batch: write each accepted request in a transaction of its own, in the same
/// turn to write (nothing else has written since its checks), and answer it with its result.
async fn alone(store: &Store, accepted: Vec<Accepted>, turn: Option<WriteTurn>) {
    let mut turn = match turn {
        Some(t) => t,
        None => store.write_turn().await,
    };
    for a in accepted {
        let result = match store.begin_keeping_turn(turn).await {
            Ok(mut tx) => {
                let written = write_reports(&mut tx, &[(a.device, a.reports.as_slice())]).await;
                let (r, t) = match written {
                    Ok(()) => tx.commit_keeping_turn().await,
                    Err(e) => (Err(e), tx.rollback_keeping_turn().await),
                };
                turn = match t {
                    Some(t) => t,
                    None => store.write_turn().await,
                };
                r
            }
            Err((e, t)) => {
                turn = t;
                Err(e)
            }
        };
        if result.is_ok() {
            store.applied(&[Change::State(a.device)]);
        }
        let _ = a
            .reply
            .send(result.map(|()| a.reports.len()).map_err(Failure::Store));
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}
