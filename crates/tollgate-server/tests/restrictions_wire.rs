//! Issue 14 over real sockets: address allow-lists from two loopback sources (127.0.0.1 and
//! 127.0.0.2), `--trusted-proxy` and `X-Forwarded-For`, rate limits with their headers, and a
//! usage limit shared by two nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, http, pg_server};

/// A response with its headers (lowercase names).
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

/// One HTTP/1.1 request from the local address `from` (127.0.0.1 or 127.0.0.2).
async fn call_from(
    from: &str,
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind the client socket to the loopback source");
    let mut s = socket.connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A fresh server and application, the administrator's session and the application id.
async fn server(dir: &std::path::Path, env: &[(&str, &str)]) -> (ServerProcess, String, String) {
    let db = crate::common::fresh_database_url(dir).await;
    let server = ServerProcess::start(dir, &db, env);
    let session = http::admin_session(&server.url);
    let app = http::post(
        &server.url,
        "/applications",
        &session,
        json!({ "name": "Plant" }),
    )
    .expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    (server, session, app)
}

fn token(base: &str, session: &str, app: &str, body: Value) -> Value {
    http::post(base, &format!("/applications/{app}/tokens"), session, body).expect(201)
}

fn secret(t: &Value) -> &str {
    t["token"].as_str().unwrap()
}

/// Scenario 2: a token usable only from listed networks; 403 naming the rule otherwise; the
/// header `X-Forwarded-For` ignored unless the peer is a trusted proxy.
async fn address_allow_lists_from_two_loopback_sources() {
    let dir = tempfile::tempdir().unwrap();
    let (s, session, app) = server(dir.path(), &[]).await;
    let path = format!("/applications/{app}");
    let t = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "dash", "allowedAddresses": ["127.0.0.1", "2001:db8::/32"] }),
    );
    assert_eq!(
        t["allowedAddresses"],
        json!(["127.0.0.1/32", "2001:db8::/32"])
    );
    let ok = call_from("127.0.0.1", &s.url, "GET", &path, secret(&t), &[], None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let refused = call_from("127.0.0.2", &s.url, "GET", &path, secret(&t), &[], None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1/32, 2001:db8::/32") && message.contains("127.0.0.2"),
        "{message}"
    );
    assert_eq!(
        refused.headers["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
    // Without trusted proxies a forged header changes nothing.
    let forged = call_from(
        "127.0.0.2",
        &s.url,
        "GET",
        &path,
        secret(&t),
        &[("X-Forwarded-For", "127.0.0.1")],
        None,
    )
    .await;
    assert_eq!(forged.status, 403);

    // Shown in the list and the detail.
    let list = http::get(&s.url, &format!("/applications/{app}/tokens"), &session).expect(200);
    assert_eq!(
        list["items"][0]["allowedAddresses"],
        json!(["127.0.0.1/32", "2001:db8::/32"])
    );
    let one = http::get(
        &s.url,
        &format!("/applications/{app}/tokens/{}", t["id"].as_str().unwrap()),
        &session,
    )
    .expect(200);
    assert_eq!(one["allowedAddresses"], t["allowedAddresses"]);

    // Malformed lists are 400s naming the entry.
    let bad = http::post(
        &s.url,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "x", "allowedAddresses": ["10.0.0.0/8", "nonsense"] }),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap()
            .contains("allowedAddresses[1]"),
        "{}",
        bad.body
    );

    // A child's addresses lie within its creator's.
    let minter = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "minter", "allowedAddresses": ["127.0.0.0/8"] }),
    );
    let tokens = format!("/applications/{app}/tokens");
    let child = |body: Value| {
        let tokens = tokens.clone();
        let url = s.url.clone();
        let m = secret(&minter).to_owned();
        async move { call_from("127.0.0.1", &url, "POST", &tokens, &m, &[], Some(body)).await }
    };
    let r = child(json!({ "name": "c1" })).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("address allow-list"),
        "{}",
        r.body
    );
    let r = child(json!({ "name": "c2", "allowedAddresses": ["10.0.0.0/8"] })).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("10.0.0.0/8"),
        "{}",
        r.body
    );
    let r = child(json!({ "name": "c3", "allowedAddresses": ["127.0.0.2"] })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c3 = r.body["token"].as_str().unwrap();
    assert_eq!(
        call_from("127.0.0.2", &s.url, "GET", &path, c3, &[], None)
            .await
            .status,
        200
    );
    assert_eq!(
        call_from("127.0.0.1", &s.url, "GET", &path, c3, &[], None)
            .await
            .status,
        403
    );
}

/// `--trusted-proxy`: only a trusted peer's `X-Forwarded-For` is believed.
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let (s, session, app) =
        server(dir.path(), &[("TOLLGATE_TRUSTED_PROXIES", "127.0.0.2/32")]).await;
    let path = format!("/applications/{app}");
    let t = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "dash", "allowedAddresses": ["203.0.113.0/24"] }),
    );
    let via = |from: &'static str, xff: &'static str| {
        let url = s.url.clone();
        let path = path.clone();
        let secret = secret(&t).to_owned();
        async move {
            call_from(
                from,
                &url,
                "GET",
                &path,
                &secret,
                &[("X-Forwarded-For", xff)],
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(via("127.0.0.2", "203.0.113.9").await, 200, "trusted proxy");
    assert_eq!(via("127.0.0.2", "198.51.100.1").await, 403);
    assert_eq!(
        via("127.0.0.2", "203.0.113.9, 198.51.100.1").await,
        403,
        "the rightmost untrusted hop is the client"
    );
    assert_eq!(via("127.0.0.1", "203.0.113.9").await, 403, "untrusted peer");
}

/// Scenario 3, rate: past the rate a 429 with the IETF RateLimit fields and Retry-After.
async fn rate_limits_answer_429_with_ratelimit_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (s, session, app) = server(dir.path(), &[]).await;
    let path = format!("/applications/{app}");
    let t = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "vendor", "rateLimit": { "requests": 3, "perSeconds": 60 } }),
    );
    assert_eq!(t["rateLimit"], json!({ "requests": 3, "perSeconds": 60 }));
    for i in 0..3 {
        let r = call_from("127.0.0.1", &s.url, "GET", &path, secret(&t), &[], None).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let r = call_from("127.0.0.1", &s.url, "GET", &path, secret(&t), &[], None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    let reset: u64 = r.headers["ratelimit-reset"].parse().unwrap();
    // One request's worth refills in 20 s; the bucket is full again within 60 s.
    assert!((19..=20).contains(&retry), "{retry}");
    assert!((retry..=60).contains(&reset), "{reset}");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("3 requests per 60 s"),
        "{}",
        r.body
    );
    // A child cannot be faster.
    let minter = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "m", "rateLimit": { "requests": 10, "perSeconds": 1 } }),
    );
    let r = call_from(
        "127.0.0.1",
        &s.url,
        "POST",
        &format!("/applications/{app}/tokens"),
        secret(&minter),
        &[],
        Some(json!({ "name": "c", "rateLimit": { "requests": 20, "perSeconds": 1 } })),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("rateLimit"),
        "{}",
        r.body
    );
}

/// Scenario 3, quota, on one node: exactly `usageLimit` requests pass, then 429 "usage limit
/// reached"; `usesRemaining` counts down; a child's quota is carved out of its creator's.
async fn usage_limits_are_exact_and_carved_out() {
    let dir = tempfile::tempdir().unwrap();
    let (s, session, app) = server(dir.path(), &[]).await;
    let path = format!("/applications/{app}");
    let t = token(
        &s.url,
        &session,
        &app,
        json!({ "name": "vendor", "usageLimit": 40 }),
    );
    assert_eq!(t["usageLimit"], 40);
    assert_eq!(t["usesRemaining"], 40);
    let id = t["id"].as_str().unwrap();
    let mut passed = 0;
    for _ in 0..10 {
        assert_eq!(http::get(&s.url, &path, secret(&t)).status, 200);
        passed += 1;
    }
    let shown = http::get(
        &s.url,
        &format!("/applications/{app}/tokens/{id}"),
        &session,
    )
    .expect(200);
    assert_eq!(shown["usesRemaining"], 40 - passed, "{shown}");
    // A child of 25 uses is carved out: the parent has 5 left after it.
    let child = call_from(
        "127.0.0.1",
        &s.url,
        "POST",
        &format!("/applications/{app}/tokens"),
        secret(&t),
        &[],
        Some(json!({ "name": "c", "usageLimit": 25 })),
    )
    .await;
    // The creation request itself was one of the parent's uses.
    passed += 1;
    // The parent's scope is all.Application: it may create tokens.
    assert_eq!(child.status, 201, "{}", child.body);
    let too_big = call_from(
        "127.0.0.1",
        &s.url,
        "POST",
        &format!("/applications/{app}/tokens"),
        secret(&t),
        &[],
        Some(json!({ "name": "c2", "usageLimit": 25 })),
    )
    .await;
    passed += 1;
    assert_eq!(too_big.status, 403, "{}", too_big.body);
    assert!(
        too_big.body["message"]
            .as_str()
            .unwrap()
            .contains("left to give"),
        "{}",
        too_big.body
    );
    let r = call_from(
        "127.0.0.1",
        &s.url,
        "POST",
        &format!("/applications/{app}/tokens"),
        secret(&t),
        &[],
        Some(json!({ "name": "c3" })),
    )
    .await;
    passed += 1;
    assert_eq!(
        r.status, 403,
        "a child of a limited token needs a limit: {}",
        r.body
    );
    let mut more = 0;
    loop {
        let r = http::get(&s.url, &path, secret(&t));
        if r.status == 429 {
            assert!(
                r.body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Usage limit reached"),
                "{}",
                r.body
            );
            break;
        }
        assert_eq!(r.status, 200);
        more += 1;
        assert!(more < 100, "the usage limit never took effect");
    }
    assert_eq!(passed + more, 40 - 25, "authorized requests of the parent");
    let shown = http::get(
        &s.url,
        &format!("/applications/{app}/tokens/{id}"),
        &session,
    )
    .expect(200);
    assert_eq!(shown["usesRemaining"], 0);
    let c = child.body["token"].as_str().unwrap();
    let mut child_passed = 0;
    while http::get(&s.url, &path, c).status == 200 {
        child_passed += 1;
        assert!(child_passed <= 25);
    }
    assert_eq!(child_passed, 25);
}

/// Scenario 3, quota, on two nodes of one PostgreSQL database, requests sent to both at once:
/// exactly `usageLimit` are authorized in all.
fn usage_limit_is_exact_across_two_nodes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(crate::common::fresh_pg_database(&pg_server()));
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(dir.path(), &db, &[]);
    let b = ServerProcess::start(dir.path(), &db, &[]);
    let session = http::admin_session(&a.url);
    let app = http::post(
        &a.url,
        "/applications",
        &session,
        json!({ "name": "fleet" }),
    )
    .expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    const LIMIT: usize = 300;
    let t = token(
        &a.url,
        &session,
        &app,
        json!({ "name": "q", "usageLimit": LIMIT }),
    );
    let secret = secret(&t).to_owned();
    let path = format!("/applications/{app}");
    let ok = rt.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let url = if worker % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let (secret, path) = (secret.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0usize;
                let mut refused = 0usize;
                while refused < 5 {
                    let r = call_from("127.0.0.1", &url, "GET", &path, &secret, &[], None).await;
                    match r.status {
                        200 => ok += 1,
                        429 => refused += 1,
                        other => panic!("unexpected {other}: {}", r.body),
                    }
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    eprintln!("{ok} of {LIMIT} uses authorized across two nodes");
    assert_eq!(ok, LIMIT, "authorized requests across both nodes");
    let shown = http::get(
        &b.url,
        &format!("/applications/{app}/tokens/{}", t["id"].as_str().unwrap()),
        &session,
    )
    .expect(200);
    assert_eq!(shown["usesRemaining"], 0);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(address_allow_lists_from_two_loopback_sources),
        case!(forwarded_for_is_believed_only_from_trusted_proxies).once(),
        case!(rate_limits_answer_429_with_ratelimit_headers).once(),
        case!(usage_limits_are_exact_and_carved_out),
        case!(sync usage_limit_is_exact_across_two_nodes).postgres_pass(),
    ]
}
