//! Logins under attack (issue 12, item 1): failed logins are throttled per account and per
//! client address before any password is hashed, in the REST API and the console alike; the
//! right password does not get through while an account is throttled; password checks run
//! under a bound and past it are refused at once; failed logins are logged without the
//! password.

use std::net::SocketAddr;
use tollgate_testkit::{Case, case};

use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess};
use crate::common::{PASSWORD, Resp, TestApp};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};
use tollgate_server::auth::throttle::Rate;
use tower::ServiceExt;

/// `POST /auth/user` as if from `client`.
async fn login_from(t: &TestApp, client: &str, email: &str, password: &str) -> Resp {
    let addr: SocketAddr = format!("{client}:40000").parse().unwrap();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/auth/user")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "email": email, "password": password }).to_string(),
        ))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let res = tollgate_server::app(t.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

async fn an_account_is_throttled_after_ten_failures_even_for_the_right_password() {
    let t = TestApp::new().await;
    t.user("alice@example.com").await;
    // Successes do not count: a user who logs in often is never throttled.
    for _ in 0..15 {
        login_from(&t, "192.0.2.1", "alice@example.com", PASSWORD)
            .await
            .expect(200);
    }
    // Ten failures, spread over addresses so that only the account's limit is reached.
    let started = std::time::Instant::now();
    for i in 0..10 {
        let r = login_from(
            &t,
            &format!("192.0.2.{}", 10 + i),
            "alice@example.com",
            "wrong password 1",
        )
        .await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    let r = login_from(&t, "198.51.100.1", "Alice@Example.com", "wrong password 1").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["type"], "TooManyRequests");
    assert_eq!(
        r.message(),
        format!(
            "Too many failed logins for this account: at most 10 in a row, then one every 60 s; try again in {} s",
            r.headers[header::RETRY_AFTER].to_str().unwrap()
        )
    );
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One attempt back every 60 s, counted from the failures: what is left of that minute
    // (however long ten password checks took on a loaded machine).
    let elapsed = started.elapsed().as_secs();
    assert!(
        retry <= 60 && retry + elapsed + 1 >= 60,
        "Retry-After {retry} after {elapsed} s of failures"
    );
    // The right password, from a fresh address, is refused too: the throttle answers first.
    let r = login_from(&t, "203.0.113.9", "alice@example.com", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.get("token").is_none());
    // Other accounts are not affected.
    t.user("bob@example.com").await;
    login_from(&t, "198.51.100.1", "bob@example.com", PASSWORD)
        .await
        .expect(200);
}

async fn an_address_is_throttled_across_accounts_and_unknown_emails() {
    // Slower refill than the default (one per 2 s), so that the hashing time of the test's
    // own failures does not refill the bucket.
    let t = TestApp::with_settings(tollgate_server::Settings {
        login_address_rate: Rate {
            burst: 30,
            interval: std::time::Duration::from_secs(600),
        },
        ..Default::default()
    })
    .await;
    t.user("carol@example.com").await;
    // Thirty failures from one address, each against a different (mostly unknown) email.
    for i in 0..30 {
        let r = login_from(
            &t,
            "192.0.2.50",
            &format!("guess{i}@example.com"),
            "wrong password 1",
        )
        .await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    let r = login_from(&t, "192.0.2.50", "carol@example.com", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.message()
            .starts_with("Too many failed logins from this address: at most 30 in a row, then one every 600 s; try again in"),
        "{}",
        r.message()
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // The same account from another address is fine: it has no failures of its own.
    login_from(&t, "192.0.2.51", "carol@example.com", PASSWORD)
        .await
        .expect(200);
}

async fn the_console_login_shares_the_throttle() {
    let t = TestApp::new().await;
    t.user("dave@example.com").await;
    for _ in 0..10 {
        login_from(&t, "192.0.2.77", "dave@example.com", "wrong password 1")
            .await
            .expect(401);
    }
    // The console's form, with the right password: refused with the reason on the page.
    let app = tollgate_server::app(t.state.clone());
    let page = app
        .clone()
        .oneshot(Request::get("/console/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = String::from_utf8(
        axum::body::to_bytes(page.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).unwrap() + marker.len();
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let form = format!("csrf={csrf}&email=dave%40example.com&password=correct+horse+battery");
    assert_eq!(PASSWORD, "correct horse battery");
    let res = app
        .oneshot(
            Request::post("/console/login")
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert!(
        res.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().contains("tollgate_session=")),
        "no session while throttled"
    );
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("Too many failed logins for this account"),
        "{body}"
    );
}

async fn a_login_response_is_not_cached() {
    let t = TestApp::new().await;
    t.user("erin@example.com").await;
    let r = login_from(&t, "192.0.2.1", "erin@example.com", PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
}

/// The real server: password checks past the bound are refused at once (503 naming the
/// bound), and failed logins are in the log with the email and address but no password.
fn password_checks_are_bounded_and_failures_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let server = ServerProcess::start(
        dir.path(),
        &db,
        &[
            ("TOLLGATE_LOGIN_HASH_THREADS", "1"),
            ("TOLLGATE_LOGIN_HASH_QUEUE", "2"),
            ("TOLLGATE_LOGIN_ADDRESS_BURST", "1000"),
        ],
    );
    let wrong = "not-the-password-7Qz";
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let body = json!({ "email": format!("nobody{i}@example.com"), "password": wrong });
                crate::common::process::http::call(&url, "POST", "/auth/user", None, Some(&body))
            })
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    let denied = replies.iter().filter(|r| r.status == 401).count();
    assert_eq!(busy.len() + denied, replies.len(), "{replies:?}");
    assert!(
        !busy.is_empty(),
        "24 checks at once with 1 thread and 2 waiting: {replies:?}"
    );
    assert!(denied >= 1, "{replies:?}");
    for r in &busy {
        assert_eq!(r.body["type"], "ServiceUnavailable");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("(1 at a time, 2 waiting)"),
            "{}",
            r.body
        );
    }
    // The administrator still logs in.
    let ok = crate::common::process::http::call(
        &server.url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    // The log is written by a background writer: wait for every refusal's line.
    let log = tollgate_testkit::eventually_blocking(
        "a \"login failed\" line for every refused login",
        std::time::Duration::from_secs(20),
        || {
            let log = server.log();
            (log.lines().filter(|l| l.contains("login failed")).count() >= denied).then_some(log)
        },
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("nobody") && l.contains("127.0.0.1")),
        "{failed:?}"
    );
    assert!(!log.contains(wrong), "the password reached the log");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(an_account_is_throttled_after_ten_failures_even_for_the_right_password),
        case!(an_address_is_throttled_across_accounts_and_unknown_emails),
        case!(the_console_login_shares_the_throttle),
        case!(a_login_response_is_not_cached),
        case!(sync password_checks_are_bounded_and_failures_are_logged).once(),
    ]
}
