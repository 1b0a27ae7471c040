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

/// Scenario 1: a token restricted to devices tagged `site=north` (and one device by id):
/// other devices are 404 as if they did not exist, `devices.get` lists only its devices, data
/// queries see only their data, and tag changes take effect at once.
async fn device_restrictions_hide_other_devices() {
    let t = TestApp::new().await;
    let (user, session) = t.login("editor@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let devices = format!("/applications/{app}/devices");
    let mut ids = std::collections::HashMap::new();
    for (name, tags) in [
        ("north-1", json!([{ "key": "site", "value": "north" }])),
        ("south-1", json!([{ "key": "site", "value": "south" }])),
        ("by-id", json!([])),
        ("other", json!([])),
    ] {
        let d = t
            .post(
                &devices,
                &session,
                json!({ "name": name, "tags": tags,
                        "attributes": [{ "name": "t", "dataType": "number" }] }),
            )
            .await
            .expect(201);
        let id = d["id"].as_str().unwrap().to_owned();
        t.post(
            &format!("{devices}/{id}/state"),
            &session,
            json!({ "data": { "t": 1 } }),
        )
        .await
        .expect(200);
        ids.insert(name, id);
    }
    let created = t
        .api_token(
            &session,
            app,
            json!({ "name": "gateway",
                    "deviceTags": [{ "key": "site", "value": "north" }],
                    "deviceIds": [ids["by-id"]] }),
        )
        .await;
    assert_eq!(
        created["deviceTags"],
        json!([{ "key": "site", "value": "north" }])
    );
    assert_eq!(created["deviceIds"], json!([ids["by-id"]]));
    let gw = created["token"].as_str().unwrap().to_owned();

    let get = |name: &str| format!("{devices}/{}", ids[name]);
    t.get(&get("north-1"), &gw).await.expect(200);
    t.get(&get("by-id"), &gw).await.expect(200);
    let hidden = t.get(&get("south-1"), &gw).await;
    let missing = t
        .get(&format!("{devices}/0123456789abcdef01234567"), &gw)
        .await;
    assert_eq!(
        (hidden.status.as_u16(), missing.status.as_u16()),
        (404, 404)
    );
    assert_eq!(hidden.body, missing.body, "as if it did not exist");
    for (method, suffix, body) in [
        ("POST", "/state", Some(json!({ "data": { "t": 2 } }))),
        ("GET", "/state", None),
        ("GET", "/compositeState", None),
        ("POST", "/command", Some(json!({ "name": "reboot" }))),
        ("GET", "/command", None),
        ("PATCH", "", Some(json!({ "name": "renamed" }))),
        ("DELETE", "", None),
    ] {
        let r = t
            .send(
                method.parse().unwrap(),
                &format!("{}{suffix}", get("south-1")),
                Some(&gw),
                body,
            )
            .await;
        assert_eq!(r.status, 404, "{method} {suffix}: {:?}", r.body);
    }
    let list = t.get(&devices, &gw).await.expect(200);
    let mut names = crate::common::item_names(&list);
    names.sort();
    assert_eq!(names, ["by-id", "north-1"]);
    assert_eq!(list["totalCount"], 2);
    let lv = format!("/applications/{app}/data/last-value-query");
    let seen = t
        .post(&lv, &gw, json!({ "attribute": "t" }))
        .await
        .expect(200);
    let mut keys: Vec<&String> = seen.as_object().unwrap().keys().collect();
    keys.sort();
    let mut expected = vec![&ids["north-1"], &ids["by-id"]];
    expected.sort();
    assert_eq!(keys, expected);
    let asked = t
        .post(
            &lv,
            &gw,
            json!({ "attribute": "t", "deviceIds": [ids["south-1"], ids["north-1"]] }),
        )
        .await
        .expect(200);
    assert_eq!(asked.as_object().unwrap().len(), 1, "{asked}");
    assert!(asked.get(&ids["north-1"]).is_some());

    // The south device gains the tag: reachable at once. The north one loses it: gone at once.
    t.patch(
        &get("south-1"),
        &session,
        json!({ "tags": [{ "key": "site", "value": "north" }] }),
    )
    .await
    .expect(200);
    t.get(&get("south-1"), &gw).await.expect(200);
    t.patch(
        &get("north-1"),
        &session,
        json!({ "tags": [{ "key": "site", "value": "east" }] }),
    )
    .await
    .expect(200);
    assert_eq!(t.get(&get("north-1"), &gw).await.status, 404);
    let list = t.get(&devices, &gw).await.expect(200);
    let mut names = crate::common::item_names(&list);
    names.sort();
    assert_eq!(names, ["by-id", "south-1"]);

    // A child of a device-restricted token is at least as restricted.
    let tokens = format!("/applications/{app}/tokens");
    for (body, status) in [
        (json!({ "name": "c" }), 403),
        (json!({ "name": "c", "deviceIds": [ids["other"]] }), 403),
        (
            json!({ "name": "c", "deviceTags": [{ "key": "site" }] }),
            403,
        ),
        (
            json!({ "name": "c", "deviceTags": [{ "key": "site", "value": "north" }] }),
            201,
        ),
        (json!({ "name": "c", "deviceIds": [ids["by-id"]] }), 201),
    ] {
        let r = t.post(&tokens, &gw, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        if status == 403 {
            assert!(r.message().contains("device"), "{}", r.message());
        }
    }
}

/// A device-restricted token's writes stay within its devices: it may create a device only
/// with one of its tags, may not take one of its devices out of its reach, and may not name a
/// device outside them as `gatewayId`/`parentId` (answered as a device that does not exist).
async fn device_restricted_writes_stay_within() {
    let t = TestApp::new().await;
    let (user, session) = t.login("editor@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let devices = format!("/applications/{app}/devices");
    let make = |name: &'static str, site: &'static str| {
        let (t, devices, session) = (&t, &devices, &session);
        async move {
            let d = t
                .post(
                    devices,
                    session,
                    json!({ "name": name, "tags": [{ "key": "site", "value": site }] }),
                )
                .await
                .expect(201);
            d["id"].as_str().unwrap().to_owned()
        }
    };
    let north = make("north-gw", "north").await;
    let south = make("south-gw", "south").await;
    let tagged = t
        .api_token(
            &session,
            app,
            json!({ "name": "north", "deviceTags": [{ "key": "site", "value": "north" }] }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = t
        .api_token(
            &session,
            app,
            json!({ "name": "one", "deviceIds": [north] }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Creating: only a device the token will reach.
    let outside = t
        .post(
            &devices,
            &tagged,
            json!({ "name": "x", "tags": [{ "key": "site", "value": "south" }] }),
        )
        .await;
    assert_eq!(outside.status, 403, "{:?}", outside.body);
    assert!(
        outside.message().contains("site=north"),
        "{}",
        outside.message()
    );
    assert_eq!(
        t.post(&devices, &tagged, json!({ "name": "x" }))
            .await
            .status,
        403
    );
    let inside = t
        .post(
            &devices,
            &tagged,
            json!({ "name": "x", "tags": [{ "key": "site", "value": "north" }] }),
        )
        .await
        .expect(201);
    t.get(
        &format!("{devices}/{}", inside["id"].as_str().unwrap()),
        &tagged,
    )
    .await
    .expect(200);
    // A token restricted to listed ids reaches no new device.
    let r = t
        .post(
            &devices,
            &by_id,
            json!({ "name": "y", "tags": [{ "key": "site", "value": "north" }] }),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let names = crate::common::item_names(&t.get(&devices, &session).await.expect(200));
    assert!(
        !names.contains(&"y".to_owned()),
        "nothing half-written: {names:?}"
    );

    // Changing: a device stays within; other fields change freely.
    let mine = format!("{devices}/{north}");
    let r = t
        .patch(
            &mine,
            &tagged,
            json!({ "tags": [{ "key": "site", "value": "south" }] }),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        t.get(&mine, &session).await.expect(200)["tags"],
        json!([{ "key": "site", "value": "north" }]),
        "the refused change left the device as it was"
    );
    t.patch(&mine, &tagged, json!({ "description": "roof" }))
        .await
        .expect(200);
    // By id, the tags are its own business: the id keeps it within.
    t.patch(&mine, &by_id, json!({ "tags": [] }))
        .await
        .expect(200);
    t.patch(
        &mine,
        &session,
        json!({ "tags": [{ "key": "site", "value": "north" }] }),
    )
    .await
    .expect(200);

    // Naming devices: one outside is answered as one that does not exist.
    let hidden = t.patch(&mine, &tagged, json!({ "gatewayId": south })).await;
    let missing = t
        .patch(
            &mine,
            &tagged,
            json!({ "gatewayId": "0123456789abcdef01234567" }),
        )
        .await;
    assert_eq!(
        (hidden.status.as_u16(), missing.status.as_u16()),
        (400, 400)
    );
    assert_eq!(hidden.body, missing.body, "as if it did not exist");
    let r = t
        .post(
            &devices,
            &tagged,
            json!({ "name": "z", "parentId": south, "tags": [{ "key": "site", "value": "north" }] }),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.message(),
        "parentId does not name a device of this application"
    );
    let own = t
        .post(
            &devices,
            &tagged,
            json!({ "name": "z", "parentId": north, "tags": [{ "key": "site", "value": "north" }] }),
        )
        .await
        .expect(201);
    assert_eq!(own["parentId"], json!(north));
    // The session (no restriction) may name any device of the application.
    t.patch(&mine, &session, json!({ "gatewayId": south }))
        .await
        .expect(200);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(device_restrictions_hide_other_devices),
        case!(device_restricted_writes_stay_within),
        case!(bounded_scope_is_all_but_token_management),
        case!(every_401_and_403_carries_a_bearer_challenge),
    ]
}
