//! One server per SQLite database, with real processes: a second `serve` on the same data
//! directory exits at once naming the lock and the pid; `tollgate` commands keep working beside
//! a running server, which sees their changes at once, including those that affect its caches.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{ServerProcess, binary, free_port, http};
use serde_json::json;
use tollgate_testkit::{Case, case};

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("tollgate.db").display())
}

fn a_second_server_on_the_same_database_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServerProcess::start(dir.path(), &sqlite_url(dir.path()), &[]);
    let started = Instant::now();
    let out = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("TOLLGATE_DATA_DIR", dir.path())
        .env_remove("TOLLGATE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // At once: no waiting for anything.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lock = dir.path().join("tollgate.lock");
    assert!(stderr.contains(&lock.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    // The first server is untouched.
    assert_eq!(
        http::call(&first.url, "GET", "/health", None, None).status,
        200
    );
}

fn commands_beside_a_server_take_effect_in_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let server = ServerProcess::start(dir.path(), &url, &[]);
    let session = http::admin_session(&server.url);
    let app = http::post(
        &server.url,
        "/applications",
        &session,
        json!({ "name": "x" }),
    )
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = http::post(
        &server.url,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "cached" }),
    )
    .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Cached by the server.
    for _ in 0..2 {
        http::get(&server.url, &format!("/applications/{app}"), &token).expect(200);
    }

    // `user add` beside the server: the new user logs in at once.
    let out = Command::new(binary())
        .args([
            "user",
            "add",
            "--email",
            "beside@example.com",
            "--password",
            "beside-password",
        ])
        .env("TOLLGATE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    http::call(
        &server.url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": "beside@example.com", "password": "beside-password" })),
    )
    .expect(200);

    // `db copy --replace-target` into the server's database from one without that token: when
    // the command has exited, the server refuses the token it had cached and knows none of
    // the old sessions.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args([
            "user",
            "add",
            "--email",
            "other@example.com",
            "--password",
            "other-password",
        ])
        .env("TOLLGATE_DATA_DIR", other.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(binary())
        .args([
            "db",
            "copy",
            "--from",
            &sqlite_url(other.path()),
            "--to",
            &url,
            "--replace-target",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = http::get(&server.url, &format!("/applications/{app}"), &token);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(http::get(&server.url, "/me", &session).status, 401);
    http::call(
        &server.url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": "other@example.com", "password": "other-password" })),
    )
    .expect(200);
}

fn a_server_waits_for_a_command_that_holds_the_database() {
    // A command that finds no server holds the lock while it runs, so a server started
    // meanwhile waits for it rather than serving caches that could miss its changes. The
    // command here is this test, through the API commands use.
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(tollgate_store::Store::connect(&url)).unwrap();
    let attached = rt
        .block_on(tollgate_server::datadir::attach_command(&store, "test"))
        .unwrap();
    assert!(matches!(
        attached,
        tollgate_server::datadir::Attachment::Alone(_)
    ));
    let lock = dir.path().join("tollgate.lock");
    let holder = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(holder, format!("{} command:test\n", std::process::id()));

    let log = dir.path().join("waiting-server.log");
    let port = free_port();
    let mut server = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TOLLGATE_DATA_DIR", dir.path())
        .env_remove("TOLLGATE_DATABASE_URL")
        .env("TOLLGATE_ADMIN_EMAIL", "admin@example.com")
        .env("TOLLGATE_ADMIN_PASSWORD", "admin-password-123")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("waiting for a tollgate command"))
    {
        assert!(
            Instant::now() < deadline,
            "the server did not wait: {:?}",
            std::fs::read_to_string(&log)
        );
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still waiting, not serving.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // The command ends; the server takes the lock and starts.
    drop(attached);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server never started: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http::call(&base, "GET", "/health", None, None).status, 200);
    let holder = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(holder, format!("{} serve\n", server.id()));

    // Now a command finds the server and its writes wait for it (the attachment says so).
    let attached = rt
        .block_on(tollgate_server::datadir::attach_command(&store, "test"))
        .unwrap();
    assert!(
        matches!(&attached, tollgate_server::datadir::Attachment::Server { pid } if *pid == server.id().to_string())
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// What a command does through `datadir::attach_command` (the API `tollgate` commands call):
/// a token it deletes and a session it ends are refused by the running server on the very
/// next request after the write returns, though the server had both cached.
fn a_command_s_revocations_are_in_effect_in_the_server_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let server = ServerProcess::start(dir.path(), &url, &[]);
    let session = http::admin_session(&server.url);
    let app = http::post(
        &server.url,
        "/applications",
        &session,
        json!({ "name": "x" }),
    )
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = http::post(
        &server.url,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "cached" }),
    )
    .expect(201);
    let (token_id, secret) = (
        token["id"].as_str().unwrap().to_owned(),
        token["token"].as_str().unwrap().to_owned(),
    );
    let other_session = http::admin_session(&server.url);
    for _ in 0..2 {
        http::get(&server.url, &format!("/applications/{app}"), &secret).expect(200);
        http::get(&server.url, "/me", &other_session).expect(200);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = tollgate_store::Store::connect(&url).await.unwrap();
        let attached = tollgate_server::datadir::attach_command(&store, "test")
            .await
            .unwrap();
        assert!(matches!(
            attached,
            tollgate_server::datadir::Attachment::Server { .. }
        ));
        store
            .delete_token(
                &tollgate_store::Actor::operator(),
                app.parse().unwrap(),
                token_id.parse().unwrap(),
                |_| Ok::<(), tollgate_store::StoreError>(()),
            )
            .await
            .unwrap();
        store
            .delete_session(&tollgate_core::secret::digest(&other_session))
            .await
            .unwrap();
    });
    let r = http::get(&server.url, &format!("/applications/{app}"), &secret);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(http::get(&server.url, "/me", &other_session).status, 401);
    http::get(&server.url, "/me", &session).expect(200);

    // Without a server that answers, a command refuses to start rather than change the
    // database behind its caches: the server's socket is gone (as if it hung).
    std::fs::remove_file(dir.path().join("tollgate.sock")).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(binary())
        .args([
            "user",
            "add",
            "--email",
            "late@example.com",
            "--password",
            "late-password",
        ])
        .env("TOLLGATE_DATA_DIR", dir.path())
        .env_remove("TOLLGATE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("(pid {})", server.pid())),
        "{stderr}"
    );
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

pub fn cases() -> Vec<Case> {
    // SQLite only (several servers on PostgreSQL are the point): the SQLite pass.
    vec![
        case!(sync a_second_server_on_the_same_database_exits_at_once).once(),
        case!(sync commands_beside_a_server_take_effect_in_it_at_once).once(),
        case!(sync a_server_waits_for_a_command_that_holds_the_database).once(),
        case!(sync a_command_s_revocations_are_in_effect_in_the_server_when_it_returns).once(),
    ]
}
