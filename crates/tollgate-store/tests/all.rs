//! The store's integration tests: one binary, the same cases on SQLite (the SQLite pass) and
//! on PostgreSQL (`TOLLGATE_TEST_BACKEND=postgres`), run by the harness in `tollgate-testkit`.

mod audit;
mod backends;
mod concurrency;
mod group_commit;
mod lifecycle;
mod lineage;
mod policy;
mod statement_timeout;
mod storage_faults;
mod support;
mod usage;
mod webhooks;

/// With `autotests = false`, a test file that is not a module here would never be compiled.
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let missing = tollgate_testkit::undeclared_test_files(&dir, include_str!("all.rs"));
    assert!(
        missing.is_empty(),
        "declare these in tests/all.rs: {missing:?}"
    );
}

fn main() -> std::process::ExitCode {
    let mut cases = backends::cases();
    cases.extend(audit::cases());
    cases.extend(usage::cases());
    cases.extend(concurrency::cases());
    cases.extend(group_commit::cases());
    cases.extend(lifecycle::cases());
    cases.extend(lineage::cases());
    cases.extend(policy::cases());
    cases.extend(webhooks::cases());
    cases.extend(storage_faults::cases());
    cases.extend(statement_timeout::cases());
    cases.push(tollgate_testkit::case!(sync every_test_file_is_a_module_of_this_binary).once());
    tollgate_testkit::run(cases)
}
