//! Secrets (webhook signing secrets too) never reach the logs, error messages, audit log
//! entries or the database in clear.
//!
//! A real server process runs with debug logging; a user logs in, creates tokens, uses them,
//! presents mistyped and unknown ones, and is refused in every way we know. Then the captured
//! log, every response body, the SQLite files (database, WAL, shared memory) and every stored
//! value are searched for the password and for each secret (and for their random parts, in
//! case something printed a fragment).

use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess, http};
use serde_json::{Value, json};
use sqlx::Row;
use tollgate_testkit::{Case, case};

async fn no_secret_in_logs_responses_or_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let server = ServerProcess::start(dir.path(), &db, &[("TOLLGATE_WEBHOOK_INTERVAL_MS", "50")]);
    let url = server.url.clone();
    let mut responses = Vec::new();
    let calls = std::cell::Cell::new(0usize);
    let mut call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let reply = http::call(&url, method, path, token, body.as_ref());
        responses.push(reply.body.to_string());
        calls.set(calls.get() + 1);
        (reply.status, reply.body)
    };

    let (s, login) = call(
        "POST",
        "/auth/user",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    );
    assert_eq!(s, 200);
    let session = login["token"].as_str().unwrap().to_owned();
    let (s, app) = call(
        "POST",
        "/applications",
        Some(&session),
        Some(json!({ "name": "Secrets" })),
    );
    assert_eq!(s, 201);
    let app = app["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![session.clone()];
    for scope in [json!(["all.Application"]), json!(["all.Application.read"])] {
        let (s, created) = call(
            "POST",
            &format!("/applications/{app}/tokens"),
            Some(&session),
            Some(json!({ "name": "t", "scope": scope })),
        );
        assert_eq!(s, 201);
        secrets.push(created["token"].as_str().unwrap().to_owned());
    }
    let token = secrets[1].clone();
    let (s, _) = call("GET", &format!("/applications/{app}"), Some(&token), None);
    assert_eq!(s, 200);
    // Refusals of every kind, with the secret or a near miss presented.
    let mut typo = token.clone().into_bytes();
    typo[30] = if typo[30] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let (s, _) = call("GET", &format!("/applications/{app}"), Some(&typo), None);
    assert_eq!(s, 401);
    let (s, _) = call(
        "PATCH",
        &format!("/applications/{app}"),
        Some(&secrets[2]),
        Some(json!({ "name": "no" })),
    );
    assert_eq!(s, 403);
    let (s, _) = call("GET", "/orgs", Some(&token), None);
    assert_eq!(s, 403);
    let (s, _) = call(
        "POST",
        "/auth/user",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": "wrong-password" })),
    );
    assert_eq!(s, 401);
    let (s, _) = call(
        "POST",
        "/auth/user",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": "pw7" })),
    );
    assert_eq!(s, 400);
    let (s, _) = call(
        "POST",
        &format!("/applications/{app}/tokens"),
        Some(&session),
        Some(json!({ "name": token.clone(), "scope": [token.clone()] })),
    );
    assert_eq!(s, 400, "a secret pasted as a scope is refused");
    let (s, list) = call(
        "GET",
        &format!("/applications/{app}/tokens"),
        Some(&session),
        None,
    );
    assert_eq!((s, list["totalCount"].as_i64()), (200, Some(2)));
    let tokens_path = format!(
        "/applications/{app}/tokens/{}",
        list["items"][0]["id"].as_str().unwrap()
    );
    let (s, _) = call(
        "PATCH",
        &tokens_path,
        Some(&session),
        Some(json!({ "status": "inactive" })),
    );
    assert_eq!(s, 200);
    // The audit log of all of it (read back below with the other responses, and stored in
    // the `audit_logs` table the scan at the end reads): no secret in any entry.
    let (s, log) = call(
        "GET",
        &format!("/applications/{app}/audit-logs"),
        Some(&session),
        None,
    );
    assert_eq!(s, 200);
    let recorded: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requestAction"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["patch", "post", "post", "post"], "{log}");

    // A webhook endpoint: its signing secret is shown once, stored sealed, and used by the
    // worker to sign a delivery (to a closed port: the attempt fails, and is recorded).
    let hook_reveal = calls.get();
    let (s, hook) = call(
        "POST",
        &format!("/applications/{app}/token-webhooks"),
        Some(&session),
        Some(json!({ "url": "http://127.0.0.1:9/hook" })),
    );
    assert_eq!(s, 201);
    let hook_secret = hook["signingSecret"].as_str().unwrap().to_owned();
    assert!(hook_secret.starts_with("tgwh_"));
    secrets.push(hook_secret.clone());
    let hook_path = format!(
        "/applications/{app}/token-webhooks/{}",
        hook["id"].as_str().unwrap()
    );
    let (s, _) = call("GET", &hook_path, Some(&session), None);
    assert_eq!(s, 200);
    let (s, _) = call("DELETE", &tokens_path, Some(&session), None);
    assert_eq!(s, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, page) = call(
            "GET",
            &format!("{hook_path}/deliveries"),
            Some(&session),
            None,
        );
        assert_eq!(s, 200);
        if page["items"][0]["attempts"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(page["items"][0]["eventType"], "token.deleted");
            assert!(page["items"][0]["lastError"].is_string(), "{page}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt: {page}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // What to look for: each secret, its random part, and the password.
    let mut needles: Vec<String> = Vec::new();
    for s in &secrets {
        needles.push(s.clone());
        needles.push(s[5..35].to_owned());
    }
    needles.push(ADMIN_PASSWORD.to_owned());
    needles.push("wrong-password".to_owned());

    // Responses: only a creation response (the login, then the two token creations) may
    // carry a secret, and only its own.
    let reveals = [
        (0usize, &secrets[0]),
        (2, &secrets[1]),
        (3, &secrets[2]),
        (hook_reveal, &hook_secret),
    ];
    for (i, body) in responses.iter().enumerate() {
        let own = reveals
            .iter()
            .find(|(r, _)| *r == i)
            .map(|(_, s)| s.as_str());
        for (j, needle) in needles.iter().enumerate() {
            let allowed = own.is_some_and(|own| own.contains(needle.as_str()));
            assert!(
                allowed || !body.contains(needle.as_str()),
                "response {i} contains needle {j}: {body}"
            );
        }
    }

    // Logs, with the server stopped so everything is flushed.
    let mut server = server;
    server.kill();
    let log = server.log();
    assert!(log.contains("API token created"), "the log was captured");
    for (j, needle) in needles.iter().enumerate() {
        assert!(
            !log.contains(needle.as_str()),
            "the log contains needle {j}"
        );
    }

    // The database files, byte for byte.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("tollgate.db")
            // Files: not the socket a server on SQLite listens on.
            && path.is_file()
        {
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for (j, needle) in needles.iter().enumerate() {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} contains needle {j}",
                    path.display()
                );
            }
        }
    }
    assert!(files >= 1);

    // And every stored value, read back through SQL.
    let store = tollgate_store::Store::connect(&db).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert!(tables.contains(&"api_tokens".to_owned()));
    assert!(tables.contains(&"audit_logs".to_owned()));
    assert!(tables.contains(&"webhooks".to_owned()));
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(store.pool())
            .await
            .unwrap();
        for row in rows {
            for i in 0..row.len() {
                let text: Option<String> = row.try_get(i).ok();
                if let Some(text) = text {
                    for needle in &needles {
                        assert!(!text.contains(needle.as_str()), "{table} holds a secret");
                    }
                }
            }
        }
    }
}

pub fn cases() -> Vec<Case> {
    vec![case!(no_secret_in_logs_responses_or_database, multi_thread = 2).once()]
}
