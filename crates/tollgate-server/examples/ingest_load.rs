//! HTTP load driver for state ingestion (`device.sendState`) against a running server.
//!
//! ```text
//! cargo run --release -p tollgate-server --example ingest_load -- \
//!     http://127.0.0.1:8080 admin@example.com 'admin-password' [connections] [seconds] [batch]
//! ```
//!
//! It logs in, creates an application, one device per connection and an API token holding
//! only `device.sendState` (as a gateway would), then keeps `connections` keep-alive
//! connections busy for `seconds`, each posting reports for its own device: a single report
//! per request when `batch` is 1, else an array of `batch` timed reports. It prints requests
//! and reports per second and latency percentiles. Every response must be 200, or it stops.
//!
//! The HTTP/1.1 client is a few lines over `TcpStream` so that the driver needs no client
//! library, and so that its own cost stays small next to the server's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream: BufReader::new(stream),
            host: addr.to_owned(),
        }
    }

    /// One request; returns the status and the body.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("an HTTP status line");
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0u8; length];
        self.stream.read_exact(&mut buf).await.unwrap();
        (status, String::from_utf8_lossy(&buf).into_owned())
    }

    async fn json(&mut self, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
        let (status, text) = self.send(method, path, token, &body.to_string()).await;
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: ingest_load URL ADMIN_EMAIL ADMIN_PASSWORD [connections=16] [seconds=10] [batch=1]"
        );
        std::process::exit(2);
    }
    let addr = args[1]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let connections: usize = args.get(4).map_or(16, |s| s.parse().unwrap());
    let seconds: u64 = args.get(5).map_or(10, |s| s.parse().unwrap());
    let batch: usize = args.get(6).map_or(1, |s| s.parse().unwrap());

    let mut setup = Conn::open(&addr).await;
    let login = setup
        .json(
            "POST",
            "/auth/user",
            None,
            json!({ "email": args[2], "password": args[3] }),
        )
        .await;
    let session = login["token"].as_str().unwrap().to_owned();
    let app = setup
        .json(
            "POST",
            "/applications",
            Some(&session),
            json!({ "name": format!("load {}", std::process::id()) }),
        )
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let token = setup
        .json(
            "POST",
            &format!("/applications/{app_id}/tokens"),
            Some(&session),
            json!({ "name": "gateway", "scope": ["device.sendState"] }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut devices = Vec::new();
    for i in 0..connections {
        let d = setup
            .json(
                "POST",
                &format!("/applications/{app_id}/devices"),
                Some(&session),
                json!({
                    "name": format!("sensor {i}"),
                    "attributes": [
                        { "name": "temperature", "dataType": "number" },
                        { "name": "humidity", "dataType": "number" },
                        { "name": "door", "dataType": "boolean" }
                    ]
                }),
            )
            .await;
        devices.push(d["id"].as_str().unwrap().to_owned());
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, device) in devices.into_iter().enumerate() {
        let addr = addr.clone();
        let token = token.clone();
        let path = format!("/applications/{app_id}/devices/{device}/state");
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            // Distinct times per report so every one is stored (no merging).
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                - 3_600_000;
            while Instant::now() < deadline {
                let report = |k: u64| {
                    json!({
                        "time": base + k as i64,
                        "data": { "temperature": 20.0 + (k % 100) as f64 / 10.0, "humidity": (k % 60) as f64, "door": k.is_multiple_of(2) }
                    })
                };
                let body = if batch == 1 {
                    let mut r = report(n);
                    r.as_object_mut().unwrap().remove("time");
                    n += 1;
                    r
                } else {
                    let v: Vec<Value> = (0..batch as u64).map(|i| report(n + i)).collect();
                    n += batch as u64;
                    Value::Array(v)
                };
                let t = Instant::now();
                let (status, text) = conn.send("POST", &path, Some(&token), &body.to_string()).await;
                latencies.push(t.elapsed());
                assert_eq!(status, 200, "connection {c}: {text}");
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let requests = latencies.len() as f64;
    println!(
        "connections={connections} batch={batch} seconds={elapsed:.1} requests={} \
         requests/s={:.0} reports/s={:.0} p50={:?} p99={:?} max={:?}",
        latencies.len(),
        requests / elapsed,
        requests * batch as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
    );
}
