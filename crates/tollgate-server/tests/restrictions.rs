//! Issue 14: tokens narrower than a scope. `all.Application.bounded`, RFC 6750 challenges on
//! every 401 and 403, and the restrictions (devices, addresses, rate, quota).

use serde_json::json;
use tollgate_testkit::{Case, case};

use crate::common::{TestApp, unknown_token};

/// `all.Application.bounded`: every application action but the writes of token management,
/// including listing and reading tokens (the catalog's lists), and it cannot be exceeded by
/// what it mints (it mints nothing: `applicationApiTokens.post` is not in it).
async fn bounded_scope_is_all_but_token_management() {
    let t = TestApp::new().await;
    let (user, session) = t.login("editor@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let created = t
        .api_token(
            &session,
            app,
            json!({ "name": "Integrator", "scope": ["all.Application.bounded"] }),
        )
        .await;
    assert_eq!(created["scope"], json!(["all.Application.bounded"]));
    assert_eq!(
        created["scopeSummary"],
        "All permissions except managing API tokens"
    );
    let bounded = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    // Application, device and token reads and writes outside token management: allowed.
    t.patch(
        &format!("/applications/{app}"),
        &bounded,
        json!({ "name": "Plant 2" }),
    )
    .await
    .expect(200);
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &bounded,
            json!({ "name": "Press", "attributes": [{ "name": "t", "dataType": "number" }] }),
        )
        .await
        .expect(201);
    assert_eq!(device["name"], "Press");
    let list = t
        .get(&format!("/applications/{app}/tokens"), &bounded)
        .await
        .expect(200);
    assert_eq!(list["totalCount"], 1);
    t.get(&format!("/applications/{app}/tokens/{id}"), &bounded)
        .await
        .expect(200);

    // Token writes: 403 with the challenge naming the scopes that would grant them.
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            &bounded,
            json!({ "name": "child" }),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="applicationApiTokens.post applicationApiTokens.* all.Application""#
    );
    assert!(
        r.message().contains("applicationApiTokens.post"),
        "{}",
        r.message()
    );
    let r = t
        .patch(
            &format!("/applications/{app}/tokens/{id}"),
            &bounded,
            json!({ "status": "inactive" }),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = t
        .delete(&format!("/applications/{app}/tokens/{id}"), &bounded)
        .await;
    assert_eq!(r.status, 403);

    // An all.Application token may mint a bounded one; a bounded one is within no read token.
    let root = t.api_token(&session, app, json!({ "name": "root" })).await;
    let root = root["token"].as_str().unwrap();
    t.api_token(
        root,
        app,
        json!({ "name": "b", "scope": ["all.Application.bounded"] }),
    )
    .await;
    let minter = t
        .api_token(
            &session,
            app,
            json!({ "name": "m", "scope": ["applicationApiTokens.post", "all.Application.read"] }),
        )
        .await;
    let r = t
        .post(
            &format!("/applications/{app}/tokens"),
            minter["token"].as_str().unwrap(),
            json!({ "name": "b", "scope": ["all.Application.bounded"] }),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        r.message().contains("all.Application.bounded"),
        "{}",
        r.message()
    );
}

/// Every 401 and 403 carries an RFC 6750 challenge beside the JSON body.
async fn every_401_and_403_carries_a_bearer_challenge() {
    let t = TestApp::new().await;
    let (user, session) = t.login("editor@example.com").await;
    let app = t.app_of(user, "Plant").await;

    // No credential: a bare challenge (RFC 6750 §3.1: no error code).
    let r = t
        .send(
            axum::http::Method::GET,
            &format!("/applications/{app}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(r.body["type"], "Unauthorized");

    // An unknown, malformed or switched-off token: invalid_token.
    let reader = t
        .api_token(
            &session,
            app,
            json!({ "name": "r", "scope": ["all.Application.read"] }),
        )
        .await;
    let reader_secret = reader["token"].as_str().unwrap().to_owned();
    for bad in [unknown_token(), "tgat_short".to_owned()] {
        let r = t.get(&format!("/applications/{app}"), &bad).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(r.body["type"], "Unauthorized");
    }
    t.patch(
        &format!(
            "/applications/{app}/tokens/{}",
            reader["id"].as_str().unwrap()
        ),
        &session,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    let r = t.get(&format!("/applications/{app}"), &reader_secret).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );

    // Out of scope: insufficient_scope with every scope string that grants it.
    let narrow = t
        .api_token(
            &session,
            app,
            json!({ "name": "n", "scope": ["application.get"] }),
        )
        .await;
    let r = t
        .get(
            &format!("/applications/{app}/devices"),
            narrow["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="devices.get devices.* all.Application all.Application.bounded all.Application.read""#
    );
    assert_eq!(r.headers["x-tollgate-required-action"], "devices.get");
    assert_eq!(r.body["type"], "Forbidden");

    // A user action with a token, and a user whose role is too low: still a challenge.
    let r = t.get("/me", narrow["token"].as_str().unwrap()).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(bounded_scope_is_all_but_token_management),
        case!(every_401_and_403_carries_a_bearer_challenge),
    ]
}
