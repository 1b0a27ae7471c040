//! Every implemented application action × every kind of credential → the expected status.
//!
//! | credential                         | expected                                   |
//! |------------------------------------|--------------------------------------------|
//! | none, malformed, unknown, expired, inactive, deleted | 401                      |
//! | all-permissions token of another application | 404 (existence is not revealed)  |
//! | all.Application                    | the action's success status                |
//! | all.Application.read               | success for read actions, 403 for writes   |
//! | custom scope with the action       | success                                    |
//! | custom scope of every other action | 403 naming the action                      |
//!
//! Each cell runs on a fresh application, so destructive actions do not disturb the others.
//! `sample()` must name a valid request for every application action: it is an exhaustive
//! match, so a new registry entry does not compile until it has one.

use crate::common::{TestApp, unknown_token};
use axum::http::Method as HttpMethod;
use serde_json::{Value, json};
use tollgate_core::{Action, Family, Method, REGISTRY};
use tollgate_store::devices::DeviceFields;
use tollgate_store::tokens::TokenStatus;
use tollgate_store::{Actor, Id, StoreError};
use tollgate_testkit::{Case, case};

/// A fresh application to act on, owned by `owner` (with `session`).
struct Cell {
    owner: Id,
    session: String,
    app: Id,
}

/// A valid request for `action` inside `cell.app`: the path (ids filled in, creating what the
/// path names) and the body.
async fn sample(t: &TestApp, cell: &Cell, action: Action) -> Option<(String, Option<Value>)> {
    use Action::*;
    let app = cell.app;
    let base = format!("/applications/{app}");
    let req = match action {
        // Not application actions: not part of this matrix.
        AuthAuthenticateUser
        | TokensRevoke
        | AuthLogout
        | MeGet
        | MePatch
        | MeChangePassword
        | MeGenerateTwoFactorAuth
        | MeEnableTwoFactorAuth
        | MeDisableTwoFactorAuth
        | MeInvites
        | MeRespondToInvite
        | OrgsGet
        | OrgsPost
        | OrgGet
        | OrgPatch
        | OrgDelete
        | OrgInviteMember
        | OrgPendingInvites
        | OrgRevokeInvite
        | OrgModifyMember
        | OrgRemoveMember
        | AuditLogsGet
        | AuditLogGet
        | OrgTokenPolicyGet
        | OrgTokenPolicyPatch
        | ApplicationsGet
        | ApplicationsPost => return None,
        ApplicationAuditLogsGet => (format!("{base}/audit-logs"), None),
        ApplicationTokenPolicyGet => (format!("{base}/token-policy"), None),
        ApplicationTokenPolicyPatch => (
            format!("{base}/token-policy"),
            Some(json!({ "warningLeadDays": [14] })),
        ),
        ApplicationGet | ApplicationDelete => (base, None),
        ApplicationApiTokensGet => (format!("{base}/tokens"), None),
        ApplicationPatch => (base, Some(json!({ "name": "renamed" }))),
        // A child no stronger than any creator that holds this very action.
        ApplicationApiTokensPost => (
            format!("{base}/tokens"),
            Some(json!({ "name": "child", "scope": ["applicationApiTokens.post"] })),
        ),
        // A target no stronger than any token that holds this very action (a token may change
        // or delete only tokens it could have created; tests/token_authority.rs has the rest).
        ApplicationApiTokenGet
        | ApplicationApiTokenDelete
        | ApplicationApiTokenPatch
        | ApplicationApiTokenRoll
        | ApplicationApiTokenUsage
        | ApplicationApiTokenDescendants => {
            let (target, _) = t
                .raw_token(app, &[action.name()], TokenStatus::Active, None)
                .await;
            let body = match action {
                ApplicationApiTokenPatch => Some(json!({ "name": "renamed" })),
                ApplicationApiTokenRoll => Some(json!({ "overlapSeconds": 60 })),
                _ => None,
            };
            let path = format!("{base}/tokens/{target}");
            match action {
                ApplicationApiTokenRoll => (format!("{path}/roll"), body),
                ApplicationApiTokenUsage => (format!("{path}/usage"), body),
                ApplicationApiTokenDescendants => (format!("{path}/descendants"), body),
                _ => (path, body),
            }
        }
        DevicesGet => (format!("{base}/devices"), None),
        DevicesPost => (
            format!("{base}/devices"),
            Some(
                json!({ "name": "new", "attributes": [{ "name": "temperature", "dataType": "number" }] }),
            ),
        ),
        DeviceGet
        | DeviceDelete
        | DeviceGetState
        | DeviceGetCompositeState
        | DeviceGetCommand
        | DevicePatch
        | DeviceSendState
        | DeviceSendCommand => {
            let device = device(t, app).await;
            let path = format!("{base}/devices/{device}");
            match action {
                DeviceGetState | DeviceSendState => (
                    format!("{path}/state"),
                    (action == DeviceSendState)
                        .then(|| json!([{ "data": { "temperature": 21.5 } }])),
                ),
                DeviceGetCompositeState => (format!("{path}/compositeState"), None),
                DeviceGetCommand | DeviceSendCommand => (
                    format!("{path}/command"),
                    (action == DeviceSendCommand).then(|| json!({ "name": "reboot" })),
                ),
                DevicePatch => (path, Some(json!({ "name": "renamed" }))),
                _ => (path, None),
            }
        }
        DataTimeSeriesQuery => {
            device(t, app).await;
            (
                format!("{base}/data/time-series-query"),
                Some(
                    json!({ "duration": 3_600_000, "resolution": 300_000, "aggregation": "MEAN" }),
                ),
            )
        }
        DataLastValueQuery => {
            device(t, app).await;
            (
                format!("{base}/data/last-value-query"),
                Some(json!({ "attribute": "temperature" })),
            )
        }
        ApplicationTokenWebhooksGet => (format!("{base}/token-webhooks"), None),
        ApplicationTokenWebhooksPost => (
            format!("{base}/token-webhooks"),
            Some(json!({ "url": "http://127.0.0.1:9/hook" })),
        ),
        ApplicationTokenWebhookGet
        | ApplicationTokenWebhookPatch
        | ApplicationTokenWebhookDelete
        | ApplicationTokenWebhookDeliveries
        | ApplicationTokenWebhookRetryDelivery => {
            let events = vec!["token.created".to_owned()];
            let hook = t
                .store()
                .create_webhook(
                    &Actor::operator(),
                    app,
                    &tollgate_store::webhooks::NewWebhook {
                        id: Id::generate(),
                        url: "http://127.0.0.1:9/hook",
                        events: &events,
                        enabled: false,
                        secret_sealed: "v1:sealed",
                    },
                )
                .await
                .unwrap()
                .id;
            let path = format!("{base}/token-webhooks/{hook}");
            match action {
                ApplicationTokenWebhookPatch => (path, Some(json!({ "enabled": false }))),
                ApplicationTokenWebhookDeliveries => (format!("{path}/deliveries"), None),
                ApplicationTokenWebhookRetryDelivery => {
                    // Disabled endpoints queue nothing: enable it for one event.
                    t.store()
                        .update_webhook(
                            &Actor::operator(),
                            app,
                            hook,
                            &tollgate_store::webhooks::WebhookChange {
                                enabled: Some(true),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    t.raw_token(app, &["application.get"], TokenStatus::Active, None)
                        .await;
                    let queued = t.store().deliveries(app, hook, None, 0, 1).await.unwrap();
                    let event = queued.items[0].event_id;
                    (format!("{path}/deliveries/{event}/retry"), None)
                }
                _ => (path, None),
            }
        }
        FlowsGet => (format!("{base}/flows"), None),
        FlowsPost => (
            format!("{base}/flows"),
            Some(json!({ "name": "new", "nodes": [{ "id": "a", "type": "DebugNode" }] })),
        ),
        FlowGet | FlowPatch | FlowDelete => {
            let flow = t
                .store()
                .create_flow(
                    &Actor::user_session(cell.owner, tollgate_core::secret::digest(&cell.session)),
                    app,
                    "existing",
                    "cloud",
                    &serde_json::Map::new(),
                )
                .await
                .unwrap()
                .id;
            let body = (action == FlowPatch).then(|| json!({ "enabled": false }));
            (format!("{base}/flows/{flow}"), body)
        }
    };
    Some(req)
}

/// A device with a number attribute, created in the store.
async fn device(t: &TestApp, app: Id) -> Id {
    let attributes = vec![
        serde_json::from_value(json!({ "name": "temperature", "dataType": "number" })).unwrap(),
    ];
    t.store()
        .create_device(
            &Actor::operator(),
            app,
            &DeviceFields {
                name: "existing".into(),
                device_class: "standalone".into(),
                attributes,
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap()
        .id
}

#[derive(Clone, Copy, Debug)]
enum Credential {
    None,
    Malformed,
    Unknown,
    Expired,
    Inactive,
    Deleted,
    OtherApplication,
    All,
    Read,
    CustomWith,
    CustomWithout,
}

const CREDENTIALS: [Credential; 11] = [
    Credential::None,
    Credential::Malformed,
    Credential::Unknown,
    Credential::Expired,
    Credential::Inactive,
    Credential::Deleted,
    Credential::OtherApplication,
    Credential::All,
    Credential::Read,
    Credential::CustomWith,
    Credential::CustomWithout,
];

async fn credential(t: &TestApp, cell: &Cell, action: Action, kind: Credential) -> Option<String> {
    let app = cell.app;
    let active = TokenStatus::Active;
    let secret = match kind {
        Credential::None => return None,
        Credential::Malformed => "tgat_0123456789".to_owned(),
        Credential::Unknown => unknown_token(),
        Credential::Expired => {
            let (_, s) = t
                .raw_token(
                    app,
                    &["all.Application"],
                    active,
                    Some(tollgate_store::now_ms() - 1),
                )
                .await;
            s
        }
        Credential::Inactive => {
            t.raw_token(app, &["all.Application"], TokenStatus::Inactive, None)
                .await
                .1
        }
        Credential::Deleted => {
            let (id, s) = t.raw_token(app, &["all.Application"], active, None).await;
            t.store()
                .delete_token(&Actor::operator(), app, id, |_| Ok::<_, StoreError>(()))
                .await
                .unwrap();
            s
        }
        Credential::OtherApplication => {
            let other = t.app_of(cell.owner, "other").await;
            t.raw_token(other, &["all.Application"], active, None)
                .await
                .1
        }
        Credential::All => t.raw_token(app, &["all.Application"], active, None).await.1,
        Credential::Read => {
            t.raw_token(app, &["all.Application.read"], active, None)
                .await
                .1
        }
        Credential::CustomWith => t.raw_token(app, &[action.name()], active, None).await.1,
        Credential::CustomWithout => {
            let others: Vec<&str> = Action::application_actions()
                .filter(|d| d.action != action)
                .map(|d| d.name)
                .collect();
            t.raw_token(app, &others, active, None).await.1
        }
    };
    Some(secret)
}

fn expected(action: Action, kind: Credential) -> u16 {
    let def = action.def();
    match kind {
        Credential::None
        | Credential::Malformed
        | Credential::Unknown
        | Credential::Expired
        | Credential::Inactive
        | Credential::Deleted => 401,
        Credential::OtherApplication => 404,
        Credential::All | Credential::CustomWith => def.success,
        Credential::Read if def.read_only => def.success,
        Credential::Read | Credential::CustomWithout => 403,
    }
}

fn http(m: Method) -> HttpMethod {
    match m {
        Method::Get => HttpMethod::GET,
        Method::Post => HttpMethod::POST,
        Method::Patch => HttpMethod::PATCH,
        Method::Delete => HttpMethod::DELETE,
    }
}

async fn every_application_action_against_every_credential() {
    let t = TestApp::new().await;
    let owner = t.user("owner@example.com").await;
    let session = t.session_for(owner).await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for def in REGISTRY.iter().filter(|d| d.family == Family::Application) {
        for kind in CREDENTIALS {
            let cell = Cell {
                owner,
                session: session.clone(),
                app: t.app_of(owner, "matrix").await,
            };
            let (path, body) = sample(&t, &cell, def.action)
                .await
                .expect("every application action has a sample");
            let secret = credential(&t, &cell, def.action, kind).await;
            let r = t
                .send(http(def.method), &path, secret.as_deref(), body)
                .await;
            let want = expected(def.action, kind);
            checked += 1;
            if r.status.as_u16() != want {
                failures.push(format!(
                    "{} with {kind:?}: got {} want {want}: {}",
                    def.name, r.status, r.body
                ));
                continue;
            }
            match want {
                401 => {
                    if let Some(s) = &secret {
                        assert!(
                            !r.body.to_string().contains(s.as_str()),
                            "a 401 echoed the token"
                        );
                    }
                }
                403 => {
                    assert_eq!(
                        r.headers["x-tollgate-required-action"], def.name,
                        "{}",
                        def.name
                    );
                    assert!(
                        r.message().contains(def.name),
                        "{}: {}",
                        def.name,
                        r.message()
                    );
                }
                404 => assert_eq!(r.message(), "Application was not found"),
                // A success answers in the reference's response shape.
                _ => {
                    if let Err(e) = tollgate_server::schemas::validate(def.response, &r.body) {
                        failures.push(format!(
                            "{} response is not a valid {}: {}",
                            def.name, def.response, e.message
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let app_actions = Action::application_actions().count();
    assert_eq!(checked, app_actions * CREDENTIALS.len());
}

pub fn cases() -> Vec<Case> {
    vec![case!(
        every_application_action_against_every_credential,
        multi_thread = 2
    )]
}
