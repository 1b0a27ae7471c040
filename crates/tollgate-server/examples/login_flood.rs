//! Load driver for wrong-password logins against a running server: how much memory the
//! server holds and how fast `/health` answers while `concurrency` clients keep sending
//! wrong passwords.
//!
//! ```text
//! cargo run --release -p tollgate-server --example login_flood -- \
//!     http://127.0.0.1:8080 SERVER_PID [concurrency=1000] [seconds=20] [HEALTH_LISTEN_URL]
//! ```
//!
//! `concurrency` keep-alive connections each send `POST /auth/user` with a wrong password
//! (each to its own unknown email, so the account throttle does not hold them back; the
//! per-address throttle still applies unless the server is started with a large
//! `--login-address-burst`, which shows the worst case of an attacker with many addresses),
//! one after another, for `seconds`. Meanwhile one more connection asks `GET /health` every
//! 10 ms (and, when `HEALTH_LISTEN_URL` is given, one more asks the server's `--health-listen`
//! address). It prints the server's peak resident memory (sampled from `/proc/PID/status` every
//! 50 ms), the answers by status, and `/health` latency percentiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    /// One request; the status (or an error when the connection failed).
    async fn send(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0u8; length];
        self.stream.read_exact(&mut buf).await?;
        Ok(status)
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!(
            "usage: login_flood URL SERVER_PID [concurrency=1000] [seconds=20] [HEALTH_LISTEN_URL]"
        );
        std::process::exit(2);
    }
    let addr = args[1]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let pid: u32 = args[2].parse().expect("a process id");
    let concurrency: usize = args.get(3).map_or(1000, |s| s.parse().unwrap());
    let seconds: u64 = args.get(4).map_or(20, |s| s.parse().unwrap());

    let before = rss_kib(pid).expect("the server's /proc status");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // One probe of the main listener's /health, and one of the health listener's when its
    // address is given.
    let mut probes = vec![(
        "/health on the main listener",
        probe(addr.clone(), stop.clone()),
    )];
    if let Some(health) = args.get(5) {
        let health = health
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        probes.push(("/health on --health-listen", probe(health, stop.clone())));
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..concurrency)
        .map(|i| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
                let body = format!(
                    "{{\"email\":\"flood{i}@example.com\",\"password\":\"wrong password {i}\"}}"
                );
                let mut conn = None;
                while Instant::now() < until {
                    if conn.is_none() {
                        match Conn::open(&addr).await {
                            Ok(c) => conn = Some(c),
                            Err(_) => {
                                *statuses.entry("connect error".into()).or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                    }
                    let c = conn.as_mut().expect("opened above");
                    match c.send("POST", "/auth/user", &body).await {
                        Ok(s) => *statuses.entry(s.to_string()).or_default() += 1,
                        Err(_) => {
                            *statuses.entry("closed".into()).or_default() += 1;
                            conn = None;
                        }
                    }
                }
                statuses
            })
        })
        .collect();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for c in clients {
        for (k, v) in c.await.unwrap() {
            *statuses.entry(k).or_default() += v;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = probes
        .into_iter()
        .map(|(name, p)| (name, p.join().expect("a /health probe")))
        .collect();
    sampler.await.unwrap();
    let after = rss_kib(pid).unwrap_or(0);
    println!("concurrent wrong logins: {concurrency} for {seconds} s");
    println!("answers by status: {statuses:?}");
    println!(
        "server resident memory: {:.0} MB before, {:.0} MB peak, {:.0} MB after",
        before as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after as f64 / 1024.0
    );
    for (name, (mut times, failed)) in results {
        times.sort();
        println!(
            "{name}: {} answered, {failed} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            times.len(),
            percentile(&times, 0.50).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
    }
}

/// `GET /health` every 10 ms on `addr` until `stop`: the latencies of 200 answers, and the
/// count of failures. On its own thread and runtime: on the driver's shared runtime it would
/// wait behind a thousand flood tasks, and that wait (the driver's, not the server's) would
/// be counted as the server's latency.
fn probe(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<Duration>, u64)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the /health probe");
        rt.block_on(async move {
            let mut times = Vec::new();
            let mut failed = 0u64;
            let mut conn = Conn::open(&addr).await.expect("connect for /health");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match conn.send("GET", "/health", "").await {
                    Ok(200) => times.push(started.elapsed()),
                    _ => {
                        failed += 1;
                        if let Ok(c) = Conn::open(&addr).await {
                            conn = c;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (times, failed)
        })
    })
}
