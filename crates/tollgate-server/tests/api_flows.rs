//! Workflows as stored definitions over HTTP.

use crate::common::TestApp;
use serde_json::{Value, json};
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

fn definition() -> Value {
    json!({
        "name": "Too hot",
        "description": "Alert when the hall is hot",
        "triggers": [
            { "key": "0123456789abcdef01234567", "type": "deviceId", "config": { "triggerOn": "individual" }, "outputIds": [["n1"]] }
        ],
        "nodes": [
            { "id": "n1", "type": "ConditionNode", "config": { "expression": "{{ data.temperature }} > 30" }, "outputIds": [[], ["n2"]] },
            { "id": "n2", "type": "DebugNode", "config": {} }
        ],
        "globals": [{ "key": "threshold", "json": "30" }]
    })
}

async fn flows_are_created_listed_enabled_disabled_and_deleted() {
    let t = TestApp::new().await;
    let (user, s) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let base = format!("/applications/{app}/flows");

    let f = t.post(&base, &s, definition()).await.expect(201);
    let id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(f["flowId"], id);
    assert_eq!(f["applicationId"], app.to_string());
    assert_eq!(f["name"], "Too hot");
    assert_eq!(f["flowClass"], "cloud");
    assert_eq!(f["enabled"], true);
    assert_eq!(f["createdByType"], "user");
    assert_eq!(f["createdById"], user.to_string());
    assert_eq!(f["nodes"], definition()["nodes"]);
    assert_eq!(f["triggers"], definition()["triggers"]);
    assert_eq!(f["globals"], definition()["globals"]);
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.expect(200), f);

    t.post(&base, &s, json!({ "name": "Another" }))
        .await
        .expect(201);
    let edge = t
        .post(
            &base,
            &s,
            json!({ "name": "On the edge", "flowClass": "edge" }),
        )
        .await
        .expect(201);
    let list = t.get(&base, &s).await.expect(200);
    let names = crate::common::item_names(&list);
    assert_eq!(names, ["Another", "Too hot"]); // cloud flows unless asked otherwise
    let edges = t
        .get(&format!("{base}?flowClass=edge"), &s)
        .await
        .expect(200);
    assert_eq!(edges["items"][0]["id"], edge["id"]);
    let filtered = t
        .get(
            &format!("{base}?filterField=name&filter=too*&perPage=1"),
            &s,
        )
        .await
        .expect(200);
    assert_eq!(
        (
            filtered["totalCount"].as_i64(),
            filtered["items"][0]["id"].as_str()
        ),
        (Some(1), Some(id.as_str()))
    );

    // A token disables it and renames it; the rest of the definition stays.
    let (token_id, token) = t
        .raw_token(app, &["flow.*"], TokenStatus::Active, None)
        .await;
    let p = t
        .patch(
            &format!("{base}/{id}"),
            &token,
            json!({ "enabled": false, "name": "Too hot!" }),
        )
        .await
        .expect(200);
    assert_eq!(p["enabled"], false);
    assert_eq!(p["name"], "Too hot!");
    assert_eq!(p["nodes"], definition()["nodes"]);
    assert_eq!(p["lastUpdatedByType"], "apiToken");
    assert_eq!(p["lastUpdatedById"], token_id.to_string());
    assert_eq!(p["createdById"], user.to_string());
    let p = t
        .patch(
            &format!("{base}/{id}"),
            &s,
            json!({ "enabled": true, "nodes": [], "triggers": [] }),
        )
        .await
        .expect(200);
    assert_eq!(
        (p["enabled"].as_bool(), p["nodes"].as_array().map(Vec::len)),
        (Some(true), Some(0))
    );

    t.delete(&format!("{base}/{id}"), &s).await.expect(200);
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.status, 404);
    assert_eq!(t.delete(&format!("{base}/{id}"), &s).await.status, 404);
}

async fn bad_flows_are_400s_and_other_applications_flows_are_404s() {
    let t = TestApp::new().await;
    let (user, s) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let base = format!("/applications/{app}/flows");
    let id = t.post(&base, &s, definition()).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = t.get(&format!("{base}/{id}"), &s).await.expect(200);

    let with = |k: &str, v: Value| {
        let mut d = definition();
        d[k] = v;
        d
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({ "name": "x".repeat(256) }), "name"),
        (
            with(
                "nodes",
                json!([{ "id": "a", "type": "X" }, { "id": "a", "type": "Y" }]),
            ),
            "used twice",
        ),
        (
            with(
                "nodes",
                json!([{ "id": "n1", "type": "X", "outputIds": [["ghost"]] }]),
            ),
            "nodes/0/outputIds: ghost is not the id of a node",
        ),
        (
            with(
                "triggers",
                json!([{ "type": "timer", "outputIds": [["ghost"]] }]),
            ),
            "triggers/0/outputIds",
        ),
        (
            with("triggers", json!([{ "type": "teleport" }])),
            "triggers/0/type",
        ),
        (
            with(
                "triggers",
                json!([{ "type": "timer", "config": { "seconds": "often" } }]),
            ),
            "/triggers/0/config/seconds: seconds is not of type",
        ),
        (with("nodes", json!([{ "id": "a" }])), "type"),
        (
            with("globals", json!([{ "key": "g", "json": "{not json" }])),
            "not valid JSON",
        ),
        (
            with(
                "globals",
                json!([{ "key": "g", "json": "1" }, { "key": "g", "json": "2" }]),
            ),
            "used twice",
        ),
        (with("flowClass", json!("quantum")), "flowClass"),
        (with("enabled", json!("yes")), "enabled"),
        (with("colour", json!(1)), "colour"),
    ];
    for (body, needle) in &cases {
        let r = t.post(&base, &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{needle}: {}", r.message());
    }
    for (body, needle) in [
        (
            json!({ "nodes": [{ "id": "n1", "type": "X", "outputIds": [["b"]] }] }),
            "b is not the id",
        ),
        (json!({ "nodes": [] }), "n1 is not the id"),
        (json!({ "flowClass": "edge" }), "flowClass"),
        (
            json!({ "defaultVersionId": "0123456789abcdef01234567" }),
            "defaultVersionId",
        ),
        (json!({ "name": "" }), "name"),
    ] {
        let r = t.patch(&format!("{base}/{id}"), &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{needle}: {}", r.message());
    }
    for q in [
        "flowClass=quantum",
        "sortField=enabled",
        "triggerFilter[0][type]=timer",
    ] {
        assert_eq!(t.get(&format!("{base}?{q}"), &s).await.status, 400, "{q}");
    }
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.expect(200), before);
    assert_eq!(t.get(&format!("{base}/xyz"), &s).await.status, 400);

    let (other_user, other) = t.login("other@example.com").await;
    let other_app = t.app_of(other_user, "Theirs").await;
    let theirs = format!("/applications/{other_app}/flows/{id}");
    assert_eq!(t.get(&theirs, &other).await.status, 404);
    assert_eq!(
        t.patch(&theirs, &other, json!({ "enabled": false }))
            .await
            .status,
        404
    );
    assert_eq!(t.delete(&theirs, &other).await.status, 404);
    assert_eq!(t.get(&format!("{base}/{id}"), &other).await.status, 404);
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.expect(200), before);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(flows_are_created_listed_enabled_disabled_and_deleted),
        case!(bad_flows_are_400s_and_other_applications_flows_are_404s),
    ]
}
