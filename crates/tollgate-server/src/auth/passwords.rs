//! Password hashing with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).
//!
//! Every hash and every check runs on a small, fixed set of hashing threads fed by a bounded
//! queue, so memory stays bounded whatever arrives: each Argon2 computation holds 19 MiB, and
//! with one computation per thread (and one allocator arena per thread) at most
//! `threads × 19 MiB` is ever in use. A request that finds the queue full is told at once to
//! come back ([`HashError::Busy`], answered with 503 and `Retry-After`) instead of waiting
//! behind everyone else. Without this, 256 concurrent wrong logins took the server from
//! 107 MB to 4.85 GB resident.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// How many hashes may run at once and how many may wait for a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashing threads (computations at once). Default: the number of cores.
    pub threads: usize,
    /// Requests that may wait for a hashing thread; beyond this they are refused at once.
    pub queue: usize,
}

impl Default for HashLimits {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        HashLimits {
            threads,
            queue: 16 * threads,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full: try again shortly.
    #[error("every password hashing thread is busy and {queue} requests are already waiting")]
    Busy { threads: usize, queue: usize },
    #[error("password hashing failed: {0}")]
    Failed(String),
}

enum Job {
    Hash(
        String,
        tokio::sync::oneshot::Sender<Result<String, HashError>>,
    ),
    Verify(String, Option<String>, tokio::sync::oneshot::Sender<bool>),
}

struct Hasher {
    limits: HashLimits,
    jobs: SyncSender<Job>,
    /// Places for password checks in progress (`threads + queue`), taken by [`admit`] before
    /// a login does any other work.
    places: Arc<tokio::sync::Semaphore>,
}

/// A place among the password checks in progress ([`admit`]); given back when dropped.
pub struct Admission(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

static HASHER: OnceLock<Hasher> = OnceLock::new();

/// Set the limits (call once at start-up, before the first hash). Returns false when the
/// hashing threads were already started, with whatever limits they have.
pub fn configure(limits: HashLimits) -> bool {
    let mut fresh = false;
    HASHER.get_or_init(|| {
        fresh = true;
        start(limits)
    });
    fresh
}

/// The limits in force.
pub fn limits() -> HashLimits {
    hasher().limits
}

fn hasher() -> &'static Hasher {
    HASHER.get_or_init(|| start(HashLimits::default()))
}

fn start(limits: HashLimits) -> Hasher {
    let limits = HashLimits {
        threads: limits.threads.max(1),
        queue: limits.queue,
    };
    // A rendezvous channel when the queue is 0: a job is taken only by an idle thread.
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(limits.queue);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..limits.threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("tollgate-hash-{i}"))
            .spawn(move || work(&rx))
            .expect("start a password hashing thread");
    }
    let places = Arc::new(tokio::sync::Semaphore::new(limits.threads + limits.queue));
    Hasher {
        limits,
        jobs,
        places,
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        match job {
            Job::Hash(password, reply) => {
                let _ = reply.send(hash_now(&mut memory, &password));
            }
            // The asker gave up (the client went away): do not spend 19 MiB on nobody.
            Job::Verify(_, _, reply) if reply.is_closed() => {}
            Job::Verify(password, stored, reply) => {
                let _ = reply.send(verify_now(&mut memory, &password, stored.as_deref()));
            }
        }
    }
}

/// One hashing thread's Argon2 working memory, allocated at its first use and reused for every
/// computation after. Letting the argon2 crate allocate 19 MiB per call is what made 1,000
/// concurrent wrong logins cost 420 MB with two threads: glibc raises its mmap threshold after
/// the first large free, so later 19 MiB blocks come from whichever malloc arena the thread is
/// on at the time and stay cached there (seven arenas of 19 to 58 MiB were measured). With one
/// buffer per thread, hashing holds exactly `threads × m_cost` whatever arrives.
#[derive(Default)]
struct Memory(Vec<Block>);

impl Memory {
    /// The largest working memory a stored hash may ask for (256 MiB); a hash that asks for
    /// more is refused, not computed.
    const MAX_BLOCKS: usize = 256 * 1024;

    fn blocks(&mut self, n: usize) -> Option<&mut [Block]> {
        if n > Self::MAX_BLOCKS {
            return None;
        }
        if self.0.len() < n {
            self.0.resize(n, Block::default());
        }
        // Argon2 writes every block of its memory before it reads it, so what an earlier
        // computation left in the buffer never reaches this one.
        Some(&mut self.0[..n])
    }
}

impl Hasher {
    fn admit(&self) -> Result<Admission, HashError> {
        self.places
            .clone()
            .try_acquire_owned()
            .map(Admission)
            .map_err(|_| HashError::Busy {
                threads: self.limits.threads,
                queue: self.limits.queue,
            })
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => HashError::Busy {
                threads: self.limits.threads,
                queue: self.limits.queue,
            },
            TrySendError::Disconnected(_) => HashError::Failed("no hashing thread".into()),
        })
    }

    async fn hash(&self, password: String) -> Result<String, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Hash(password, tx))?;
        rx.await
            .map_err(|_| HashError::Failed("the hashing thread stopped".into()))?
    }

    async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Verify(password, stored, tx))?;
        Ok(rx.await.unwrap_or(false))
    }
}

/// Take a place among the password checks in progress, before any other work for a login
/// (looking the account up, say): `Err(Busy)` at once when `threads + queue` checks are
/// already in progress. Without it, a flood of logins that the hashing queue will refuse
/// anyway first queues up for database connections, and everything else that needs one (the
/// health check's ping among them) waits behind it.
pub fn admit() -> Result<Admission, HashError> {
    hasher().admit()
}

/// Hash a password into a PHC string, on a hashing thread.
pub async fn hash(password: String) -> Result<String, HashError> {
    hasher().hash(password).await
}

/// Check a password against a stored PHC string, on a hashing thread. With `None` (no such
/// user) a dummy hash is checked instead, so a wrong email costs as much time as a wrong
/// password. `Err(Busy)` when the queue is full: nothing was checked.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, HashError> {
    hasher().verify(password, stored).await
}

fn hash_now(memory: &mut Memory, password: &str) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let params = Params::default();
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = memory
        .blocks(params.block_count())
        .ok_or_else(|| HashError::Failed("Argon2 parameters ask for too much memory".into()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, blocks)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.into(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

fn verify_now(memory: &mut Memory, password: &str, stored: Option<&str>) -> bool {
    let dummy;
    let phc = match stored {
        Some(s) => s,
        None => {
            dummy = dummy_hash(memory);
            dummy.as_str()
        }
    };
    let ok = matches(memory, password, phc).unwrap_or(false);
    ok && stored.is_some()
}

/// The rule for a new password, the reference's (`changePassword.newPassword`): at least 12
/// characters, with an upper-case letter, a lower-case letter, a digit and a character that is
/// none of these. The message says what is missing and never repeats the password.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let mut missing = Vec::new();
    if password.chars().count() < 12 {
        missing.push("at least 12 characters");
    }
    if password.chars().count() > 2048 {
        return Err("a password is at most 2048 characters".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        missing.push("an upper-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        missing.push("a lower-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("a digit");
    }
    if password.chars().all(|c| c.is_ascii_alphanumeric()) {
        missing.push("a character that is not a letter or digit");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the new password needs {}", missing.join(", ")))
    }
}

/// Recompute `phc`'s hash of `password` with its own algorithm, version and parameters, in
/// this thread's memory; `None` when `phc` is not an Argon2 hash this can check.
fn matches(memory: &mut Memory, password: &str, phc: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let (salt, expected) = (parsed.salt.as_ref()?, parsed.hash.as_ref()?);
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    let mut out = vec![0u8; expected.len()];
    let blocks = memory.blocks(params.block_count())?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, blocks)
        .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(&out).ok()? == *expected)
}

fn dummy_hash(memory: &mut Memory) -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_now(memory, "tollgate-dummy-password").unwrap_or_default())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_or_missing_fail() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(
            verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(h)).await.unwrap());
        assert!(
            !verify("tollgate-dummy-password".into(), None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn reused_memory_agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Memory::default();
        // Ours, checked by the crate's own verifier (hashes already stored keep working if
        // this code is ever replaced, and the other way round below).
        let ours = hash_now(&mut memory, "correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"correct horsf", &parsed)
                .is_err()
        );
        // The crate's, checked by ours, with the same buffer used again in between: what the
        // previous computation left in it changes nothing.
        let theirs = Argon2::default()
            .hash_password(b"battery staple")
            .unwrap()
            .to_string();
        assert!(matches(&mut memory, "battery staple", &theirs).unwrap());
        assert!(!matches(&mut memory, "battery stapl", &theirs).unwrap());
        assert!(matches(&mut memory, "correct horse", &ours).unwrap());
        // Different parameters (a smaller hash from an older release, say) are honoured.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"x-password")
        .unwrap()
        .to_string();
        assert!(matches(&mut memory, "x-password", &small).unwrap());
        assert_eq!(matches(&mut memory, "x", "not a hash"), None);
        // A hash asking for more than the cap is refused, not computed.
        let huge = small.replace("m=8192", "m=4194304");
        assert_eq!(matches(&mut memory, "x-password", &huge), None);
        assert!(memory.0.len() <= Memory::MAX_BLOCKS);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_piling_up() {
        // A hasher of its own (the process's is shared with other tests): far more checks at
        // once than threads plus queue can hold are refused, and every refusal names the limit.
        let limits = HashLimits {
            threads: 1,
            queue: 2,
        };
        let hasher = std::sync::Arc::new(start(limits));
        let n = limits.threads + limits.queue + 50;
        let stored = hash_now(&mut Memory::default(), "correct horse").unwrap();
        let checks: Vec<_> = (0..n)
            .map(|_| {
                let (h, stored) = (hasher.clone(), stored.clone());
                tokio::spawn(async move { h.verify("wrong".into(), Some(stored)).await })
            })
            .collect();
        let mut busy = 0;
        let mut checked = 0;
        for c in checks {
            match c.await.unwrap() {
                Ok(ok) => {
                    assert!(!ok);
                    checked += 1;
                }
                Err(HashError::Busy { threads, queue }) => {
                    assert_eq!((threads, queue), (limits.threads, limits.queue));
                    busy += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy >= 50, "busy {busy}, checked {checked}");
        assert!(checked >= 1 && checked <= limits.threads + limits.queue + 10);
    }

    #[test]
    fn admission_holds_threads_plus_queue_places_and_gives_them_back() {
        let limits = HashLimits {
            threads: 1,
            queue: 2,
        };
        let hasher = start(limits);
        let mut held: Vec<Admission> = (0..3).map(|_| hasher.admit().unwrap()).collect();
        match hasher.admit() {
            Err(HashError::Busy { threads, queue }) => assert_eq!((threads, queue), (1, 2)),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a fourth place was given with threads 1 + queue 2"),
        }
        held.pop();
        assert!(hasher.admit().is_ok(), "a place given back is not reusable");
    }

    #[test]
    fn new_passwords_follow_the_reference_rule() {
        assert!(check_new_password("Correct-horse-9").is_ok());
        let e = check_new_password("short").unwrap_err();
        assert!(
            e.contains("12 characters") && e.contains("upper-case") && e.contains("digit"),
            "{e}"
        );
        assert!(!e.contains("short"));
        assert!(
            check_new_password("alllowercase-9")
                .unwrap_err()
                .contains("upper-case")
        );
        assert!(
            check_new_password("NoSpecialChar99")
                .unwrap_err()
                .contains("not a letter")
        );
    }
}
