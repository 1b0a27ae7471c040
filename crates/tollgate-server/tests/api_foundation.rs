//! Users, sessions, organizations, members, roles and applications over HTTP.

use crate::common::{PASSWORD, TestApp};
use axum::http::Method;
use serde_json::json;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::now_ms;
use tollgate_testkit::{Case, case};

async fn health_answers_without_credentials() {
    let t = TestApp::new().await;
    let body = t.send(Method::GET, "/health", None, None).await.expect(200);
    assert_eq!(body["database"], "ok");
}

async fn login_gives_a_session_and_wrong_email_or_password_look_the_same() {
    let t = TestApp::new().await;
    let (id, token) = t.login("ada@example.com").await;
    assert!(token.starts_with("tgus_"));
    let me = t.get("/me", &token).await.expect(200);
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["email"], "ada@example.com");

    let login = |email: &'static str, password: &'static str| {
        t.send(
            Method::POST,
            "/auth/user",
            None,
            Some(json!({ "email": email, "password": password })),
        )
    };
    let wrong_password = login("ada@example.com", "not the password").await;
    let wrong_email = login("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(wrong_email.status, 401);
    assert_eq!(wrong_password.body, wrong_email.body);
    assert_eq!(wrong_password.body["type"], "Unauthorized");

    // Emails compare without regard to case.
    login("ADA@example.com", PASSWORD).await.expect(200);
}

async fn login_input_errors_are_400s_that_never_echo_the_password() {
    let t = TestApp::new().await;
    t.user("bo@example.com").await;
    let r = t
        .send(
            Method::POST,
            "/auth/user",
            None,
            Some(json!({ "email": "bo@example.com", "password": "hunter2" })),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("password"), "{}", r.message());
    assert!(!r.message().contains("hunter2"), "{}", r.message());

    let r = t
        .send(
            Method::POST,
            "/auth/user",
            None,
            Some(json!({ "email": "bo@example.com" })),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("password"));

    let r = t
        .send(
            Method::POST,
            "/auth/user",
            None,
            Some(json!({ "email": "bo@example.com", "password": PASSWORD, "requestedScopes": ["all.Application"] })),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("all.User"));
}

async fn expired_and_ended_sessions_are_refused() {
    let t = TestApp::new().await;
    let user = t.user("cy@example.com").await;
    let secret = Secret::generate(SecretKind::UserSession);
    t.store()
        .create_session(&secret.digest(), user, now_ms() - 1000)
        .await
        .unwrap();
    let r = t.get("/me", secret.expose()).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("expired"), "{}", r.message());

    let live = t.session_for(user).await;
    t.get("/me", &live).await.expect(200);
    t.store()
        .delete_session(&tollgate_core::secret::digest(&live))
        .await
        .unwrap();
    assert_eq!(t.get("/me", &live).await.status, 401);
}

async fn missing_and_malformed_credentials_are_401s() {
    let t = TestApp::new().await;
    let r = t.send(Method::GET, "/me", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert!(r.message().contains("Authorization"));
    let r = t.get("/me", "tgus_not-a-token").await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("length"), "{}", r.message());
    let r = t
        .send_raw(
            Method::GET,
            "/me",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
}

async fn organizations_crud_and_members() {
    let t = TestApp::new().await;
    let (admin_id, admin) = t.login("admin@example.com").await;
    let member_id = t.user("member@example.com").await;

    let org = t
        .post(
            "/orgs",
            &admin,
            json!({ "name": "Acme", "description": "Widgets", "iconColor": "#ff0000" }),
        )
        .await
        .expect(201);
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(org["orgId"], org_id);
    assert_eq!(org["iconColor"], "#ff0000");
    assert_eq!(org["members"][0]["userId"], admin_id.to_string());
    assert_eq!(org["members"][0]["role"], "admin");

    let listed = t.get("/orgs", &admin).await.expect(200);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["items"][0]["name"], "Acme");

    // An invitation is pending until accepted; the answer is the same whether or not the
    // email has an account here (the pending list, no user id, no name).
    let known = t
        .post(
            &format!("/orgs/{org_id}/invites"),
            &admin,
            json!({ "email": "member@example.com", "role": "view" }),
        )
        .await
        .expect(200);
    let unknown = t
        .post(
            &format!("/orgs/{org_id}/invites"),
            &admin,
            json!({ "email": "ghost@example.com", "role": "view" }),
        )
        .await
        .expect(200);
    let org = t.get(&format!("/orgs/{org_id}"), &admin).await.expect(200);
    assert_eq!(
        org["members"].as_array().unwrap().len(),
        1,
        "nobody joined yet"
    );
    assert_eq!(known.as_array().unwrap().len(), 1);
    assert_eq!(unknown.as_array().unwrap().len(), 2);
    let member_session = t.session_for(member_id).await;
    let invites = t.get("/me/invites", &member_session).await.expect(200);
    let id = invites[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(invites[0]["orgName"], "Acme");
    t.post(
        &format!("/me/invites/{id}"),
        &member_session,
        json!({ "action": "accept" }),
    )
    .await
    .expect(200);
    let org = t.get(&format!("/orgs/{org_id}"), &admin).await.expect(200);
    let member = org["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "member@example.com")
        .unwrap();
    assert_eq!(member["role"], "view");
    // A member already: 409.
    let r = t
        .post(
            &format!("/orgs/{org_id}/invites"),
            &admin,
            json!({ "email": "member@example.com", "role": "edit" }),
        )
        .await;
    assert_eq!(r.status, 409);

    let org = t
        .patch(
            &format!("/orgs/{org_id}/member"),
            &admin,
            json!({ "userId": member_id, "role": "edit" }),
        )
        .await
        .expect(200);
    let member = org["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == member_id.to_string())
        .unwrap();
    assert_eq!(member["role"], "edit");

    // The last administrator cannot leave or be demoted.
    let r = t
        .patch(
            &format!("/orgs/{org_id}/member"),
            &admin,
            json!({ "userId": admin_id, "role": "view" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("at least one administrator"));
    let r = t
        .delete(&format!("/orgs/{org_id}/member?userId={admin_id}"), &admin)
        .await;
    assert_eq!(r.status, 400);

    let org = t
        .delete(&format!("/orgs/{org_id}/member?userId={member_id}"), &admin)
        .await
        .expect(200);
    assert_eq!(org["members"].as_array().unwrap().len(), 1);
    let r = t
        .delete(&format!("/orgs/{org_id}/member?userId={member_id}"), &admin)
        .await;
    assert_eq!(r.status, 404);
    let r = t.delete(&format!("/orgs/{org_id}/member"), &admin).await;
    assert_eq!(r.status, 400);

    let org = t
        .patch(
            &format!("/orgs/{org_id}"),
            &admin,
            json!({ "name": "Acme Inc" }),
        )
        .await
        .expect(200);
    assert_eq!(org["name"], "Acme Inc");
    assert_eq!(org["description"], "Widgets");

    t.delete(&format!("/orgs/{org_id}"), &admin)
        .await
        .expect(200);
    assert_eq!(t.get(&format!("/orgs/{org_id}"), &admin).await.status, 404);
}

/// Each role's boundary, on the organization and on an application it owns.
async fn roles_decide_what_members_may_do() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("admin@example.com").await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Org" }))
        .await
        .expect(201);
    let org_id = org["id"].as_str().unwrap().to_owned();
    let mut tokens = std::collections::HashMap::new();
    for role in ["view", "collaborate", "edit", "none"] {
        let email = format!("{role}@example.com");
        let id = t.user(&email).await;
        let session = t.session_for(id).await;
        t.join_org(&org_id, &admin, &email, role, &session).await;
        tokens.insert(role, session);
    }
    let outsider_id = t.user("outsider@example.com").await;
    let outsider = t.session_for(outsider_id).await;
    let app = t
        .post(
            "/applications",
            &admin,
            json!({ "name": "Org app", "orgId": org_id }),
        )
        .await
        .expect(201);
    let app_id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["ownerType"], "organization");

    let org_path = format!("/orgs/{org_id}");
    let app_path = format!("/applications/{app_id}");
    let cases: Vec<(&str, Method, String, Option<serde_json::Value>, u16)> = vec![
        ("view", Method::GET, org_path.clone(), None, 200),
        ("none", Method::GET, org_path.clone(), None, 403),
        ("outsider", Method::GET, org_path.clone(), None, 404),
        (
            "edit",
            Method::PATCH,
            org_path.clone(),
            Some(json!({ "name": "x" })),
            403,
        ),
        (
            "outsider",
            Method::PATCH,
            org_path.clone(),
            Some(json!({ "name": "x" })),
            404,
        ),
        (
            "view",
            Method::POST,
            "/applications".into(),
            Some(json!({ "name": "v", "orgId": org_id })),
            403,
        ),
        (
            "collaborate",
            Method::POST,
            "/applications".into(),
            Some(json!({ "name": "c", "orgId": org_id })),
            403,
        ),
        (
            "edit",
            Method::POST,
            "/applications".into(),
            Some(json!({ "name": "e", "orgId": org_id })),
            201,
        ),
        (
            "outsider",
            Method::POST,
            "/applications".into(),
            Some(json!({ "name": "o", "orgId": org_id })),
            404,
        ),
        ("view", Method::GET, app_path.clone(), None, 200),
        ("none", Method::GET, app_path.clone(), None, 404),
        ("outsider", Method::GET, app_path.clone(), None, 404),
        (
            "view",
            Method::PATCH,
            app_path.clone(),
            Some(json!({ "name": "v" })),
            403,
        ),
        (
            "collaborate",
            Method::PATCH,
            app_path.clone(),
            Some(json!({ "name": "c" })),
            200,
        ),
        ("collaborate", Method::DELETE, app_path.clone(), None, 403),
        ("view", Method::GET, format!("{app_path}/tokens"), None, 200),
        (
            "collaborate",
            Method::POST,
            format!("{app_path}/tokens"),
            Some(json!({ "name": "t" })),
            403,
        ),
        (
            "edit",
            Method::POST,
            format!("{app_path}/tokens"),
            Some(json!({ "name": "t" })),
            201,
        ),
    ];
    for (who, method, path, body, expected) in cases {
        let token = if who == "outsider" {
            outsider.clone()
        } else {
            tokens[who].clone()
        };
        let r = t.send(method.clone(), &path, Some(&token), body).await;
        assert_eq!(
            r.status.as_u16(),
            expected,
            "{who} {method} {path}: {}",
            r.body
        );
        if expected == 403 {
            assert!(r.message().contains("needs"), "{}", r.message());
            assert!(r.headers.contains_key("x-tollgate-required-action"));
        }
    }

    // What each can see in the list.
    for (token, expected) in [(&tokens["view"], 2), (&tokens["none"], 0), (&outsider, 0)] {
        assert_eq!(
            t.get("/applications", token).await.expect(200)["totalCount"],
            expected
        );
    }
    let filtered = t
        .get(
            &format!("/applications?orgId={org_id}&filterField=name&filter=e"),
            &tokens["view"],
        )
        .await
        .expect(200);
    assert_eq!(filtered["count"], 1);

    // Per-application overrides widen or narrow one application.
    let view_id = t
        .store()
        .user_by_email("view@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let none_id = t
        .store()
        .user_by_email("none@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    t.patch(
        &format!("/orgs/{org_id}/member"),
        &admin,
        json!({ "userId": view_id, "applicationRoles": [{ "resourceId": app_id, "role": "collaborate" }] }),
    )
    .await
    .expect(200);
    t.patch(
        &format!("/orgs/{org_id}/member"),
        &admin,
        json!({ "userId": none_id, "applicationRoles": [{ "resourceId": app_id, "role": "view" }] }),
    )
    .await
    .expect(200);
    t.patch(
        &app_path,
        &tokens["view"],
        json!({ "name": "renamed by viewer" }),
    )
    .await
    .expect(200);
    t.get(&app_path, &tokens["none"]).await.expect(200);
    assert_eq!(
        t.patch(&app_path, &tokens["none"], json!({ "name": "x" }))
            .await
            .status,
        403
    );
    let r = t
        .patch(
            &format!("/orgs/{org_id}/member"),
            &admin,
            json!({ "userId": view_id, "applicationRoles": [{ "resourceId": "0123456789abcdef01234567", "role": "view" }] }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message()
            .contains("not an application of this organization")
    );

    t.delete(&app_path, &tokens["edit"]).await.expect(200);
}

async fn applications_list_sort_filter_page_rename_delete() {
    let t = TestApp::new().await;
    let (_, token) = t.login("owner@example.com").await;
    for name in ["Charlie", "alpha", "Bravo", "delta"] {
        t.post(
            "/applications",
            &token,
            json!({ "name": name, "description": format!("{name} app") }),
        )
        .await
        .expect(201);
    }
    let page = t
        .get(
            "/applications?sortField=name&sortDirection=desc&perPage=2&page=1",
            &token,
        )
        .await
        .expect(200);
    assert_eq!(page["totalCount"], 4);
    assert_eq!(page["count"], 2);
    assert_eq!(page["page"], 1);
    assert_eq!(page["perPage"], 2);
    assert_eq!(page["sortDirection"], "desc");
    let names = crate::common::item_names(&page);
    // Names sort without regard to case, the same on SQLite and PostgreSQL.
    assert_eq!(names, vec!["Bravo", "alpha"]);
    let filtered = t
        .get("/applications?filterField=name&filter=*A", &token)
        .await
        .expect(200);
    let names = crate::common::item_names(&filtered);
    assert_eq!(names, vec!["alpha", "delta"]);

    let id = filtered["items"][0]["id"].as_str().unwrap().to_owned();
    let renamed = t
        .patch(
            &format!("/applications/{id}"),
            &token,
            json!({ "name": "alpha prime" }),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "alpha prime");
    assert_eq!(renamed["description"], "alpha app");
    // The reference clients' extra query parameters and version header are accepted.
    t.get(
        &format!("/applications/{id}?_links=true&_embedded=true&_actions=false"),
        &token,
    )
    .await
    .expect(200);

    let (_, app_token) = t
        .raw_token(
            id.parse().unwrap(),
            &["all.Application"],
            tollgate_store::tokens::TokenStatus::Active,
            None,
        )
        .await;
    t.get(&format!("/applications/{id}"), &app_token)
        .await
        .expect(200);
    t.delete(&format!("/applications/{id}"), &token)
        .await
        .expect(200);
    assert_eq!(
        t.get(&format!("/applications/{id}"), &token).await.status,
        404
    );
    // Deleting an application removes its tokens.
    assert_eq!(
        t.get(&format!("/applications/{id}"), &app_token)
            .await
            .status,
        401
    );
}

/// Bad input gets a clear 400 and changes nothing.
async fn bad_input_is_refused_and_changes_nothing() {
    let t = TestApp::new().await;
    let (_, token) = t.login("owner@example.com").await;
    let app = t
        .post("/applications", &token, json!({ "name": "Keep" }))
        .await
        .expect(201);
    let path = format!("/applications/{}", app["id"].as_str().unwrap());

    let cases: Vec<(Method, &str, Option<&str>, &str)> = vec![
        (
            Method::POST,
            "/applications",
            Some("{\"name\": "),
            "not valid JSON",
        ),
        (
            Method::POST,
            "/applications",
            Some("{\"name\": 42}"),
            "/name",
        ),
        (Method::POST, "/applications", Some("{}"), "name"),
        (Method::POST, "/applications", Some("[]"), "object"),
        (Method::POST, "/applications", None, "body is required"),
        (
            Method::POST,
            "/applications",
            Some("{\"name\": \"x\", \"bogus\": 1}"),
            "bogus",
        ),
        (
            Method::POST,
            "/applications",
            Some("{\"name\": \"x\", \"orgId\": \"nope\"}"),
            "orgId",
        ),
        (
            Method::POST,
            "/applications",
            Some("{\"name\": \"x\", \"archiveConfig\": {}}"),
            "not supported",
        ),
        (Method::PATCH, &path, Some("{\"name\": \"\"}"), "/name"),
        (
            Method::PATCH,
            &path,
            Some("{\"description\": 7}"),
            "/description",
        ),
        (
            Method::GET,
            "/applications/not-an-id",
            None,
            "24 hexadecimal",
        ),
        (Method::GET, "/applications?perPage=100000", None, "perPage"),
        (Method::GET, "/orgs/123", None, "24 hexadecimal"),
    ];
    let long = format!("{{\"name\": \"{}\"}}", "x".repeat(256));
    let mut cases = cases;
    cases.push((Method::PATCH, &path, Some(&long), "longer than 255"));
    for (method, p, body, expected) in cases {
        let r = t.send_raw(method.clone(), p, Some(&token), body, &[]).await;
        assert_eq!(r.status, 400, "{method} {p} {body:?}: {}", r.body);
        assert_eq!(r.body["type"], "Validation");
        assert!(
            r.message().contains(expected),
            "{method} {p} {body:?}: {}",
            r.message()
        );
    }
    let listed = t.get("/applications", &token).await.expect(200);
    assert_eq!(listed["totalCount"], 1);
    assert_eq!(listed["items"][0]["name"], "Keep");
}

async fn unknown_paths_and_methods_answer_in_json() {
    let t = TestApp::new().await;
    let (_, token) = t.login("u@example.com").await;
    let r = t.get("/no/such/thing", &token).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["type"], "NotFound");
    let r = t
        .send(Method::PUT, "/applications", Some(&token), None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["type"], "MethodNotAllowed");
}

/// `me` follows the reference schema even for a user created without a name.
async fn me_matches_the_reference_schema() {
    let t = TestApp::new().await;
    let (_, named) = t.login("named@example.com").await;
    let me = t.get("/me", &named).await.expect(200);
    assert_eq!(
        (me["firstName"].as_str(), me["fullName"].as_str()),
        (Some("Test"), Some("Test User"))
    );
    tollgate_server::schemas::validate("me", &me).unwrap();

    let hash = t
        .store()
        .user_by_email("named@example.com")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    let bare = t
        .store()
        .create_user(&tollgate_store::users::NewUser {
            email: "bare@example.com",
            password_hash: &hash,
            first_name: "",
            last_name: "",
        })
        .await
        .unwrap();
    let session = t.session_for(bare.id).await;
    let me = t.get("/me", &session).await.expect(200);
    assert!(me.get("firstName").is_none(), "{me}");
    tollgate_server::schemas::validate("me", &me).unwrap();
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(health_answers_without_credentials),
        case!(login_gives_a_session_and_wrong_email_or_password_look_the_same),
        case!(login_input_errors_are_400s_that_never_echo_the_password),
        case!(expired_and_ended_sessions_are_refused),
        case!(missing_and_malformed_credentials_are_401s),
        case!(organizations_crud_and_members),
        case!(roles_decide_what_members_may_do),
        case!(applications_list_sort_filter_page_rename_delete),
        case!(bad_input_is_refused_and_changes_nothing),
        case!(unknown_paths_and_methods_answer_in_json),
        case!(me_matches_the_reference_schema),
    ]
}
