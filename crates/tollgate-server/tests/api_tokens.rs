//! Application API tokens over HTTP: the seed's scenario, step by step.

use std::time::Duration;
use tollgate_testkit::{Case, case};

use crate::common::{TestApp, unknown_token};
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::tokens::TokenStatus;

/// An application owned by an editor (its owner) and a session for them.
async fn editor_app(t: &TestApp) -> (String, Id) {
    let (user, session) = t.login("editor@example.com").await;
    let app = t.app_of(user, "Plant").await;
    (session, app)
}

fn secret(created: &Value) -> String {
    created["token"]
        .as_str()
        .expect("creation response carries the secret")
        .to_owned()
}

async fn creating_tokens_reveals_each_secret_once() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let all = t.api_token(&session, app, json!({ "name": "CI" })).await;
    let read = t
        .api_token(
            &session,
            app,
            json!({ "name": "Dashboard vendor", "scope": ["all.Application.read"] }),
        )
        .await;
    let custom = t
        .api_token(
            &session,
            app,
            json!({ "name": "Gateway", "description": "floor 3", "scope": ["application.get", "applicationApiTokens.get"] }),
        )
        .await;

    assert_eq!(all["scope"], json!(["all.Application"]), "default scope");
    assert_eq!(all["scopeSummary"], "All permissions");
    assert_eq!(read["scopeSummary"], "Read only");
    assert_eq!(custom["scopeSummary"], "Custom permissions");
    assert_eq!(custom["description"], "floor 3");
    for created in [&all, &read, &custom] {
        let s = secret(created);
        assert!(s.starts_with("tgat_") && s.len() == 54, "{s}");
        assert_eq!(created["status"], "active");
        assert_eq!(created["ownerType"], "application");
        assert_eq!(created["ownerId"], app.to_string());
        assert_eq!(created["creatorType"], "user");
        assert_eq!(created["creatorName"], "editor@example.com");
        assert!(
            created.get("expirationDate").is_none(),
            "no expirationDate means never"
        );
    }
    // No later response carries a secret.
    let list = t
        .get(&format!("/applications/{app}/tokens"), &session)
        .await
        .expect(200);
    assert_eq!(list["totalCount"], 3);
    let one = t
        .get(
            &format!("/applications/{app}/tokens/{}", all["id"].as_str().unwrap()),
            &session,
        )
        .await
        .expect(200);
    for body in [list.to_string(), one.to_string()] {
        assert!(!body.contains("\"token\""), "{body}");
        for created in [&all, &read, &custom] {
            assert!(!body.contains(&secret(created)));
        }
    }
}

async fn each_token_works_on_exactly_what_its_scope_grants() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let app_path = format!("/applications/{app}");
    let tokens_path = format!("{app_path}/tokens");
    let read = secret(
        &t.api_token(
            &session,
            app,
            json!({ "name": "r", "scope": ["all.Application.read"] }),
        )
        .await,
    );
    let custom = secret(
        &t.api_token(
            &session,
            app,
            json!({ "name": "c", "scope": ["applicationApiTokens.get"] }),
        )
        .await,
    );

    t.get(&app_path, &read).await.expect(200);
    t.get(&tokens_path, &read).await.expect(200);
    let r = t.patch(&app_path, &read, json!({ "name": "x" })).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("application.patch"), "{}", r.message());
    assert_eq!(r.headers["x-tollgate-required-action"], "application.patch");
    let r = t
        .post(&tokens_path, &read, json!({ "name": "child" }))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.message().contains("applicationApiTokens.post"),
        "{}",
        r.message()
    );

    t.get(&tokens_path, &custom).await.expect(200);
    let r = t.get(&app_path, &custom).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("application.get"));

    // Application tokens never reach user or organization actions.
    let r = t.get("/me", &read).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("me.get"));
    assert_eq!(t.get("/applications", &read).await.status, 403);
}

async fn a_token_creates_tokens_no_stronger_and_no_longer_lived_than_itself() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let parent = t
        .api_token(&session, app, json!({ "name": "Parent" }))
        .await;
    let parent_secret = secret(&parent);

    let child = t
        .api_token(
            &parent_secret,
            app,
            json!({ "name": "Child", "scope": ["all.Application.read"] }),
        )
        .await;
    assert_eq!(child["creatorType"], "apiToken");
    assert_eq!(child["creatorId"], parent["id"]);
    assert_eq!(child["creatorName"], "Parent");
    t.get(&format!("/applications/{app}"), &secret(&child))
        .await
        .expect(200);

    // The all-permissions token renames the application.
    let renamed = t
        .patch(
            &format!("/applications/{app}"),
            &parent_secret,
            json!({ "name": "Plant 2" }),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "Plant 2");

    // A read token cannot create tokens at all.
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &secret(&child),
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(r.status, 403);

    // A token that may create tokens, but only with a narrow scope of its own.
    let minter = t
        .api_token(
            &session,
            app,
            json!({ "name": "Minter", "scope": ["applicationApiTokens.post", "all.Application.read"],
                    "expirationDate": "2099-01-01T00:00:00.000Z" }),
        )
        .await;
    let minter_secret = secret(&minter);
    let cases = [
        (
            json!({ "name": "s", "expirationDate": "2098-01-01T00:00:00Z" }),
            "all.Application",
        ),
        (
            json!({ "name": "s", "scope": ["application.*"], "expirationDate": "2098-01-01T00:00:00Z" }),
            "application.*",
        ),
        (
            json!({ "name": "s", "scope": ["application.patch"], "expirationDate": "2098-01-01T00:00:00Z" }),
            "application.patch",
        ),
        (
            json!({ "name": "s", "scope": ["application.get"] }),
            "outlive",
        ),
        (
            json!({ "name": "s", "scope": ["application.get"], "expirationDate": "2099-06-01T00:00:00Z" }),
            "outlive",
        ),
    ];
    for (body, why) in cases {
        let r = t
            .post(
                &format!("/applications/{app}/tokens"),
                &minter_secret,
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 403, "{body}: {}", r.body);
        assert!(r.message().contains(why), "{body}: {}", r.message());
    }
    let ok = t
        .api_token(
            &minter_secret,
            app,
            json!({ "name": "ok", "scope": ["application.get", "applicationApiTokens.post"],
                    "expirationDate": "2098-12-31T23:59:59.000Z" }),
        )
        .await;
    assert_eq!(ok["expirationDate"], "2098-12-31T23:59:59.000Z");
}

async fn the_list_sorts_filters_and_pages() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let path = format!("/applications/{app}/tokens");
    for (name, status, expiry) in [
        ("gamma", "active", Some("2031-01-01T00:00:00Z")),
        ("alpha", "inactive", None),
        ("beta", "active", Some("2030-01-01T00:00:00Z")),
        ("alphabet", "active", None),
    ] {
        let mut body = json!({ "name": name, "status": status });
        if let Some(e) = expiry {
            body["expirationDate"] = json!(e);
        }
        t.api_token(&session, app, body).await;
    }
    let names = crate::common::item_names;
    let default = t.get(&path, &session).await.expect(200);
    assert_eq!(names(&default), ["alpha", "alphabet", "beta", "gamma"]);
    assert_eq!(default["sortField"], "name");
    let desc = t
        .get(
            &format!("{path}?sortField=name&sortDirection=desc"),
            &session,
        )
        .await
        .expect(200);
    assert_eq!(names(&desc), ["gamma", "beta", "alphabet", "alpha"]);
    let by_status = t
        .get(
            &format!("{path}?sortField=status&sortDirection=desc"),
            &session,
        )
        .await
        .expect(200);
    assert_eq!(by_status["items"][0]["status"], "inactive");
    // A token that never expires sorts after every date.
    let by_expiry = t
        .get(&format!("{path}?sortField=expirationDate"), &session)
        .await
        .expect(200);
    assert_eq!(names(&by_expiry), ["beta", "gamma", "alpha", "alphabet"]);
    let by_expiry = t
        .get(
            &format!("{path}?sortField=expirationDate&sortDirection=desc"),
            &session,
        )
        .await
        .expect(200);
    assert_eq!(names(&by_expiry), ["alphabet", "alpha", "gamma", "beta"]);
    for field in ["id", "creationDate", "lastUpdated"] {
        let r = t
            .get(&format!("{path}?sortField={field}"), &session)
            .await
            .expect(200);
        assert_eq!(r["count"], 4, "{field}");
        assert_eq!(r["sortField"], field);
    }
    let filtered = t
        .get(&format!("{path}?filterField=name&filter=alpha*"), &session)
        .await
        .expect(200);
    assert_eq!(names(&filtered), ["alpha", "alphabet"]);
    assert_eq!(filtered["filter"], "alpha*");
    let inactive = t
        .get(&format!("{path}?filterField=status&filter=in*"), &session)
        .await
        .expect(200);
    assert_eq!(names(&inactive), ["alpha"]);
    let page = t
        .get(&format!("{path}?perPage=3&page=1"), &session)
        .await
        .expect(200);
    assert_eq!(names(&page), ["gamma"]);
    assert_eq!(
        (
            page["totalCount"].as_i64(),
            page["count"].as_i64(),
            page["page"].as_i64()
        ),
        (Some(4), Some(1), Some(1))
    );
}

async fn patch_renames_and_switches_status_with_immediate_effect() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let created = t
        .api_token(&session, app, json!({ "name": "Switchable" }))
        .await;
    let s = secret(&created);
    let path = format!(
        "/applications/{app}/tokens/{}",
        created["id"].as_str().unwrap()
    );
    let app_path = format!("/applications/{app}");
    t.get(&app_path, &s).await.expect(200);

    let patched = t
        .patch(
            &path,
            &session,
            json!({ "name": "Renamed", "description": "new words" }),
        )
        .await
        .expect(200);
    assert_eq!(
        (patched["name"].as_str(), patched["description"].as_str()),
        (Some("Renamed"), Some("new words"))
    );
    assert!(patched.get("token").is_none());

    t.patch(&path, &session, json!({ "status": "inactive" }))
        .await
        .expect(200);
    let r = t.get(&app_path, &s).await;
    assert_eq!(r.status, 401, "the very next request is refused");
    assert!(r.message().contains("inactive"));
    assert!(!r.body.to_string().contains(&s));
    t.patch(&path, &session, json!({ "status": "active" }))
        .await
        .expect(200);
    t.get(&app_path, &s).await.expect(200);

    for body in [
        json!({ "scope": ["all.Application.read"] }),
        json!({ "expirationDate": "2030-01-01T00:00:00Z" }),
        json!({ "name": "x", "scope": [], "expirationDate": "2030-01-01T00:00:00Z" }),
    ] {
        let r = t.patch(&path, &session, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.message().contains("fixed when it is created"),
            "{}",
            r.message()
        );
    }
    let r = t
        .patch(&path, &session, json!({ "status": "paused" }))
        .await;
    assert_eq!(r.status, 400);
    let unchanged = t.get(&path, &session).await.expect(200);
    assert_eq!(unchanged["name"], "Renamed");
    assert_eq!(unchanged["scope"], json!(["all.Application"]));
}

async fn expiry_is_checked_on_every_request() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(2000);
    let created = t
        .api_token(
            &session,
            app,
            json!({ "name": "Short", "expirationDate": soon.to_rfc3339() }),
        )
        .await;
    let s = secret(&created);
    t.get(&format!("/applications/{app}"), &s).await.expect(200);
    // Accepted until its expiry, refused from then on (polled, not slept: a loaded machine
    // may take longer to get there).
    let (refused, at) =
        crate::common::eventually("the token expires", Duration::from_secs(30), || async {
            let r = t.get(&format!("/applications/{app}"), &s).await;
            match r.status.as_u16() {
                200 => None,
                _ => Some((r, chrono::Utc::now())),
            }
        })
        .await;
    assert_eq!(refused.status, 401);
    assert!(refused.message().contains("expired"));
    assert!(at >= soon, "refused at {at}, before its expiry {soon}");
    let again = t.get(&format!("/applications/{app}"), &s).await;
    assert_eq!(again.status, 401, "and refused on every later request");

    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &session,
            json!({ "name": "Past", "expirationDate": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("in the past"));
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &session,
            json!({ "name": "Bad", "expirationDate": "next week" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        t.get(&format!("/applications/{app}/tokens"), &session)
            .await
            .expect(200)["totalCount"],
        1
    );
}

async fn deleted_tokens_and_other_applications_are_refused() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let owner = t
        .store()
        .user_by_email("editor@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let other_app = t.app_of(owner, "Other").await;
    let created = t
        .api_token(&session, app, json!({ "name": "Doomed" }))
        .await;
    let s = secret(&created);
    let path = format!(
        "/applications/{app}/tokens/{}",
        created["id"].as_str().unwrap()
    );

    // A token of one application sees nothing of another, whatever its scope, and cannot
    // tell an existing application from a missing one.
    let (_, other_token) = t
        .raw_token(other_app, &["all.Application"], TokenStatus::Active, None)
        .await;
    let fake = Id::generate();
    for p in [
        format!("/applications/{app}"),
        format!("/applications/{app}/tokens"),
        path.clone(),
        format!("/applications/{fake}"),
    ] {
        let r = t.get(&p, &other_token).await;
        assert_eq!(r.status, 404, "{p}");
        assert_eq!(r.message(), "Application was not found");
    }

    t.delete(&path, &session).await.expect(200);
    let r = t.get(&format!("/applications/{app}"), &s).await;
    assert_eq!(r.status, 401, "the next request after delete");
    assert_eq!(t.get(&path, &session).await.status, 404);
    assert_eq!(t.delete(&path, &session).await.status, 404);

    // Deleting the application removes its tokens.
    let (_, survivor) = t
        .raw_token(app, &["all.Application"], TokenStatus::Active, None)
        .await;
    t.get(&format!("/applications/{app}"), &survivor)
        .await
        .expect(200);
    t.delete(&format!("/applications/{app}"), &session)
        .await
        .expect(200);
    assert_eq!(
        t.get(&format!("/applications/{app}"), &survivor)
            .await
            .status,
        401
    );
}

async fn malformed_and_unknown_tokens_are_401s_that_never_echo_them() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let good = secret(&t.api_token(&session, app, json!({ "name": "g" })).await);
    let mut typo = good.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for (presented, expected) in [
        (typo.as_str(), "checksum"),
        ("tgat_short", "length"),
        (unknown_token().as_str(), "no such API token"),
    ] {
        let r = t.get(&format!("/applications/{app}"), presented).await;
        assert_eq!(r.status, 401);
        assert!(
            r.message().contains(expected),
            "{presented}: {}",
            r.message()
        );
        assert!(!r.body.to_string().contains(presented));
    }
}

async fn unknown_scopes_are_named_and_nothing_is_created() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let path = format!("/applications/{app}/tokens");
    let cases = [
        (
            json!({ "name": "x", "scope": ["application.get", "device.teleport", "all.Device"] }),
            "device.teleport, all.Device",
        ),
        (
            json!({ "name": "x", "scope": [] }),
            "at least one permission",
        ),
        (json!({ "name": "x", "scope": "all.Application" }), "/scope"),
        (json!({ "name": "", "scope": ["all.Application"] }), "/name"),
        (json!({ "name": "x", "secret": "mine" }), "secret"),
        (json!({ "scope": ["all.Application"] }), "name"),
    ];
    for (body, expected) in cases {
        let r = t.post(&path, &session, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.message().contains(expected), "{body}: {}", r.message());
    }
    assert_eq!(t.get(&path, &session).await.expect(200)["totalCount"], 0);
}

async fn last_use_is_recorded_without_a_write_per_request() {
    let t = TestApp::new().await;
    let (session, app) = editor_app(&t).await;
    let created = t.api_token(&session, app, json!({ "name": "Used" })).await;
    let id: Id = created["id"].as_str().unwrap().parse().unwrap();
    assert!(created.get("lastUsedDate").is_none());
    for _ in 0..20 {
        t.get(&format!("/applications/{app}"), &secret(&created))
            .await
            .expect(200);
    }
    // The API shows the use at once (minute precision) ...
    let shown = t
        .get(&format!("/applications/{app}/tokens/{id}"), &session)
        .await
        .expect(200);
    let used =
        chrono::DateTime::parse_from_rfc3339(shown["lastUsedDate"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - used.to_utc()).num_seconds() < 61);
    // ... but the database has not been written yet: uses are batched.
    assert_eq!(t.store().token(app, id).await.unwrap().last_used, None);
    t.state.credentials().flush_last_used().await.unwrap();
    assert_eq!(
        t.store().token(app, id).await.unwrap().last_used,
        Some(used.timestamp_millis())
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(creating_tokens_reveals_each_secret_once),
        case!(each_token_works_on_exactly_what_its_scope_grants),
        case!(a_token_creates_tokens_no_stronger_and_no_longer_lived_than_itself),
        case!(the_list_sorts_filters_and_pages),
        case!(patch_renames_and_switches_status_with_immediate_effect),
        case!(expiry_is_checked_on_every_request),
        case!(deleted_tokens_and_other_applications_are_refused),
        case!(malformed_and_unknown_tokens_are_401s_that_never_echo_them),
        case!(unknown_scopes_are_named_and_nothing_is_created),
        case!(last_use_is_recorded_without_a_write_per_request),
    ]
}
