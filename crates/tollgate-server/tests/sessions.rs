//! Login sessions can be ended through the REST API (`POST /auth/logout`, an extension), are
//! listed with the client that opened them and when they were last used, and unknown session
//! secrets are remembered like unknown tokens (and counted in `/metrics`).

use crate::common::{PASSWORD, TestApp};
use axum::http::Method;
use serde_json::json;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::now_ms;
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

/// The value of the `/metrics` line that starts with `line`.
async fn metric(t: &TestApp, line: &str) -> u64 {
    let text = metrics_text(t).await;
    text.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line} in:\n{text}"))
}

/// `/metrics` is text, not JSON: read it raw.
async fn metrics_text(t: &TestApp) -> String {
    use tower::ServiceExt;
    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tollgate_server::app(t.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn logout_ends_the_session_that_sends_it() {
    let t = TestApp::new().await;
    let (_, session) = t.login("leaving@example.com").await;
    let other = {
        let body = t
            .send(
                Method::POST,
                "/auth/user",
                None,
                Some(json!({ "email": "leaving@example.com", "password": PASSWORD })),
            )
            .await
            .expect(200);
        body["token"].as_str().unwrap().to_owned()
    };
    t.get("/me", &session).await.expect(200);

    let r = t
        .send(Method::POST, "/auth/logout", Some(&session), None)
        .await;
    assert_eq!(r.body, json!({ "success": true }));
    assert_eq!(r.status, 200);
    for _ in 0..2 {
        let refused = t.get("/me", &session).await;
        assert_eq!(refused.status, 401);
        assert!(
            refused.message().contains("does not exist or has ended"),
            "{}",
            refused.message()
        );
    }
    // Logging out again with the ended session is a 401, not a success.
    assert_eq!(
        t.send(Method::POST, "/auth/logout", Some(&session), None)
            .await
            .status,
        401
    );
    // Only that session ended.
    t.get("/me", &other).await.expect(200);

    // An application token is not a login: it cannot log out (403, saying why).
    let user = t.user("apps@example.com").await;
    let app = t.app_of(user, "a").await;
    let (_, token) = t
        .raw_token(app, &["all.Application"], TokenStatus::Active, None)
        .await;
    let r = t
        .send(Method::POST, "/auth/logout", Some(&token), None)
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.message().contains("needs a user's login"),
        "{}",
        r.message()
    );
    // Without credentials: 401.
    assert_eq!(
        t.send(Method::POST, "/auth/logout", None, None)
            .await
            .status,
        401
    );
}

async fn unknown_sessions_are_remembered_and_counted() {
    let t = TestApp::new().await;
    let (_, session) = t.login("known@example.com").await;
    let database_before = metric(&t, "tollgate_session_checks_total{result=\"database\"}").await;
    let invented = Secret::generate(SecretKind::UserSession)
        .expose()
        .to_owned();
    for _ in 0..3 {
        let r = t.get("/me", &invented).await;
        assert_eq!(r.status, 401);
        assert!(r.message().contains("does not exist or has ended"));
    }
    // The database was asked once; the other two answers came from memory.
    assert_eq!(
        metric(&t, "tollgate_session_checks_total{result=\"database\"}").await,
        database_before + 1
    );
    assert_eq!(
        metric(
            &t,
            "tollgate_session_checks_total{result=\"unknown_cached\"}"
        )
        .await,
        2
    );
    // A known session is answered from the cache after its first use.
    t.get("/me", &session).await.expect(200);
    let cached = metric(&t, "tollgate_session_checks_total{result=\"cache\"}").await;
    t.get("/me", &session).await.expect(200);
    assert_eq!(
        metric(&t, "tollgate_session_checks_total{result=\"cache\"}").await,
        cached + 1
    );
    // An ended session is remembered as unknown too.
    t.send(Method::POST, "/auth/logout", Some(&session), None)
        .await
        .expect(200);
    t.get("/me", &session).await;
    let unknown = metric(
        &t,
        "tollgate_session_checks_total{result=\"unknown_cached\"}",
    )
    .await;
    assert_eq!(t.get("/me", &session).await.status, 401);
    assert_eq!(
        metric(
            &t,
            "tollgate_session_checks_total{result=\"unknown_cached\"}"
        )
        .await,
        unknown + 1
    );
}

async fn sessions_keep_their_client_and_last_use() {
    let t = TestApp::new().await;
    let user = t.user("seen@example.com").await;
    let body = t
        .send_raw(
            Method::POST,
            "/auth/user",
            None,
            Some(&json!({ "email": "seen@example.com", "password": PASSWORD }).to_string()),
            &[("user-agent", "losant-rest-python/1.31 (robot)")],
        )
        .await
        .expect(200);
    let secret = body["token"].as_str().unwrap().to_owned();
    let listed = t.store().sessions_of_user(user, now_ms()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_agent, "losant-rest-python/1.31 (robot)");
    assert_eq!(listed[0].last_used, None);

    // Used: recorded in memory at once, in the database when flushed (minute precision).
    t.get("/me", &secret).await.expect(200);
    let digest = tollgate_core::secret::digest(&secret);
    let seen = t
        .state
        .credentials()
        .session_last_used(&digest)
        .expect("noted in memory");
    assert_eq!(seen % 60_000, 0);
    assert!(now_ms() - seen < 61_000);
    t.state.credentials().flush_last_used().await.unwrap();
    let listed = t.store().sessions_of_user(user, now_ms()).await.unwrap();
    assert_eq!(listed[0].last_used, Some(seen));

    // A user agent longer than 256 characters is cut; expired sessions are not listed.
    let long = "x".repeat(300);
    t.store()
        .create_session_from(&[9; 32], user, now_ms() + 60_000, &long)
        .await
        .unwrap();
    t.store()
        .create_session_from(&[8; 32], user, now_ms() - 1, "expired")
        .await
        .unwrap();
    let listed = t.store().sessions_of_user(user, now_ms()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|s| s.user_agent.len() == 256));
    assert!(!listed.iter().any(|s| s.user_agent == "expired"));

    // Ending one by id works only for its owner.
    let stranger = t.user("stranger@example.com").await;
    let target = listed.iter().find(|s| s.digest == digest).unwrap().id;
    assert!(matches!(
        t.store().end_session(stranger, target).await,
        Err(tollgate_store::StoreError::NotFound)
    ));
    t.get("/me", &secret).await.expect(200);
    t.store().end_session(user, target).await.unwrap();
    assert_eq!(t.get("/me", &secret).await.status, 401);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(logout_ends_the_session_that_sends_it),
        case!(unknown_sessions_are_remembered_and_counted),
        case!(sessions_keep_their_client_and_last_use),
    ]
}
