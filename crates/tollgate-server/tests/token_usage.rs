//! Per-token usage (`applicationApiToken.usage`): counted on the hot path, refusals against the
//! token that made them (403 naming the missing action; 401 once it is inactive), the recent
//! requests, granted-but-unused actions and the suggested narrowest scope; recording off
//! records nothing.

use serde_json::{Value, json};
use tollgate_server::Settings;
use tollgate_testkit::{Case, case};

use crate::common::TestApp;

fn period(report: &Value, days: i64) -> &Value {
    report["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["days"] == days)
        .unwrap()
}

fn action<'a>(period: &'a Value, name: &str) -> &'a Value {
    period["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == name)
        .unwrap_or_else(|| panic!("no {name} in {period}"))
}

async fn a_tokens_requests_are_counted_and_its_narrowest_scope_suggested() {
    let t = TestApp::new().await;
    let (owner, admin) = t.login("owner@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let reader = t
        .api_token(
            &admin,
            app,
            json!({ "name": "Dashboard", "description": "wall screen", "scope": ["all.Application.read"] }),
        )
        .await;
    let secret = reader["token"].as_str().unwrap().to_owned();
    let id = reader["id"].as_str().unwrap().to_owned();
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &admin,
            json!({ "name": "pump" }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ua = [("user-agent", "dashboard/1.0")];
    let get = |path: String| {
        let secret = secret.clone();
        let t = &t;
        async move {
            t.send_raw(axum::http::Method::GET, &path, Some(&secret), None, &ua)
                .await
                .status
                .as_u16()
        }
    };
    for _ in 0..3 {
        assert_eq!(
            get(format!("/applications/{app}/devices/{device}")).await,
            200
        );
    }
    assert_eq!(get(format!("/applications/{app}")).await, 200);
    // Refused: a write outside the scope (403), twice.
    for _ in 0..2 {
        let r = t
            .patch(
                &format!("/applications/{app}"),
                &secret,
                json!({ "name": "x" }),
            )
            .await;
        assert_eq!(r.status, 403);
    }
    // Switched off: its next request is a 401, still counted against it.
    t.patch(
        &format!("/applications/{app}/tokens/{id}"),
        &admin,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    assert_eq!(
        get(format!("/applications/{app}/devices/{device}")).await,
        401
    );
    // An unknown secret belongs to no token: not counted anywhere.
    assert_eq!(
        t.get(
            &format!("/applications/{app}"),
            &crate::common::unknown_token()
        )
        .await
        .status,
        401
    );

    let report = t
        .get(&format!("/applications/{app}/tokens/{id}/usage"), &admin)
        .await
        .expect(200);
    tollgate_server::schemas::validate("tokenUsage", &report).unwrap();
    for days in [1, 7, 30, 90] {
        let p = period(&report, days);
        assert_eq!(
            (p["authorized"].as_i64(), p["refused"].as_i64()),
            (Some(4), Some(3)),
            "{p}"
        );
        assert_eq!(p["refusedByStatus"], json!({ "401": 1, "403": 2 }));
    }
    let day = period(&report, 1);
    let get_device = action(day, "device.get");
    assert_eq!(get_device["authorized"], 3);
    assert_eq!(get_device["refusedByStatus"], json!({ "401": 1 }));
    let patch = action(day, "application.patch");
    assert_eq!(
        (patch["authorized"].as_i64(), patch["refused"].as_i64()),
        (Some(0), Some(2))
    );
    // The refused action is named: what the token lacked.
    assert_eq!(report["refusedActions"], json!(["application.patch"]));
    // The narrowest scope that would have served it: the actions it used, in registry order.
    assert_eq!(
        report["suggestedScope"],
        json!(["application.get", "device.get"])
    );
    let unused: Vec<&str> = report["grantedUnused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        unused.contains(&"devices.get") && unused.contains(&"flows.get"),
        "{unused:?}"
    );
    assert!(!unused.contains(&"device.get") && !unused.contains(&"application.patch"));
    assert_eq!(
        (report["name"].as_str(), report["description"].as_str()),
        (Some("Dashboard"), Some("wall screen"))
    );
    // The recent requests, newest first: time, action, status, user agent.
    let recent = report["recentRequests"].as_array().unwrap();
    assert_eq!(recent.len(), 7);
    assert_eq!(
        (recent[0]["action"].as_str(), recent[0]["status"].as_u64()),
        (Some("device.get"), Some(401))
    );
    assert_eq!(recent[1]["status"], 403);
    assert_eq!(recent[6]["userAgent"], "dashboard/1.0");
    assert!(!report.to_string().contains(&secret));
}

async fn with_recording_off_nothing_is_counted() {
    let t = TestApp::with_settings(Settings {
        token_usage: false,
        ..Settings::default()
    })
    .await;
    let (owner, admin) = t.login("owner@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let token = t.api_token(&admin, app, json!({ "name": "CI" })).await;
    let secret = token["token"].as_str().unwrap();
    t.get(&format!("/applications/{app}"), secret)
        .await
        .expect(200);
    let id = token["id"].as_str().unwrap();
    let report = t
        .get(&format!("/applications/{app}/tokens/{id}/usage"), &admin)
        .await
        .expect(200);
    assert_eq!(report["recording"], false);
    assert_eq!(period(&report, 90)["authorized"], 0);
    assert_eq!(report["recentRequests"], json!([]));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_tokens_requests_are_counted_and_its_narrowest_scope_suggested),
        case!(with_recording_off_nothing_is_counted),
        case!(nodes_that_stop_cleanly_lose_no_count, multi_thread = 2),
        case!(the_posture_summary_counts_and_filters_the_list),
    ]
}

/// Real processes: each node counts in memory (nothing flushed for an hour), stops cleanly,
/// and its counts are in the database afterwards; on PostgreSQL two nodes' counts of the same
/// token and action add up.
async fn nodes_that_stop_cleanly_lose_no_count() {
    use crate::common::process::{ServerProcess, http};
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let postgres = db.starts_with("postgres");
    let slow = [("TOLLGATE_LAST_USED_FLUSH_SECS", "3600")];
    let mut first = ServerProcess::start(dir.path(), &db, &slow);
    let admin = http::admin_session(&first.url);
    let app = http::post(
        &first.url,
        "/applications",
        &admin,
        json!({ "name": "Plant" }),
    )
    .expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let token = http::post(
        &first.url,
        &format!("/applications/{app}/tokens"),
        &admin,
        json!({ "name": "CI", "scope": ["application.get"] }),
    )
    .expect(201);
    let (id, secret) = (
        token["id"].as_str().unwrap().to_owned(),
        token["token"].as_str().unwrap().to_owned(),
    );
    let path = format!("/applications/{app}");
    for _ in 0..3 {
        http::get(&first.url, &path, &secret).expect(200);
    }
    assert_eq!(
        http::get(&first.url, &format!("{path}/tokens"), &secret).status,
        403
    );
    let mut expected = 3;
    let second_dir = tempfile::tempdir().unwrap();
    if postgres {
        let mut second = ServerProcess::start(second_dir.path(), &db, &slow);
        for _ in 0..4 {
            http::get(&second.url, &path, &secret).expect(200);
        }
        expected += 4;
        second.terminate();
    }
    first.terminate();
    let third_dir = tempfile::tempdir().unwrap();
    let node = ServerProcess::start(
        if postgres {
            third_dir.path()
        } else {
            dir.path()
        },
        &db,
        &slow,
    );
    let admin = http::admin_session(&node.url);
    let report = http::get(&node.url, &format!("{path}/tokens/{id}/usage"), &admin).expect(200);
    let day = period(&report, 1);
    assert_eq!(
        action(day, "application.get")["authorized"],
        expected,
        "{report}"
    );
    assert_eq!(
        action(day, "applicationApiTokens.get")["refusedByStatus"],
        json!({ "403": 1 })
    );
    let recent = report["recentRequests"].as_array().unwrap();
    assert_eq!(recent.len() as i64, expected + 1);
    assert!(
        recent.iter().all(|r| r["clientAddress"] == "127.0.0.1"),
        "{report}"
    );
}

/// The posture summary counts every token of the application; each count filters the list.
async fn the_posture_summary_counts_and_filters_the_list() {
    use tollgate_store::tokens::TokenStatus;
    let t = TestApp::new().await;
    let (owner, admin) = t.login("owner@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let now = tollgate_store::now_ms();
    let day = 86_400_000;
    let soon = chrono_iso(now + 10 * day);
    // all permissions, never expires, then used; read-only expiring soon, never used.
    let all = t.api_token(&admin, app, json!({ "name": "all" })).await;
    let soon_token = t
        .api_token(
            &admin,
            app,
            json!({ "name": "soon", "scope": ["all.Application.read"], "expirationDate": soon }),
        )
        .await;
    t.get(
        &format!("/applications/{app}"),
        all["token"].as_str().unwrap(),
    )
    .await
    .expect(200);
    // Created by a token; inactive; expired; idle (last used 100 days ago).
    let child = t
        .api_token(
            all["token"].as_str().unwrap(),
            app,
            json!({ "name": "child", "scope": ["device.get"] }),
        )
        .await;
    let (inactive, _) = t
        .raw_token(
            app,
            &["device.get"],
            TokenStatus::Inactive,
            Some(now + 400 * day),
        )
        .await;
    let (expired, _) = t
        .raw_token(app, &["device.get"], TokenStatus::Active, Some(now - day))
        .await;
    let (idle, _) = t
        .raw_token(
            app,
            &["device.get"],
            TokenStatus::Active,
            Some(now + 400 * day),
        )
        .await;
    t.store()
        .record_last_used(&[(idle, now - 100 * day)])
        .await
        .unwrap();

    let list = t
        .get(&format!("/applications/{app}/tokens"), &admin)
        .await
        .expect(200);
    assert_eq!(
        list["posture"],
        json!({
            "neverUsed": 4,
            "idle90Days": 1,
            "neverExpires": 2,
            "allPermissions": 1,
            "expiringWithin30Days": 1,
            "expired": 1,
            "inactive": 1,
            "createdByTokens": 1,
        }),
        "{list}"
    );
    let ids = |posture: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let r = t
                .get(
                    &format!("/applications/{app}/tokens?posture={posture}"),
                    &admin,
                )
                .await
                .expect(200);
            assert_eq!(r["postureFilter"], posture);
            assert_eq!(
                r["totalCount"].as_u64().unwrap() as usize,
                r["items"].as_array().unwrap().len()
            );
            let mut v: Vec<String> = r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect();
            v.sort();
            v
        }
    };
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    assert_eq!(ids("allPermissions").await, [id(&all)]);
    assert_eq!(ids("expiringWithin30Days").await, [id(&soon_token)]);
    assert_eq!(ids("createdByTokens").await, [id(&child)]);
    assert_eq!(ids("inactive").await, [inactive.to_hex()]);
    assert_eq!(ids("expired").await, [expired.to_hex()]);
    assert_eq!(ids("idle90Days").await, [idle.to_hex()]);
    assert!(!ids("neverUsed").await.contains(&id(&all)));
    let r = t
        .get(&format!("/applications/{app}/tokens?posture=risky"), &admin)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message()
            .contains("posture must be one of neverUsed, idle90Days"),
        "{}",
        r.message()
    );
}

fn chrono_iso(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
