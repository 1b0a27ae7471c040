//! `tollgate db backup` while the server serves writes, and `tollgate db restore`: every write
//! acknowledged before the backup started is in the restored database. Restore refuses while
//! the database's lock is held, and refuses files that are not backups. (SQLite: PostgreSQL
//! deployments back up with pg_dump, and the commands say so.)

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, binary, http};
use serde_json::json;

fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(binary());
    c.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TOLLGATE_DATABASE_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn a_backup_taken_under_write_load_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = format!("sqlite://{}", data.join("tollgate.db").display());
    let server = ServerProcess::start(&data, &db, &[("RUST_LOG", "info")]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Load" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();

    // Two writers create devices as fast as the server acknowledges them; each records the
    // moment its 201 arrived.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (base, session, app) = (base.clone(), session.clone(), app.clone());
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let name = format!("w{w}-{i}");
                    let r = http::post(
                        &base,
                        &format!("/applications/{app}/devices"),
                        &session,
                        json!({ "name": name, "attributes": [{ "name": "t", "dataType": "number" }] }),
                    );
                    assert_eq!(r.status, 201, "{:?}", r.body);
                    acked.lock().unwrap().push((name, Instant::now()));
                    i += 1;
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the writers are too slow");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(100);

    let backup = dir.path().join("backup.db");
    let started = Instant::now();
    let o = tollgate(
        &["db", "backup", "--to", backup.to_str().unwrap()],
        &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("integrity check ok"), "{}", text(&o));
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(n, _)| n.clone())
        .collect();
    // Writes go on after the backup.
    let total_at_backup = acked.lock().unwrap().len();
    wait_for(total_at_backup + 50);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let all = acked.lock().unwrap().len();
    assert!(before.len() >= 100 && all > before.len() + 40);

    // A second backup to the same file is refused.
    let o = tollgate(
        &["db", "backup", "--to", backup.to_str().unwrap()],
        &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));

    // Restoring over the database the running server uses is refused (serve holds the lock).
    let o = tollgate(
        &["db", "restore", "--from", backup.to_str().unwrap()],
        &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("Stop the server, then restore"),
        "{}",
        text(&o)
    );

    // Restore into a new data directory and serve it.
    let restored = dir.path().join("restored");
    let o = tollgate(
        &["db", "restore", "--from", backup.to_str().unwrap()],
        &[("TOLLGATE_DATA_DIR", restored.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("restored"), "{}", text(&o));
    let restored_db = format!("sqlite://{}", restored.join("tollgate.db").display());
    let again = ServerProcess::start(&restored, &restored_db, &[]);
    let session2 = http::admin_session(&again.url);
    let list = http::get(
        &again.url,
        &format!("/applications/{app}/devices?perPage=1000&page=0"),
        &session2,
    )
    .expect(200);
    let total = list["totalCount"].as_u64().unwrap() as usize;
    let mut names = Vec::new();
    for page in 0..total.div_ceil(1000) {
        let list = http::get(
            &again.url,
            &format!("/applications/{app}/devices?perPage=1000&page={page}"),
            &session2,
        )
        .expect(200);
        names.extend(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned()),
        );
    }
    let names: std::collections::HashSet<String> = names.into_iter().collect();
    let missing: Vec<&String> = before.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} writes acknowledged before the backup are missing, e.g. {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    // Nothing that was never written, and not the writes made after the backup finished.
    assert!(
        total >= before.len() && total < all,
        "{total} restored of {all}"
    );
    eprintln!(
        "acknowledged before the backup: {}; restored: {total}; written in all: {all}",
        before.len()
    );
    drop(again);
    drop(server);
}

fn restore_refuses_a_held_lock_and_files_that_are_not_backups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("TOLLGATE_DATA_DIR", data.to_str().unwrap())];
    let o = tollgate(
        &[
            "user",
            "add",
            "--email",
            "a@example.com",
            "--password",
            "password-123",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let backup = dir.path().join("b.db");
    assert!(
        tollgate(&["db", "backup", "--to", backup.to_str().unwrap()], &env)
            .status
            .success()
    );

    // Not a backup: nothing changes.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database at all, just some bytes").unwrap();
    let o = tollgate(&["db", "restore", "--from", junk.to_str().unwrap()], &env);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not a Tollgate backup"),
        "{}",
        text(&o)
    );
    let o = tollgate(&["db", "restore", "--from", "/nonexistent/b.db"], &env);
    assert!(text(&o).contains("does not exist"), "{}", text(&o));

    // While a server holds the database's lock (`serve` writes its pid there), restore
    // refuses. This process stands in for the server.
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.join("tollgate.lock"))
        .unwrap();
    lock.lock().unwrap();
    std::io::Write::write_all(
        &mut lock,
        format!("{} serve\n", std::process::id()).as_bytes(),
    )
    .unwrap();
    let o = tollgate(&["db", "restore", "--from", backup.to_str().unwrap()], &env);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("Stop the server, then restore"),
        "{}",
        text(&o)
    );
    lock.unlock().unwrap();

    // Once free, it restores and keeps what it replaced.
    let o = tollgate(
        &[
            "user",
            "add",
            "--email",
            "b@example.com",
            "--password",
            "password-123",
        ],
        &env,
    );
    assert!(o.status.success());
    let o = tollgate(&["db", "restore", "--from", backup.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is kept as"), "{}", text(&o));
    let o = tollgate(&["user", "list", "--json"], &env);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        users.as_array().unwrap().len(),
        1,
        "b@ was added after the backup"
    );
    let kept: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tollgate.db.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

fn postgresql_deployments_are_pointed_at_pg_dump() {
    let env = [("TOLLGATE_DATABASE_URL", "postgres://u:p@127.0.0.1:1/none")];
    let o = tollgate(&["db", "backup", "--to", "/tmp/never-written.db"], &env);
    assert!(!o.status.success());
    assert!(text(&o).contains("pg_dump --format=custom"), "{}", text(&o));
    assert!(!text(&o).contains("u:p@"), "the URL is never printed");
    let o = tollgate(&["db", "restore", "--from", "/tmp/never-read.db"], &env);
    assert!(text(&o).contains("pg_restore --clean"), "{}", text(&o));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(sync a_backup_taken_under_write_load_holds_every_acknowledged_write).once(),
        case!(sync restore_refuses_a_held_lock_and_files_that_are_not_backups).once(),
        case!(sync postgresql_deployments_are_pointed_at_pg_dump).once(),
    ]
}
