//! The official Losant clients (Python `losant-rest`, JavaScript `losant-rest`) driving a real
//! `tollgate` process through the scenarios in `tests/clients/{python,js}/`.
//!
//! Each script gets a fresh server and database and these environment variables:
//! `TOLLGATE_URL`, `TOLLGATE_ADMIN_EMAIL`, `TOLLGATE_ADMIN_PASSWORD`, `TOLLGATE_BIN` and
//! `TOLLGATE_DATABASE_URL` (for `tollgate user add`). A script passes by exiting 0. Files
//! whose names start with `_` are shared helpers, not scenarios.

use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_testkit::{Case, Need, case};

use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess, binary};

fn workspace() -> PathBuf {
    tollgate_testkit::workspace()
}

fn scripts(lang: &str, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(workspace().join("tests/clients").join(lang))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        // `_helpers.py` and the like are shared code, not scenarios.
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no {lang} client scenarios found");
    found
}

async fn run_all(lang: &str, ext: &str, interpreter: impl Fn(&Path) -> Command) {
    let mut failures = Vec::new();
    for script in scripts(lang, ext) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::common::fresh_database_url(dir.path()).await;
        // Background jobs every 200 ms (the policy scenario waits for an idle deactivation),
        // and webhook deliveries and their retries within moments, for `webhooks.*`.
        let env = [
            ("TOLLGATE_BACKGROUND_INTERVAL_MS", "200"),
            ("TOLLGATE_WEBHOOK_INTERVAL_MS", "50"),
            ("TOLLGATE_WEBHOOK_RETRY_BASE_MS", "200"),
        ];
        let server = ServerProcess::start(dir.path(), &db, &env);
        let out = interpreter(&script)
            .arg(&script)
            .env("TOLLGATE_URL", &server.url)
            .env("TOLLGATE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TOLLGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("TOLLGATE_BIN", binary())
            .env("TOLLGATE_DATABASE_URL", &db)
            .output()
            .expect("run client scenario");
        let name = script.file_name().unwrap().to_string_lossy().into_owned();
        if out.status.success() {
            eprintln!("ok: {lang}/{name}");
        } else {
            failures.push(format!(
                "{lang}/{name} failed ({})\n--- stdout\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                server.log().lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

async fn python_client_scenarios() {
    let clients = tollgate_testkit::clients_dir();
    let python = clients.join("venv/bin/python");
    run_all("python", "py", |_| Command::new(&python)).await;
}

async fn javascript_client_scenarios() {
    let clients = tollgate_testkit::clients_dir();
    let modules = clients.join("js/node_modules");
    run_all("js", "js", |_| {
        let mut c = Command::new("node");
        c.env("NODE_PATH", &modules);
        c
    })
    .await;
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(python_client_scenarios, multi_thread = 2)
            .once()
            .needs(Need::OfficialClients),
        case!(javascript_client_scenarios, multi_thread = 2)
            .once()
            .needs(Need::OfficialClients),
    ]
}
