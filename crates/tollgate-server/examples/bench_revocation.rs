//! Revocation latency and linearizability on three nodes, under faults (driven by
//! `scripts/bench-revocation.sh`, which builds the release binary, starts a throwaway
//! PostgreSQL cluster and prints the results as a Markdown table).
//!
//! ```text
//! bench_revocation --bin target/release/tollgate --pg postgres://tollgate@127.0.0.1:PORT/postgres \
//!     --pg-dir DIR --rounds 100 [--lease-ms 750] [--scenarios none,killed,stalled,restarted] [--logs DIR]
//! ```
//!
//! For each scenario: a fresh database, three `tollgate serve` processes (A revokes, B is the
//! node the fault hits, C is healthy; in the stalled scenario B's listener connects through a
//! proxy that can stop forwarding), and other clients' reads and writes on every node
//! throughout. Each round creates a credential through A, has B and C accept it (so they cache
//! it), applies the fault, revokes it through A (rotating: token deactivated, token deleted, its
//! application deleted, a login session ended), and then:
//!
//! * measures how long A took to answer (request sent → 2xx), and how long after A's 2xx B's and
//!   C's next requests were refused;
//! * counts, over two threads that keep presenting the round's credential to B and C on
//!   kept-alive connections, every request *sent* after A's 2xx that was accepted (2xx, or a 404
//!   from a handler that got past authentication). That count must be 0.
//!
//! Faults, applied just before the revocation: `killed`, B's listener backend is ended with
//! `pg_terminate_backend`; `stalled`, the proxy on B's listener connection stops forwarding
//! (until A has answered); `restarted`, PostgreSQL is stopped (fast shutdown) and started
//! again (`scripts/pg-throwaway.sh halt` / `resume` on `--pg-dir`), and the revocation is
//! retried until A answers 2xx.

#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "bench@example.com";
const ADMIN_PASSWORD: &str = "bench-password-1";

/// A kept-alive HTTP/1.1 connection (reconnects when the server closed it).
struct Conn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(base: &str) -> Conn {
        Conn {
            addr: base.trim_start_matches("http://").to_owned(),
            stream: None,
        }
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        for attempt in 0..3 {
            match self.try_call(method, path, token, body) {
                Ok(r) => return r,
                Err(e) => {
                    self.stream = None;
                    if attempt == 2 {
                        panic!("{method} {path} on {}: {e}", self.addr);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        unreachable!()
    }

    fn try_call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::new(s));
        }
        let stream = self.stream.as_mut().unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {line:?}")))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower == "connection: close" {
                close = true;
            }
        }
        let mut buf = vec![0u8; length];
        stream.read_exact(&mut buf)?;
        if close {
            self.stream = None;
        }
        Ok((status, serde_json::from_slice(&buf).unwrap_or(Value::Null)))
    }
}

struct Node {
    url: String,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_node(bin: &Path, db: &str, lease_ms: u64, listener: Option<&str>, log: &Path) -> Node {
    let port = free_port();
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TOLLGATE_DATABASE_URL", db)
        .env("TOLLGATE_CHANGE_LEASE_MS", lease_ms.to_string())
        .env("TOLLGATE_DB_TIMEOUT_MS", "2000")
        .env("TOLLGATE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("TOLLGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out));
    if let Some(l) = listener {
        cmd.env("TOLLGATE_LISTENER_DATABASE_URL", l);
    }
    let node = Node {
        url: format!("http://127.0.0.1:{port}"),
        child: cmd.spawn().expect("start tollgate"),
    };
    wait_live(&node, Duration::from_secs(30));
    node
}

fn wait_live(node: &Node, within: Duration) {
    let deadline = Instant::now() + within;
    let mut c = Conn::new(&node.url);
    loop {
        if let Ok((200, h)) = c.try_call("GET", "/health", None, None)
            && h["cache"] == "live"
        {
            return;
        }
        c.stream = None;
        assert!(
            Instant::now() < deadline,
            "{} never came back live",
            node.url
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn login(c: &mut Conn) -> String {
    let (s, b) = c.call(
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    );
    assert_eq!(s, 200, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

fn expect(r: (u16, Value), status: u16) -> Value {
    assert_eq!(r.0, status, "{}", r.1);
    r.1
}

struct Args {
    bin: PathBuf,
    pg: String,
    pg_dir: Option<PathBuf>,
    rounds: usize,
    lease_ms: u64,
    scenarios: Vec<String>,
    logs: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        bin: "target/release/tollgate".into(),
        pg: String::new(),
        pg_dir: None,
        rounds: 100,
        lease_ms: 750,
        scenarios: ["none", "killed", "stalled", "restarted"]
            .map(str::to_owned)
            .to_vec(),
        logs: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--bin" => a.bin = v.into(),
            "--pg" => a.pg = v,
            "--pg-dir" => a.pg_dir = Some(v.into()),
            "--rounds" => a.rounds = v.parse().unwrap(),
            "--lease-ms" => a.lease_ms = v.parse().unwrap(),
            "--scenarios" => a.scenarios = v.split(',').map(str::to_owned).collect(),
            "--logs" => a.logs = v.into(),
            _ => panic!("unknown option {k}"),
        }
    }
    assert!(!a.pg.is_empty(), "--pg URL is required");
    a
}

async fn admin(server: &str) -> sqlx::AnyPool {
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .expect("connect to PostgreSQL")
}

async fn create_database(server: &str, name: &str) -> String {
    let pool = admin(server).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    format!("{base}/{name}")
}

async fn kill_listener(server: &str, node: &Node) {
    let pool = admin(server).await;
    let pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1",
    )
    .bind(format!("tollgate-listener-{}", node.child.id()))
    .fetch_one(&pool)
    .await
    .expect("the node's listener backend");
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(done);
    pool.close().await;
}

fn pg_script(cmd: &str, dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
    let ok = Command::new(script)
        .arg(cmd)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pg-throwaway.sh {cmd} failed");
}

fn percentiles(mut xs: Vec<Duration>) -> (f64, f64, f64) {
    xs.sort();
    let at = |q: f64| xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(at(0.5)), ms(at(0.99)), ms(*xs.last().unwrap()))
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone)]
struct Probe {
    round: usize,
    secret: String,
    path: String,
}

fn scenario(a: &Args, rt: &tokio::runtime::Runtime, name: &str) -> String {
    let db_name = format!("bench_revocation_{name}_{}", std::process::id());
    let db = rt.block_on(create_database(&a.pg, &db_name));
    let pg_port: u16 =
        a.pg.rsplit_once(':')
            .and_then(|(_, r)| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("a port in --pg");
    let proxy = (name == "stalled").then(|| proxy::StallProxy::start(pg_port));
    let log = |n: &str| a.logs.join(format!("revocation-{name}-{n}.log"));
    let na = start_node(&a.bin, &db, a.lease_ms, None, &log("a"));
    let listener_url = proxy.as_ref().map(|p| p.url_for(&db));
    let nb = start_node(&a.bin, &db, a.lease_ms, listener_url.as_deref(), &log("b"));
    let nc = start_node(&a.bin, &db, a.lease_ms, None, &log("c"));
    let nodes = [&na, &nb, &nc];
    for n in nodes {
        wait_live(n, Duration::from_secs(30));
    }
    let mut ca = Conn::new(&na.url);
    let session = login(&mut ca);
    let load_app = expect(
        ca.call(
            "POST",
            "/applications",
            Some(&session),
            Some(&json!({ "name": "load" })),
        ),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load_token = expect(
        ca.call(
            "POST",
            &format!("/applications/{load_app}/tokens"),
            Some(&session),
            Some(&json!({ "name": "load" })),
        ),
        201,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = expect(
        ca.call(
            "POST",
            &format!("/applications/{load_app}/devices"),
            Some(&session),
            Some(
                &json!({ "name": "pump", "attributes": [{ "name": "rpm", "dataType": "number" }] }),
            ),
        ),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Other clients' reads and writes, on every node, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let load_ok = Arc::new(AtomicU64::new(0));
    let load_other = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (t, url) in [&na.url, &nb.url, &nc.url, &na.url, &nb.url, &nc.url]
        .into_iter()
        .enumerate()
    {
        let writer = t >= 3;
        let (stop, ok, other) = (stop.clone(), load_ok.clone(), load_other.clone());
        let (url, session, app, device, token) = (
            url.clone(),
            session.clone(),
            load_app.clone(),
            device.clone(),
            load_token.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::new(&url);
            let dev = format!("/applications/{app}/devices/{device}");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let status = if !writer {
                    c.call(
                        "GET",
                        if i.is_multiple_of(2) { &dev } else { "/me" },
                        Some(if i.is_multiple_of(2) {
                            &token
                        } else {
                            &session
                        }),
                        None,
                    )
                    .0
                } else {
                    match i % 3 {
                        0 => {
                            c.call(
                                "POST",
                                &format!("{dev}/state"),
                                Some(&token),
                                Some(&json!({ "data": { "rpm": i } })),
                            )
                            .0
                        }
                        1 => {
                            c.call(
                                "PATCH",
                                &dev,
                                Some(&token),
                                Some(&json!({ "name": format!("pump {i}") })),
                            )
                            .0
                        }
                        _ => {
                            let (s, b) = c.call(
                                "POST",
                                &format!("/applications/{app}/tokens"),
                                Some(&session),
                                Some(&json!({ "name": format!("load {i}") })),
                            );
                            if s == 201 {
                                let id = b["id"].as_str().unwrap_or_default().to_owned();
                                c.call(
                                    "DELETE",
                                    &format!("/applications/{app}/tokens/{id}"),
                                    Some(&session),
                                    None,
                                )
                                .0
                            } else {
                                s
                            }
                        }
                    }
                };
                if (200..300).contains(&status) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    other.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }

    // Presenters: the round's credential, to B and to C, again and again.
    let current: Arc<Mutex<Option<Probe>>> = Arc::default();
    type Seen = Vec<(usize, Instant, u16)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    for url in [&nb.url, &nc.url] {
        let (url, current, seen, stop) = (url.clone(), current.clone(), seen.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::new(&url);
            while !stop.load(Ordering::Relaxed) {
                let probe = current.lock().unwrap().clone();
                let Some(p) = probe else {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                };
                let sent = Instant::now();
                let status = c.call("GET", &p.path, Some(&p.secret), None).0;
                seen.lock().unwrap().push((p.round, sent, status));
            }
        }));
    }

    let mut answered = Vec::with_capacity(a.rounds);
    let mut took = Vec::new();
    let mut refused = Vec::new();
    let mut next_refused_at_once = 0;
    let mut cb = Conn::new(&nb.url);
    let mut cc = Conn::new(&nc.url);
    for round in 0..a.rounds {
        for n in nodes {
            wait_live(n, Duration::from_secs(60));
        }
        let kind = round % 4;
        let app = expect(
            ca.call(
                "POST",
                "/applications",
                Some(&session),
                Some(&json!({ "name": format!("r{round}") })),
            ),
            201,
        )["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (secret, path, token_id) = if kind == 3 {
            (login(&mut ca), "/me".to_owned(), String::new())
        } else {
            let t = expect(
                ca.call(
                    "POST",
                    &format!("/applications/{app}/tokens"),
                    Some(&session),
                    Some(&json!({ "name": "probe" })),
                ),
                201,
            );
            (
                t["token"].as_str().unwrap().to_owned(),
                format!("/applications/{app}"),
                t["id"].as_str().unwrap().to_owned(),
            )
        };
        for c in [&mut cb, &mut cc] {
            for _ in 0..2 {
                expect(c.call("GET", &path, Some(&secret), None), 200);
            }
        }
        *current.lock().unwrap() = Some(Probe {
            round,
            secret: secret.clone(),
            path: path.clone(),
        });

        match name {
            "killed" => rt.block_on(kill_listener(&a.pg, &nb)),
            "stalled" => proxy.as_ref().unwrap().stall(),
            "restarted" => {
                let dir = a
                    .pg_dir
                    .as_ref()
                    .expect("--pg-dir for the restart scenario");
                pg_script("halt", dir);
                pg_script("resume", dir);
            }
            _ => {}
        }
        let sent = Instant::now();
        loop {
            let (s, b) = match kind {
                0 => ca.call(
                    "PATCH",
                    &format!("/applications/{app}/tokens/{token_id}"),
                    Some(&session),
                    Some(&json!({ "status": "inactive" })),
                ),
                1 => ca.call(
                    "DELETE",
                    &format!("/applications/{app}/tokens/{token_id}"),
                    Some(&session),
                    None,
                ),
                2 => ca.call(
                    "DELETE",
                    &format!("/applications/{app}"),
                    Some(&session),
                    None,
                ),
                _ => ca.call("POST", "/auth/logout", Some(&secret), None),
            };
            if s == 503 && name == "restarted" && sent.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            assert_eq!(s, 200, "round {round}: {b}");
            break;
        }
        let acked = Instant::now();
        answered.push(acked);
        took.push(acked - sent);
        let mut at_once = true;
        for c in [&mut cb, &mut cc] {
            loop {
                let (s, _) = c.call("GET", &path, Some(&secret), None);
                assert!(
                    s != 200 && s != 404,
                    "{name} round {round}: accepted after A's answer ({s})"
                );
                if s == 401 {
                    refused.push(acked.elapsed());
                    break;
                }
                // 503: the database is not back yet for that node; it refused nonetheless.
                at_once = false;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if at_once {
            next_refused_at_once += 1;
        }
        if name == "stalled" {
            proxy.as_ref().unwrap().resume();
        }
    }
    *current.lock().unwrap() = None;
    let metrics_text = {
        // /metrics is text, not JSON: read it raw.
        let mut s = TcpStream::connect(na.url.trim_start_matches("http://")).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    };
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let after: Vec<_> = seen
        .iter()
        .filter(|(r, sent, _)| *sent > answered[*r])
        .collect();
    let accepted_after = after
        .iter()
        .filter(|(_, _, s)| (200..300).contains(s) || *s == 404)
        .count();
    let accepted_before = seen
        .iter()
        .filter(|(r, sent, s)| *sent <= answered[*r] && *s == 200)
        .count();
    let (t50, t99, tmax) = percentiles(took);
    let (r50, r99, rmax) = percentiles(refused);
    let confirmed = metric(
        &metrics_text,
        "tollgate_change_confirmations_total{outcome=\"confirmed\"}",
    );
    let lapsed = metric(
        &metrics_text,
        "tollgate_change_confirmations_total{outcome=\"lease_lapsed\"}",
    );
    let unknown = metric(
        &metrics_text,
        "tollgate_change_confirmations_total{outcome=\"unknown_nodes\"}",
    );
    eprintln!(
        "{name}: done; load {} ok / {} other; A's confirmations {confirmed} confirmed, {lapsed} after a lease, {unknown} unknown",
        load_ok.load(Ordering::Relaxed),
        load_other.load(Ordering::Relaxed)
    );
    assert_eq!(
        accepted_after, 0,
        "{name}: requests accepted after A's answer"
    );
    format!(
        "| {name} | {} | {t50:.2} / {t99:.2} / {tmax:.2} | {r50:.2} / {r99:.2} / {rmax:.2} | {next_refused_at_once} | {} | **{accepted_after}** | {accepted_before} | {confirmed} / {lapsed} / {unknown} | {} / {} |",
        a.rounds,
        after.len(),
        load_ok.load(Ordering::Relaxed),
        load_other.load(Ordering::Relaxed),
    )
}

fn main() {
    let a = args();
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for s in &a.scenarios {
        eprintln!("== {s}: {} rounds, lease {} ms", a.rounds, a.lease_ms);
        rows.push(scenario(&a, &rt, s));
    }
    println!(
        "| scenario | rounds | A's answer, ms: median / p99 / max | B's and C's next request refused after A's 2xx, ms: median / p99 / max | rounds where both refused the very next request | requests presented after A's 2xx | accepted after A's 2xx | accepted before A's 2xx | A's waits: confirmed / lease ran out / nodes unknown | other clients' requests: 2xx / other |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
