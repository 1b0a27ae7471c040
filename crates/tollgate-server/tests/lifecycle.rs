//! Token lifecycle (issue 15): expiry warnings, rolling with an overlap, leak reports.
//! Both passes (SQLite and PostgreSQL); durations are seconds.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use tollgate_server::time::{iso, parse_iso};
use tollgate_store::{Id, now_ms};
use tollgate_testkit::{Case, case};

use crate::common::{TestApp, eventually, id, secret, unknown_token};

const DAY: i64 = 86_400_000;

/// A token expiring within the first lead time (30 days) says so on every response; the
/// API's token objects say "Expires in 5 days"; an expired token is `expired`, never active.
async fn expiry_is_announced_and_expired_tokens_are_shown_as_expired() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let soon_at = now_ms() + 5 * DAY + 3_600_000;
    let soon = t
        .api_token(
            &admin,
            app,
            json!({ "name": "soon", "expirationDate": iso(soon_at) }),
        )
        .await;
    let later = t
        .api_token(
            &admin,
            app,
            json!({ "name": "later", "expirationDate": iso(now_ms() + 40 * DAY) }),
        )
        .await;
    let never = t.api_token(&admin, app, json!({ "name": "never" })).await;

    let r = t.get(&format!("/applications/{app}"), &secret(&soon)).await;
    assert_eq!(r.status.as_u16(), 200);
    let header = r.headers["tollgate-token-expires"].to_str().unwrap();
    assert_eq!(header, iso(soon_at));
    // Also on a refusal made with that token (it is the token's user who must hear it).
    let r = t
        .get(&format!("/applications/{}", Id::generate()), &secret(&soon))
        .await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(r.headers["tollgate-token-expires"], iso(soon_at).as_str());
    for other in [&later, &never] {
        let r = t.get(&format!("/applications/{app}"), &secret(other)).await;
        assert_eq!(r.status.as_u16(), 200);
        assert!(r.headers.get("tollgate-token-expires").is_none());
    }
    // Users' sessions never carry it.
    let r = t.get(&format!("/applications/{app}"), &admin).await;
    assert!(r.headers.get("tollgate-token-expires").is_none());

    let detail = t
        .get(&format!("/applications/{app}/tokens/{}", id(&soon)), &admin)
        .await
        .expect(200);
    assert_eq!(detail["expiresIn"], "Expires in 5 days");
    assert_eq!(detail["expiringSoon"], true);
    assert_eq!(detail["state"], "active");
    assert_eq!(detail["stateLabel"], "Active");
    let list = t
        .get(
            &format!("/applications/{app}/tokens?sortField=name"),
            &admin,
        )
        .await
        .expect(200);
    let by_name = |n: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("soon")["expiresIn"], "Expires in 5 days");
    assert_eq!(by_name("later")["expiringSoon"], false);
    assert_eq!(by_name("later")["expiresIn"], "Expires in 39 days");
    assert!(by_name("never").get("expiresIn").is_none());

    // A token that expires in two seconds: once expired it is listed as Expired.
    let brief = t
        .api_token(
            &admin,
            app,
            json!({ "name": "brief", "expirationDate": iso(now_ms() + 2_000) }),
        )
        .await;
    let path = format!("/applications/{app}/tokens/{}", id(&brief));
    let expired = eventually("the token to expire", Duration::from_secs(20), || async {
        let d = t.get(&path, &admin).await.expect(200);
        (d["state"] == "expired").then_some(d)
    })
    .await;
    assert_eq!(expired["stateLabel"], "Expired");
    assert_eq!(
        expired["status"], "active",
        "the stored switch is unchanged"
    );
    assert!(expired.get("expiresIn").is_none());
    assert_eq!(
        t.get(&format!("/applications/{app}"), &secret(&brief))
            .await
            .status,
        401
    );
}

/// A roll makes a new token with the same name, description and scope and a new secret; the
/// old one keeps working until `retiresAt` and then is refused, by the guard and by the
/// store's check of the acting credential alike.
async fn a_rolled_token_works_until_it_retires_then_stops() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let created_at = now_ms();
    let old = t
        .api_token(
            &admin,
            app,
            json!({
                "name": "ingest",
                "description": "the plant's gateway",
                "scope": ["device.sendState", "application.get", "devices.*"],
                "expirationDate": iso(created_at + 10 * DAY),
            }),
        )
        .await;
    let old_path = format!("/applications/{app}/tokens/{}", id(&old));
    let r = t
        .post(
            &format!("{old_path}/roll"),
            &admin,
            json!({ "overlapSeconds": 3 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let new = r.body;
    assert_ne!(id(&new), id(&old));
    assert_ne!(secret(&new), secret(&old));
    assert_eq!(new["rolledFromId"], id(&old).as_str());
    // The roll is audited on the old token, naming its successor.
    let log = t
        .get(&format!("/applications/{app}/audit-logs"), &admin)
        .await
        .expect(200);
    let roll = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requestAction"] == "roll")
        .unwrap_or_else(|| panic!("no roll entry: {log}"));
    assert_eq!(roll["secondaryTargetId"], id(&old).as_str(), "{roll}");
    assert_eq!(
        roll["requestBody"]["rolledToId"],
        id(&new).as_str(),
        "{roll}"
    );
    assert_eq!(new["name"], "ingest");
    assert_eq!(new["description"], "the plant's gateway");
    assert_eq!(new["scope"], old["scope"]);
    assert_eq!(new["creatorType"], "user");
    // The old lifetime length (10 days) from the roll.
    let new_expiry = parse_iso(new["expirationDate"].as_str().unwrap()).unwrap();
    assert!(
        (new_expiry - (now_ms() + 10 * DAY)).abs() < 60_000,
        "new expiry {new_expiry}"
    );
    let old_now = t.get(&old_path, &admin).await.expect(200);
    let retires = parse_iso(old_now["retiresAt"].as_str().unwrap()).unwrap();
    assert!(retires > now_ms() - 1_000 && retires <= now_ms() + 3_000);
    assert_eq!(old_now["expirationDate"], old_now["retiresAt"]);
    assert_eq!(old_now["state"], "active");
    // During the overlap both work, and the old one warns of its end.
    let r = t.get(&format!("/applications/{app}"), &secret(&old)).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(
        r.headers["tollgate-token-expires"],
        old_now["retiresAt"].as_str().unwrap()
    );
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &secret(&new),
            json!({ "name": "d", "deviceClass": "standalone",
                    "attributes": [{ "name": "t", "dataType": "number" }] }),
        )
        .await
        .expect(201);
    let state_path = format!(
        "/applications/{app}/devices/{}/state",
        device["id"].as_str().unwrap()
    );
    t.post(&state_path, &secret(&old), json!({ "data": { "t": 1 } }))
        .await
        .expect(200);
    // Then the old one stops, everywhere it is checked.
    eventually(
        "the old token to retire",
        Duration::from_secs(20),
        || async {
            let s = t
                .get(&format!("/applications/{app}"), &secret(&old))
                .await
                .status;
            (s == 401).then_some(())
        },
    )
    .await;
    let r = t
        .post(&state_path, &secret(&old), json!({ "data": { "t": 2 } }))
        .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    t.post(&state_path, &secret(&new), json!({ "data": { "t": 3 } }))
        .await
        .expect(200);
    let retired = t.get(&old_path, &admin).await.expect(200);
    assert_eq!(retired["state"], "retired");
    assert_eq!(retired["stateLabel"], "Retired");
    // A retired token cannot be rolled again, nor can a rolled one.
    let r = t
        .post(
            &format!("{old_path}/roll"),
            &admin,
            json!({ "overlapSeconds": 0 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.message().contains("rolled already"), "{}", r.message());
}

/// A token that never expired rolls into one that never expires; an overlap of 0 stops the
/// old one at once; an explicit expiry is honoured; bad overlaps and dates are refused.
async fn roll_options_and_bounds() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let forever = t.api_token(&admin, app, json!({ "name": "forever" })).await;
    let path = format!("/applications/{app}/tokens/{}/roll", id(&forever));
    for (body, needle) in [
        (json!({ "overlapSeconds": 604_801 }), "overlapSeconds"),
        (json!({ "overlapSeconds": -1 }), "overlapSeconds"),
        (json!({}), "overlapSeconds"),
        (
            json!({ "overlapSeconds": 5, "expirationDate": "soon" }),
            "expirationDate",
        ),
        (
            json!({ "overlapSeconds": 5, "expirationDate": iso(now_ms() - 1_000) }),
            "expirationDate",
        ),
        (json!({ "overlapSeconds": 5, "extra": 1 }), "extra"),
    ] {
        let r = t.post(&path, &admin, body.clone()).await;
        assert_eq!(r.status.as_u16(), 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{body}: {}", r.message());
    }
    let new = t
        .post(&path, &admin, json!({ "overlapSeconds": 0 }))
        .await
        .expect(201);
    assert!(new.get("expirationDate").is_none(), "never expires: {new}");
    assert_eq!(
        t.get(&format!("/applications/{app}"), &secret(&forever))
            .await
            .status,
        401,
        "an overlap of 0 retires the old token at once"
    );
    let at = now_ms() + 3 * DAY;
    let newer = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", id(&new)),
            &admin,
            json!({ "overlapSeconds": 60, "expirationDate": iso(at) }),
        )
        .await
        .expect(201);
    assert_eq!(newer["expirationDate"], iso(at).as_str());
    assert_eq!(newer["rolledFromId"], id(&new).as_str());
    // An inactive token is not rolled.
    let off = t
        .api_token(&admin, app, json!({ "name": "off", "status": "inactive" }))
        .await;
    let r = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", id(&off)),
            &admin,
            json!({ "overlapSeconds": 0 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.message().contains("inactive"), "{}", r.message());
    // Another application's token: not found.
    let r = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", Id::generate()),
            &admin,
            json!({ "overlapSeconds": 0 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);
}

/// The authority rule: a token rolls only tokens it could have created, into tokens it could
/// create; a token may roll itself within its bounds; viewers cannot roll.
async fn a_token_rolls_only_tokens_it_could_have_created() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let broad = t.api_token(&admin, app, json!({ "name": "broad" })).await;
    let roller = t
        .api_token(
            &admin,
            app,
            json!({ "name": "roller", "scope": ["applicationApiToken.roll", "application.get"],
                    "expirationDate": iso(now_ms() + 5 * DAY) }),
        )
        .await;
    let r = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", id(&broad)),
            &secret(&roller),
            json!({ "overlapSeconds": 0 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert_eq!(
        r.headers["x-tollgate-required-action"],
        "applicationApiToken.patch"
    );
    assert!(r.message().contains("all.Application"), "{}", r.message());
    // The broad token was not touched.
    let b = t
        .get(
            &format!("/applications/{app}/tokens/{}", id(&broad)),
            &admin,
        )
        .await
        .expect(200);
    assert!(b.get("retiresAt").is_none());
    // Rolling itself with the default (its 5-day lifetime from now) would outlive it.
    let own = format!("/applications/{app}/tokens/{}/roll", id(&roller));
    let r = t
        .post(&own, &secret(&roller), json!({ "overlapSeconds": 0 }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert!(r.message().contains("cannot outlive"), "{}", r.message());
    let r = t
        .post(
            &own,
            &secret(&roller),
            json!({ "overlapSeconds": 0, "expirationDate": null }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    // Within its bounds it may.
    let own_expiry = parse_iso(roller["expirationDate"].as_str().unwrap()).unwrap();
    let rolled = t
        .post(
            &own,
            &secret(&roller),
            json!({ "overlapSeconds": 30, "expirationDate": iso(own_expiry - 1_000) }),
        )
        .await
        .expect(201);
    assert_eq!(rolled["creatorType"], "apiToken");
    assert_eq!(rolled["creatorId"], id(&roller).as_str());
    // A token without the roll action is refused by the guard.
    let reader = t
        .api_token(
            &admin,
            app,
            json!({ "name": "r", "scope": ["all.Application.read"] }),
        )
        .await;
    let r = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", id(&reader)),
            &secret(&reader),
            json!({ "overlapSeconds": 0 }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403);
    assert_eq!(
        r.headers["x-tollgate-required-action"],
        "applicationApiToken.roll"
    );
}

/// `POST /tokens/revoke`: no credentials; every live token named is deactivated with the
/// reason "reported as leaked"; the answer is the same whatever was named.
async fn a_leak_report_deactivates_live_tokens_and_always_answers_the_same() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let leaked = t.api_token(&admin, app, json!({ "name": "leaked" })).await;
    let kept = t.api_token(&admin, app, json!({ "name": "kept" })).await;
    let app_path = format!("/applications/{app}");
    t.get(&app_path, &secret(&leaked)).await.expect(200);

    let report = |tokens: Vec<String>| {
        let t = &t;
        async move {
            t.send(
                Method::POST,
                "/tokens/revoke",
                None,
                Some(json!({ "tokens": tokens })),
            )
            .await
        }
    };
    let r1 = report(vec![
        secret(&leaked),
        "not a token".to_owned(),
        unknown_token(),
        secret(&leaked),
    ])
    .await;
    assert_eq!(r1.status.as_u16(), 202, "{}", r1.body);
    let r2 = report(vec![unknown_token()]).await;
    assert_eq!(r2.status.as_u16(), 202);
    assert_eq!(r1.body, r2.body, "the answer never says what was live");
    assert_eq!(r1.body["accepted"], true);
    assert!(!r1.body.to_string().contains("tgat_"));

    let r = t.get(&app_path, &secret(&leaked)).await;
    assert_eq!(r.status.as_u16(), 401);
    assert_eq!(r.message(), "This API token is inactive");
    t.get(&app_path, &secret(&kept)).await.expect(200);
    let path = format!("/applications/{app}/tokens/{}", id(&leaked));
    let d = t.get(&path, &admin).await.expect(200);
    assert_eq!(d["status"], "inactive");
    assert_eq!(d["state"], "inactive");
    assert_eq!(d["deactivationReason"], "reported as leaked");
    // Reporting it again changes nothing and answers the same.
    assert_eq!(report(vec![secret(&leaked)]).await.body, r1.body);
    // The deactivation is in the audit log once, by the anonymous reporter, with its address.
    let log = t
        .get(&format!("/applications/{app}/audit-logs"), &admin)
        .await
        .expect(200);
    let revokes: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requestResource"] == "tokens" && e["requestAction"] == "revoke")
        .collect();
    assert_eq!(revokes.len(), 1, "{log}");
    let e = revokes[0];
    assert_eq!(e["secondaryTargetId"], id(&leaked).as_str(), "{e}");
    assert_eq!(e["actorName"], "leak report", "{e}");
    assert!(
        e.get("actorType").is_none(),
        "no reference actor type fits: {e}"
    );
    assert_eq!(
        e["requestBody"]["deactivationReason"], "reported as leaked",
        "{e}"
    );
    assert!(!log.to_string().contains("tgat_"), "no secret in the log");
    // Switched on again, the reason goes.
    let d = t
        .patch(&path, &admin, json!({ "status": "active" }))
        .await
        .expect(200);
    assert!(d.get("deactivationReason").is_none(), "{d}");
    t.get(&app_path, &secret(&leaked)).await.expect(200);

    // Bounds: 1,000 strings at most, named in the refusal.
    let r = report(vec!["x".to_owned(); 1_001]).await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.message().contains("1000"), "{}", r.message());
}

/// Leak reports are limited per client address: 10 in a row, then 429 with Retry-After.
async fn leak_reports_are_rate_limited() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let token = t.api_token(&admin, app, json!({ "name": "a" })).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let r = t
            .send(
                Method::POST,
                "/tokens/revoke",
                None,
                Some(json!({ "tokens": [unknown_token()] })),
            )
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            assert!(r.message().contains("leak reports"), "{}", r.message());
        }
    }
    assert_eq!(statuses, [vec![202; 10], vec![429]].concat());
    // A throttled report deactivates nothing.
    let r = t
        .send(
            Method::POST,
            "/tokens/revoke",
            None,
            Some(json!({ "tokens": [secret(&token)] })),
        )
        .await;
    assert_eq!(r.status.as_u16(), 429);
    t.get(&format!("/applications/{app}"), &secret(&token))
        .await
        .expect(200);
}

/// Several nodes (PostgreSQL): a token cached on every node keeps working through the roll's
/// overlap on each, and every node refuses it from its `retiresAt` on (retirement is its
/// expiry, which each node checks against the time of each request, and the roll reached
/// every node's cache before it was answered); a leak report answered by one node is
/// refused by the others on their very next request, like a manual deactivation.
fn every_node_retires_rolled_and_refuses_reported_tokens() {
    use crate::common::process::{ServerProcess, http, pg_server};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(crate::common::fresh_pg_database(&pg_server()));
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(dir.path(), &db, &[]))
        .collect();
    for n in &nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while http::call(&n.url, "GET", "/health", None, None).body["cache"] != "live" {
            assert!(std::time::Instant::now() < deadline, "{} not live", n.url);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let a = &nodes[0].url;
    let session = http::admin_session(a);
    let app = http::post(a, "/applications", &session, json!({ "name": "fleet" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let probe = format!("/applications/{app}");
    let mk = |name: &str| {
        let t = http::post(
            a,
            &format!("{probe}/tokens"),
            &session,
            json!({ "name": name }),
        )
        .expect(201);
        (id(&t), secret(&t))
    };
    let (old_id, old) = mk("rolled");
    let (_, leaked) = mk("leaked");
    // Cached on every node (used twice each).
    for n in &nodes {
        for s in [&old, &leaked] {
            http::get(&n.url, &probe, s).expect(200);
            http::get(&n.url, &probe, s).expect(200);
        }
    }

    let rolled = http::post(
        a,
        &format!("{probe}/tokens/{old_id}/roll"),
        &session,
        json!({ "overlapSeconds": 2 }),
    )
    .expect(201);
    let new = secret(&rolled);
    let old_now = http::get(a, &format!("{probe}/tokens/{old_id}"), &session).expect(200);
    let retires = parse_iso(old_now["retiresAt"].as_str().unwrap()).unwrap();
    let mut accepted_during_overlap = 0;
    for n in &nodes {
        http::get(&n.url, &probe, &new).expect(200);
        let r = http::get(&n.url, &probe, &old);
        if now_ms() < retires {
            assert_eq!(r.status, 200, "{}: {}", n.url, r.body);
            accepted_during_overlap += 1;
        }
    }
    assert!(
        accepted_during_overlap > 0,
        "the overlap was used up before any check"
    );
    while now_ms() <= retires {
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in &nodes {
        let r = http::get(&n.url, &probe, &old);
        assert_eq!(
            r.status, 401,
            "{} still accepts the retired token: {}",
            n.url, r.body
        );
        assert_eq!(r.body["message"], "This API token has expired");
        http::get(&n.url, &probe, &new).expect(200);
    }

    let r = http::call(
        a,
        "POST",
        "/tokens/revoke",
        None,
        Some(&json!({ "tokens": [leaked] })),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    for n in &nodes {
        let r = http::get(&n.url, &probe, &leaked);
        assert_eq!(
            r.status, 401,
            "{} accepted a reported token after the 202",
            n.url
        );
        assert_eq!(r.body["message"], "This API token is inactive");
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(expiry_is_announced_and_expired_tokens_are_shown_as_expired),
        case!(a_rolled_token_works_until_it_retires_then_stops),
        case!(roll_options_and_bounds),
        case!(a_token_rolls_only_tokens_it_could_have_created),
        case!(a_leak_report_deactivates_live_tokens_and_always_answers_the_same),
        case!(leak_reports_are_rate_limited),
        case!(
            the_operator_revokes_leaked_tokens_from_standard_input,
            multi_thread = 2
        ),
        case!(sync every_node_retires_rolled_and_refuses_reported_tokens).postgres_pass(),
    ]
}

/// `tollgate tokens revoke --stdin` beside a running server: the live tokens among the
/// strings read are deactivated ("reported as leaked") and refused on the next request;
/// the others keep working; secrets as arguments are not accepted.
async fn the_operator_revokes_leaked_tokens_from_standard_input() {
    use crate::common::process::{ServerProcess, binary, http};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(dir.path(), &db, &[]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Plant" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let mk = |name: &str| {
        let t = http::post(
            &base,
            &format!("/applications/{app}/tokens"),
            &session,
            json!({ "name": name }),
        )
        .expect(201);
        (id(&t), secret(&t))
    };
    let (leaked_id, leaked) = mk("leaked");
    let (_, kept) = mk("kept");
    for s in [&leaked, &kept] {
        http::get(&base, &format!("/applications/{app}"), s).expect(200);
    }
    let mut child = Command::new(binary())
        .args(["tokens", "revoke", "--stdin"])
        .env("TOLLGATE_DATABASE_URL", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(
        child.stdin.take().unwrap(),
        "found in a paste:\n{leaked}\n  {}  nonsense\n",
        unknown_token()
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains(&leaked_id), "{printed}");
    assert!(printed.contains("1 of 7 strings read"), "{printed}");
    assert!(!printed.contains("tgat_"), "no secret printed: {printed}");
    let status = || http::get(&base, &format!("/applications/{app}"), &leaked).status;
    if db.starts_with("sqlite") {
        assert_eq!(status(), 401, "refused on the very next request");
    } else {
        eventually("the token is refused", Duration::from_secs(10), || async {
            (status() == 401).then_some(())
        })
        .await;
    }
    http::get(&base, &format!("/applications/{app}"), &kept).expect(200);
    let d = http::get(
        &base,
        &format!("/applications/{app}/tokens/{leaked_id}"),
        &session,
    )
    .expect(200);
    assert_eq!(d["deactivationReason"], "reported as leaked");
    // Without --stdin: refused by the argument parser, nothing read.
    let o = Command::new(binary())
        .args(["tokens", "revoke"])
        .env("TOLLGATE_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stdin"));
}
