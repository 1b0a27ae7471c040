//! Linearizable revocation on several nodes: once the node that revoked a credential has
//! answered 2xx, no node accepts that credential on a request sent afterwards — with no
//! fault, with one node's change listener killed (`pg_terminate_backend`), with it stalled (a
//! proxy on its listener connection stops forwarding), and with PostgreSQL restarted; with
//! reads and writes from other clients in flight throughout.
//!
//! Three server processes (A revokes; B is the one the fault hits; C is healthy). Each round
//! revokes one credential that B and C have cached, rotating through the four ways: token
//! deactivated, token deleted, its application deleted, a login session ended
//! (`POST /auth/logout`). Two threads keep presenting the round's credential to B and to C;
//! every request they *sent* after A's answer arrived must be refused. The figures it prints
//! are from debug builds on a loaded machine: `scripts/bench-revocation.sh` measures release
//! builds with more rounds.
//!
//! Runs in the PostgreSQL pass, on `TOLLGATE_TEST_PG_SERVER` (scripts/test.sh sets it); the
//! restart scenario runs a cluster of its own. Rounds per scenario:
//! `TOLLGATE_REVOCATION_ROUNDS` (default 12).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::http::{self, Reply};
use crate::common::process::{PgCluster, ServerProcess, listener_backend, pg_server};
use crate::common::proxy::StallProxy;
use serde_json::json;
use tollgate_testkit::{Case, Need, case};

/// The nodes' lease: short, so that faulted rounds are quick.
const LEASE_MS: &str = "300";

/// One scenario at a time: each runs three debug servers and load threads on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn rounds() -> usize {
    std::env::var("TOLLGATE_REVOCATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn health(node: &ServerProcess) -> Reply {
    http::call(&node.url, "GET", "/health", None, None)
}

/// Poll `/health` until the node answers from its caches again.
fn wait_live(node: &ServerProcess, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let h = health(node);
        if h.status == 200 && h.body["cache"] == "live" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node never came back live; last health {}; log:\n{}",
            h.body,
            node.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    Killed,
    Stalled,
    Restarted,
}

/// The credential a round revokes, and how to present it.
#[derive(Clone)]
struct Probe {
    round: usize,
    secret: String,
    path: String,
}

/// What the presenting threads saw: (round, node, sent at, status).
type Seen = Arc<Mutex<Vec<(usize, usize, Instant, u16)>>>;

struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Reads (device and application gets) and writes (state reports, device renames, token
    /// creations and deletions) on every node, by other clients, for as long as it runs.
    fn start(
        urls: Vec<String>,
        session: String,
        app: String,
        device: String,
        token: String,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for writer in [false, true] {
            let (stop, ok, failed, urls) = (stop.clone(), ok.clone(), failed.clone(), urls.clone());
            let (session, app, device, token) =
                (session.clone(), app.clone(), device.clone(), token.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[i % urls.len()];
                    let dev = format!("/applications/{app}/devices/{device}");
                    let status = if !writer {
                        if i.is_multiple_of(2) {
                            http::get(url, &dev, &token).status
                        } else {
                            http::get(url, &format!("/applications/{app}"), &token).status
                        }
                    } else {
                        match i % 3 {
                            0 => {
                                http::post(
                                    url,
                                    &format!("{dev}/state"),
                                    &token,
                                    json!({ "data": { "rpm": i } }),
                                )
                                .status
                            }
                            1 => {
                                http::patch(
                                    url,
                                    &dev,
                                    &token,
                                    json!({ "name": format!("pump {i}") }),
                                )
                                .status
                            }
                            _ => {
                                let r = http::post(
                                    url,
                                    &format!("/applications/{app}/tokens"),
                                    &session,
                                    json!({ "name": format!("load {i}") }),
                                );
                                if r.status == 201 {
                                    let id = r.body["id"].as_str().unwrap().to_owned();
                                    http::delete(
                                        url,
                                        &format!("/applications/{app}/tokens/{id}"),
                                        &session,
                                    )
                                    .status
                                } else {
                                    r.status
                                }
                            }
                        }
                    };
                    if (200..300).contains(&status) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn terminate(server: &str, pid: i32) {
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .unwrap();
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(done, "backend {pid} was not terminated");
    admin.close().await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let at = |q: f64| xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1];
    format!(
        "median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*xs.last().unwrap())
    )
}

/// Run `rounds` revocations under `fault`; return how many requests were accepted after the
/// revoking node's answer (must be 0).
fn scenario(fault: Fault) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = pg_server();
    sqlx::any::install_default_drivers();
    let rt = runtime();
    // The restart scenario stops and starts a cluster of its own.
    let own_pg = matches!(fault, Fault::Restarted).then(PgCluster::start);
    let server = own_pg.as_ref().map_or(server, |pg| pg.url.clone());
    let db = rt.block_on(crate::common::fresh_pg_database(&server));
    let pg_port: u16 = server
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the PostgreSQL URL");
    let proxy = matches!(fault, Fault::Stalled).then(|| StallProxy::start(pg_port));
    let dir = tempfile::tempdir().unwrap();
    let common_env = [
        ("TOLLGATE_CHANGE_LEASE_MS", LEASE_MS),
        ("TOLLGATE_DB_TIMEOUT_MS", "2000"),
    ];
    let a = ServerProcess::start(dir.path(), &db, &common_env);
    let b = match &proxy {
        Some(p) => {
            let listener_url = p.url_for(&db);
            let mut env = common_env.to_vec();
            env.push(("TOLLGATE_LISTENER_DATABASE_URL", &listener_url));
            ServerProcess::start(dir.path(), &db, &env)
        }
        None => ServerProcess::start(dir.path(), &db, &common_env),
    };
    let c = ServerProcess::start(dir.path(), &db, &common_env);
    for n in [&a, &b, &c] {
        wait_live(n, Duration::from_secs(20));
    }
    let others = [&b, &c];

    let session = http::admin_session(&a.url);
    let load_app = http::post(&a.url, "/applications", &session, json!({ "name": "load" }))
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load_token = http::post(
        &a.url,
        &format!("/applications/{load_app}/tokens"),
        &session,
        json!({ "name": "load" }),
    )
    .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = http::post(
        &a.url,
        &format!("/applications/{load_app}/devices"),
        &session,
        json!({ "name": "pump", "attributes": [{ "name": "rpm", "dataType": "number" }] }),
    )
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load = Load::start(
        vec![a.url.clone(), b.url.clone(), c.url.clone()],
        session.clone(),
        load_app,
        device,
        load_token,
    );

    // Two threads keep presenting the current round's credential, one to B, one to C.
    let current: Arc<Mutex<Option<Probe>>> = Arc::default();
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let presenters: Vec<_> = others
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (url, current, seen, stop) =
                (n.url.clone(), current.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let probe = current.lock().unwrap().clone();
                    let Some(p) = probe else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let sent = Instant::now();
                    let status = http::get(&url, &p.path, &p.secret).status;
                    seen.lock().unwrap().push((p.round, i, sent, status));
                }
            })
        })
        .collect();

    let rounds = rounds();
    let mut answered: Vec<Instant> = Vec::with_capacity(rounds);
    let mut took = Vec::new();
    let mut refused_after = Vec::new();
    for round in 0..rounds {
        // Every node is answering from its caches before the round begins.
        for n in [&a, &b, &c] {
            wait_live(n, Duration::from_secs(20));
        }
        let kind = round % 4;
        let app = if kind == 2 {
            http::post(
                &a.url,
                "/applications",
                &session,
                json!({ "name": format!("doomed {round}") }),
            )
            .expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        } else {
            http::post(
                &a.url,
                "/applications",
                &session,
                json!({ "name": format!("r{round}") }),
            )
            .expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (secret, path, token_id) = if kind == 3 {
            let s = http::admin_session(&a.url);
            (s, "/me".to_owned(), String::new())
        } else {
            let t = http::post(
                &a.url,
                &format!("/applications/{app}/tokens"),
                &session,
                json!({ "name": format!("round {round}") }),
            )
            .expect(201);
            (
                t["token"].as_str().unwrap().to_owned(),
                format!("/applications/{app}"),
                t["id"].as_str().unwrap().to_owned(),
            )
        };
        // B and C accept it, the second time from their caches.
        for n in others {
            for _ in 0..2 {
                http::get(&n.url, &path, &secret).expect(200);
            }
        }
        *current.lock().unwrap() = Some(Probe {
            round,
            secret: secret.clone(),
            path: path.clone(),
        });

        // The fault, just before the revocation.
        match fault {
            Fault::None => {}
            Fault::Killed => {
                let pid = rt.block_on(listener_backend(&server, &b));
                rt.block_on(terminate(&server, pid));
            }
            Fault::Stalled => proxy.as_ref().unwrap().stall(),
            Fault::Restarted => {
                let pg = own_pg.as_ref().unwrap();
                pg.halt();
                pg.resume();
            }
        }

        let sent = Instant::now();
        let reply = loop {
            let r = match kind {
                0 => http::patch(
                    &a.url,
                    &format!("/applications/{app}/tokens/{token_id}"),
                    &session,
                    json!({ "status": "inactive" }),
                ),
                1 => http::delete(
                    &a.url,
                    &format!("/applications/{app}/tokens/{token_id}"),
                    &session,
                ),
                2 => http::delete(&a.url, &format!("/applications/{app}"), &session),
                _ => http::call(&a.url, "POST", "/auth/logout", Some(&secret), None),
            };
            // Right after a restart the database may still refuse A; try again.
            if r.status == 503 && matches!(fault, Fault::Restarted) {
                assert!(
                    sent.elapsed() < Duration::from_secs(30),
                    "A never got the database back"
                );
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            break r;
        };
        let acked = Instant::now();
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        if kind == 0 {
            assert_eq!(reply.body["status"], "inactive");
        } else {
            assert_eq!(reply.body, json!({ "success": true }));
        }
        answered.push(acked);
        took.push(acked - sent);
        // The very next request to B and to C is refused.
        for n in others {
            let r = http::get(&n.url, &path, &secret);
            assert!(
                r.status == 401 || r.status == 503,
                "round {round} ({fault:?}, kind {kind}): {} accepted the revoked credential after \
                 A's answer: {} {}; log:\n{}",
                n.url,
                r.status,
                r.body,
                n.log()
            );
            refused_after.push(acked.elapsed());
        }
        if let Fault::Stalled = fault {
            proxy.as_ref().unwrap().resume();
        }
    }
    *current.lock().unwrap() = None;
    stop.store(true, Ordering::Relaxed);
    for p in presenters {
        p.join().unwrap();
    }
    let (load_ok, load_failed) = load.stop();

    let seen = seen.lock().unwrap();
    let after: Vec<_> = seen
        .iter()
        .filter(|(round, _, sent, _)| *sent > answered[*round])
        .collect();
    let accepted_after: Vec<_> = after
        .iter()
        .filter(|(_, _, _, status)| (200..300).contains(status) || *status == 404)
        .collect();
    let accepted_before = seen
        .iter()
        .filter(|(round, _, sent, status)| *sent <= answered[*round] && *status == 200)
        .count();
    eprintln!(
        "{fault:?}: {rounds} revocations; A answered after {}; B and C refused the next request \
         {}; presented {} times after A's answer ({} accepted), {} accepted before it; load: {} \
         ok, {} not",
        summary(took.clone()),
        summary(refused_after),
        after.len(),
        accepted_after.len(),
        accepted_before,
        load_ok,
        load_failed
    );
    assert!(
        accepted_after.is_empty(),
        "{fault:?}: accepted after the answer: {accepted_after:?}"
    );
    assert!(
        !after.is_empty(),
        "the revoked credentials were never presented after the answer"
    );
    assert!(
        load_ok > 0,
        "no load request succeeded: the load was not in flight"
    );
    // Every answer came, at worst, after the longest lease a node can have (and a margin).
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(30)),
        "a revocation took {:?}",
        took.iter().max()
    );
}

fn no_fault() {
    scenario(Fault::None);
}

fn listener_killed() {
    scenario(Fault::Killed);
}

fn listener_stalled() {
    scenario(Fault::Stalled);
}

fn postgres_restarted() {
    scenario(Fault::Restarted);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(sync no_fault).postgres_pass(),
        case!(sync listener_killed).postgres_pass(),
        case!(sync listener_stalled).postgres_pass(),
        case!(sync postgres_restarted)
            .postgres_pass()
            .needs(Need::PostgresBinaries),
    ]
}
