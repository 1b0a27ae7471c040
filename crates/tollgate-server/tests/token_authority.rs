//! Authority over tokens (issue 11, item 3): a token may change or delete only tokens it could
//! have created itself (the target's scope within its own, its expiry no later than its own);
//! users keep their role rules. Both passes (SQLite and PostgreSQL).

use crate::common::{TestApp, id, secret};
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_testkit::{Case, case};

/// The attack of issue 11: a stolen all-permissions token mints a token holding only
/// `applicationApiToken.patch`; an administrator switches the stolen token off; the minted one
/// must not switch it back on.
async fn a_patch_only_token_cannot_reactivate_an_all_permissions_token() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let stolen = t.api_token(&admin, app, json!({ "name": "stolen" })).await;
    let minted = t
        .api_token(
            &secret(&stolen),
            app,
            json!({ "name": "minted", "scope": ["applicationApiToken.patch"] }),
        )
        .await;
    let path = format!("/applications/{app}/tokens/{}", id(&stolen));
    t.patch(&path, &admin, json!({ "status": "inactive" }))
        .await
        .expect(200);

    let r = t
        .patch(&path, &secret(&minted), json!({ "status": "active" }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert_eq!(r.body["type"], "Forbidden");
    assert_eq!(
        r.message(),
        "This API token cannot change a token more powerful than itself: that token's \
         all.Application would reach beyond this token's scope (applicationApiToken.patch). \
         A token may change or delete only tokens it could have created"
    );
    assert_eq!(
        r.headers["x-tollgate-required-action"],
        "applicationApiToken.patch"
    );
    // Nor may it rename it; and the stolen token stays off.
    let r = t
        .patch(&path, &secret(&minted), json!({ "name": "x" }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    let now = t.get(&path, &admin).await.expect(200);
    assert_eq!(now["status"], "inactive");
    assert_eq!(now["name"], "stolen");
    assert_eq!(
        t.get(&format!("/applications/{app}"), &secret(&stolen))
            .await
            .status,
        401
    );
}

async fn a_narrow_token_cannot_delete_a_broad_one() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let broad = t
        .api_token(
            &admin,
            app,
            json!({ "name": "broad", "scope": ["all.Application.read", "device.*"] }),
        )
        .await;
    let narrow = t
        .api_token(
            &admin,
            app,
            json!({ "name": "narrow", "scope": ["applicationApiToken.delete", "device.get"] }),
        )
        .await;
    let path = format!("/applications/{app}/tokens/{}", id(&broad));
    let r = t.delete(&path, &secret(&narrow)).await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert!(
        r.message().starts_with("This API token cannot delete a token more powerful than itself: that token's all.Application.read, device.* would reach beyond this token's scope (applicationApiToken.delete, device.get)"),
        "{}",
        r.message()
    );
    assert_eq!(t.get(&path, &admin).await.expect(200)["status"], "active");
    assert_eq!(
        t.get(&format!("/applications/{app}"), &secret(&broad))
            .await
            .status,
        200
    );
}

/// A token that expires may not act on one that outlives it (whether it never expires or
/// expires later), and may act on one that expires no later.
async fn a_token_cannot_change_a_token_that_outlives_it() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let mortal = t
        .api_token(
            &admin,
            app,
            json!({ "name": "mortal", "expirationDate": "2099-01-01T00:00:00.000Z" }),
        )
        .await;
    let forever = t
        .api_token(
            &admin,
            app,
            json!({ "name": "forever", "scope": ["device.get"] }),
        )
        .await;
    let later = t
        .api_token(
            &admin,
            app,
            json!({ "name": "later", "scope": ["device.get"], "expirationDate": "2099-06-01T00:00:00.000Z" }),
        )
        .await;
    let sooner = t
        .api_token(
            &admin,
            app,
            json!({ "name": "sooner", "scope": ["device.get"], "expirationDate": "2098-01-01T00:00:00.000Z" }),
        )
        .await;
    let path = |t: &Value| format!("/applications/{app}/tokens/{}", id(t));
    let r = t
        .patch(
            &path(&forever),
            &secret(&mortal),
            json!({ "status": "inactive" }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert_eq!(
        r.message(),
        "This API token cannot change a token that outlives it: that token never expires, and \
         this one expires at 2099-01-01T00:00:00.000Z. A token may change or delete only tokens \
         it could have created"
    );
    let r = t.delete(&path(&later), &secret(&mortal)).await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert!(
        r.message()
            .contains("that token expires at 2099-06-01T00:00:00.000Z"),
        "{}",
        r.message()
    );
    t.patch(
        &path(&sooner),
        &secret(&mortal),
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    t.delete(&path(&sooner), &secret(&mortal)).await.expect(200);
    for (target, status) in [(&forever, "active"), (&later, "active")] {
        assert_eq!(
            t.get(&path(target), &admin).await.expect(200)["status"],
            status
        );
    }
}

/// Within its bounds a token manages tokens fully: it renames, describes, switches off and on
/// and deletes one it created, and one an administrator created with the same reach.
async fn a_token_manages_tokens_within_its_bounds() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let manager = t
        .api_token(
            &admin,
            app,
            json!({ "name": "manager", "scope": ["applicationApiTokens.*", "applicationApiToken.*", "device.get"] }),
        )
        .await;
    let m = secret(&manager);
    let child = t
        .api_token(&m, app, json!({ "name": "child", "scope": ["device.get"] }))
        .await;
    let peer = t
        .api_token(
            &admin,
            app,
            json!({ "name": "peer", "scope": ["applicationApiToken.get", "device.get"] }),
        )
        .await;
    for target in [&child, &peer] {
        let path = format!("/applications/{app}/tokens/{}", id(target));
        let renamed = t
            .patch(
                &path,
                &m,
                json!({ "name": "renamed", "description": "by the manager" }),
            )
            .await
            .expect(200);
        assert_eq!(
            (renamed["name"].as_str(), renamed["description"].as_str()),
            (Some("renamed"), Some("by the manager"))
        );
        assert_eq!(
            t.patch(&path, &m, json!({ "status": "inactive" }))
                .await
                .expect(200)["status"],
            "inactive"
        );
        assert_eq!(
            t.get(&format!("/applications/{app}/devices"), &secret(target))
                .await
                .status,
            401
        );
        assert_eq!(
            t.patch(&path, &m, json!({ "status": "active" }))
                .await
                .expect(200)["status"],
            "active"
        );
        assert_eq!(
            t.get(&format!("/applications/{app}/devices"), &secret(target))
                .await
                .status,
            403,
            "back on, and still without devices.get"
        );
        t.delete(&path, &m).await.expect(200);
        assert_eq!(t.get(&path, &admin).await.status, 404);
    }
    // A token may switch itself off (it could have created itself).
    let own = format!("/applications/{app}/tokens/{}", id(&manager));
    t.patch(&own, &m, json!({ "status": "inactive" }))
        .await
        .expect(200);
    assert_eq!(t.get(&own, &m).await.status, 401);
}

/// Users keep their role rules: an editor may change and delete any token of the
/// application, whatever its scope (their role reaches every application action); a viewer
/// may change none.
async fn users_keep_their_role_rules() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("admin@example.com").await;
    let (_, editor) = t.login("editor@example.com").await;
    let (_, viewer) = t.login("viewer@example.com").await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Plant" }))
        .await
        .expect(201);
    let org = org["id"].as_str().unwrap();
    // Invitations are pending until accepted: each invitee accepts theirs.
    t.join_org(org, &admin, "editor@example.com", "edit", &editor)
        .await;
    t.join_org(org, &admin, "viewer@example.com", "view", &viewer)
        .await;
    let app = t
        .post(
            "/applications",
            &admin,
            json!({ "name": "Line 1", "orgId": org }),
        )
        .await
        .expect(201);
    let app: Id = app["id"].as_str().unwrap().parse().unwrap();
    let all = t.api_token(&admin, app, json!({ "name": "all" })).await;
    let path = format!("/applications/{app}/tokens/{}", id(&all));

    let r = t
        .patch(&path, &viewer, json!({ "status": "inactive" }))
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    assert!(
        r.message()
            .starts_with("Your role here (view) does not allow applicationApiToken.patch"),
        "{}",
        r.message()
    );
    t.patch(&path, &editor, json!({ "status": "inactive" }))
        .await
        .expect(200);
    t.patch(&path, &editor, json!({ "status": "active" }))
        .await
        .expect(200);
    assert_eq!(t.delete(&path, &viewer).await.status.as_u16(), 403);
    t.delete(&path, &editor).await.expect(200);
    assert_eq!(t.get(&path, &admin).await.status.as_u16(), 404);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_patch_only_token_cannot_reactivate_an_all_permissions_token),
        case!(a_narrow_token_cannot_delete_a_broad_one),
        case!(a_token_cannot_change_a_token_that_outlives_it),
        case!(a_token_manages_tokens_within_its_bounds),
        case!(users_keep_their_role_rules),
    ]
}
