//! `tollgate db copy`: a deployment built through the API on SQLite, moved to PostgreSQL,
//! served from there with the same logins, tokens and data.
//!
//! Runs in the PostgreSQL pass, on `TOLLGATE_TEST_PG_SERVER` (scripts/test.sh sets it).

use std::process::{Command, Output};
use tollgate_testkit::{Case, case};

use crate::common::process::http::{self, Reply};
use crate::common::process::{ServerProcess, binary, pg_server};
use serde_json::{Value, json};
use tollgate_store::Store;
use tollgate_store::copy;

const BOB_PASSWORD: &str = "bob-password-456";

fn tollgate(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tollgate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn login(base: &str, email: &str, password: &str) -> Reply {
    http::call(
        base,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": email, "password": password })),
    )
}

async fn a_sqlite_deployment_moves_to_postgresql_with_every_record() {
    let server = pg_server();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("tollgate.db").display());

    // A deployment with something in every table, built through the API.
    let node = ServerProcess::start(dir.path(), &sqlite, &[]);
    let url = node.url.clone();
    let admin = http::admin_session(&url);
    let out = Command::new(binary())
        .args([
            "user",
            "add",
            "--email",
            "bob@example.com",
            "--password",
            BOB_PASSWORD,
        ])
        .env("TOLLGATE_DATABASE_URL", &sqlite)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let org = id(&http::post(&url, "/orgs", &admin, json!({ "name": "Acme" })).expect(201));
    let personal = http::post(
        &url,
        "/applications",
        &admin,
        json!({ "name": "mine", "description": "personal sandbox" }),
    )
    .expect(201);
    let shared = id(&http::post(
        &url,
        "/applications",
        &admin,
        json!({ "name": "shared", "orgId": org }),
    )
    .expect(201));
    http::post(
        &url,
        &format!("/orgs/{org}/invites"),
        &admin,
        json!({ "email": "bob@example.com", "role": "edit",
                "applicationRoles": [{ "resourceId": shared, "role": "view" }] }),
    )
    .expect(200);
    // Invitations are pending until the invitee accepts.
    let bob = http::call(
        &url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": "bob@example.com", "password": BOB_PASSWORD })),
    )
    .expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let invites = http::call(&url, "GET", "/me/invites", Some(&bob), None).body;
    let invite = invites[0]["id"].as_str().unwrap().to_owned();
    http::post(
        &url,
        &format!("/me/invites/{invite}"),
        &bob,
        json!({ "action": "accept" }),
    )
    .expect(200);
    // And one invitation still pending.
    http::post(
        &url,
        &format!("/orgs/{org}/invites"),
        &admin,
        json!({ "email": "carol@example.com", "role": "view" }),
    )
    .expect(200);
    let app = id(&personal);
    // Token policies: one for the application, a default for the organization.
    http::patch(
        &url,
        &format!("/applications/{app}/token-policy"),
        &admin,
        json!({ "warningLeadDays": [14, 2] }),
    )
    .expect(200);
    http::patch(
        &url,
        &format!("/orgs/{org}/token-policy"),
        &admin,
        json!({ "idleDeactivationDays": 365 }),
    )
    .expect(200);
    let tokens_path = format!("/applications/{app}/tokens");
    let active = http::post(&url, &tokens_path, &admin, json!({ "name": "active" })).expect(201);
    let inactive = http::post(
        &url,
        &tokens_path,
        &admin,
        json!({ "name": "inactive", "status": "inactive" }),
    )
    .expect(201);
    let narrow = http::post(
        &url,
        &tokens_path,
        &admin,
        json!({ "name": "narrow", "scope": ["application.get"] }),
    )
    .expect(201);
    let bob = login(&url, "bob@example.com", BOB_PASSWORD).expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = |t: &Value| t["token"].as_str().unwrap().to_owned();
    http::get(&url, &format!("/applications/{app}"), &secret(&active)).expect(200);
    // Devices, state (numbers and texts, in batches: the copier's batches then mix NULL and
    // non-NULL numbers in the same places), a command and a workflow.
    let device = id(&http::post(
        &url,
        &format!("/applications/{app}/devices"),
        &admin,
        json!({ "name": "sensor", "tags": [{ "key": "floor", "value": "3" }],
                "attributes": [{ "name": "temperature", "dataType": "number" },
                               { "name": "mode", "dataType": "string" }] }),
    )
    .expect(201));
    let state_path = format!("/applications/{app}/devices/{device}/state");
    let t0 = tollgate_store::now_ms() - 3_600_000;
    for batch in 0..2i64 {
        let reports: Vec<Value> = (0..400i64)
            .map(|i| {
                let k = batch * 400 + i;
                json!({ "time": t0 + k * 1000, "data": { "temperature": k as f64 / 2.0, "mode": format!("m{k}") } })
            })
            .collect();
        http::post(&url, &state_path, &admin, Value::Array(reports)).expect(200);
    }
    http::post(
        &url,
        &format!("/applications/{app}/devices/{device}/command"),
        &admin,
        json!({ "name": "reboot", "payload": { "now": true } }),
    )
    .expect(200);
    http::post(
        &url,
        &format!("/applications/{app}/flows"),
        &admin,
        json!({ "name": "flow", "nodes": [{ "id": "a", "type": "DebugNode" }] }),
    )
    .expect(201);
    drop(node); // stop serving before copying

    // The console's one-time records: a used token form key and a secret waiting (sealed) to
    // be shown, written as the console writes them.
    {
        let store = Store::connect(&sqlite).await.unwrap();
        let owner = store
            .user_by_email(crate::common::process::ADMIN_EMAIL)
            .await
            .unwrap()
            .unwrap();
        let app_id: tollgate_store::Id = shared.parse().unwrap();
        let scope = vec!["all.Application.read".to_owned()];
        let made = store
            .create_token_once(
                &tollgate_store::Actor::operator(),
                &tollgate_store::tokens::NewToken {
                    application_id: app_id,
                    digest: [7; 32],
                    name: "from the console",
                    description: "",
                    scope: &scope,
                    status: tollgate_store::tokens::TokenStatus::Active,
                    expiration_date: None,
                    // A usage limit, so its row in token_quotas is copied too.
                    restrictions: Some(r#"{"usageLimit":5}"#),
                    usage_limit: Some(5),
                    carve_from: None,
                    creator: tollgate_store::tokens::Creator {
                        kind: "user",
                        id: owner.id,
                        name: owner.email.clone(),
                    },
                },
                "1.0123456789abcdef0123456789abcdef",
                owner.id,
            )
            .await
            .unwrap();
        store
            .put_reveal(&tollgate_store::console::NewReveal {
                user_id: owner.id,
                application_id: app_id,
                token_id: made.id,
                token_name: &made.name,
                sealed: &[1, 2, 3],
                expires_at: tollgate_store::now_ms() + 60_000,
            })
            .await
            .unwrap();
        // Two-factor authentication with its recovery codes (digests), written as
        // me.enableTwoFactorAuth writes them (the secret is a stand-in: it is copied as
        // stored, never read).
        let carol = store
            .create_user(&tollgate_store::users::NewUser {
                email: "carol@example.com",
                password_hash: "$argon2id$stand-in",
                first_name: "Carol",
                last_name: "",
            })
            .await
            .unwrap();
        store
            .set_totp_pending(
                &tollgate_store::Actor::operator(),
                carol.id,
                "sealed-stand-in",
            )
            .await
            .unwrap();
        store
            .enable_totp(
                &tollgate_store::Actor::operator(),
                carol.id,
                "sealed-stand-in",
                1,
                &[[3; 32], [4; 32]],
                None,
            )
            .await
            .unwrap();
        // A token's usage counts and recent requests, as a node's flush writes them.
        let used: tollgate_store::Id = active["id"].as_str().unwrap().parse().unwrap();
        store
            .add_token_usage(
                &[tollgate_store::usage::UsageCount {
                    token: used,
                    action: "application.get",
                    day: tollgate_store::now_ms() / tollgate_store::usage::DAY_MS,
                    outcome: 0,
                    count: 3,
                }],
                &[tollgate_store::usage::RecentRequest {
                    token: used,
                    at: tollgate_store::now_ms(),
                    action: "application.get".into(),
                    status: 200,
                    client_address: Some("127.0.0.1".into()),
                    user_agent: None,
                }],
            )
            .await
            .unwrap();
        // A webhook endpoint (its secret sealed, copied as stored) and the delivery the
        // event of a token change queued for it.
        let app_id: tollgate_store::Id = app.parse().unwrap();
        let events = vec!["token.expiring".to_owned()];
        store
            .create_webhook(
                &tollgate_store::Actor::operator(),
                app_id,
                &tollgate_store::webhooks::NewWebhook {
                    id: tollgate_store::Id::generate(),
                    url: "http://127.0.0.1:9/hook",
                    events: &events,
                    enabled: true,
                    secret_sealed: "sealed-stand-in",
                },
            )
            .await
            .unwrap();
        store
            .record_token_event(
                &tollgate_store::Actor::operator(),
                app_id,
                used,
                "active",
                tollgate_store::webhooks::TokenEvent::Expiring,
                serde_json::json!({ "leadDays": 7 }),
            )
            .await
            .unwrap();
        store.close().await;
    }

    // Copy. The target URL carries a password (ignored by the trust-auth test server): it
    // must not appear in anything the command prints.
    let pg = crate::common::fresh_pg_database(&server).await;
    let pg_with_password = pg.replacen("tollgate@", "tollgate:Sup3rSecretPw@", 1);
    assert_ne!(
        pg, pg_with_password,
        "the test server URL has the expected shape"
    );
    let out = tollgate(&["db", "copy", "--from", &sqlite, "--to", &pg_with_password]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains("Sup3rSecretPw"), "{printed}");
    assert!(printed.contains("every count matches"), "{printed}");
    for (table, n) in [
        ("users", 3),
        // Three logins, one of them bob's to accept his invitation.
        ("sessions", 3),
        ("recovery_codes", 2),
        ("orgs", 1),
        ("org_members", 2),
        ("applications", 2),
        ("application_token_policies", 1),
        ("org_token_policies", 1),
        ("member_application_roles", 1),
        ("api_tokens", 4),
        ("token_quotas", 1),
        ("devices", 1),
        ("device_tags", 1),
        ("device_reports", 800),
        ("device_points", 1600),
        ("device_commands", 1),
        ("flows", 1),
        ("org_invites", 1),
        ("console_form_keys", 1),
        ("console_reveals", 1),
        ("webhooks", 1),
        ("webhook_deliveries", 1),
    ] {
        let line = printed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("no line for {table}: {printed}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, [table, &n.to_string(), &n.to_string()], "{line}");
    }
    // The audit log's entries (one per change made above), copied like every table.
    let line = printed
        .lines()
        .find(|l| l.split_whitespace().next() == Some("audit_logs"))
        .unwrap_or_else(|| panic!("no line for audit_logs: {printed}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], cols[2], "{line}");
    assert!(cols[1].parse::<i64>().unwrap() >= 10, "{line}");

    // Same counts table by table, read back independently; no table left behind.
    let (from, to) = (
        Store::connect(&sqlite).await.unwrap(),
        Store::connect(&pg).await.unwrap(),
    );
    let counts = copy::row_counts(&to).await.unwrap();
    assert_eq!(copy::row_counts(&from).await.unwrap(), counts);
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
    assert_eq!(
        copy::unlisted_tables(&to).await.unwrap(),
        Vec::<String>::new()
    );
    from.close().await;
    to.close().await;

    // Served from PostgreSQL: the same passwords, sessions, tokens and data.
    let dir2 = tempfile::tempdir().unwrap();
    let node = ServerProcess::start(dir2.path(), &pg, &[]);
    let url = node.url.clone();
    let app_json = http::get(&url, &format!("/applications/{app}"), &secret(&active)).expect(200);
    assert_eq!(app_json["name"], "mine");
    assert_eq!(app_json["description"], "personal sandbox");
    assert_eq!(app_json["creationDate"], personal["creationDate"]);
    let r = http::get(&url, &format!("/applications/{app}"), &secret(&inactive));
    assert_eq!(r.status, 401);
    assert!(r.body["message"].as_str().unwrap().contains("inactive"));
    // The narrow token keeps its scope: it may read the application, not list its tokens.
    http::get(&url, &format!("/applications/{app}"), &secret(&narrow)).expect(200);
    assert_eq!(http::get(&url, &tokens_path, &secret(&narrow)).status, 403);
    // Bob's session from before the move still works, and so does his password.
    let me = http::get(&url, "/me", &bob).expect(200);
    assert_eq!(me["email"], "bob@example.com");
    login(&url, "bob@example.com", BOB_PASSWORD).expect(200);
    let admin = http::admin_session(&url);
    let list = http::get(&url, &tokens_path, &admin).expect(200);
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["active", "inactive", "narrow"]);
    let states = http::get(&url, &format!("{state_path}?limit=2"), &admin).expect(200);
    assert_eq!(
        states[0]["data"],
        json!({ "temperature": 399.5, "mode": "m799" })
    );
    let sum = http::post(
        &url,
        &format!("/applications/{app}/data/time-series-query"),
        &admin,
        json!({ "start": t0, "end": t0 + 800_000, "resolution": 800_000, "aggregation": "SUM", "attributes": ["temperature"] }),
    )
    .expect(200);
    // 0 + 0.5 + ... + 399.5
    assert_eq!(
        sum["devices"][&device]["points"][0]["data"]["temperature"],
        159_800
    );
    let org_json = http::get(&url, &format!("/orgs/{org}"), &admin).expect(200);
    let member = org_json["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@example.com")
        .unwrap()
        .clone();
    assert_eq!(member["role"], "edit");
    assert_eq!(member["applicationRoles"][0]["resourceId"], shared.as_str());
    assert_eq!(member["applicationRoles"][0]["role"], "view");
    drop(node);

    // A target that holds data is refused, and left as it was...
    let out = tollgate(&["db", "copy", "--from", &sqlite, "--to", &pg]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--replace-target"), "{}", text(&out));
    // ...unless asked to replace it: then it holds one copy, not two.
    let out = tollgate(&[
        "db",
        "copy",
        "--from",
        &sqlite,
        "--to",
        &pg,
        "--replace-target",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let to = Store::connect(&pg).await.unwrap();
    assert_eq!(copy::row_counts(&to).await.unwrap(), counts);
    to.close().await;

    // A source that does not exist is an error, not an empty copy.
    let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
    let out = tollgate(&["db", "copy", "--from", &missing, "--to", &pg]);
    assert!(!out.status.success());
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!dir.path().join("nope.db").exists());
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            a_sqlite_deployment_moves_to_postgresql_with_every_record,
            multi_thread = 2
        )
        .postgres_pass(),
    ]
}
