//! Accounts: `me.patch`, `me.changePassword` (every other session ends, on the very next
//! request), disabled users, two-factor authentication (TOTP and recovery codes, each code
//! once), organizations that require it (`mfaMode`), and wrong second-factor codes counted by the
//! login throttle like wrong passwords.

use std::time::Duration;
use tollgate_testkit::{Case, case};

use crate::common::{PASSWORD, TestApp};
use axum::http::Method;
use serde_json::json;
use tollgate_server::Settings;
use tollgate_server::auth::throttle::Rate;
use tollgate_store::Actor;

const NEW_PASSWORD: &str = "Brand-new-passw0rd";

async fn login(
    t: &TestApp,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> crate::common::Resp {
    let mut body = json!({ "email": email, "password": password });
    if let Some(c) = code {
        body["twoFactorCode"] = json!(c);
    }
    t.send(Method::POST, "/auth/user", None, Some(body)).await
}

/// The TOTP code of a base32 key at `unix_secs`, computed independently of the server's code
/// path (from the key the API returned).
fn code_at(key: &str, unix_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(key).expect("the key is base32");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build_noncompliant()
        .generate(unix_secs)
        .to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn me_patch_changes_the_name_fields_only() {
    let t = TestApp::new().await;
    let (_, s) = t.login("ana@example.com").await;
    let me = t
        .patch("/me", &s, json!({ "firstName": "Ana", "lastName": "Lima" }))
        .await
        .expect(200);
    assert_eq!(me["firstName"], "Ana");
    assert_eq!(me["lastName"], "Lima");
    assert_eq!(me["fullName"], "Ana Lima");
    let me = t
        .patch("/me", &s, json!({ "lastName": "" }))
        .await
        .expect(200);
    assert_eq!(me["firstName"], "Ana", "absent fields are kept");
    assert_eq!(me["lastName"], "");
    assert_eq!(t.get("/me", &s).await.expect(200)["fullName"], "Ana");

    let r = t.patch("/me", &s, json!({ "firstName": "" })).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("firstName"), "{}", r.message());
    let r = t
        .patch("/me", &s, json!({ "email": "x@example.com" }))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().starts_with("email is not supported"),
        "{}",
        r.message()
    );
    let r = t
        .patch("/me", &s, json!({ "password": "Another-passw0rd" }))
        .await;
    assert!(r.message().contains("me.changePassword"), "{}", r.message());
    let r = t.patch("/me", &s, json!({ "nickname": "x" })).await;
    assert_eq!(r.status, 400, "unknown fields are refused by the schema");
    assert_eq!(
        t.get("/me", &s).await.expect(200)["email"],
        "ana@example.com"
    );
}

async fn change_password_ends_every_other_session_at_once() {
    let t = TestApp::new().await;
    let (_, current) = t.login("bo@example.com").await;
    let other = login(&t, "bo@example.com", PASSWORD, None)
        .await
        .expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both sessions are in use (and so cached).
    t.get("/me", &other).await.expect(200);
    t.get("/me", &current).await.expect(200);

    let r = t
        .patch(
            "/me/changePassword",
            &current,
            json!({ "password": "wrong password", "newPassword": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "The current password is not right");
    let r = t
        .patch(
            "/me/changePassword",
            &current,
            json!({ "password": PASSWORD, "newPassword": "weakpassword" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("upper-case") && r.message().contains("digit"),
        "{}",
        r.message()
    );
    assert!(!r.message().contains("weakpassword"));
    t.get("/me", &other).await.expect(200);

    let changed = t
        .patch(
            "/me/changePassword",
            &current,
            json!({ "password": PASSWORD, "newPassword": NEW_PASSWORD }),
        )
        .await
        .expect(200);
    let fresh = changed["token"].as_str().unwrap();
    assert!(fresh.starts_with("tgus_"));
    // The other session is refused on the very next request; the current one and the new one
    // work.
    let r = t.get("/me", &other).await;
    assert_eq!(r.status, 401, "{}", r.body);
    t.get("/me", &current).await.expect(200);
    t.get("/me", fresh).await.expect(200);
    assert_eq!(
        login(&t, "bo@example.com", PASSWORD, None).await.status,
        401
    );
    login(&t, "bo@example.com", NEW_PASSWORD, None)
        .await
        .expect(200);

    // invalidateExistingTokens ends the current session too.
    let again = t
        .patch(
            "/me/changePassword",
            fresh,
            json!({ "password": NEW_PASSWORD, "newPassword": "Third-passw0rd!",
                    "invalidateExistingTokens": true }),
        )
        .await
        .expect(200);
    assert_eq!(t.get("/me", fresh).await.status, 401);
    assert_eq!(t.get("/me", &current).await.status, 401);
    t.get("/me", again["token"].as_str().unwrap())
        .await
        .expect(200);
}

async fn a_login_checked_against_the_old_password_opens_no_session() {
    let t = TestApp::new().await;
    let user = t.user("cy@example.com").await;
    let old = t.store().user(user).await.unwrap().password_hash;
    t.store()
        .set_password(&Actor::operator(), user, "$argon2id$new", None)
        .await
        .unwrap();
    let digest = [7u8; 32];
    let r = t
        .store()
        .create_login_session(&digest, user, tollgate_store::now_ms() + 60_000, &old, "")
        .await;
    assert!(matches!(r, Err(tollgate_store::StoreError::NotFound)));
    assert!(
        t.store()
            .session_by_digest(&digest)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_disabled_user_cannot_log_in_and_their_sessions_end() {
    let t = TestApp::new().await;
    let (id, s) = t.login("dee@example.com").await;
    t.get("/me", &s).await.expect(200);
    let ended = t
        .store()
        .set_user_disabled(&Actor::operator(), id, true)
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(t.get("/me", &s).await.status, 401);
    let r = login(&t, "dee@example.com", PASSWORD, None).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("disabled"), "{}", r.message());
    // A wrong password does not reveal that the account is disabled.
    let r = login(&t, "dee@example.com", "wrong password", None).await;
    assert_eq!(r.message(), "Invalid email or password");
    // Nor can a session be created for them directly.
    let r = t
        .store()
        .create_session(&[9u8; 32], id, tollgate_store::now_ms() + 60_000)
        .await;
    assert!(matches!(r, Err(tollgate_store::StoreError::NotFound)));
    t.store()
        .set_user_disabled(&Actor::operator(), id, false)
        .await
        .unwrap();
    login(&t, "dee@example.com", PASSWORD, None)
        .await
        .expect(200);
    let users = t.store().list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(!users[0].disabled);
}

/// Enable two-factor authentication for a logged-in user; returns (key, recovery codes).
async fn enable_2fa(t: &TestApp, session: &str) -> (String, Vec<String>) {
    let info = t
        .send(
            Method::PATCH,
            "/me/generateTwoFactorAuth",
            Some(session),
            None,
        )
        .await
        .expect(200);
    let key = info["key"].as_str().unwrap().to_owned();
    let now = now_secs();
    let me = t
        .patch(
            "/me/enableTwoFactorAuth",
            session,
            json!({ "password": PASSWORD, "twoFactorCode": code_at(&key, now), "twoFactorAuthKey": key }),
        )
        .await
        .expect(200);
    assert_eq!(me["twoFactorAuthEnabled"], true);
    let codes: Vec<String> = me["twoFactorRecoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (key, codes)
}

async fn two_factor_codes_and_recovery_codes_work_once_each() {
    let t = TestApp::new().await;
    let (id, s) = t.login("eve@example.com").await;
    let other = login(&t, "eve@example.com", PASSWORD, None)
        .await
        .expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    t.get("/me", &other).await.expect(200);
    assert_eq!(
        t.get("/me", &s).await.expect(200)["twoFactorAuthEnabled"],
        false
    );

    let info = t
        .send(Method::PATCH, "/me/generateTwoFactorAuth", Some(&s), None)
        .await
        .expect(200);
    let key = info["key"].as_str().unwrap();
    assert_eq!(key.len(), 52);
    let uri = info["keyUri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Tollgate:eve%40example.com?"),
        "{uri}"
    );
    // The secret is stored encrypted, never as the key itself.
    let stored = t.store().user(id).await.unwrap();
    let pending = stored.totp_pending.unwrap();
    assert!(!pending.contains(key) && !pending.to_lowercase().contains(&key.to_lowercase()));
    assert!(stored.totp_secret.is_none());

    let now = now_secs();
    let r = t
        .patch(
            "/me/enableTwoFactorAuth",
            &s,
            json!({ "password": PASSWORD, "twoFactorCode": "000000" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("twoFactorCode"), "{}", r.message());
    let r = t
        .patch(
            "/me/enableTwoFactorAuth",
            &s,
            json!({ "password": "wrong password", "twoFactorCode": code_at(key, now) }),
        )
        .await;
    assert_eq!(r.message(), "The current password is not right");
    let me = t
        .patch(
            "/me/enableTwoFactorAuth",
            &s,
            json!({ "password": PASSWORD, "twoFactorCode": code_at(key, now) }),
        )
        .await
        .expect(200);
    assert_eq!(me["twoFactorAuthEnabled"], true);
    let codes = me["twoFactorRecoveryCodes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10);
    // The other session was opened without the second factor: it ended. This one goes on.
    assert_eq!(t.get("/me", &other).await.status, 401);
    let me = t.get("/me", &s).await.expect(200);
    assert_eq!(me["twoFactorAuthEnabled"], true);
    assert!(
        me.get("twoFactorRecoveryCodes").is_none(),
        "shown once only"
    );
    // The key is not shown again.
    let r = t
        .send(Method::PATCH, "/me/generateTwoFactorAuth", Some(&s), None)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("already enabled"), "{}", r.message());

    // Logging in now needs a code.
    let r = login(&t, "eve@example.com", PASSWORD, None).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("twoFactorCode"), "{}", r.message());
    // The code used to enable it does not work again (same time step).
    let r = login(&t, "eve@example.com", PASSWORD, Some(&code_at(key, now))).await;
    assert_eq!(r.status, 401);
    assert!(
        r.message().starts_with("Invalid two-factor code"),
        "{}",
        r.message()
    );
    // The next step's code (within the drift allowance) works, once.
    let next = code_at(key, now + 30);
    login(&t, "eve@example.com", PASSWORD, Some(&next))
        .await
        .expect(200);
    assert_eq!(
        login(&t, "eve@example.com", PASSWORD, Some(&next))
            .await
            .status,
        401
    );
    // A wrong password with a right code says nothing about the code.
    let r = login(&t, "eve@example.com", "wrong password", Some(&next)).await;
    assert_eq!(r.message(), "Invalid email or password");
    // A recovery code works once, in any case and spacing.
    let recovery = codes[3].as_str().unwrap();
    login(
        &t,
        "eve@example.com",
        PASSWORD,
        Some(&recovery.to_uppercase()),
    )
    .await
    .expect(200);
    assert_eq!(
        login(&t, "eve@example.com", PASSWORD, Some(recovery))
            .await
            .status,
        401
    );
    assert_eq!(t.store().count_recovery_codes(id).await.unwrap(), 9);

    // Changing the password needs the code too.
    let r = t
        .patch(
            "/me/changePassword",
            &s,
            json!({ "password": PASSWORD, "newPassword": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("twoFactorCode"), "{}", r.message());

    // Disabling needs the password and a code (a recovery code here).
    let r = t
        .patch(
            "/me/disableTwoFactorAuth",
            &s,
            json!({ "password": PASSWORD, "twoFactorCode": "123456" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let me = t
        .patch(
            "/me/disableTwoFactorAuth",
            &s,
            json!({ "password": PASSWORD, "twoFactorCode": codes[0] }),
        )
        .await
        .expect(200);
    assert_eq!(me["twoFactorAuthEnabled"], false);
    assert_eq!(t.store().count_recovery_codes(id).await.unwrap(), 0);
    login(&t, "eve@example.com", PASSWORD, None)
        .await
        .expect(200);
}

async fn an_organization_can_require_two_factor_for_its_admins() {
    let t = TestApp::new().await;
    let (_, alice) = t.login("alice@example.com").await;
    let (bob_id, bob) = t.login("bob@example.com").await;
    let (_, viewer) = t.login("viewer@example.com").await;
    let org = t
        .post("/orgs", &alice, json!({ "name": "Acme" }))
        .await
        .expect(201);
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(org["mfaMode"], "notRequired");
    t.join_org(&org_id, &alice, "bob@example.com", "admin", &bob)
        .await;
    t.join_org(&org_id, &alice, "viewer@example.com", "view", &viewer)
        .await;
    let app = t
        .post(
            "/applications",
            &alice,
            json!({ "name": "Line", "orgId": org_id }),
        )
        .await
        .expect(201);
    let app_path = format!("/applications/{}", app["id"].as_str().unwrap());

    // An admin without two-factor cannot switch it on: it would lock them out.
    let r = t
        .patch(
            &format!("/orgs/{org_id}"),
            &alice,
            json!({ "mfaMode": "adminRequired" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("lock you out"), "{}", r.message());
    let r = t
        .post(
            "/orgs",
            &alice,
            json!({ "name": "B", "mfaMode": "required" }),
        )
        .await;
    assert_eq!(r.status, 400);

    enable_2fa(&t, &alice).await;
    let org = t
        .patch(
            &format!("/orgs/{org_id}"),
            &alice,
            json!({ "mfaMode": "adminRequired" }),
        )
        .await
        .expect(200);
    assert_eq!(org["mfaMode"], "adminRequired");

    // Bob is an admin without two-factor: refused in the organization and its applications,
    // with a message that says what to do; his own account actions stay open.
    let r = t.get(&format!("/orgs/{org_id}"), &bob).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.message().contains("requires two-factor authentication"),
        "{}",
        r.message()
    );
    assert_eq!(t.get(&app_path, &bob).await.status, 403);
    t.get("/me", &bob).await.expect(200);
    // The viewer is not an admin: unaffected.
    t.get(&app_path, &viewer).await.expect(200);
    t.get(&format!("/orgs/{org_id}"), &viewer).await.expect(200);

    enable_2fa(&t, &bob).await;
    t.get(&app_path, &bob).await.expect(200);
    t.get(&format!("/orgs/{org_id}"), &bob).await.expect(200);
    // A wrong code is refused before anything else is considered.
    let r = t
        .patch(
            "/me/disableTwoFactorAuth",
            &bob,
            json!({ "password": PASSWORD, "twoFactorCode": "000000" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().starts_with("Invalid two-factor code"),
        "{}",
        r.message()
    );
    assert!(t.store().user(bob_id).await.unwrap().two_factor_enabled());

    // "required": every member.
    t.patch(
        &format!("/orgs/{org_id}"),
        &alice,
        json!({ "mfaMode": "required" }),
    )
    .await
    .expect(200);
    assert_eq!(t.get(&app_path, &viewer).await.status, 403);
}

async fn an_admin_of_a_requiring_organization_cannot_disable_two_factor() {
    let t = TestApp::new().await;
    let (_, alice) = t.login("alice@example.com").await;
    let (_, codes) = enable_2fa(&t, &alice).await;
    let org = t
        .post("/orgs", &alice, json!({ "name": "Acme" }))
        .await
        .expect(201);
    let org_id = org["id"].as_str().unwrap();
    t.patch(
        &format!("/orgs/{org_id}"),
        &alice,
        json!({ "mfaMode": "adminRequired" }),
    )
    .await
    .expect(200);
    let r = t
        .patch(
            "/me/disableTwoFactorAuth",
            &alice,
            json!({ "password": PASSWORD, "twoFactorCode": codes[0] }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("\"Acme\" requires"), "{}", r.message());
    assert_eq!(
        t.get("/me", &alice).await.expect(200)["twoFactorAuthEnabled"],
        true
    );
}

/// A wrong two-factor code is a failed login for the login throttle, exactly like a wrong
/// password: after the account's burst of failures even the right password with an unused
/// recovery code is refused (429) before either is checked; other accounts are not affected.
async fn wrong_two_factor_codes_count_against_the_login_throttle() {
    let settings = Settings {
        login_account_rate: Rate {
            burst: 3,
            interval: Duration::from_secs(3600),
        },
        ..Settings::default()
    };
    let t = TestApp::with_settings(settings).await;
    let (_, s) = t.login("fay@example.com").await;
    let (key, recovery) = enable_2fa(&t, &s).await;
    // A code that is none of the accepted steps (now, one before, one after).
    let now = now_secs();
    let accepted: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|at| code_at(&key, *at))
        .collect();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !accepted.contains(c))
        .unwrap();
    for _ in 0..3 {
        let r = login(&t, "fay@example.com", PASSWORD, Some(&wrong)).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.message().starts_with("Invalid two-factor code"),
            "{}",
            r.message()
        );
    }
    let r = login(&t, "FAY@example.com", PASSWORD, Some(&recovery[0])).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.message()
            .contains("Too many failed logins for this account"),
        "{}",
        r.message()
    );
    assert!(!r.message().contains(&recovery[0]));
    // The refused attempt checked nothing: the recovery code is still unused.
    let user = t
        .state
        .store()
        .user_by_email("fay@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.state.store().count_recovery_codes(user.id).await.unwrap(),
        recovery.len() as i64
    );
    // Another account logs in as usual.
    let (_, other) = t.login("gus@example.com").await;
    assert_eq!(
        t.get("/me", &other).await.expect(200)["email"],
        "gus@example.com"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(me_patch_changes_the_name_fields_only),
        case!(change_password_ends_every_other_session_at_once),
        case!(a_login_checked_against_the_old_password_opens_no_session),
        case!(a_disabled_user_cannot_log_in_and_their_sessions_end),
        case!(two_factor_codes_and_recovery_codes_work_once_each),
        case!(an_organization_can_require_two_factor_for_its_admins),
        case!(an_admin_of_a_requiring_organization_cannot_disable_two_factor),
        case!(wrong_two_factor_codes_count_against_the_login_throttle),
    ]
}
