//! Group commit of state reports.
//!
//! One transaction per `device.sendState` request means every report pays for `BEGIN`, the
//! checks of its credential and device, its inserts and `COMMIT`, each a round trip (to
//! SQLite's thread, or to PostgreSQL), and on SQLite the one turn to write as well: a few
//! thousand reports a second however many gateways send them. Here concurrent requests are
//! committed together: one task per store takes the requests waiting (up to [`MAX_JOBS`]),
//! and in one transaction checks each exactly as a transaction of its own would (its
//! credential, its application, its device as this transaction sees it, its own `check` of
//! the reports), writes every accepted report with a handful of multi-row statements (on
//! PostgreSQL one), and commits once. Only then is each request answered: a report is
//! acknowledged only once it is committed, as before. A batch is a handful of round trips:
//! `BEGIN`, its reads ([`batch_reads`]), its writes (on PostgreSQL with its change notices),
//! `COMMIT`. One task, not several: on PostgreSQL two took smaller batches, which cost more
//! CPU per request, and were slower (BENCHMARKS.md).
//!
//! Each request gets the answer it would have had alone:
//! * a refused request (revoked credential, unknown device, a report its `check` refuses)
//!   writes nothing and is answered at once; the others are unaffected;
//! * if the shared write or commit fails (a full disk, a value the database refuses), the
//!   transaction is rolled back and each accepted request is written again alone and answered
//!   with its own result: on SQLite still in the same turn to write (nothing else changed in
//!   between, so its checks still hold), on PostgreSQL in a transaction of its own that checks
//!   it again ([`Store::insert_reports_alone`]);
//! * a request whose caller has gone (its deadline passed) is dropped before it is checked:
//!   nothing is written for an answer nobody waits for.
//!
//! Ordering against other writes is unchanged. On SQLite the batch holds the turn to write
//! from its checks to its commit, so a revocation or a device change commits wholly before
//! the batch (and the batch sees it) or after it. On PostgreSQL the batch locks what its
//! checks read, `FOR KEY SHARE`, in the lock order of [`crate::actor`] (the applications,
//! then the tokens, then the devices, each by id, one statement each): a revocation or a
//! device PATCH waits for the batch to commit, or the batch sees it committed. Only requests
//! made with a token of the application they write to join there: a user session's check
//! reads rows (memberships) that the batch does not lock, so those commit alone.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::actor::{Actor, Credential, Lock, token_holds};
use crate::devices::{Device, batch_reads, device_for_write};
use crate::states::{Report, write_reports};
use crate::{Backend, Change, Id, Store, StoreError, WriteTurn, WriteTx, check_in_application};

/// Most requests committed together.
pub(crate) const MAX_JOBS: usize = 128;
/// A batch takes no more requests once it holds this many reports (a request's own reports
/// are bounded by the server), so that one transaction stays short.
pub(crate) const MAX_REPORTS: usize = 10_000;
/// A request with this many reports or more commits alone ([`Store::insert_reports_of`]).
pub const ALONE_FROM: usize = 16;
/// Requests that may wait for the committer; more wait to be queued.
const QUEUE: usize = 1024;

/// Whether a request of `count` reports by `actor` in `application` joins the group commit
/// (see the module's documentation).
pub(crate) fn joins(backend: Backend, actor: &Actor, application: Id, count: usize) -> bool {
    if !enabled() || count >= ALONE_FROM {
        return false;
    }
    match backend {
        Backend::Sqlite => true,
        Backend::Postgres => matches!(
            actor.credential(),
            Credential::ApiToken { application: a, .. } if *a == application
        ),
    }
}

/// Group commit is on unless the environment says `TOLLGATE_GROUP_COMMIT=off` (for
/// benchmarks that compare the two in one binary; read once).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TOLLGATE_GROUP_COMMIT").map_or(true, |v| v != "off"))
}

/// A refusal of the caller's own error type, carried back to it.
type Refused = Box<dyn Any + Send>;
type Check = Box<dyn Fn(&Device) -> std::result::Result<Vec<Report>, Refused> + Send>;

enum Failure {
    Store(StoreError),
    Refused(Refused),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
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
    /// Transactions rolled back, whose requests were then written each alone.
    failed: AtomicU64,
}

/// What the committer has done so far ([`Store::group_commit_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions that committed requests together.
    pub batches: u64,
    /// Requests those transactions committed.
    pub requests: u64,
    /// Transactions that failed (a full disk, a value the database refuses) and were rolled
    /// back, their requests then written each alone.
    pub failed: u64,
}

impl GroupCommit {
    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
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
    check: impl Fn(&Device) -> std::result::Result<Vec<Report>, E> + Send + 'static,
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
        let turn = turn_to_write(store).await;
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
        let turn = turn_to_write(&store).await;
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

/// SQLite: this process's turn to write, which a batch holds from its checks to its commit.
/// PostgreSQL: none (the batch's row locks order it against other writes).
async fn turn_to_write(store: &Store) -> Option<WriteTurn> {
    match store.backend() {
        Backend::Sqlite => Some(store.write_turn().await),
        Backend::Postgres => None,
    }
}

/// The batch's transaction. On PostgreSQL its statements use generic plans: their id lists
/// are parameters, so a custom plan is made for each execution, and planning was the largest
/// part of the database's CPU per batch (BENCHMARKS.md); the generic plans are the same index
/// scans. Set with `BEGIN`, in the same round trip.
async fn begin_batch(store: &Store, turn: Option<WriteTurn>) -> crate::Result<WriteTx> {
    match store.backend() {
        Backend::Sqlite => store.begin_write_in(turn).await,
        Backend::Postgres => Ok(WriteTx {
            tx: store
                .pool
                .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
                .await?,
            backend: Backend::Postgres,
            turn: None,
        }),
    }
}

/// A request checked and accepted into the batch, waiting for the commit.
struct Accepted {
    job: Job,
    reports: Vec<Report>,
}

/// Commit requests from the front of `pending` in one transaction (at most [`MAX_JOBS`], and
/// none more once [`MAX_REPORTS`] are held), in `turn` (SQLite); answer each.
async fn commit_batch(store: &Store, pending: &mut VecDeque<Job>, turn: Option<WriteTurn>) {
    let mut tx = match begin_batch(store, turn).await {
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
    let read = match batch_reads(&mut tx, &wanted, &tokens).await {
        Ok(read) => Some(read),
        // An error aborts a PostgreSQL transaction: nothing more can run in it. Each request
        // of the window is written alone, and checked there.
        Err(e) if store.backend() == Backend::Postgres => {
            tracing::debug!(error = %e, requests = window, "a state report batch could not read; writing each alone");
            let _ = tx.rollback_keeping_turn().await;
            store.group.failed.fetch_add(1, Ordering::Relaxed);
            each_alone(store, pending.drain(..window).collect());
            return;
        }
        // SQLite: each request reads its own below (and meets the error).
        Err(_) => None,
    };
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
                accepted.push(Accepted { job, reports });
            }
            Err(refused) => {
                let _ = job.reply.send(Err(Failure::Refused(refused)));
            }
        }
    }
    let items: Vec<(Id, &[Report])> = accepted
        .iter()
        .map(|a| (a.job.device, a.reports.as_slice()))
        .collect();
    // Cached state answers of these devices go once the batch commits (once per device: a
    // batch often holds many reports of one); other nodes learn it from the notices sent
    // inside the transaction (PostgreSQL).
    let mut devices: Vec<Id> = items.iter().map(|(d, _)| *d).collect();
    devices.sort_unstable();
    devices.dedup();
    let changed: Vec<Change> = devices.into_iter().map(Change::State).collect();
    let written = write_reports(&mut tx, &items, &changed).await;
    drop(items);
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
            // This node's cached state answers go before any request is answered.
            store.applied(&changed);
            for a in accepted {
                let _ = a.job.reply.send(Ok(a.reports.len()));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, requests = accepted.len(), "a state report batch failed; writing each alone");
            store.group.failed.fetch_add(1, Ordering::Relaxed);
            match store.backend() {
                Backend::Sqlite => alone(store, accepted, turn).await,
                Backend::Postgres => {
                    each_alone(store, accepted.into_iter().map(|a| a.job).collect())
                }
            }
        }
    }
}

/// PostgreSQL, after a batch failed: each request in a transaction of its own, which checks
/// it again (the batch's locks are gone with its rollback), each answered with its own
/// result. They run beside the committer, which goes on with the next batch.
fn each_alone(store: &Store, jobs: Vec<Job>) {
    for job in jobs {
        let store = store.clone();
        tokio::spawn(async move {
            let Job {
                actor,
                application,
                device,
                check,
                reply,
            } = job;
            if reply.is_closed() {
                return;
            }
            let answer = store
                .insert_reports_alone(&actor, application, device, move |d: &Device| {
                    check(d).map_err(Failure::Refused)
                })
                .await;
            let _ = reply.send(answer);
        });
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
        let device = a.job.device;
        let result = match store.begin_keeping_turn(turn).await {
            Ok(mut tx) => {
                let written = write_reports(&mut tx, &[(device, a.reports.as_slice())], &[]).await;
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
            store.applied(&[Change::State(device)]);
        }
        let _ = a
            .job
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
