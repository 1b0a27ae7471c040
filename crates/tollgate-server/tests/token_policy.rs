//! Token policies and the background jobs (issue 15, item 2), both passes: a policy applies
//! to new tokens and rolls (400 naming the rule), lists the tokens that break it without
//! changing them, takes the organization's default where the application sets nothing; idle
//! tokens are switched off (reason shown, refused at once) and back on by the ordinary PATCH;
//! expiry warnings, expiry and retirement are each announced once however often the jobs run
//! and after downtime; with two nodes only the lease holder runs them, and the other takes
//! over when it stops.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_server::background::{self, Background, Options};
use tollgate_server::time::iso;
use tollgate_server::{AppState, Settings};
use tollgate_store::{Store, now_ms};
use tollgate_testkit::{Case, case, eventually};

use crate::common::{TestApp, id, secret};

const DAY: i64 = 86_400_000;

/// Audit entries with `action` about token `token`.
async fn entries(store: &Store, action: &str, token: &str) -> Vec<Value> {
    let (resource, verb) = action.split_once('.').unwrap();
    let bodies: Vec<(String, String)> = sqlx::query_as(
        "SELECT request_body, actor_type FROM audit_logs WHERE request_resource = $1 \
         AND request_action = $2 AND secondary_target_id = $3 ORDER BY creation_date, id",
    )
    .bind(resource)
    .bind(verb)
    .bind(token)
    .fetch_all(store.pool())
    .await
    .unwrap();
    bodies
        .into_iter()
        .map(|(b, actor)| {
            let mut v: Value = serde_json::from_str(&b).unwrap();
            v["actorType"] = json!(actor);
            v
        })
        .collect()
}

fn jobs(state: &AppState, interval_ms: u64) -> Background {
    background::spawn(
        state,
        Options {
            interval: Duration::from_millis(interval_ms),
            audit_retention: Duration::from_secs(365 * 86_400),
        },
    )
}

/// A policy refuses new tokens and rolls that break it, naming the rule; bad input is 400
/// and writes nothing; a change is audited.
async fn a_policy_applies_to_new_tokens_and_rolls() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let path = format!("/applications/{app}/token-policy");
    let before = t.get(&path, &admin).await.expect(200);
    assert_eq!(before["maxLifetimeDays"], Value::Null);
    assert_eq!(before["expiryRequired"], false);
    assert_eq!(before["warningLeadDays"], json!([30, 7, 1]));
    assert_eq!(before["sources"]["warningLeadDays"], "default");
    assert_eq!(before["orgId"], Value::Null);
    // Made before the policy: never expires.
    let old = t.api_token(&admin, app, json!({ "name": "old" })).await;

    let after = t
        .patch(&path, &admin, json!({ "maxLifetimeDays": 30 }))
        .await
        .expect(200);
    assert_eq!(after["maxLifetimeDays"], 30);
    assert_eq!(after["sources"]["maxLifetimeDays"], "application");
    assert_eq!(after["own"]["maxLifetimeDays"], 30);
    assert_eq!(after["own"]["expiryRequired"], Value::Null);

    let tokens = format!("/applications/{app}/tokens");
    let r = t.post(&tokens, &admin, json!({ "name": "forever" })).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert!(
        r.message().contains("maxLifetimeDays: 30"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("never expires"), "{}", r.message());
    let r = t
        .post(
            &tokens,
            &admin,
            json!({ "name": "long", "expirationDate": iso(now_ms() + 31 * DAY) }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert!(r.message().contains("no later than"), "{}", r.message());
    let ok = t
        .api_token(
            &admin,
            app,
            json!({ "name": "month", "expirationDate": iso(now_ms() + 29 * DAY) }),
        )
        .await;
    assert_eq!(ok["name"], "month");
    // Rolls too: the default (the old token's lifetime: never) is refused, a short one not.
    let roll = format!("{tokens}/{}/roll", id(&old));
    let r = t.post(&roll, &admin, json!({ "overlapSeconds": 60 })).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert!(r.message().contains("maxLifetimeDays"), "{}", r.message());
    let rolled = t
        .post(
            &roll,
            &admin,
            json!({ "overlapSeconds": 60, "expirationDate": iso(now_ms() + 10 * DAY) }),
        )
        .await
        .expect(201);
    assert_eq!(rolled["rolledFromId"], id(&old));

    // expiryRequired alone (with the maximum unset again).
    let p = t
        .patch(
            &path,
            &admin,
            json!({ "maxLifetimeDays": null, "expiryRequired": true }),
        )
        .await
        .expect(200);
    assert_eq!(p["maxLifetimeDays"], Value::Null);
    assert_eq!(p["sources"]["maxLifetimeDays"], "default");
    let r = t.post(&tokens, &admin, json!({ "name": "forever" })).await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.message().contains("expiryRequired"), "{}", r.message());
    t.api_token(
        &admin,
        app,
        json!({ "name": "a year", "expirationDate": iso(now_ms() + 365 * DAY) }),
    )
    .await;

    // Bad input: 400, and nothing changes (not even the valid field beside the bad one).
    for bad in [
        json!({ "maxLifetimeDays": 0 }),
        json!({ "maxLifetimeDays": "thirty" }),
        json!({ "idleDeactivationDays": -1 }),
        json!({ "warningLeadDays": [7, 0] }),
        json!({ "expiryRequired": false, "maxLifetimeDays": 99999 }),
        json!({ "expiryRequired": false, "unknown": 1 }),
    ] {
        let r = t.patch(&path, &admin, bad.clone()).await;
        assert_eq!(r.status.as_u16(), 400, "{bad}: {}", r.body);
    }
    let now = t.get(&path, &admin).await.expect(200);
    assert_eq!(now["expiryRequired"], true);
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_logs WHERE request_resource = 'applicationTokenPolicy' \
         AND request_action = 'patch' AND application_id = $1",
    )
    .bind(app.to_hex())
    .fetch_one(t.store().pool())
    .await
    .unwrap();
    assert_eq!(audited, 2, "two changes, no entry for refusals");
    // A token whose scope cannot read the policy, and one that can but not change it.
    let reader = t
        .api_token(
            &admin,
            app,
            json!({ "name": "reader", "scope": ["all.Application.read"],
                    "expirationDate": iso(now_ms() + DAY) }),
        )
        .await;
    t.get(&path, &secret(&reader)).await.expect(200);
    let r = t
        .patch(&path, &secret(&reader), json!({ "expiryRequired": false }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
}

/// A stricter policy changes no token: the answer lists those that break it, with the rules.
async fn tokens_that_break_a_new_policy_are_listed_not_changed() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let never = t.api_token(&admin, app, json!({ "name": "never" })).await;
    let long = t
        .api_token(
            &admin,
            app,
            json!({ "name": "long", "expirationDate": iso(now_ms() + 90 * DAY) }),
        )
        .await;
    let short = t
        .api_token(
            &admin,
            app,
            json!({ "name": "short", "expirationDate": iso(now_ms() + 10 * DAY) }),
        )
        .await;
    let path = format!("/applications/{app}/token-policy");
    let p = t
        .patch(
            &path,
            &admin,
            json!({ "maxLifetimeDays": 30, "expiryRequired": true }),
        )
        .await
        .expect(200);
    assert_eq!(p["violatorCount"], 2, "{p}");
    let listed: Vec<(String, Value)> = p["violators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["apiTokenId"].as_str().unwrap().to_owned(),
                v["rules"].clone(),
            )
        })
        .collect();
    assert!(
        listed.contains(&(id(&never), json!(["maxLifetimeDays", "expiryRequired"]))),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(id(&long), json!(["maxLifetimeDays"]))),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|(i, _)| *i == id(&short)));
    // Unchanged, and still working.
    for tok in [&never, &long] {
        let d = t
            .get(&format!("/applications/{app}/tokens/{}", id(tok)), &admin)
            .await
            .expect(200);
        assert_eq!(d["state"], "active");
        assert_eq!(d["expirationDate"], tok["expirationDate"]);
        t.get(&format!("/applications/{app}"), &secret(tok))
            .await
            .expect(200);
    }
    // The GET lists them too.
    let g = t.get(&path, &admin).await.expect(200);
    assert_eq!(g["violatorCount"], 2);
}

/// The organization's default applies where the application sets nothing; the answer says
/// where each value comes from; only administrators change policies.
async fn the_organization_default_applies_under_the_application_fields() {
    let t = TestApp::new().await;
    let (owner, viewer, app) = t.org_app_with_viewer().await;
    let a = t
        .get(&format!("/applications/{app}"), &owner)
        .await
        .expect(200);
    assert_eq!(a["ownerType"], "organization");
    let org = a["ownerId"].as_str().unwrap().to_owned();
    let org_path = format!("/orgs/{org}/token-policy");
    let p = t
        .patch(
            &org_path,
            &owner,
            json!({ "expiryRequired": true, "warningLeadDays": [14, 2] }),
        )
        .await
        .expect(200);
    assert_eq!(p["expiryRequired"], true);
    assert_eq!(p["warningLeadDays"], json!([14, 2]));
    assert_eq!(p["maxLifetimeDays"], Value::Null);
    let app_path = format!("/applications/{app}/token-policy");
    let e = t.get(&app_path, &viewer).await.expect(200);
    assert_eq!(e["orgId"], org.as_str());
    assert_eq!(e["expiryRequired"], true);
    assert_eq!(e["sources"]["expiryRequired"], "organization");
    assert_eq!(e["warningLeadDays"], json!([14, 2]));
    assert_eq!(e["organizationDefault"]["expiryRequired"], true);
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &owner,
            json!({ "name": "forever" }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(
        r.message().contains("organization expiryRequired"),
        "{}",
        r.message()
    );
    // The application overrides it.
    let e = t
        .patch(&app_path, &owner, json!({ "expiryRequired": false }))
        .await
        .expect(200);
    assert_eq!(e["expiryRequired"], false);
    assert_eq!(e["sources"]["expiryRequired"], "application");
    assert_eq!(e["sources"]["warningLeadDays"], "organization");
    t.api_token(&owner, app, json!({ "name": "forever" })).await;
    // The first lead time (14 days) now decides the expiry header and expiringSoon.
    let in20 = t
        .api_token(
            &owner,
            app,
            json!({ "name": "20 days", "expirationDate": iso(now_ms() + 20 * DAY) }),
        )
        .await;
    let in10 = t
        .api_token(
            &owner,
            app,
            json!({ "name": "10 days", "expirationDate": iso(now_ms() + 10 * DAY) }),
        )
        .await;
    let r = t.get(&format!("/applications/{app}"), &secret(&in20)).await;
    assert!(r.headers.get("tollgate-token-expires").is_none());
    assert_eq!(in20["expiringSoon"], false);
    let r = t.get(&format!("/applications/{app}"), &secret(&in10)).await;
    assert!(r.headers.get("tollgate-token-expires").is_some());
    assert_eq!(in10["expiringSoon"], true);
    // A viewer reads but does not change.
    t.get(&org_path, &viewer).await.expect(200);
    let r = t
        .patch(&org_path, &viewer, json!({ "expiryRequired": false }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    let r = t
        .patch(&app_path, &viewer, json!({ "expiryRequired": true }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_logs WHERE request_resource = 'orgTokenPolicy' \
         AND request_action = 'patch' AND org_id = $1",
    )
    .bind(&org)
    .fetch_one(t.store().pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

/// A token unused for the idle period (seconds here) is switched off by the jobs, with the
/// reason shown, refused at once, audited; the ordinary PATCH switches it on again.
async fn idle_tokens_are_switched_off_and_back_on() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let path = format!("/applications/{app}/token-policy");
    // 3 seconds, in days.
    t.patch(
        &path,
        &admin,
        json!({ "idleDeactivationDays": 3.0 / 86_400.0 }),
    )
    .await
    .expect(200);
    let idle = t.api_token(&admin, app, json!({ "name": "idle" })).await;
    t.get(&format!("/applications/{app}"), &secret(&idle))
        .await
        .expect(200);
    let runner = jobs(&t.state, 100);
    let detail = format!("/applications/{app}/tokens/{}", id(&idle));
    let off = eventually(
        "the idle token to be switched off",
        Duration::from_secs(60),
        || async {
            let d = t.get(&detail, &admin).await.expect(200);
            (d["status"] == "inactive").then_some(d)
        },
    )
    .await;
    assert_eq!(off["deactivationReason"], "idle");
    assert_eq!(off["state"], "inactive");
    let r = t.get(&format!("/applications/{app}"), &secret(&idle)).await;
    assert_eq!(r.status.as_u16(), 401);
    assert_eq!(r.message(), "This API token is inactive");
    let audit = entries(t.store(), "applicationApiToken.idleDeactivated", &id(&idle)).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["deactivationReason"], "idle");
    assert_eq!(audit[0]["actorType"], "System");
    // Listed as an idle violator while it was active; not now (inactive).
    // Switched on again: works at once, the reason is gone.
    runner.stop().await;
    let on = t
        .patch(&detail, &admin, json!({ "status": "active" }))
        .await
        .expect(200);
    assert!(on.get("deactivationReason").is_none(), "{on}");
    t.get(&format!("/applications/{app}"), &secret(&idle))
        .await
        .expect(200);
    // Idleness counts from the reactivation: the token is idle again only 3 s later.
    let p = t.get(&path, &admin).await.expect(200);
    assert_eq!(p["violatorCount"], 0, "{p}");
    let p = eventually(
        "the token to be idle again",
        Duration::from_secs(30),
        || async {
            let p = t.get(&path, &admin).await.expect(200);
            (p["violatorCount"] == 1).then_some(p)
        },
    )
    .await;
    assert_eq!(p["violators"][0]["rules"], json!(["idleDeactivationDays"]));
}

/// Each warning lead time, the expiry and the retirement are announced once, with what they
/// concern, however many times the jobs run; what fell due while no node ran them is
/// announced when one starts (catch-up).
async fn expiry_events_are_announced_once_and_caught_up() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let in5 = t
        .api_token(
            &admin,
            app,
            json!({ "name": "in 5 days", "expirationDate": iso(now_ms() + 5 * DAY) }),
        )
        .await;
    let in20 = t
        .api_token(
            &admin,
            app,
            json!({ "name": "in 20 days", "expirationDate": iso(now_ms() + 20 * DAY) }),
        )
        .await;
    let brief_at = now_ms() + 1_500;
    let brief = t
        .api_token(
            &admin,
            app,
            json!({ "name": "brief", "expirationDate": iso(brief_at) }),
        )
        .await;
    let never = t.api_token(&admin, app, json!({ "name": "never" })).await;
    let rolled = t
        .post(
            &format!("/applications/{app}/tokens/{}/roll", id(&never)),
            &admin,
            json!({ "overlapSeconds": 1 }),
        )
        .await
        .expect(201);
    // Nobody runs the jobs while the brief token expires and the overlap ends (downtime).
    eventually(
        "the brief token to expire",
        Duration::from_secs(20),
        || async { (now_ms() > brief_at + 1_000).then_some(()) },
    )
    .await;
    let runner = jobs(&t.state, 50);
    let store = t.store();
    eventually("the announcements", Duration::from_secs(60), || async {
        let done = !entries(store, "applicationApiToken.expired", &id(&brief))
            .await
            .is_empty()
            && !entries(store, "applicationApiToken.retired", &id(&never))
                .await
                .is_empty()
            && !entries(store, "applicationApiToken.expiring", &id(&in20))
                .await
                .is_empty();
        done.then_some(())
    })
    .await;
    // Many more runs, then a "restart" (a new node on the same database with its own loop).
    let seen = runner.runs();
    eventually("more runs", Duration::from_secs(60), || async {
        (runner.runs() >= seen + 5).then_some(())
    })
    .await;
    runner.stop().await;
    let store2 = Store::connect_with(&t.database_url, 2).await.unwrap();
    let node2 = AppState::new(store2, Settings::default());
    let runner2 = jobs(&node2, 50);
    eventually(
        "runs after the restart",
        Duration::from_secs(60),
        || async { (runner2.runs() >= 5).then_some(()) },
    )
    .await;
    runner2.stop().await;

    let w5 = entries(store, "applicationApiToken.expiring", &id(&in5)).await;
    assert_eq!(w5.len(), 1, "{w5:?}");
    assert_eq!(
        w5[0]["leadDays"], 7,
        "only the nearest lead time reached: {w5:?}"
    );
    assert_eq!(w5[0]["expirationDate"], in5["expirationDate"]);
    let w20 = entries(store, "applicationApiToken.expiring", &id(&in20)).await;
    assert_eq!(w20.len(), 1, "{w20:?}");
    assert_eq!(w20[0]["leadDays"], 30);
    let e = entries(store, "applicationApiToken.expired", &id(&brief)).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0]["expirationDate"], brief["expirationDate"]);
    assert_eq!(e[0]["actorType"], "System");
    let r = entries(store, "applicationApiToken.retired", &id(&never)).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0]["retiresAt"].is_string());
    assert!(
        entries(store, "applicationApiToken.expired", &id(&never))
            .await
            .is_empty()
    );
    assert!(
        entries(store, "applicationApiToken.retired", &id(&rolled))
            .await
            .is_empty()
    );
    assert!(
        entries(store, "applicationApiToken.expiring", &id(&rolled))
            .await
            .is_empty()
    );
}

/// Two nodes on one database: only the lease holder runs the jobs; when it stops (without
/// giving the lease up, as a node that dies), the other takes over after the lease runs out
/// and does what is due, once.
async fn the_jobs_run_on_one_node_and_another_takes_over() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let store_b = Store::connect_with(&t.database_url, 4).await.unwrap();
    let b = AppState::new(store_b, Settings::default());
    let runner_a = jobs(&t.state, 100);
    let runner_b = jobs(&b, 100);
    eventually("some runs", Duration::from_secs(60), || async {
        (runner_a.runs() + runner_b.runs() >= 10).then_some(())
    })
    .await;
    let (a_runs, b_runs) = (runner_a.runs(), runner_b.runs());
    assert!(
        (a_runs == 0) != (b_runs == 0),
        "the jobs ran on both nodes or neither: {a_runs} and {b_runs}"
    );
    let (holder, other) = if a_runs > 0 {
        (runner_a, runner_b)
    } else {
        (runner_b, runner_a)
    };
    let (holder_node, other_node) = (holder.node(), other.node());
    assert_eq!(
        t.store()
            .lease_holder(tollgate_store::policy::JOBS_LEASE)
            .await
            .unwrap()
            .unwrap()
            .0,
        holder_node
    );
    holder.abandon();
    eventually(
        "the other node to take over",
        Duration::from_secs(60),
        || async { (other.runs() > 0).then_some(()) },
    )
    .await;
    assert_eq!(
        t.store()
            .lease_holder(tollgate_store::policy::JOBS_LEASE)
            .await
            .unwrap()
            .unwrap()
            .0,
        other_node
    );
    // It does the work: a token expiring now is announced, once.
    let brief = t
        .api_token(
            &admin,
            app,
            json!({ "name": "brief", "expirationDate": iso(now_ms() + 500) }),
        )
        .await;
    eventually("the expiry announced", Duration::from_secs(60), || async {
        (!entries(t.store(), "applicationApiToken.expired", &id(&brief))
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    let seen = other.runs();
    eventually("more runs", Duration::from_secs(60), || async {
        (other.runs() >= seen + 3).then_some(())
    })
    .await;
    other.stop().await;
    assert_eq!(
        entries(t.store(), "applicationApiToken.expired", &id(&brief))
            .await
            .len(),
        1
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_policy_applies_to_new_tokens_and_rolls),
        case!(tokens_that_break_a_new_policy_are_listed_not_changed),
        case!(the_organization_default_applies_under_the_application_fields),
        case!(idle_tokens_are_switched_off_and_back_on, multi_thread = 2),
        case!(
            expiry_events_are_announced_once_and_caught_up,
            multi_thread = 2
        ),
        case!(
            the_jobs_run_on_one_node_and_another_takes_over,
            multi_thread = 2
        ),
    ]
}
