//! The wire format of each resource and of each kind of refusal, as whole-body snapshots
//! (`insta`). Ids, dates and secrets differ from run to run and are redacted to their shape;
//! everything else — field names, which fields are present, status strings, messages — is
//! compared whole, so a change to what clients see shows up as a snapshot diff to review
//! (`cargo insta review`, or `INSTA_UPDATE=always` to accept).

use insta::assert_json_snapshot;
use serde_json::{Value, json};
use tollgate_testkit::{Case, case};

use crate::common::TestApp;

/// Replace values that differ between runs by their shape, recursively.
fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let r = match (k.as_str(), v) {
                        ("token", Value::String(s)) if s.starts_with("tgat_") => {
                            json!("[tgat_ secret]")
                        }
                        ("token", Value::String(s)) if s.starts_with("tgus_") => {
                            json!("[tgus_ secret]")
                        }
                        (_, Value::String(s)) if is_id(s) => json!("[id]"),
                        (_, Value::String(s)) if is_date(s) => json!("[date]"),
                        // "Expires in 26660 days": a count that changes every day.
                        ("expiresIn", Value::String(s)) if s.starts_with("Expires in ") => {
                            json!("Expires in [n] days")
                        }
                        _ => redacted(v),
                    };
                    (k.clone(), r)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        Value::String(s) if is_id(s) => json!("[id]"),
        other => other.clone(),
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_date(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Messages may name ids (redacted like fields are).
fn redact_ids_in_text(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.split(' ')
                .map(|w| {
                    let core = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                    if is_id(core) {
                        w.replace(core, "[id]")
                    } else {
                        w.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, redact_ids_in_text(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_ids_in_text).collect()),
        other => other,
    }
}

fn shape(v: &Value) -> Value {
    redact_ids_in_text(redacted(v))
}

async fn token_responses_have_the_reference_shape() {
    let t = TestApp::new().await;
    let (_, session) = t.login("owner@example.com").await;
    let app = t
        .post("/applications", &session, json!({ "name": "Plant floor" }))
        .await
        .expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let created = t
        .post(
            &format!("/applications/{app}/tokens"),
            &session,
            json!({
                "name": "Dashboard vendor",
                "description": "Read-only access for the dashboard",
                "scope": ["all.Application.read"],
                "expirationDate": "2099-11-29T00:00:00.000Z",
            }),
        )
        .await
        .expect(201);
    assert_json_snapshot!("token_created", shape(&created));
    let id = created["id"].as_str().unwrap();
    let got = t
        .get(&format!("/applications/{app}/tokens/{id}"), &session)
        .await
        .expect(200);
    assert!(got.get("token").is_none(), "the secret is shown once");
    assert_json_snapshot!("token_get", shape(&got));
    let secret = created["token"].as_str().unwrap().to_owned();
    let child = t
        .post(
            &format!("/applications/{app}/tokens"),
            &secret,
            json!({ "name": "Child", "scope": ["device.get"] }),
        )
        .await;
    // Read-only cannot create tokens at all.
    assert_json_snapshot!("token_created_by_read_only_token", shape(&child.body));
    let list = t
        .get(
            &format!("/applications/{app}/tokens?sortField=name&perPage=10"),
            &session,
        )
        .await
        .expect(200);
    assert_json_snapshot!("token_list", shape(&list));
}

async fn refusals_are_typed_json_with_messages() {
    let t = TestApp::new().await;
    let (user, session) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let (_, read) = t
        .raw_token(
            app,
            &["all.Application.read"],
            tollgate_store::tokens::TokenStatus::Active,
            None,
        )
        .await;
    let (_, inactive) = t
        .raw_token(
            app,
            &["all.Application"],
            tollgate_store::tokens::TokenStatus::Inactive,
            None,
        )
        .await;
    let other = tollgate_store::Id::generate();
    let mut seen = serde_json::Map::new();
    for (name, resp) in [
        (
            "no_credentials",
            t.send(
                axum::http::Method::GET,
                &format!("/applications/{app}"),
                None,
                None,
            )
            .await,
        ),
        (
            "malformed_token",
            t.get(&format!("/applications/{app}"), "tgat_short").await,
        ),
        (
            "unknown_token",
            t.get(
                &format!("/applications/{app}"),
                &crate::common::unknown_token(),
            )
            .await,
        ),
        (
            "inactive_token",
            t.get(&format!("/applications/{app}"), &inactive).await,
        ),
        (
            "read_only_token_writes",
            t.patch(
                &format!("/applications/{app}"),
                &read,
                json!({ "name": "x" }),
            )
            .await,
        ),
        (
            "other_application",
            t.get(&format!("/applications/{other}"), &read).await,
        ),
        ("bad_id", t.get("/applications/nothex", &session).await),
        (
            "unknown_scope",
            t.post(
                &format!("/applications/{app}/tokens"),
                &session,
                json!({ "name": "x", "scope": ["device.fly"] }),
            )
            .await,
        ),
        (
            "fixed_field",
            t.patch(
                &format!("/applications/{app}/tokens/{other}"),
                &session,
                json!({ "scope": [] }),
            )
            .await,
        ),
    ] {
        seen.insert(
            name.to_owned(),
            json!({ "status": resp.status.as_u16(), "body": shape(&resp.body) }),
        );
    }
    assert_json_snapshot!("refusals", Value::Object(seen));
}

async fn application_and_device_bodies_have_the_reference_shape() {
    let t = TestApp::new().await;
    let (_, session) = t.login("owner@example.com").await;
    let app = t
        .post(
            "/applications",
            &session,
            json!({ "name": "Plant floor", "description": "Line 3" }),
        )
        .await
        .expect(201);
    tollgate_server::schemas::validate("application", &app).unwrap();
    assert_json_snapshot!("application", shape(&app));
    let app = app["id"].as_str().unwrap();
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &session,
            json!({
                "name": "pump",
                "deviceClass": "standalone",
                "tags": [{ "key": "site", "value": "north" }],
                "attributes": [{ "name": "temp", "dataType": "number" }],
            }),
        )
        .await
        .expect(201);
    assert_json_snapshot!("device", shape(&device));
    let me = t.get("/me", &session).await.expect(200);
    assert_json_snapshot!("me", shape(&me));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(token_responses_have_the_reference_shape),
        case!(refusals_are_typed_json_with_messages),
        case!(application_and_device_bodies_have_the_reference_shape),
    ]
}
