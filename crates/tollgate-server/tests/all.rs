//! The server's integration tests: one binary (compiled and linked once), one module per
//! area, run by the harness in `tollgate-testkit` (passes, dependencies, visible skips).
//!
//! `cargo test -p tollgate-server --test all` runs the SQLite pass;
//! `TOLLGATE_TEST_BACKEND=postgres TOLLGATE_TEST_PG_SERVER=postgres://… cargo test -p
//! tollgate-server --test all` the PostgreSQL pass. Filter by name as usual:
//! `cargo test -p tollgate-server --test all -- api_tokens::`.

mod common;

mod abuse_bounds;
mod abuse_connections;
mod abuse_db_timeout;
mod abuse_logins;
mod abuse_secrets;
mod accounts;
mod api_audit;
mod api_data;
mod api_devices;
mod api_flows;
mod api_foundation;
mod api_tokens;
mod backup_restore;
mod browser_console;
mod browser_lineage;
mod browser_policy;
mod browser_usage;
mod browser_webhooks;
mod cached_reads;
mod cli_operations;
mod cli_tokens;
mod cluster_connections;
mod console_http;
mod console_once;
mod console_sessions;
mod console_usage;
mod credential_lease;
mod db_copy;
mod durability;
mod fuzz_corpus;
mod inputs;
mod invites;
mod lifecycle;
mod lineage;
mod local_server;
mod multinode;
mod not_implemented;
mod observability;
mod official_clients;
mod openapi;
mod races;
mod readme;
mod restrictions;
mod restrictions_wire;
mod revocation;
mod revoked_writes;
mod secrets;
mod sessions;
mod storage_faults;
mod token_authority;
mod token_matrix;
mod token_policy;
mod token_usage;
mod webhooks;
mod wire_format;

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
    tollgate_testkit::run(
        [
            abuse_bounds::cases(),
            abuse_connections::cases(),
            abuse_db_timeout::cases(),
            abuse_logins::cases(),
            abuse_secrets::cases(),
            accounts::cases(),
            api_audit::cases(),
            api_data::cases(),
            api_devices::cases(),
            api_flows::cases(),
            api_foundation::cases(),
            api_tokens::cases(),
            backup_restore::cases(),
            browser_console::cases(),
            browser_lineage::cases(),
            browser_policy::cases(),
            browser_usage::cases(),
            browser_webhooks::cases(),
            cached_reads::cases(),
            cli_operations::cases(),
            cli_tokens::cases(),
            cluster_connections::cases(),
            console_http::cases(),
            console_once::cases(),
            console_sessions::cases(),
            console_usage::cases(),
            credential_lease::cases(),
            db_copy::cases(),
            durability::cases(),
            fuzz_corpus::cases(),
            inputs::cases(),
            invites::cases(),
            lifecycle::cases(),
            lineage::cases(),
            local_server::cases(),
            multinode::cases(),
            not_implemented::cases(),
            observability::cases(),
            official_clients::cases(),
            openapi::cases(),
            races::cases(),
            readme::cases(),
            restrictions::cases(),
            restrictions_wire::cases(),
            revocation::cases(),
            revoked_writes::cases(),
            secrets::cases(),
            sessions::cases(),
            token_authority::cases(),
            storage_faults::cases(),
            token_matrix::cases(),
            token_policy::cases(),
            token_usage::cases(),
            webhooks::cases(),
            wire_format::cases(),
            vec![tollgate_testkit::case!(sync every_test_file_is_a_module_of_this_binary).once()],
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}
