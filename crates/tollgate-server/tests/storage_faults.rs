//! Storage faults seen from the API and the command line: a full disk (507, reads work,
//! `/health` says writes fail, recovery without restart), damaged, emptied and newer
//! databases refused at start-up with the file and the reason, two processes starting
//! together on a new directory, the WAL checkpointed at a clean shutdown, `tollgate db check`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use crate::common::process::{ServerProcess, binary};
use axum::http::Method;
use serde_json::json;
use tollgate_store::{Store, StoreOptions};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("TOLLGATE_DATA_DIR", dir)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env("TOLLGATE_ADMIN_EMAIL", "admin@example.com")
        .env("TOLLGATE_ADMIN_PASSWORD", "admin-password-123")
        .output()
        .unwrap()
}

/// `tollgate serve` on `dir` expected to refuse to start: its output, and how long it took.
fn serve_refused(dir: &Path) -> (String, Duration) {
    let started = Instant::now();
    let port = crate::common::process::free_port().to_string();
    let out = tollgate(dir, &["serve", "--listen", &format!("127.0.0.1:{port}")]);
    assert!(!out.status.success(), "started anyway: {}", text(&out));
    (text(&out), started.elapsed())
}

async fn a_full_disk_is_a_507_reads_work_health_says_so_and_writes_recover() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let store = Store::connect(&url).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    let options = StoreOptions {
        sqlite_max_page_count: Some(u64::try_from(pages).unwrap() + 12),
        ..StoreOptions::default()
    };
    let store = Store::open(&url, &options).await.unwrap();
    let url_of_test = url.clone();
    let t = TestApp::with_store(store, url, dir);
    let (_, admin) = t.login("admin@example.com").await;
    let health = t.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.body["writes"], "ok", "{}", health.body);

    let big = "d".repeat(1000);
    let mut created = Vec::new();
    let refused = loop {
        let r = t
            .post(
                "/applications",
                &admin,
                json!({ "name": format!("app {}", created.len()), "description": big }),
            )
            .await;
        if r.status != 201 {
            break r;
        }
        created.push(r.body["id"].as_str().unwrap().to_owned());
        assert!(created.len() < 200, "the page limit never took effect");
    };
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert_eq!(refused.body["type"], "InsufficientStorage");
    assert!(
        refused.message().contains("The database's disk is full"),
        "{}",
        refused.message()
    );
    assert!(!created.is_empty());
    // Reads keep working.
    let app = t
        .get(&format!("/applications/{}", created[0]), &admin)
        .await
        .expect(200);
    assert_eq!(app["description"], big);
    // /health says writes fail, and why (checked at most once a second: poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let h = t.send(Method::GET, "/health", None, None).await;
        if h.body["writes"] == "failing" || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["database"], "ok");
    assert_eq!(health.body["writeError"], "the database's disk is full");

    // Every change writes its audit entry in the same transaction, so on a full disk even a
    // DELETE through the API can be refused (its entry needs room): nothing is changed
    // without its entry.
    // Space returns from outside, as when an operator frees disk space: here rows are
    // deleted on a connection of the test's own (without the page limit). Writes work again
    // at once, with no restart, and /health follows within seconds.
    let outside = sqlx::AnyPool::connect(&url_of_test).await.unwrap();
    sqlx::query("DELETE FROM applications WHERE name LIKE 'app %'")
        .execute(&outside)
        .await
        .unwrap();
    outside.close().await;
    t.post(
        "/applications",
        &admin,
        json!({ "name": "after", "description": big }),
    )
    .await
    .expect(201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let h = t.send(Method::GET, "/health", None, None).await;
        if h.status == 200 || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["writes"], "ok");
}

fn a_damaged_database_stops_start_up_with_its_name_and_sqlites_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    std::fs::write(&db, "this is not a database ".repeat(400)).unwrap();
    let (out, took) = serve_refused(dir.path());
    assert!(out.contains(&db.display().to_string()), "{out}");
    assert!(out.contains("file is not a database"), "{out}");
    assert!(!out.contains("pool timed out"), "{out}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

fn an_emptied_database_is_refused_not_reinitialised() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate(
        dir.path(),
        &[
            "user",
            "add",
            "--email",
            "a@example.com",
            "--password",
            "password-1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let db = dir.path().join("tollgate.db");
    std::fs::write(&db, b"").unwrap();
    let (out, _) = serve_refused(dir.path());
    assert!(out.contains(&db.display().to_string()), "{out}");
    assert!(out.contains("is empty (0 bytes)"), "{out}");
    assert!(!out.contains("created the first administrator"), "{out}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

async fn a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let store = Store::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO tollgate_migrations (version, applied_at) VALUES (999, 0)")
        .execute(store.pool())
        .await
        .unwrap();
    let ours: i64 =
        sqlx::query_scalar("SELECT MAX(version) FROM tollgate_migrations WHERE version < 999")
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.checkpoint().await.unwrap();
    store.close().await;
    let (out, _) = serve_refused(dir.path());
    assert!(out.contains("version 999"), "{out}");
    assert!(out.contains(&format!("(version {ours})")), "{out}");
}

/// Two processes starting together on a new data directory: both succeed, every time (the
/// second used to fail now and then with "table … already exists").
fn two_processes_starting_together_on_a_new_directory_both_succeed() {
    for trial in 0..24 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..2)
            .map(|i| {
                Command::new(binary())
                    .args([
                        "user",
                        "add",
                        "--email",
                        &format!("user{i}@example.com"),
                        "--password",
                        "password-123",
                    ])
                    .env("TOLLGATE_DATA_DIR", dir.path())
                    .env_remove("TOLLGATE_DATABASE_URL")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "trial {trial}: {}", text(&out));
        }
    }
}

fn a_clean_shutdown_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let mut server = ServerProcess::start(dir.path(), &db, &[]);
    let admin = crate::common::process::http::admin_session(&server.url);
    for i in 0..20 {
        crate::common::process::http::post(
            &server.url,
            "/applications",
            &admin,
            json!({ "name": format!("app {i}") }),
        )
        .expect(201);
    }
    let wal = dir.path().join("tollgate.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "writes are in the WAL"
    );
    server.terminate();
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "WAL left with {left} bytes");
    // The database file alone holds everything.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("tollgate.db"),
        copy.path().join("tollgate.db"),
    )
    .unwrap();
    let out = tollgate(copy.path(), &["db", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applications"), "{}", text(&out));
    let line = text(&out)
        .lines()
        .find(|l| l.starts_with("applications "))
        .unwrap()
        .to_owned();
    assert!(line.contains(" 20 rows"), "{line}");
}

fn db_check_passes_a_sound_database_and_fails_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate(
        dir.path(),
        &[
            "user",
            "add",
            "--email",
            "a@example.com",
            "--password",
            "password-123",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = tollgate(dir.path(), &["db", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: no problems found"),
        "{}",
        text(&out)
    );

    // Many rows, then pages near the end overwritten.
    let db = dir.path().join("tollgate.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        for i in 0..300 {
            store
                .create_user(&tollgate_store::users::NewUser {
                    email: &format!("bulk{i}@example.com"),
                    password_hash: "not-a-hash",
                    first_name: &"y".repeat(400),
                    last_name: "",
                })
                .await
                .unwrap();
        }
        store.checkpoint().await.unwrap();
        store.close().await;
    });
    let mut bytes = std::fs::read(&db).unwrap();
    let pages = bytes.len() / 4096;
    for b in &mut bytes[(pages - 6) * 4096 + 100..(pages - 2) * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = tollgate(dir.path(), &["db", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("problem(s) found"), "{}", text(&out));
    assert!(text(&out).contains("integrity: "), "{}", text(&out));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_full_disk_is_a_507_reads_work_health_says_so_and_writes_recover).once(),
        case!(sync a_damaged_database_stops_start_up_with_its_name_and_sqlites_message).once(),
        case!(sync an_emptied_database_is_refused_not_reinitialised).once(),
        case!(a_newer_schema_is_refused_with_both_versions).once(),
        case!(sync two_processes_starting_together_on_a_new_directory_both_succeed).once(),
        case!(sync a_clean_shutdown_checkpoints_the_wal).once(),
        case!(sync db_check_passes_a_sound_database_and_fails_a_damaged_one).once(),
    ]
}
