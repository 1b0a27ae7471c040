//! Every reference action this server does not implement answers 501 NotImplemented, naming
//! it, at its real method and path, without needing a credential; implemented routes beside
//! them are unchanged.

use crate::common::TestApp;
use axum::http::Method;
use tollgate_server::catalog::unimplemented;
use tollgate_testkit::{Case, case};

fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "5f0c1d2e3a4b5c6d7e8f9a0b"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_unimplemented_catalog_action_answers_501_naming_it() {
    let t = TestApp::new().await;
    let all = unimplemented();
    assert!(all.len() > 300, "{}", all.len());
    for a in all {
        let method = Method::from_bytes(a.method.as_str().as_bytes()).unwrap();
        let body = (a.method != tollgate_core::Method::Get).then(|| serde_json::json!({}));
        let r = t.send(method, &fill(&a.path), None, body).await;
        assert_eq!(
            r.status,
            501,
            "{} {} {}: {}",
            a.name,
            a.method.as_str(),
            a.path,
            r.body
        );
        assert_eq!(r.body["type"], "NotImplemented");
        assert_eq!(
            r.message(),
            format!("{} is not implemented by this server", a.name)
        );
    }
}

async fn the_issue_examples_and_neighbouring_routes() {
    let t = TestApp::new().await;
    let (user, s) = t.login("n@example.com").await;
    let app = t.app_of(user, "A").await;
    // devices.sendCommand shares a prefix with device.* routes.
    let r = t
        .post(
            &format!("/applications/{app}/devices/command"),
            &s,
            serde_json::json!({ "name": "x" }),
        )
        .await;
    assert_eq!(r.status, 501);
    assert_eq!(
        r.message(),
        "devices.sendCommand is not implemented by this server"
    );
    // An implemented route at a neighbouring path still works and still needs a credential.
    let r = t
        .send(
            Method::GET,
            &format!("/applications/{app}/devices"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    t.get(&format!("/applications/{app}/devices"), &s)
        .await
        .expect(200);
    // A path with both: GET /me is implemented, POST /me/delete is not.
    t.get("/me", &s).await.expect(200);
    let r = t.send(Method::POST, "/me/delete", Some(&s), None).await;
    assert_eq!(r.message(), "me.delete is not implemented by this server");
    // Methods the reference has nowhere are still 405, unknown paths 404.
    assert_eq!(t.send(Method::PUT, "/me", Some(&s), None).await.status, 405);
    assert_eq!(t.get("/no/such/thing", &s).await.status, 404);
    // The OpenAPI document lists them apart from the implemented actions.
    let doc = t
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    let listed = doc["x-tollgate-not-implemented"]["actions"]
        .as_array()
        .unwrap();
    assert_eq!(listed.len(), unimplemented().len());
    assert!(
        doc["paths"]
            .get("/applications/{applicationId}/devices/command")
            .is_none()
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_unimplemented_catalog_action_answers_501_naming_it).once(),
        case!(the_issue_examples_and_neighbouring_routes).once(),
    ]
}
