//! The audit log over the API: who may read which log, what flows, members and invitations
//! record, and how bad parameters are refused. (The scenario with the official Python client
//! is `tests/clients/python/audit.py`; the store's atomicity cases are in the store's tests.)

use serde_json::{Value, json};
use tollgate_testkit::{Case, case};

use crate::common::TestApp;

fn actions(log: &Value) -> Vec<String> {
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}.{}",
                e["requestResource"].as_str().unwrap(),
                e["requestAction"].as_str().unwrap()
            )
        })
        .collect()
}

async fn organization_admins_read_the_log_and_nobody_else_does() {
    let t = TestApp::new().await;
    let (admin_id, admin) = t.login("admin@example.com").await;
    let (viewer_id, viewer) = t.login("viewer@example.com").await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Acme" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.join_org(&org, &admin, "viewer@example.com", "view", &viewer)
        .await;
    let app = t
        .post(
            "/applications",
            &admin,
            json!({ "name": "Plant", "orgId": org }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow = t
        .post(
            &format!("/applications/{app}/flows"),
            &admin,
            json!({ "name": "alerts", "nodes": [{ "id": "a", "type": "DebugNode", "config": { "password": "hunter2" } }] }),
        )
        .await
        .expect(201);
    let flow_path = format!("/applications/{app}/flows/{}", flow["id"].as_str().unwrap());
    t.patch(&flow_path, &admin, json!({ "name": "alerts 2" }))
        .await
        .expect(200);
    t.delete(&flow_path, &admin).await.expect(200);
    t.patch(
        &format!("/orgs/{org}/member"),
        &admin,
        json!({ "userId": viewer_id, "role": "collaborate" }),
    )
    .await
    .expect(200);
    t.patch(
        &format!("/orgs/{org}"),
        &admin,
        json!({ "description": "widgets" }),
    )
    .await
    .expect(200);

    let log = t
        .get(&format!("/orgs/{org}/audit-logs?sortDirection=asc"), &admin)
        .await
        .expect(200);
    assert_eq!(
        actions(&log),
        [
            "org.inviteMember",
            "me.respondToInvite",
            "applications.post",
            "flows.post",
            "flow.patch",
            "flow.delete",
            "org.modifyMember",
            "org.patch",
        ]
    );
    let items = log["items"].as_array().unwrap();
    // The invitee answered their own invitation: they are the actor.
    assert_eq!(items[1]["actorId"], json!(viewer_id));
    assert_eq!(items[1]["primaryTargetType"], "OrgInvite");
    assert_eq!(items[1]["primaryTargetName"], "viewer@example.com");
    // A field named like a secret is never recorded, whatever the write.
    assert_eq!(
        items[3]["requestBody"]["nodes"][0]["config"]["password"],
        "[redacted]"
    );
    assert!(!log.to_string().contains("hunter2"));
    assert_eq!(items[4]["secondaryTargetType"], "Flow");
    assert_eq!(items[4]["secondaryTargetName"], "alerts 2");
    assert_eq!(items[4]["requestBody"], json!({ "name": "alerts 2" }));
    assert_eq!(items[5]["secondaryTargetName"], "alerts 2");
    // A member change names the member in its body (the reference has no target type for one).
    assert_eq!(
        items[6]["requestBody"],
        json!({ "role": "collaborate", "userId": viewer_id, "email": "viewer@example.com" })
    );
    assert_eq!(items[7]["requestPathParams"], json!({ "orgId": org }));
    assert!(items.iter().all(|e| e["orgId"] == json!(org)));
    assert_eq!(items[2]["actorId"], json!(admin_id));
    // In-process requests come over no socket: no client address is recorded.
    assert!(items.iter().all(|e| e.get("clientAddress").is_none()));
    // Every entry is a valid reference auditLog; the list a valid auditLogs.
    tollgate_server::schemas::validate("auditLogs", &log).unwrap();

    // A collaborator (not an admin) may not read the organization's log; another
    // organization's entry is not found.
    let r = t.get(&format!("/orgs/{org}/audit-logs"), &viewer).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.message().contains("auditLogs.get"), "{}", r.message());
    let id = items[0]["id"].as_str().unwrap();
    t.get(&format!("/orgs/{org}/audit-logs/{id}"), &admin)
        .await
        .expect(200);
    let other = t
        .post("/orgs", &admin, json!({ "name": "Other" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.get(&format!("/orgs/{other}/audit-logs/{id}"), &admin)
            .await
            .status,
        404
    );

    // The application's own view holds the application's entries only.
    let own = t
        .get(
            &format!("/applications/{app}/audit-logs?sortDirection=asc"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(
        actions(&own),
        [
            "applications.post",
            "flows.post",
            "flow.patch",
            "flow.delete"
        ]
    );
    assert_eq!(own["applicationId"], json!(app));
}

async fn bad_parameters_are_refused_with_what_is_allowed() {
    let t = TestApp::new().await;
    let (owner, session) = t.login("owner@example.com").await;
    let app = t.app_of(owner, "Sandbox").await;
    let base = format!("/applications/{app}/audit-logs");
    for (query, says) in [
        (
            "sortField=name",
            "sortField must be one of creationDate, responseStatus, actorName",
        ),
        (
            "start=yesterday",
            "start must be milliseconds since the epoch or an ISO 8601 date-time",
        ),
        (
            "auditLogFilter[actor][0][id]=nope",
            "ids are 24 hexadecimal characters",
        ),
        (
            "auditLogFilter[responseCode][0]=999",
            "HTTP statuses (100-599)",
        ),
        ("perPage=0", "perPage must be between 1 and 1000"),
    ] {
        let r = t.get(&format!("{base}?{query}"), &session).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.message().contains(says), "{query}: {}", r.message());
    }
    let r = t
        .get(
            &format!("{base}?auditLogFilter[responseCode][0]=201"),
            &session,
        )
        .await
        .expect(200);
    // The application's creation (by the operator, in the test's set-up) answered 201.
    assert_eq!(r["totalCount"], 1, "{r}");
    assert_eq!(r["items"][0]["actorName"], "operator");
    assert!(r["items"][0].get("actorType").is_none());
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(organization_admins_read_the_log_and_nobody_else_does),
        case!(bad_parameters_are_refused_with_what_is_allowed),
    ]
}
