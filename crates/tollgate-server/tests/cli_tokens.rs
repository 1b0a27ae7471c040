//! `tollgate tokens list|show|deactivate|delete` against a running server: the listing shows
//! every token and never a secret, and a token the operator deactivates or deletes is refused
//! by the running server on the very next request (SQLite: the command waits for the server
//! to apply the change; PostgreSQL: the commit notifies every node).

use std::process::{Command, Output};
use std::time::Duration;
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, binary, http};
use serde_json::{Value, json};

fn tollgate(db: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("TOLLGATE_DATABASE_URL", db)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The token's next request, until `deadline`: SQLite must refuse at once; PostgreSQL within
/// the notification's delivery.
async fn refused(base: &str, app: &str, secret: &str, at_once: bool) {
    let status = || http::get(base, &format!("/applications/{app}"), secret).status;
    if at_once {
        assert_eq!(status(), 401, "refused on the very next request");
    } else {
        crate::common::eventually("the token is refused", Duration::from_secs(10), || async {
            (status() == 401).then_some(())
        })
        .await;
    }
}

async fn operator_lists_shows_deactivates_and_deletes_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let sqlite = db.starts_with("sqlite");
    let server = ServerProcess::start(dir.path(), &db, &[]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Plant" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let other = http::post(&base, "/applications", &session, json!({ "name": "Lab" })).expect(201);
    let other = other["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for (a, name) in [(&app, "line-1"), (&app, "line-2"), (&other, "bench")] {
        let t = http::post(
            &base,
            &format!("/applications/{a}/tokens"),
            &session,
            json!({ "name": name, "scope": ["all.Application.read"] }),
        )
        .expect(201);
        tokens.push((
            t["id"].as_str().unwrap().to_owned(),
            t["token"].as_str().unwrap().to_owned(),
        ));
    }
    // Each is used once, so the server has it in its cache.
    for ((_, secret), a) in tokens.iter().zip([&app, &app, &other]) {
        http::get(&base, &format!("/applications/{a}"), secret).expect(200);
    }

    // list: every token, the API's fields, never a secret.
    let o = tollgate(&db, &["tokens", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("tgat_"), "no secret is ever printed");
    let all: Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    let mut ids: Vec<&str> = all.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected: Vec<&str> = tokens.iter().map(|(id, _)| id.as_str()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for t in all {
        assert_eq!(t["status"], "active");
        assert_eq!(t["scope"], json!(["all.Application.read"]));
        assert_eq!(t["creatorType"], "user");
        assert!(t.get("token").is_none());
    }
    let o = tollgate(&db, &["tokens", "list", "--app", &app]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.starts_with("id "), "{table}");
    assert!(
        table.contains("line-1") && table.contains("line-2") && !table.contains("bench"),
        "{table}"
    );
    let o = tollgate(
        &db,
        &["tokens", "list", "--app", "000000000000000000000000"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("there is no application with the id 000000000000000000000000"),
        "{}",
        text(&o)
    );

    // show: one token as applicationApiToken.get answers it.
    let (a_id, a_secret) = &tokens[0];
    let o = tollgate(&db, &["tokens", "show", a_id]);
    assert!(o.status.success(), "{}", text(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    let api = http::get(
        &base,
        &format!("/applications/{app}/tokens/{a_id}"),
        &session,
    )
    .expect(200);
    for field in [
        "id",
        "name",
        "status",
        "scope",
        "applicationId",
        "creationDate",
    ] {
        assert_eq!(shown[field], api[field], "{field}");
    }
    let o = tollgate(&db, &["tokens", "show", "not-an-id"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("is not a token id"), "{}", text(&o));

    // deactivate: refused by the running server from the very next request.
    let o = tollgate(&db, &["tokens", "deactivate", a_id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("deactivated API token {a_id}")),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("by=\"operator\"") || text(&o).contains("by=operator"),
        "logged as the operator's: {}",
        text(&o)
    );
    if sqlite {
        assert!(
            text(&o).contains("the running server has applied the change"),
            "{}",
            text(&o)
        );
    }
    refused(&base, &app, a_secret, sqlite).await;
    let api = http::get(
        &base,
        &format!("/applications/{app}/tokens/{a_id}"),
        &session,
    )
    .expect(200);
    assert_eq!(api["status"], "inactive");
    let o = tollgate(&db, &["tokens", "deactivate", a_id]);
    assert!(o.status.success());
    assert!(text(&o).contains("inactive already"), "{}", text(&o));

    // delete: the same.
    let (b_id, b_secret) = &tokens[1];
    let o = tollgate(&db, &["tokens", "delete", b_id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("deleted API token {b_id}")),
        "{}",
        text(&o)
    );
    refused(&base, &app, b_secret, sqlite).await;
    let o = tollgate(&db, &["tokens", "show", b_id]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!("there is no API token with the id {b_id}")),
        "{}",
        text(&o)
    );
    // The third token is untouched.
    let (_, c_secret) = &tokens[2];
    http::get(&base, &format!("/applications/{other}"), c_secret).expect(200);
    let o = tollgate(&db, &["tokens", "list", "--json"]);
    let all: Value = serde_json::from_slice(&o.stdout).unwrap();
    let statuses: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&("line-1", "inactive")));
    assert!(statuses.contains(&("bench", "active")));
    // The audit log names the operator for the commands (the second deactivation too: it
    // wrote, if only the token's lastUpdated) and the admin's address for the creations over
    // HTTP.
    let log = http::get(&base, &format!("/applications/{app}/audit-logs"), &session).expect(200);
    let entries: Vec<(&str, &str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["requestAction"].as_str().unwrap(),
                e["actorName"].as_str().unwrap(),
                e["clientAddress"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        entries[..3],
        [
            ("delete", "operator", "-"),
            ("patch", "operator", "-"),
            ("patch", "operator", "-")
        ],
        "{log}"
    );
    assert_eq!(
        log["items"][1]["requestBody"],
        json!({ "status": "inactive" })
    );
    assert!(
        entries[3..].iter().all(|(_, _, a)| *a == "127.0.0.1"),
        "{log}"
    );
    drop(server);
}

/// Without a server the commands work on the database alone (nothing is cached anywhere).
async fn token_commands_work_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let o = tollgate(&db, &["tokens", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let all: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all, json!([]));
    let o = tollgate(&db, &["tokens", "delete", "0123456789abcdef01234567"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("there is no API token with the id 0123456789abcdef01234567"),
        "{}",
        text(&o)
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            operator_lists_shows_deactivates_and_deletes_tokens,
            multi_thread = 2
        ),
        case!(token_commands_work_without_a_server),
    ]
}
