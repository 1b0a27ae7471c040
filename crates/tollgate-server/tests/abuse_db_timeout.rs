//! A frozen or partitioned database (issue 12, item 3): every request's database work,
//! including work on a connection the request already holds, ends at `--db-timeout-ms` with a
//! 503, and the server recovers by itself when the database answers again. The database is
//! "frozen" by a TCP proxy between the server and PostgreSQL that stops forwarding, so only
//! this test's server is affected. Needs TOLLGATE_TEST_PG_SERVER.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tollgate_testkit::{Case, Need, case};

use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess, http};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to `target` that can stop forwarding (bytes already sent wait, as in a
/// network partition) and start again.
struct Proxy {
    addr: SocketAddr,
    paused: Arc<AtomicBool>,
    trigger: Trigger,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let paused = Arc::new(AtomicBool::new(false));
        let trigger: Trigger = Arc::default();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let p = paused.clone();
        let t = trigger.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                tokio::spawn(pump(cr, uw, p.clone(), Some(t.clone())));
                tokio::spawn(pump(ur, cw, p.clone(), None));
            }
        });
        Proxy {
            addr,
            paused,
            trigger,
            _runtime: runtime,
        }
    }

    /// Freeze everything as soon as the server sends a message containing `pattern`: that
    /// message is held, so the request that sent it is waiting on a connection it holds.
    fn freeze_at(&self, pattern: &[u8]) {
        *self.trigger.lock().unwrap() = Some(pattern.to_vec());
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

type Trigger = Arc<std::sync::Mutex<Option<Vec<u8>>>>;

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
    trigger: Option<Trigger>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(t) = &trigger {
            let mut t = t.lock().unwrap();
            if t.as_ref()
                .is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == p.as_slice()))
            {
                paused.store(true, Ordering::SeqCst);
                *t = None;
            }
        }
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn requests_end_at_the_db_timeout_while_postgres_is_frozen_and_recover_after() {
    let pg = tollgate_testkit::postgres_server().expect("checked by the harness");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db_url = rt.block_on(tollgate_testkit::fresh_pg_database(&pg));
    // postgres://user[:pass]@host:port/db → the same through the proxy.
    let (prefix, rest) = db_url.split_once('@').unwrap();
    let (host_port, db) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(host_port.to_owned());
    let proxied = format!("{prefix}@{}/{db}", proxy.addr);

    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &proxied, &[("TOLLGATE_DB_TIMEOUT_MS", "1500")]);
    let session = http::call(
        &server.url,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Warm the pool: the requests below run on connections the pool already holds.
    for i in 0..4 {
        http::post(
            &server.url,
            "/applications",
            &session,
            json!({ "name": format!("warm {i}") }),
        )
        .expect(201);
    }

    // The write gets its connection and starts; its INSERT (whose parameters carry the name)
    // is held: only the request deadline
    // can end it. Then everything is frozen for the requests after it.
    proxy.freeze_at(b"during the outage");
    for (method, path, body) in [
        (
            "POST",
            "/applications",
            Some(json!({ "name": "during the outage" })),
        ),
        ("GET", "/applications", None),
        ("GET", "/health", None),
    ] {
        let started = Instant::now();
        let r = http::call(&server.url, method, path, Some(&session), body.as_ref());
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{method} {path}: {}", r.body);
        if path != "/health" {
            assert_eq!(r.body["type"], "ServiceUnavailable", "{}", r.body);
            assert!(
                r.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("--db-timeout-ms"),
                "{}",
                r.body
            );
        }
        // Ends at the deadline (1.5 s), not at the end of the outage.
        assert!(
            took < Duration::from_secs(8),
            "{method} {path} took {took:?}"
        );
    }

    proxy.resume();
    // Back without a restart: a write succeeds again within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        let r = http::post(
            &server.url,
            "/applications",
            &session,
            json!({ "name": "after" }),
        );
        if r.status == 201 {
            last = None;
            break;
        }
        last = Some(r);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(last.is_none(), "no recovery: {last:?}\n{}", server.log());
    assert!(server.log().contains("request abandoned at its deadline"));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(sync requests_end_at_the_db_timeout_while_postgres_is_frozen_and_recover_after)
            .postgres_pass()
            .needs(Need::PostgresServer),
    ]
}
