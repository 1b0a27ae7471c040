//! The harness of Tollgate's integration-test binaries (one per crate: `tests/all.rs`).
//!
//! libtest's own harness cannot decide at run time that a test did not run: a test whose
//! dependency is missing can only pass or fail. This harness (on `libtest-mimic`, which looks
//! and takes arguments like `cargo test`) decides before running:
//!
//! * **Passes.** Each test declares where it proves something ([`Runs`]): on both backends
//!   (store and server behaviour), once (backend-independent: documents, browser, official
//!   clients), or only in the PostgreSQL pass (several nodes, copying to PostgreSQL). The pass
//!   is `TOLLGATE_TEST_BACKEND=sqlite|postgres` (default `sqlite`). A test that belongs to the
//!   other pass is listed as *ignored*, with the reason, never as passed.
//! * **Dependencies.** A test that needs something outside the repository ([`Need`]) and
//!   does not find it **fails** with a message saying how to install it — unless the person
//!   running the tests opts into skipping with `TOLLGATE_ALLOW_SKIP=1`, in which case it is
//!   *ignored* and named in a "SKIPPED" list printed before the run. A skipped test is never
//!   reported as a pass.
//!
//! Tests are ordinary `async fn`s (or plain `fn`s) listed by each module's `cases()` with
//! [`case!`]; an unlisted test function is dead code, which `clippy -D warnings` refuses, so a
//! test cannot be forgotten.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;

pub use libtest_mimic;

/// Which pass this run of a test binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Sqlite,
    Postgres,
}

impl Pass {
    /// From `TOLLGATE_TEST_BACKEND` (`sqlite`, the default, or `postgres`). For
    /// compatibility, `TOLLGATE_TEST_POSTGRES_URL` alone also selects the PostgreSQL pass.
    pub fn current() -> Pass {
        match std::env::var("TOLLGATE_TEST_BACKEND").as_deref() {
            Ok("postgres") => Pass::Postgres,
            Ok("sqlite") => Pass::Sqlite,
            Ok(other) if !other.is_empty() => {
                panic!("TOLLGATE_TEST_BACKEND must be sqlite or postgres, not {other:?}")
            }
            _ if non_empty_env("TOLLGATE_TEST_POSTGRES_URL").is_some() => Pass::Postgres,
            _ => Pass::Sqlite,
        }
    }
}

/// Where a test proves something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Store or server behaviour: on SQLite in the SQLite pass, on PostgreSQL in the other.
    BothPasses,
    /// Backend-independent (documents, pure logic, the console in a browser, the official
    /// clients' wire protocol, secrets in SQLite files): the SQLite pass only.
    Once,
    /// Needs PostgreSQL itself (several nodes, copying to PostgreSQL): the PostgreSQL pass.
    PostgresPass,
}

impl Runs {
    fn includes(self, pass: Pass) -> bool {
        match self {
            Runs::BothPasses => true,
            Runs::Once => pass == Pass::Sqlite,
            Runs::PostgresPass => pass == Pass::Postgres,
        }
    }
}

/// Something outside the repository that a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// A PostgreSQL server to create test databases on (`TOLLGATE_TEST_PG_SERVER`).
    PostgresServer,
    /// PostgreSQL's server binaries, to run a cluster of the test's own
    /// (`scripts/pg-throwaway.sh`).
    PostgresBinaries,
    /// Debian's `chromium` and `chromium-driver`.
    Chromium,
    /// The official Losant clients (`scripts/install-clients.sh`).
    OfficialClients,
}

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

impl Need {
    /// `Err` says what is missing and how to get it.
    pub fn check(self) -> Result<(), String> {
        match self {
            Need::PostgresServer => postgres_server().map(drop).ok_or_else(|| {
                "a PostgreSQL server: set TOLLGATE_TEST_PG_SERVER=postgres://USER@HOST:PORT/postgres \
                 (scripts/test.sh starts a throwaway one)"
                    .to_owned()
            }),
            Need::PostgresBinaries => {
                if postgres_bin_dir().is_some() {
                    Ok(())
                } else {
                    Err("PostgreSQL's server binaries: apt-get install postgresql".to_owned())
                }
            }
            Need::Chromium => {
                if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
                    Ok(())
                } else {
                    Err(format!(
                        "{CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
                    ))
                }
            }
            Need::OfficialClients => {
                let dir = clients_dir();
                if dir.join("venv/bin/python").exists()
                    && dir.join("js/node_modules/losant-rest").exists()
                {
                    Ok(())
                } else {
                    Err(format!(
                        "the official Losant clients in {}: run scripts/install-clients.sh",
                        dir.display()
                    ))
                }
            }
        }
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The PostgreSQL server tests create their databases on: `TOLLGATE_TEST_PG_SERVER`, or
/// (older name) `TOLLGATE_TEST_POSTGRES_URL`.
pub fn postgres_server() -> Option<String> {
    non_empty_env("TOLLGATE_TEST_PG_SERVER").or_else(|| non_empty_env("TOLLGATE_TEST_POSTGRES_URL"))
}

/// The directory of PostgreSQL's server binaries (the newest installed version).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// The repository's root (this crate lives in `crates/tollgate-testkit`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace directory")
}

/// Where the official clients are installed: `TOLLGATE_CLIENTS_DIR`, else `target/clients`.
pub fn clients_dir() -> PathBuf {
    non_empty_env("TOLLGATE_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/clients"))
}

type Body = Box<dyn FnOnce() + Send + 'static>;

/// One test: its name, where it runs, what it needs, and how to run it.
pub struct Case {
    name: String,
    runs: Runs,
    needs: Vec<Need>,
    body: Body,
}

/// How an async test's runtime is built.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

impl Case {
    /// A test of store or server behaviour (both passes) from a synchronous function.
    pub fn sync(name: &str, f: fn()) -> Case {
        Case {
            name: test_name(name),
            runs: Runs::BothPasses,
            needs: Vec::new(),
            body: Box::new(f),
        }
    }

    /// A test from an async function, on a current-thread runtime (like `#[tokio::test]`).
    pub fn future<F>(name: &str, f: fn() -> F) -> Case
    where
        F: Future<Output = ()> + 'static,
    {
        Self::future_on(name, f, Flavor::CurrentThread)
    }

    /// A test from an async function on a runtime of `flavor`.
    pub fn future_on<F>(name: &str, f: fn() -> F, flavor: Flavor) -> Case
    where
        F: Future<Output = ()> + 'static,
    {
        Case {
            name: test_name(name),
            runs: Runs::BothPasses,
            needs: Vec::new(),
            body: Box::new(move || {
                let runtime = match flavor {
                    Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build(),
                    Flavor::MultiThread(n) => tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(n)
                        .enable_all()
                        .build(),
                }
                .expect("a tokio runtime");
                let fut: Pin<Box<dyn Future<Output = ()>>> = Box::pin(f());
                runtime.block_on(fut);
            }),
        }
    }

    /// Backend-independent: run in the SQLite pass only.
    pub fn once(mut self) -> Case {
        self.runs = Runs::Once;
        self
    }

    /// Run in the PostgreSQL pass only.
    pub fn postgres_pass(mut self) -> Case {
        self.runs = Runs::PostgresPass;
        self
    }

    /// Needs `need` (checked before the run; see the module docs).
    pub fn needs(mut self, need: Need) -> Case {
        self.needs.push(need);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `all::api_tokens::creates_a_token` → `api_tokens::creates_a_token`.
fn test_name(path: &str) -> String {
    path.split_once("::")
        .map_or(path, |(_, rest)| rest)
        .to_owned()
}

/// A [`Case`] for the function `$f` of the current module:
/// `case!(f)` (async, current-thread runtime), `case!(f, multi_thread = 4)`, `case!(sync f)`.
#[macro_export]
macro_rules! case {
    (sync $f:ident) => {
        $crate::Case::sync(concat!(module_path!(), "::", stringify!($f)), $f)
    };
    ($f:ident, multi_thread = $n:expr) => {
        $crate::Case::future_on(
            concat!(module_path!(), "::", stringify!($f)),
            $f,
            $crate::Flavor::MultiThread($n),
        )
    };
    ($f:ident) => {
        $crate::Case::future(concat!(module_path!(), "::", stringify!($f)), $f)
    };
}

/// Whether skipping a test with a missing dependency was asked for (`TOLLGATE_ALLOW_SKIP=1`).
pub fn skipping_allowed() -> bool {
    matches!(
        std::env::var("TOLLGATE_ALLOW_SKIP").as_deref(),
        Ok("1" | "true" | "yes")
    )
}

/// Run `cases` as the test binary's `main` does.
pub fn run(cases: Vec<Case>) -> ExitCode {
    let (args, filters) = arguments(std::env::args());
    let pass = Pass::current();
    let allow_skip = skipping_allowed();
    let mut skipped = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut trials = Vec::with_capacity(cases.len());
    for case in cases {
        if !filters.is_empty()
            && !filters.iter().any(|f| {
                if args.exact {
                    case.name == *f
                } else {
                    case.name.contains(f.as_str())
                }
            })
        {
            continue;
        }
        assert!(
            names.insert(case.name.clone()),
            "two tests are named {}",
            case.name
        );
        if !case.runs.includes(pass) {
            // Shown as `test [postgres pass] name ... ignored`.
            let other = match case.runs {
                Runs::PostgresPass => "postgres pass",
                _ => "sqlite pass",
            };
            trials.push(
                libtest_mimic::Trial::test(case.name, || Ok(()))
                    .with_kind(other)
                    .with_ignored_flag(true),
            );
            continue;
        }
        let mut needs = case.needs.clone();
        if pass == Pass::Postgres && !needs.contains(&Need::PostgresServer) {
            needs.push(Need::PostgresServer);
        }
        let missing: Vec<String> = needs.iter().filter_map(|n| n.check().err()).collect();
        if !missing.is_empty() {
            let what = missing.join("; ");
            if allow_skip {
                skipped.push(format!("{} (needs {what})", case.name));
                trials.push(
                    libtest_mimic::Trial::test(case.name, || Ok(()))
                        .with_kind("SKIPPED")
                        .with_ignored_flag(true),
                );
            } else {
                let message = format!(
                    "this test needs {what}. Install it, or set TOLLGATE_ALLOW_SKIP=1 to report \
                     such tests as ignored instead of failing"
                );
                trials.push(libtest_mimic::Trial::test(case.name, move || {
                    Err(message.into())
                }));
            }
            continue;
        }
        let body = case.body;
        trials.push(libtest_mimic::Trial::test(case.name, move || {
            body();
            Ok(())
        }));
    }
    if !skipped.is_empty() {
        eprintln!(
            "\nSKIPPED ({} test(s), TOLLGATE_ALLOW_SKIP=1): these did not run and are reported as ignored:",
            skipped.len()
        );
        for s in &skipped {
            eprintln!("  {s}");
        }
        eprintln!();
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// libtest's arguments, except that, like libtest and unlike libtest-mimic, any number of
/// name filters may be given (`cargo test -- api_tokens:: wire_format::`): with more than
/// one, they are returned separately and removed from the arguments.
fn arguments(raw: impl Iterator<Item = String>) -> (libtest_mimic::Arguments, Vec<String>) {
    const TAKES_VALUE: &[&str] = &[
        "--test-threads",
        "--logfile",
        "--skip",
        "--color",
        "--format",
        "-Z",
    ];
    let raw: Vec<String> = raw.collect();
    let mut positional = Vec::new();
    let mut i = 1;
    while i < raw.len() {
        let a = &raw[i];
        if TAKES_VALUE.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            positional.push(i);
        }
        i += 1;
    }
    if positional.len() <= 1 {
        return (libtest_mimic::Arguments::from_iter(raw), Vec::new());
    }
    let filters = positional.iter().map(|&i| raw[i].clone()).collect();
    let rest = raw
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !positional.contains(i))
        .map(|(_, a)| a);
    (libtest_mimic::Arguments::from_iter(rest), filters)
}

/// Create a fresh, empty database on the PostgreSQL server `server` and return its URL.
pub async fn fresh_pg_database(server: &str) -> String {
    let name = format!("tg_test_{}", unique_suffix());
    sqlx::any::install_default_drivers();
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .expect("connect to the PostgreSQL test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    format!("{base}/{name}")
}

/// A fresh database for one test in the current pass: SQLite in `dir`, or a new database on
/// the PostgreSQL test server.
pub async fn fresh_database_url(dir: &Path) -> String {
    match Pass::current() {
        Pass::Postgres => {
            let server = postgres_server().expect(
                "the PostgreSQL pass needs TOLLGATE_TEST_PG_SERVER (checked before the run)",
            );
            fresh_pg_database(&server).await
        }
        Pass::Sqlite => format!("sqlite://{}", dir.join("tollgate.db").display()),
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Poll `check` until it returns `Some`, or panic with `what` after `deadline`. Tests wait
/// with this instead of fixed sleeps; deadlines are generous (a loaded 2-core machine).
pub async fn eventually<T, F, Fut>(what: &str, deadline: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + deadline;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if std::time::Instant::now() >= until {
            panic!("{what}: not seen within {deadline:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}

/// The blocking twin of [`eventually`], for tests that drive processes synchronously.
pub fn eventually_blocking<T>(
    what: &str,
    deadline: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let until = std::time::Instant::now() + deadline;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if std::time::Instant::now() >= until {
            panic!("{what}: not seen within {deadline:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}

/// The `.rs` files directly in `tests_dir` that `all_rs` does not declare as modules
/// (`mod name;`). With `autotests = false` such a file would silently never be compiled, so
/// each crate's `tests/all.rs` has a case that asserts this list is empty.
pub fn undeclared_test_files(tests_dir: &Path, all_rs: &str) -> Vec<String> {
    let declared: std::collections::HashSet<String> = all_rs
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_owned())
        })
        .collect();
    let mut missing: Vec<String> = std::fs::read_dir(tests_dir)
        .expect("the tests directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?.to_owned();
            (e.path().is_file() && stem != "all" && !declared.contains(&stem)).then_some(name)
        })
        .collect();
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_test_runs_in_its_passes() {
        assert!(Runs::BothPasses.includes(Pass::Sqlite));
        assert!(Runs::BothPasses.includes(Pass::Postgres));
        assert!(Runs::Once.includes(Pass::Sqlite));
        assert!(!Runs::Once.includes(Pass::Postgres));
        assert!(!Runs::PostgresPass.includes(Pass::Sqlite));
        assert!(Runs::PostgresPass.includes(Pass::Postgres));
    }

    #[test]
    fn names_drop_the_binary_and_keep_the_module() {
        assert_eq!(test_name("all::api_tokens::creates"), "api_tokens::creates");
        assert_eq!(test_name("plain"), "plain");
    }

    #[test]
    fn several_filters_are_taken_apart_and_options_keep_their_values() {
        fn args(v: &[&str]) -> impl Iterator<Item = String> {
            std::iter::once("all".to_owned())
                .chain(v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        }
        let (a, f) = arguments(args(&["--test-threads", "3", "one", "two", "--exact"]));
        assert_eq!(f, ["one", "two"]);
        assert_eq!((a.test_threads, a.exact, a.filter), (Some(3), true, None));
        let (a, f) = arguments(args(&["only", "--skip", "slow"]));
        assert!(f.is_empty());
        assert_eq!(a.filter.as_deref(), Some("only"));
        assert_eq!(a.skip, ["slow"]);
    }

    #[test]
    fn a_test_file_missing_from_all_rs_is_found() {
        let dir = std::env::temp_dir().join(format!("tg-testkit-{}", unique_suffix()));
        std::fs::create_dir_all(dir.join("common")).unwrap();
        for f in ["all.rs", "declared.rs", "forgotten.rs", "notes.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let found = undeclared_test_files(&dir, "mod common;\nmod declared;\n");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, ["forgotten.rs"]);
    }
}
