//! Secrets at rest and in transit (issue 12, item 6): responses that carry a secret are not
//! cached; the data directory and database files are readable by the server's user only
//! (and tightened, with a warning, when they were not); a generated first-admin password is
//! written to a 0600 file and only its path is printed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use crate::common::process::{ServerProcess, http};
use axum::http::header;
use serde_json::json;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn token_creation_is_not_cached() {
    let t = TestApp::new().await;
    let (user, session) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &session,
            json!({ "name": "dashboard" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["token"].as_str().unwrap().starts_with("tgat_"));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
}

fn data_files_are_private_and_the_first_password_goes_to_a_private_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_env = format!("TOLLGATE_DATA_DIR={}", data.display());
    // The default set-up: no database URL, no admin password, the data directory not there.
    let wrapper = [
        "env",
        "-u",
        "TOLLGATE_ADMIN_PASSWORD",
        "-u",
        "TOLLGATE_DATABASE_URL",
        &data_env,
    ];
    let mut server = ServerProcess::start_wrapped(tmp.path(), "unused", &[], &wrapper);
    assert_eq!(mode(&data), 0o700);
    let db = data.join("tollgate.db");
    for f in ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let file = data.join("initial-admin-password");
    assert_eq!(mode(&file), 0o600);
    let contents = std::fs::read_to_string(&file).unwrap();
    let mut lines = contents.lines();
    let email = lines.next().unwrap().to_owned();
    let password = lines.next().unwrap().to_owned();
    assert!(password.len() >= 16, "{contents}");
    // Standard output is not a terminal here: the path is printed, the password is not.
    let out = server.log();
    assert!(out.contains(&file.display().to_string()), "{out}");
    assert!(!out.contains(&password), "the password was printed:\n{out}");
    // It is the administrator's password.
    let login = http::call(
        &server.url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": email, "password": password })),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    server.kill();

    // Files left readable by others (an older version, a copy) are tightened at start.
    for f in ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm"] {
        let p = data.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = ServerProcess::start_wrapped(tmp.path(), "unused", &[], &wrapper);
    assert_eq!(mode(&db), 0o600);
    let log = server.log();
    assert!(
        log.contains("the database file could be read by other users: its mode is now 600"),
        "{log}"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(token_creation_is_not_cached),
        case!(sync data_files_are_private_and_the_first_password_goes_to_a_private_file).once(),
    ]
}
