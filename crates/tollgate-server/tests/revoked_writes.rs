//! No write authorized by a credential commits after its revocation (issue 11, item 4, the
//! write half): a request authorized from the caches whose database work comes later is
//! refused by the write's own transaction, answered 401, and writes nothing. Each test
//! authorizes exactly as the guard does, revokes, and then performs the handler's write with
//! the capability it got. Both passes (SQLite and PostgreSQL).

use crate::common::TestApp;
use serde_json::{Value, json};
use tollgate_core::Action;
use tollgate_server::api::me;
use tollgate_server::auth::{Access, AppAccess, Target, decide};
use tollgate_server::error::ApiError;
use tollgate_server::service::tokens as service;
use tollgate_store::applications::ApplicationChange;
use tollgate_store::devices::{Device, DevicePatch};
use tollgate_store::states::Report;
use tollgate_store::tokens::TokenChange;
use tollgate_store::{Id, StoreError};
use tollgate_testkit::{Case, case};

/// What the guard hands a handler for `action` in `app`, for the bearer `secret`.
async fn authorize(t: &TestApp, secret: &str, action: Action, app: Id) -> AppAccess {
    let principal = t.state.credentials().verify(secret).await.unwrap();
    match decide(&t.state, principal, action, Target::Application(app))
        .await
        .unwrap()
    {
        Access::App(a) => a,
        _ => unreachable!("an application action gives an AppAccess"),
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_refused(e: ApiError, message: &str) {
    assert_eq!(e.status.as_u16(), 401, "{}", e.message);
    assert_eq!(e.kind, "Unauthorized");
    assert_eq!(e.message, message);
}

async fn writes_authorized_before_a_token_was_switched_off_are_refused() {
    let t = TestApp::new().await;
    let (owner, admin) = t.login("admin@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let token = t.api_token(&admin, app, json!({ "name": "gateway" })).await;
    let secret = token["token"].as_str().unwrap().to_owned();
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &admin,
            json!({ "name": "d", "attributes": [{ "name": "temp", "dataType": "number" }] }),
        )
        .await
        .expect(201);
    let device: Id = id(&device).parse().unwrap();
    let other = t
        .api_token(
            &admin,
            app,
            json!({ "name": "other", "scope": ["device.get"] }),
        )
        .await;

    // Authorized while the token is on (answered from the cache on later requests)...
    let patch = authorize(&t, &secret, Action::DevicePatch, app).await;
    let report = authorize(&t, &secret, Action::DeviceSendState, app).await;
    let rename = authorize(&t, &secret, Action::ApplicationApiTokenPatch, app).await;
    let app_patch = authorize(&t, &secret, Action::ApplicationPatch, app).await;
    // ...then switched off, and the switch answered.
    t.patch(
        &format!("/applications/{app}/tokens/{}", id(&token)),
        &admin,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    assert_eq!(
        t.get(&format!("/applications/{app}"), &secret).await.status,
        401
    );

    // The handlers' writes, with the capabilities they were given.
    const GONE: &str = "This API token was deactivated or deleted: nothing was changed";
    let e = t
        .store()
        .update_device(
            &patch.actor(),
            app,
            device,
            &DevicePatch {
                name: Some("renamed".into()),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap_err();
    assert_refused(ApiError::from_store(e, "Device"), GONE);
    let e = t
        .store()
        .insert_reports(&report.actor(), app, device, |_: &Device| {
            Ok::<_, StoreError>(vec![Report {
                time: tollgate_store::now_ms(),
                meta: None,
                values: vec![("temp".into(), tollgate_core::attribute::Stored::Num(1.0))],
            }])
        })
        .await
        .unwrap_err();
    assert_refused(ApiError::from_store(e, "Device"), GONE);
    let e = service::change(
        &t.state,
        &rename,
        id(&other).parse().unwrap(),
        &TokenChange {
            name: Some("renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_refused(e.into_api(), GONE);
    let e = t
        .store()
        .update_application(
            &app_patch.actor(),
            app,
            &ApplicationChange {
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_refused(ApiError::from_store(e, "Application"), GONE);

    // Nothing was written.
    let d = t
        .get(&format!("/applications/{app}/devices/{device}"), &admin)
        .await
        .expect(200);
    assert_eq!(d["name"], "d");
    let states = t
        .get(
            &format!("/applications/{app}/devices/{device}/state"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(states, json!([]));
    let o = t
        .get(
            &format!("/applications/{app}/tokens/{}", id(&other)),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(o["name"], "other");
    let a = t
        .get(&format!("/applications/{app}"), &admin)
        .await
        .expect(200);
    assert_eq!(a["name"], "Plant");
}

async fn writes_authorized_before_a_token_was_deleted_are_refused() {
    let t = TestApp::new().await;
    let (owner, admin) = t.login("admin@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let token = t.api_token(&admin, app, json!({ "name": "ci" })).await;
    let secret = token["token"].as_str().unwrap().to_owned();
    let create = authorize(&t, &secret, Action::ApplicationApiTokensPost, app).await;
    t.delete(
        &format!("/applications/{app}/tokens/{}", id(&token)),
        &admin,
    )
    .await
    .expect(200);
    let e = service::create(
        &t.state,
        &create,
        service::TokenRequest {
            name: "minted after the deletion".into(),
            description: String::new(),
            scope: None,
            expiration_date: None,
            status: tollgate_store::tokens::TokenStatus::Active,
            restrictions: Default::default(),
            form_key: None,
        },
    )
    .await
    .unwrap_err();
    assert_refused(
        e.into_api(),
        "This API token was deactivated or deleted: nothing was changed",
    );
    let list = t
        .get(&format!("/applications/{app}/tokens"), &admin)
        .await
        .expect(200);
    assert_eq!(list["totalCount"], 0, "{list}");
}

async fn writes_authorized_before_a_session_ended_are_refused() {
    let t = TestApp::new().await;
    let (owner, session) = t.login("admin@example.com").await;
    let app = t.app_of(owner, "Plant").await;
    let access = authorize(&t, &session, Action::ApplicationPatch, app).await;
    t.store()
        .delete_session(&tollgate_core::secret::digest(&session))
        .await
        .unwrap();
    let e = t
        .store()
        .update_application(
            &access.actor(),
            app,
            &ApplicationChange {
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_refused(
        ApiError::from_store(e, "Application"),
        "This session has ended: nothing was changed; log in again",
    );
    assert_eq!(
        t.store().application(app).await.unwrap().name,
        "Plant",
        "nothing was written"
    );
}

/// The account writes (`me.patch`, `me.generateTwoFactorAuth`, a password change) take the
/// session they were authorized with and are refused once it has ended; a session of one
/// user never writes another user's account.
async fn account_writes_authorized_before_a_session_ended_are_refused() {
    let t = TestApp::new().await;
    let (user, session) = t.login("ann@example.com").await;
    let principal = t.state.credentials().verify(&session).await.unwrap();
    let access = match decide(&t.state, principal, Action::MePatch, Target::None)
        .await
        .unwrap()
    {
        Access::User(u) => u,
        _ => unreachable!("me.patch gives a UserAccess"),
    };
    t.store()
        .delete_session(&tollgate_core::secret::digest(&session))
        .await
        .unwrap();
    const ENDED: &str = "This session has ended: nothing was changed; log in again";
    let e = me::update_profile(&t.state, &access, Some("Renamed".into()), None)
        .await
        .unwrap_err();
    assert_refused(e, ENDED);
    let e = me::generate_key(&t.state, &access).await.unwrap_err();
    assert_refused(e, ENDED);
    let e = t
        .store()
        .set_password(&access.actor(), user, "$argon2id$stand-in", None)
        .await
        .unwrap_err();
    assert_refused(ApiError::from_store(e, "User"), ENDED);
    let after = t.store().user(user).await.unwrap();
    assert_eq!(after.first_name, "Test", "nothing was written");
    assert!(after.totp_pending.is_none(), "no key was kept");
    assert_ne!(after.password_hash, "$argon2id$stand-in");

    // Another user's open session does not reach this account.
    let (_, bob) = t.login("bob@example.com").await;
    let principal = t.state.credentials().verify(&bob).await.unwrap();
    let Access::User(bob) = decide(&t.state, principal, Action::MePatch, Target::None)
        .await
        .unwrap()
    else {
        unreachable!("me.patch gives a UserAccess")
    };
    let e = t
        .store()
        .update_profile(
            &bob.actor(),
            user,
            &tollgate_store::users::ProfileChange {
                first_name: Some("Bob was here".into()),
                last_name: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_eq!(t.store().user(user).await.unwrap().first_name, "Test");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(account_writes_authorized_before_a_session_ended_are_refused),
        case!(writes_authorized_before_a_token_was_switched_off_are_refused),
        case!(writes_authorized_before_a_token_was_deleted_are_refused),
        case!(writes_authorized_before_a_session_ended_are_refused),
    ]
}
