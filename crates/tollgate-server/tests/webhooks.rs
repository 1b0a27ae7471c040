//! Token-event webhooks (issue 15, item 4) end to end, both passes: an administrator adds an
//! endpoint (its secret shown once), token changes reach a receiver on loopback as signed
//! events (the signature verifies; a tampered body does not), a receiver that fails is tried
//! again until it answers 2xx (or the window ends: failed, and retried by hand), deliveries
//! survive a restart of the server, and two workers on one database never send one delivery
//! twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tollgate_server::webhooks::{DeliveryPolicy, deliver_due, verify};
use tollgate_server::{AppState, Settings};
use tollgate_store::Store;
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

use crate::common::{TestApp, eventually};

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub signature: String,
    pub event_id: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback: records every request, answers the statuses queued with
/// [`Receiver::answer`] in turn, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Vec<u16>>>,
    delay: Duration,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with(Duration::ZERO, None).await
    }

    /// With a delay before each answer, on `port` if given.
    pub async fn start_with(delay: Duration, port: Option<u16>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .unwrap();
        let url = format!("http://{}/hooks/tollgate", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            got: Arc::default(),
            answers: Arc::default(),
            delay,
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hooks/tollgate",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let r = state.clone();
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    r.got.lock().unwrap().push(Received {
                        signature: header("tollgate-signature"),
                        event_id: header("tollgate-event-id"),
                        body: body.to_vec(),
                    });
                    if !r.delay.is_zero() {
                        tokio::time::sleep(r.delay).await;
                    }
                    let next = {
                        let mut a = r.answers.lock().unwrap();
                        if a.is_empty() { 200 } else { a.remove(0) }
                    };
                    StatusCode::from_u16(next).unwrap()
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        r
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend_from_slice(statuses);
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Fast retries for tests.
fn fast() -> DeliveryPolicy {
    DeliveryPolicy {
        first_retry: Duration::from_millis(100),
        max_retry: Duration::from_millis(400),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// Run the worker until `done` holds of what the receiver got.
async fn deliver_until(
    state: &AppState,
    policy: &DeliveryPolicy,
    r: &Receiver,
    what: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    eventually(what, Duration::from_secs(60), || async {
        deliver_due(state, policy).await.unwrap();
        let got = r.got();
        done(&got).then_some(got)
    })
    .await
}

fn now_secs() -> i64 {
    tollgate_store::now_ms() / 1000
}

async fn signed_events_reach_the_receiver_for_create_roll_leak_and_delete() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let r = Receiver::start().await;
    let hooks = format!("/applications/{app}/token-webhooks");
    // Only http(s) URLs, without credentials; only known events.
    for bad in [
        json!({ "url": "ftp://example.com/x" }),
        json!({ "url": "https://u:p@example.com/x" }),
        json!({ "url": r.url, "events": ["token.nope"] }),
    ] {
        t.post(&hooks, &admin, bad).await.expect(400);
    }
    let created = t
        .post(&hooks, &admin, json!({ "url": r.url }))
        .await
        .expect(201);
    let secret = created["signingSecret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("tgwh_") && secret.len() == 69,
        "{created}"
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["events"].as_array().unwrap().len(), 9);
    let hook = created["id"].as_str().unwrap().to_owned();
    // Never shown again.
    let shown = t.get(&format!("{hooks}/{hook}"), &admin).await.expect(200);
    assert!(!shown.to_string().contains(&secret[5..]), "{shown}");
    let listed = t.get(&hooks, &admin).await.expect(200);
    assert_eq!(listed["count"], 1);
    assert!(!listed.to_string().contains(&secret[5..]));

    let tokens = format!("/applications/{app}/tokens");
    let a = t.api_token(&admin, app, json!({ "name": "gateway" })).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let rolled = t
        .post(
            &format!("{tokens}/{a_id}/roll"),
            &admin,
            json!({ "overlapSeconds": 60 }),
        )
        .await
        .expect(201);
    let b_secret = rolled["token"].as_str().unwrap().to_owned();
    let b_id = rolled["id"].as_str().unwrap().to_owned();
    t.send(
        axum::http::Method::POST,
        "/tokens/revoke",
        None,
        Some(json!({ "tokens": [b_secret] })),
    )
    .await
    .expect(202);
    t.delete(&format!("{tokens}/{a_id}"), &admin)
        .await
        .expect(200);

    let got = deliver_until(&t.state, &fast(), &r, "five events", |g| g.len() >= 5).await;
    let events: Vec<Value> = got.iter().map(Received::json).collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["token"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("token.created", a_id.as_str()),
        ("token.created", b_id.as_str()),
        ("token.rolled", a_id.as_str()),
        ("token.leaked", b_id.as_str()),
        ("token.deleted", a_id.as_str()),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not in {kinds:?}");
    }
    assert_eq!(got.len(), 5, "each event once");
    for (g, e) in got.iter().zip(&events) {
        assert!(
            verify(secret.as_bytes(), &g.signature, &g.body, now_secs(), 300),
            "signature {} does not verify",
            g.signature
        );
        // A tampered body, or another secret, does not verify.
        let mut tampered = g.body.clone();
        let at = tampered.iter().position(|b| *b == b'{').unwrap() + 1;
        tampered.insert(at, b' ');
        assert!(!verify(
            secret.as_bytes(),
            &g.signature,
            &tampered,
            now_secs(),
            300
        ));
        assert!(!verify(
            b"tgwh_other",
            &g.signature,
            &g.body,
            now_secs(),
            300
        ));
        assert_eq!(g.event_id, e["id"].as_str().unwrap());
        assert_eq!(e["applicationId"], app.to_hex());
        let text = String::from_utf8_lossy(&g.body);
        assert!(
            !text.contains("tgat_") && !text.contains(&b_secret[5..]),
            "{text}"
        );
    }
    let rolled_event = events.iter().find(|e| e["type"] == "token.rolled").unwrap();
    assert_eq!(rolled_event["data"]["rolledToId"], b_id.as_str());
    assert_eq!(rolled_event["token"]["name"], "gateway");

    // The deliveries, as the API lists them.
    let page = t
        .get(
            &format!("{hooks}/{hook}/deliveries?status=delivered"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(page["totalCount"], 5, "{page}");
    for d in page["items"].as_array().unwrap() {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["lastStatusCode"], 200);
        assert!(d["nextAttemptAt"].is_null());
    }
    let detail = t.get(&format!("{hooks}/{hook}"), &admin).await.expect(200);
    assert_eq!(
        detail["deliveryCounts"],
        json!({ "pending": 0, "delivered": 5, "failed": 0 })
    );

    // Switched off: nothing is queued; deleted: gone, and audited throughout.
    t.patch(
        &format!("{hooks}/{hook}"),
        &admin,
        json!({ "enabled": false }),
    )
    .await
    .expect(200);
    t.api_token(&admin, app, json!({ "name": "unheard" })).await;
    let all = t
        .get(&format!("{hooks}/{hook}/deliveries"), &admin)
        .await
        .expect(200);
    assert_eq!(all["totalCount"], 5);
    t.delete(&format!("{hooks}/{hook}"), &admin)
        .await
        .expect(200);
    t.get(&format!("{hooks}/{hook}"), &admin).await.expect(404);
    let log = t
        .get(&format!("/applications/{app}/audit-logs"), &admin)
        .await
        .expect(200);
    let actions: Vec<String> = log["items"]
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
        .collect();
    for a in [
        "applicationTokenWebhooks.post",
        "applicationTokenWebhook.patch",
        "applicationTokenWebhook.delete",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert!(
        !log.to_string().contains(&secret[5..]),
        "no secret in the audit log"
    );
}

async fn a_failing_receiver_is_retried_until_it_answers() {
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let r = Receiver::start().await;
    let hooks = format!("/applications/{app}/token-webhooks");
    let created = t
        .post(
            &hooks,
            &admin,
            json!({ "url": r.url, "events": ["token.created"] }),
        )
        .await
        .expect(201);
    let hook = created["id"].as_str().unwrap().to_owned();
    r.answer(&[500]);
    t.api_token(&admin, app, json!({ "name": "gateway" })).await;
    let policy = DeliveryPolicy {
        first_retry: Duration::from_millis(300),
        ..fast()
    };
    // The first attempt fails: pending, with the status and the next attempt.
    deliver_until(&t.state, &policy, &r, "a first attempt", |g| !g.is_empty()).await;
    let page = t
        .get(&format!("{hooks}/{hook}/deliveries"), &admin)
        .await
        .expect(200);
    let d = &page["items"][0];
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastStatusCode"], 500);
    assert!(d["nextAttemptAt"].is_string());
    let got = deliver_until(&t.state, &policy, &r, "a retry", |g| g.len() >= 2).await;
    assert_eq!(got[0].body, got[1].body, "the same event");
    assert_eq!(got[0].event_id, got[1].event_id);
    let page = t
        .get(&format!("{hooks}/{hook}/deliveries"), &admin)
        .await
        .expect(200);
    let d = &page["items"][0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64()),
        (Some("delivered"), Some(2)),
        "{d}"
    );
    assert_eq!(d["lastStatusCode"], 200);
    assert!(d["lastError"].is_null());
    // Nothing more is sent.
    deliver_due(&t.state, &policy).await.unwrap();
    assert_eq!(r.got().len(), 2);

    // A receiver that keeps failing: failed once the window has passed; then retried by hand.
    r.answer(&[503; 50]);
    let short = DeliveryPolicy {
        first_retry: Duration::from_millis(50),
        max_retry: Duration::from_millis(50),
        give_up_after: Duration::from_millis(400),
        ..fast()
    };
    t.api_token(&admin, app, json!({ "name": "second" })).await;
    let failed = eventually("the delivery fails", Duration::from_secs(60), || async {
        deliver_due(&t.state, &short).await.unwrap();
        let page = t
            .get(&format!("{hooks}/{hook}/deliveries?status=failed"), &admin)
            .await
            .expect(200);
        (page["totalCount"] == 1).then(|| page["items"][0].clone())
    })
    .await;
    assert!(failed["attempts"].as_i64().unwrap() >= 2, "{failed}");
    assert_eq!(failed["lastStatusCode"], 503);
    assert!(failed["nextAttemptAt"].is_null());
    r.answers.lock().unwrap().clear();
    let event = failed["id"].as_str().unwrap();
    let again = t
        .post(
            &format!("{hooks}/{hook}/deliveries/{event}/retry"),
            &admin,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(again["status"], "pending");
    eventually(
        "delivered after the retry",
        Duration::from_secs(60),
        || async {
            deliver_due(&t.state, &short).await.unwrap();
            let page = t
                .get(
                    &format!("{hooks}/{hook}/deliveries?status=delivered"),
                    &admin,
                )
                .await
                .expect(200);
            (page["totalCount"] == 2).then_some(())
        },
    )
    .await;
    t.get(&format!("{hooks}/{hook}/deliveries?status=lost"), &admin)
        .await
        .expect(400);
}

/// Two nodes' workers (two stores and states on one database) deliver each of 40 events
/// exactly once, while claiming at the same time.
async fn two_workers_never_send_one_delivery_twice() {
    // Every node of a cluster shares the secret key file: both states here use one.
    let keys = tempfile::tempdir().unwrap();
    let settings = Settings {
        secret_key_file: Some(keys.path().join("secret.key")),
        ..Settings::default()
    };
    let t = TestApp::with_settings(settings.clone()).await;
    let (admin, app) = t.admin_app().await;
    let r = Receiver::start_with(Duration::from_millis(20), None).await;
    t.post(
        &format!("/applications/{app}/token-webhooks"),
        &admin,
        json!({ "url": r.url, "events": ["token.created"] }),
    )
    .await
    .expect(201);
    for _ in 0..40 {
        t.raw_token(app, &["application.get"], TokenStatus::Active, None)
            .await;
    }
    let other_store = Store::connect_with(&t.database_url, 4).await.unwrap();
    let other = AppState::new(other_store, settings);
    let policy = DeliveryPolicy { batch: 4, ..fast() };
    let work = |s: AppState, p: DeliveryPolicy, r: Receiver| async move {
        let mut n = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while r.got().len() < 40 && std::time::Instant::now() < deadline {
            n += deliver_due(&s, &p).await.unwrap();
            tokio::task::yield_now().await;
        }
        n
    };
    let (a, b) = tokio::join!(
        tokio::spawn(work(t.state.clone(), policy.clone(), r.clone())),
        tokio::spawn(work(other.clone(), policy.clone(), r.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let got = r.got();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for g in &got {
        *per_event.entry(g.event_id.clone()).or_default() += 1;
    }
    assert_eq!(per_event.len(), 40, "every event arrived");
    assert!(
        per_event.values().all(|n| *n == 1),
        "one sent twice: {per_event:?}"
    );
    assert_eq!(got.len(), 40);
    assert_eq!(a + b, 40, "attempts: {a} + {b}");
    other.store().close().await;
}

/// A member with the view role reads the endpoints and their deliveries (API and console)
/// but cannot add, change or delete one; a read-only token likewise.
async fn viewers_read_webhooks_but_do_not_change_them() {
    use crate::common::console::{console_login, get as page};
    let t = TestApp::new().await;
    let (owner, viewer, app) = t.org_app_with_viewer().await;
    let hooks = format!("/applications/{app}/token-webhooks");
    let created = t
        .post(&hooks, &owner, json!({ "url": "http://127.0.0.1:9/hook" }))
        .await
        .expect(201);
    let hook = created["id"].as_str().unwrap().to_owned();
    let listed = t.get(&hooks, &viewer).await.expect(200);
    assert_eq!(listed["count"], 1);
    t.get(&format!("{hooks}/{hook}/deliveries"), &viewer)
        .await
        .expect(200);
    t.post(&hooks, &viewer, json!({ "url": "http://127.0.0.1:9/x" }))
        .await
        .expect(403);
    t.patch(
        &format!("{hooks}/{hook}"),
        &viewer,
        json!({ "enabled": false }),
    )
    .await
    .expect(403);
    t.delete(&format!("{hooks}/{hook}"), &viewer)
        .await
        .expect(403);
    let reader = t
        .api_token(
            &owner,
            app,
            json!({ "name": "reader", "scope": ["all.Application.read"] }),
        )
        .await;
    let reader = reader["token"].as_str().unwrap();
    t.get(&hooks, reader).await.expect(200);
    t.post(&hooks, reader, json!({ "url": "http://127.0.0.1:9/x" }))
        .await
        .expect(403);
    // The console: the list without the forms.
    let cookie = console_login(&t, "viewer@example.com").await;
    let p = page(
        &t,
        &format!("/console/applications/{app}/webhooks"),
        &cookie,
    )
    .await;
    assert_eq!(p.status.as_u16(), 200, "{}", p.body);
    assert!(p.body.contains("http://127.0.0.1:9/hook"));
    assert!(!p.body.contains("webhook-form") && !p.body.contains("webhook-delete"));
    let p = page(
        &t,
        &format!("/console/applications/{app}/webhooks/{hook}"),
        &cookie,
    )
    .await;
    assert_eq!(p.status.as_u16(), 200, "{}", p.body);
    let enabled = t.get(&format!("{hooks}/{hook}"), &owner).await.expect(200);
    assert_eq!(enabled["enabled"], true, "nothing changed");
}

/// An `https` endpoint is spoken to in TLS (the first bytes on the wire are a TLS
/// handshake record); a receiver that is not a TLS server fails the attempt, recorded.
async fn https_endpoints_are_spoken_to_in_tls() {
    use tokio::io::AsyncReadExt;
    let t = TestApp::new().await;
    let (admin, app) = t.admin_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.unwrap();
        buf
    });
    let hooks = format!("/applications/{app}/token-webhooks");
    let created = t
        .post(
            &hooks,
            &admin,
            json!({ "url": format!("https://localhost:{port}/hook"), "events": ["token.created"] }),
        )
        .await
        .expect(201);
    t.api_token(&admin, app, json!({ "name": "gateway" })).await;
    deliver_due(&t.state, &fast()).await.unwrap();
    let record = first.await.unwrap();
    assert_eq!(record[0], 0x16, "a TLS handshake record: {record:?}");
    assert_eq!(record[1], 0x03, "TLS version major 3: {record:?}");
    let page = t
        .get(
            &format!("{hooks}/{}/deliveries", created["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .expect(200);
    let d = &page["items"][0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64()),
        (Some("pending"), Some(1)),
        "{d}"
    );
    assert!(
        d["lastError"].is_string() && d["lastStatusCode"].is_null(),
        "{d}"
    );
}

/// A delivery queued while the receiver is down stays queued across a restart of the
/// server (the queue is in the database) and is delivered, signed, by the next process.
async fn deliveries_survive_a_restart() {
    use crate::common::process::{ServerProcess, free_port, http};

    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let env = [
        ("TOLLGATE_WEBHOOK_INTERVAL_MS", "50"),
        ("TOLLGATE_WEBHOOK_RETRY_BASE_MS", "100"),
    ];
    let mut server = ServerProcess::start(dir.path(), &db, &env);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Plant" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    // Nothing listens there yet.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/tollgate");
    let hook = http::post(
        &base,
        &format!("/applications/{app}/token-webhooks"),
        &session,
        json!({ "url": url, "events": ["token.created"] }),
    )
    .expect(201);
    let secret = hook["signingSecret"].as_str().unwrap().to_owned();
    let deliveries = format!(
        "/applications/{app}/token-webhooks/{}/deliveries",
        hook["id"].as_str().unwrap()
    );
    let token = http::post(
        &base,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "gateway" }),
    )
    .expect(201);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = http::get(&base, &deliveries, &session).expect(200);
        let d = &page["items"][0];
        if d["attempts"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(d["status"], "pending", "{d}");
            assert!(d["lastError"].is_string(), "{d}");
            assert!(d["lastStatusCode"].is_null(), "{d}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never attempted: {page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.terminate();

    let r = Receiver::start_with(Duration::ZERO, Some(port)).await;
    let server = ServerProcess::start(dir.path(), &db, &env);
    let base = server.url.clone();
    // A claim held by the stopped process lapses after 60 s: allow for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while r.got().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = r.got();
    let event = got[0].json();
    assert_eq!(event["type"], "token.created");
    assert_eq!(event["token"]["id"], token["id"]);
    assert!(verify(
        secret.as_bytes(),
        &got[0].signature,
        &got[0].body,
        now_secs(),
        300
    ));
    let session = http::admin_session(&base);
    let delivered = eventually_blocking_delivered(&base, &deliveries, &session);
    assert!(delivered["attempts"].as_i64().unwrap() >= 2, "{delivered}");
    assert_eq!(delivered["lastStatusCode"], 200);
}

fn eventually_blocking_delivered(base: &str, path: &str, session: &str) -> Value {
    use crate::common::process::http;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = http::get(base, path, session).expect(200);
        if page["items"][0]["status"] == "delivered" {
            return page["items"][0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(signed_events_reach_the_receiver_for_create_roll_leak_and_delete),
        case!(a_failing_receiver_is_retried_until_it_answers),
        case!(two_workers_never_send_one_delivery_twice, multi_thread = 2),
        case!(deliveries_survive_a_restart, multi_thread = 2),
        case!(https_endpoints_are_spoken_to_in_tls),
        case!(viewers_read_webhooks_but_do_not_change_them),
    ]
}
