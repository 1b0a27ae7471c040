//! Inputs: control characters, bidirectional overrides and blank names are 400s on both
//! backends in every stored string; the console applies the REST API's rules and limits;
//! `next`/`return` parameters are checked before anything happens; oversize bodies are 413;
//! refused requests with unread bodies close the connection; two Authorization headers are a
//! 400; and no error message ever carries a string with a secret's shape.

use crate::common::{Resp, TestApp, unknown_token};
use axum::http::{Method, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

/// An owner, their application and a device with a string attribute.
async fn fixture(t: &TestApp) -> (String, String, String, String) {
    let (_, admin) = t.login("owner@example.com").await;
    let app = t
        .post("/applications", &admin, json!({ "name": "Plant" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = t
        .post("/orgs", &admin, json!({ "name": "Org" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = t
        .post(
            &format!("/applications/{app}/devices"),
            &admin,
            json!({ "name": "d", "attributes": [{ "name": "label", "dataType": "string" }] }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (admin, app, org, device)
}

#[track_caller]
fn refused(r: &Resp, field: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["type"], "Validation");
    assert!(r.message().contains(field), "{field}: {}", r.message());
}

async fn control_characters_and_blank_names_are_400s_in_every_stored_string() {
    let t = TestApp::new().await;
    let (admin, app, org, device) = fixture(&t).await;
    let base = format!("/applications/{app}");
    let nul = "bad\u{0}name";
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "/applications".into(),
            json!({ "name": nul }),
            "/name",
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({ "name": "   " }),
            "/name must not be blank",
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({ "name": "gnp\u{202E}exe" }),
            "bidirectional",
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({ "name": "ok", "description": "a\u{0}b" }),
            "/description",
        ),
        (
            Method::PATCH,
            base.clone(),
            json!({ "name": "x\u{7}" }),
            "/name",
        ),
        (
            Method::POST,
            format!("{base}/tokens"),
            json!({ "name": nul }),
            "/name",
        ),
        (
            Method::POST,
            format!("{base}/tokens"),
            json!({ "name": "t", "description": "\u{1b}[31m" }),
            "/description",
        ),
        (
            Method::POST,
            "/orgs".into(),
            json!({ "name": nul }),
            "/name",
        ),
        (
            Method::PATCH,
            format!("/orgs/{org}"),
            json!({ "description": "\u{0}" }),
            "/description",
        ),
        (
            Method::POST,
            format!("{base}/flows"),
            json!({ "name": nul, "triggers": [] }),
            "/name",
        ),
        (
            Method::POST,
            format!("{base}/devices"),
            json!({ "name": "d2", "tags": [{ "key": "floor", "value": "3\u{0}" }] }),
            "/tags/0/value",
        ),
        (
            Method::POST,
            format!("{base}/devices"),
            json!({ "name": "d2", "tags": [{ "key": "\u{2067}", "value": "3" }] }),
            "/tags/0/key",
        ),
        (
            Method::POST,
            format!("{base}/devices"),
            json!({ "name": "d2", "attributes": [{ "name": " ", "dataType": "string" }] }),
            "/attributes/0/name",
        ),
        (
            Method::PATCH,
            format!("{base}/devices/{device}"),
            json!({ "name": "\t" }),
            "/name",
        ),
        (
            Method::POST,
            format!("{base}/devices/{device}/state"),
            json!({ "data": { "label": "x\u{0}y" } }),
            "/data/label",
        ),
        (
            Method::POST,
            format!("{base}/devices/{device}/state"),
            json!([{ "data": { "label": "ok" } }, { "data": { "label\u{0}": "k" } }]),
            "A field name in /1/data",
        ),
        (
            Method::POST,
            format!("{base}/devices/{device}/command"),
            json!({ "name": "reboot\u{0}" }),
            "/name",
        ),
        (
            Method::POST,
            format!("{base}/devices/{device}/command"),
            json!({ "name": "set", "payload": { "v": "\u{0}" } }),
            "/payload/v",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = t
            .send(method.clone(), &path, Some(&admin), Some(body.clone()))
            .await;
        refused(&r, field);
        assert!(
            r.message().contains("U+") || r.message().contains("blank"),
            "{method} {path}: {}",
            r.message()
        );
    }
    // Nothing of the above was stored.
    let apps = t.get("/applications", &admin).await.expect(200);
    assert_eq!(apps["totalCount"], 1);
    let states = t
        .get(&format!("{base}/devices/{device}/state?limit=10"), &admin)
        .await
        .expect(200);
    assert_eq!(states.as_array().unwrap().len(), 0, "{states}");
    // Tabs and line breaks are fine in multi-line text and in state values.
    t.post(
        "/applications",
        &admin,
        json!({ "name": "Line 2", "description": "first line\n\tsecond line\r\n" }),
    )
    .await
    .expect(201);
    t.post(
        &format!("{base}/devices/{device}/state"),
        &admin,
        json!({ "data": { "label": "two\nlines" } }),
    )
    .await
    .expect(200);
    // A control character in a query string is a 400 too (a NUL cannot reach PostgreSQL).
    let r = t
        .get(
            &format!("{base}/devices?filter=a%00b&filterField=name"),
            &admin,
        )
        .await;
    refused(&r, "query parameter filter");
    let r = t
        .get(
            &format!("{base}/devices?tagFilter%5B0%5D%5Bkey%5D=f%01"),
            &admin,
        )
        .await;
    refused(&r, "control character (U+0001)");
}

/// The console creates applications and tokens through the same rules and limits.
async fn the_console_applies_the_rest_apis_rules_and_limits() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Console app").await;
    let principal = || async { t.state.credentials().verify(&admin).await.unwrap() };
    let access = match tollgate_server::auth::decide(
        &t.state,
        principal().await,
        tollgate_core::Action::ApplicationApiTokensPost,
        tollgate_server::auth::Target::Application(app),
    )
    .await
    {
        Ok(tollgate_server::auth::Access::App(a)) => a,
        _ => panic!("owner may create tokens"),
    };
    let request =
        |name: &str, description: String| tollgate_server::service::tokens::TokenRequest {
            name: name.to_owned(),
            description,
            scope: None,
            expiration_date: None,
            status: TokenStatus::Active,
            restrictions: Default::default(),
            form_key: None,
        };
    for (name, description, expected) in [
        (
            "Vendor",
            "d".repeat(900_000),
            "description is longer than 32767 characters",
        ),
        (
            "Ven\u{0}dor",
            String::new(),
            "name contains a control character",
        ),
        ("  ", String::new(), "name must not be blank"),
        (
            "Vendor",
            "bell\u{7}".to_owned(),
            "description contains a control character",
        ),
    ] {
        let e = match tollgate_server::service::tokens::create(
            &t.state,
            &access,
            request(name, description),
        )
        .await
        {
            Err(tollgate_server::service::tokens::TokenError::Other(e)) => e,
            other => panic!("{name:?}: {:?}", other.map(|(r, _)| r.name)),
        };
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains(expected), "{}", e.message);
    }
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 0);
    // Applications: the function the console's form calls.
    let user_access = match tollgate_server::auth::decide(
        &t.state,
        principal().await,
        tollgate_core::Action::ApplicationsPost,
        tollgate_server::auth::Target::None,
    )
    .await
    {
        Ok(tollgate_server::auth::Access::User(u)) => u,
        _ => panic!("a user may create applications"),
    };
    let long = "d".repeat(900_000);
    for (name, description, expected) in [
        (
            "App",
            long.as_str(),
            "description is longer than 1024 characters",
        ),
        ("A\u{0}pp", "", "name contains a control character"),
        ("A\u{202E}pp", "", "bidirectional"),
    ] {
        let e = tollgate_server::api::applications::create_application(
            &t.state,
            &user_access,
            None,
            name,
            description,
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains(expected), "{}", e.message);
    }
    let _ = user;
}

/// `next` and `return` are checked before the login or the change happens; CR/LF cannot
/// reach a header.
async fn console_redirect_parameters_are_checked_first() {
    for bad in [
        "/console/applications\r\nSet-Cookie: x=1",
        "/console/\nx",
        "/console/a\u{0}",
    ] {
        assert_eq!(
            tollgate_server::console::safe_path(bad, "/console/"),
            None,
            "{bad:?}"
        );
    }
    assert_eq!(
        tollgate_server::console::safe_path("/console/applications?q=a%20b", "/console/"),
        Some("/console/applications?q=a%20b".to_owned())
    );
    for bad in [
        "//evil.example/console/",
        "/console/\\evil",
        "https://evil.example/console/",
        "/other",
    ] {
        assert_eq!(
            tollgate_server::console::safe_path(bad, "/console/"),
            None,
            "{bad:?}"
        );
    }
}

async fn an_oversize_body_is_a_413_that_states_the_limit() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("owner@example.com").await;
    let body = format!(
        "{{\"name\": \"x\", \"description\": \"{}\"}}",
        "a".repeat(1 << 20)
    );
    let r = t
        .send_raw(
            Method::POST,
            "/applications",
            Some(&admin),
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["type"], "PayloadTooLarge");
    assert!(
        r.message().contains("1 MiB (1048576 bytes)"),
        "{}",
        r.message()
    );
}

async fn refused_requests_with_unread_bodies_close_the_connection() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("owner@example.com").await;
    let app = t.app_of(user, "A").await;
    let body = json!({ "name": "t" }).to_string();
    // No credentials: 401 before the body is read.
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/tokens"),
            None,
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["connection"], "close");
    // Another application: 404, body unread.
    let (_, read) = t
        .raw_token(app, &["all.Application.read"], TokenStatus::Active, None)
        .await;
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/tokens"),
            Some(&read),
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["connection"], "close");
    // Read and answered: the connection stays open, even for a 400 about the body.
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/tokens"),
            Some(&admin),
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.headers.get("connection").is_none());
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/tokens"),
            Some(&admin),
            Some("{}"),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.headers.get("connection").is_none());
    // No body at all: nothing to close for.
    let r = t
        .send_raw(
            Method::GET,
            &format!("/applications/{app}"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("connection").is_none());
}

async fn two_authorization_headers_are_a_400() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("owner@example.com").await;
    let app = t.app_of(user, "A").await;
    let r = t
        .send_raw(
            Method::GET,
            &format!("/applications/{app}"),
            Some(&admin),
            None,
            &[("authorization", &format!("Bearer {}", unknown_token()))],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.message().contains("2 Authorization headers"),
        "{}",
        r.message()
    );
}

/// Ways a secret ends up inside input that is refused.
fn embedding() -> impl Strategy<Value = (String, String)> {
    let wrappers = prop::sample::select(vec![
        ("", ""),
        (" ", ""),
        ("Bearer ", ""),
        ("\"", "\""),
        ("'", "'"),
        ("token=", "&x=1"),
        ("[", "]"),
        ("x", "y"),
        ("é ", " ✓"),
        ("\t", "\n"),
    ]);
    let cases = prop::sample::select(vec!["as is", "upper", "lower", "no prefix", "doubled"]);
    let kinds = prop::sample::select(vec!["tgat", "tgus"]);
    (wrappers, cases, kinds, "[a-z .]{0,6}", "[a-z .]{0,6}").prop_map(
        |((before, after), case, kind, pre, post)| {
            let kind = if kind == "tgat" {
                tollgate_core::secret::SecretKind::ApplicationToken
            } else {
                tollgate_core::secret::SecretKind::UserSession
            };
            let secret = tollgate_core::secret::Secret::generate(kind)
                .expose()
                .to_owned();
            let shown = match case {
                "upper" => secret.to_uppercase(),
                "lower" => secret.to_lowercase(),
                "no prefix" => secret[5..].to_owned(),
                "doubled" => format!("{secret}{secret}"),
                _ => secret.clone(),
            };
            (format!("{pre}{before}{shown}{after}{post}"), secret)
        },
    )
}

/// Does `text` hold anything of `secret` (its random part, in any case, or an 16-character
/// piece of it)?
fn leaks(text: &str, secret: &str) -> bool {
    let lower = text.to_lowercase();
    let random = secret[5..].to_lowercase();
    (0..random.len() - 16).any(|i| lower.contains(&random[i..i + 16]))
}

/// Wherever a secret sits in refused input, the error message never carries it (a property
/// test: 48 random combinations of secrets, wrappers, letter case and places in a request).
fn no_error_message_carries_a_secret() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strategy = prop::collection::vec(embedding(), 1..4);
    let result = runner.run(&strategy, |pieces| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = app().await;
            let (admin, app) = (&t.1, &t.2);
            let t = &t.0;
            let strings: Vec<String> = pieces.iter().map(|(s, _)| s.clone()).collect();
            let mut replies = Vec::new();
            // As scope strings.
            replies.push(
                t.post(
                    &format!("/applications/{app}/tokens"),
                    admin,
                    json!({ "name": "n", "scope": strings }),
                )
                .await,
            );
            // As an unknown field's name.
            let mut body = serde_json::Map::new();
            body.insert("name".into(), json!("n"));
            body.insert(strings[0].clone(), json!(1));
            replies.push(t.post("/applications", admin, Value::Object(body)).await);
            // As a list parameter.
            let q: String = strings[0].bytes().map(|b| format!("%{b:02X}")).collect();
            replies.push(
                t.get(&format!("/applications/{app}/tokens?sortField={q}"), admin)
                    .await,
            );
            replies.push(
                t.get(
                    &format!("/applications/{app}/tokens?filterField={q}&filter=x"),
                    admin,
                )
                .await,
            );
            // As the credential itself, and as a path id.
            replies.push(
                t.send_raw(
                    Method::GET,
                    &format!("/applications/{app}"),
                    None,
                    None,
                    &[("authorization", &strings[0].replace(['\n', '\t'], " "))],
                )
                .await,
            );
            replies.push(t.get(&format!("/applications/{q}"), admin).await);
            for r in &replies {
                prop_assert!(r.status.is_client_error(), "{}", r.body);
                let text = r.body.to_string();
                for (_, secret) in &pieces {
                    prop_assert!(!leaks(&text, secret), "{text}");
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A fresh application for one property-test case (each case has its own runtime).
async fn app() -> (TestApp, String, String) {
    let t = TestApp::new().await;
    let (user, admin) = t.login("owner@example.com").await;
    let app = t.app_of(user, "A").await.to_string();
    (t, admin, app)
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(control_characters_and_blank_names_are_400s_in_every_stored_string),
        case!(the_console_applies_the_rest_apis_rules_and_limits),
        case!(console_redirect_parameters_are_checked_first).once(),
        case!(an_oversize_body_is_a_413_that_states_the_limit),
        case!(refused_requests_with_unread_bodies_close_the_connection),
        case!(two_authorization_headers_are_a_400),
        case!(sync no_error_message_carries_a_secret).once(),
    ]
}
