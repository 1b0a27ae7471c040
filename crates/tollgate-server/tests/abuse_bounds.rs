//! Bounded work (issue 12, item 3): every list a request can send is bounded, refused before
//! the database sees it with a 400 that names the field and the limit, and error messages
//! stay short whatever the input. Runs in both passes.

use crate::common::TestApp;
use axum::http::Method;
use serde_json::{Value, json};
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

async fn setup() -> (TestApp, String, String, String) {
    let t = TestApp::new().await;
    let (user, session) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let (_, read_only) = t
        .raw_token(app, &["all.Application.read"], TokenStatus::Active, None)
        .await;
    (t, session, app.to_string(), read_only)
}

#[track_caller]
fn refused(r: crate::common::Resp, expected: &str) {
    let message = r.message().to_owned();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["type"], "Validation");
    assert!(message.contains(expected), "{message}");
}

async fn tag_filters_and_device_classes_are_bounded() {
    let (t, _, app, read_only) = setup().await;
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("tagFilter[{i}][key]=k{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // 10 are fine and answered.
    let r = t
        .get(
            &format!("/applications/{app}/devices?{}", query(10)),
            &read_only,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 11 are refused, by name and limit.
    refused(
        t.get(
            &format!("/applications/{app}/devices?{}", query(11)),
            &read_only,
        )
        .await,
        "tagFilter has 11 entries: at most 10 are allowed",
    );
    // 933 was a 500 on SQLite ("Expression tree is too large") and 160 took 13.6 s on
    // PostgreSQL: now the query-string bound answers first.
    refused(
        t.get(
            &format!("/applications/{app}/devices?{}", query(933)),
            &read_only,
        )
        .await,
        "The query string has 933 parameters: at most 200 are allowed",
    );
    let classes = (0..8)
        .map(|i| format!("deviceClass[{i}]=gateway"))
        .collect::<Vec<_>>()
        .join("&");
    refused(
        t.get(
            &format!("/applications/{app}/devices?{classes}"),
            &read_only,
        )
        .await,
        "deviceClass has 8 entries: at most 7 are allowed",
    );
}

async fn data_queries_bound_device_ids_tags_and_attributes() {
    let (t, _, app, read_only) = setup().await;
    let ids: Vec<String> = (0..1001).map(|i| format!("{i:024x}")).collect();
    for path in ["time-series-query", "last-value-query"] {
        let url = format!("/applications/{app}/data/{path}");
        refused(
            t.post(
                &url,
                &read_only,
                json!({ "attribute": "t", "deviceIds": ids }),
            )
            .await,
            "deviceIds has 1001 entries: at most 1000 are allowed",
        );
        let tags: Vec<Value> = (0..21).map(|i| json!({ "key": format!("k{i}") })).collect();
        refused(
            t.post(
                &url,
                &read_only,
                json!({ "attribute": "t", "deviceTags": tags }),
            )
            .await,
            "deviceTags has 21 entries: at most 20 are allowed",
        );
    }
    let attributes: Vec<String> = (0..257).map(|i| format!("a{i}")).collect();
    refused(
        t.post(
            &format!("/applications/{app}/data/time-series-query"),
            &read_only,
            json!({ "attributes": attributes }),
        )
        .await,
        "attributes has 257 entries: at most 256 are allowed",
    );
    // Within the bounds the queries run.
    let r = t
        .post(
            &format!("/applications/{app}/data/last-value-query"),
            &read_only,
            json!({ "attribute": "t", "deviceIds": ids[..1000] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn scope_lists_are_bounded_and_unknown_ones_are_named_briefly() {
    let (t, session, app, _) = setup().await;
    let url = format!("/applications/{app}/tokens");
    // 20,000 unknown scope strings got a 229 KB message.
    let many: Vec<String> = (0..20_000).map(|i| format!("bogus.scope{i}")).collect();
    let r = t
        .post(&url, &session, json!({ "name": "x", "scope": many }))
        .await;
    refused(r, "scope has 20000 entries: at most 200 are allowed");
    // Within the count, unknown strings are named (the first five) and counted.
    let some: Vec<String> = (0..150).map(|i| format!("bogus.scope{i}")).collect();
    let r = t
        .post(&url, &session, json!({ "name": "x", "scope": some }))
        .await;
    let message = r.message().to_owned();
    refused(
        r,
        "unknown scope bogus.scope0, bogus.scope1, bogus.scope2, bogus.scope3, bogus.scope4 and 145 more",
    );
    assert!(message.len() < 400, "{} bytes: {message}", message.len());
}

async fn workflows_bound_triggers_and_nodes() {
    let (t, session, app, _) = setup().await;
    let url = format!("/applications/{app}/flows");
    let triggers: Vec<Value> = (0..101)
        .map(|i| json!({ "key": format!("{i:024x}"), "type": "deviceId", "config": { "triggerOn": "individual" } }))
        .collect();
    refused(
        t.post(&url, &session, json!({ "name": "f", "triggers": triggers }))
            .await,
        "triggers has 101 entries: at most 100 are allowed",
    );
    // 50,000 triggers (1 MiB) took 2.5 s of schema compilation even when refused.
    let huge: Vec<Value> = (0..50_000).map(|_| json!({ "type": "timer" })).collect();
    let body = json!({ "name": "f", "triggers": huge });
    assert!(body.to_string().len() < tollgate_server::MAX_BODY);
    let started = std::time::Instant::now();
    refused(
        t.post(&url, &session, body).await,
        "triggers has 50000 entries: at most 100 are allowed",
    );
    eprintln!("50,000 triggers refused in {:?}", started.elapsed());
    let nodes: Vec<Value> = (0..1001)
        .map(|i| json!({ "id": format!("n{i}"), "type": "DebugNode", "config": {} }))
        .collect();
    refused(
        t.post(&url, &session, json!({ "name": "f", "nodes": nodes }))
            .await,
        "nodes has 1001 entries: at most 1000 are allowed",
    );
    // 100 valid triggers are accepted.
    let ok: Vec<Value> = (0..100)
        .map(|i| json!({ "key": format!("{i:024x}"), "type": "deviceId", "config": { "triggerOn": "individual" } }))
        .collect();
    let r = t
        .post(&url, &session, json!({ "name": "f", "triggers": ok }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn deeply_nested_bodies_are_refused_before_parsing() {
    let (t, session, app, _) = setup().await;
    let deep = format!(
        "{{\"name\":\"d\",\"description\":\"x\",\"extra\":{}1{}}}",
        "[".repeat(33),
        "]".repeat(33)
    );
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/devices"),
            Some(&session),
            Some(&deep),
            &[],
        )
        .await;
    refused(
        r,
        "The request body nests arrays and objects more than 32 deep",
    );
    // Brackets inside strings are text, not nesting.
    let text = format!("{{\"name\":\"d\",\"description\":\"{}\"}}", "[".repeat(100));
    let r = t
        .send_raw(
            Method::POST,
            &format!("/applications/{app}/devices"),
            Some(&session),
            Some(&text),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(tag_filters_and_device_classes_are_bounded),
        case!(data_queries_bound_device_ids_tags_and_attributes),
        case!(scope_lists_are_bounded_and_unknown_ones_are_named_briefly),
        case!(workflows_bound_triggers_and_nodes),
        case!(deeply_nested_bodies_are_refused_before_parsing),
    ]
}
