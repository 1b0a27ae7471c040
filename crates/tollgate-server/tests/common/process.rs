//! Running the real `tollgate` binary, for tests that need a server on a socket (official
//! clients, several nodes, log capture).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-123";

/// A `tollgate serve` child process, killed on drop.
pub struct ServerProcess {
    pub url: String,
    pub database_url: String,
    pub log_path: PathBuf,
    child: Child,
}

/// The path of the `tollgate` binary Cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Start a server on `database_url`, logging to `dir/server-<port>.log`, and wait until
    /// `/health` answers.
    pub fn start(dir: &Path, database_url: &str, extra_env: &[(&str, &str)]) -> ServerProcess {
        Self::start_wrapped(dir, database_url, extra_env, &[])
    }

    /// As [`ServerProcess::start`], run through `wrapper` (e.g. `["prlimit", "--nofile=256"]`).
    pub fn start_wrapped(
        dir: &Path,
        database_url: &str,
        extra_env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> ServerProcess {
        let port = free_port();
        let log_path = dir.join(format!("server-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = match wrapper.split_first() {
            None => Command::new(binary()),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
        };
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("TOLLGATE_DATABASE_URL", database_url)
            .env("TOLLGATE_DATA_DIR", dir)
            .env("TOLLGATE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TOLLGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "debug,sqlx=info,hyper=info,h2=info,tower=info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start tollgate");
        let server = ServerProcess {
            url: format!("http://127.0.0.1:{port}"),
            database_url: database_url.to_owned(),
            log_path,
            child,
        };
        server.wait_healthy(Duration::from_secs(30));
        server
    }

    fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let addr = self.url.trim_start_matches("http://").to_owned();
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        panic!("server did not become healthy; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Ask the process to stop (SIGTERM, a clean shutdown) and wait up to 30 s for it.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                assert!(exit.success(), "exit {exit:?}; log:\n{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not stop within 30 s of SIGTERM");
    }

    /// Stop the process (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The PostgreSQL server of the PostgreSQL pass (the harness checked it is set).
pub fn pg_server() -> String {
    tollgate_testkit::postgres_server().expect("TOLLGATE_TEST_PG_SERVER (checked by the harness)")
}

impl ServerProcess {
    /// The operating-system process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A small blocking HTTP/1.1 client for tests that talk to server processes (one connection
/// per request, `Connection: close`).
pub mod http {
    use std::io::{Read, Write};
    use std::time::Duration;

    use serde_json::Value;

    #[derive(Debug)]
    pub struct Reply {
        pub status: u16,
        pub body: Value,
    }

    impl Reply {
        #[track_caller]
        pub fn expect(self, status: u16) -> Value {
            assert_eq!(
                self.status, status,
                "unexpected status; body: {}",
                self.body
            );
            self.body
        }
    }

    /// Send one request to `base` (`http://127.0.0.1:PORT`). Connection failures panic.
    pub fn call(
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        try_call(base, method, path, token, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`call`], with connection failures (a server that was killed, say) as `Err`.
    pub fn try_call(
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr)
            .map_err(|e| format!("connect to the server: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
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
        s.write_all(req.as_bytes())
            .map_err(|e| format!("send the request: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| format!("read the response: {e}"))?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {text}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// GET `path` from `base` without credentials and return the body as text (`/metrics`).
    pub fn text(base: &str, path: &str) -> String {
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the server");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    pub fn get(base: &str, path: &str, token: &str) -> Reply {
        call(base, "GET", path, Some(token), None)
    }
    pub fn post(base: &str, path: &str, token: &str, body: Value) -> Reply {
        call(base, "POST", path, Some(token), Some(&body))
    }
    pub fn patch(base: &str, path: &str, token: &str, body: Value) -> Reply {
        call(base, "PATCH", path, Some(token), Some(&body))
    }
    pub fn delete(base: &str, path: &str, token: &str) -> Reply {
        call(base, "DELETE", path, Some(token), None)
    }

    /// Log in as the seeded administrator; returns the session token.
    pub fn admin_session(base: &str) -> String {
        let body = serde_json::json!({
            "email": super::ADMIN_EMAIL,
            "password": super::ADMIN_PASSWORD,
        });
        let r = call(base, "POST", "/auth/user", None, Some(&body)).expect(200);
        r["token"].as_str().unwrap().to_owned()
    }
}

/// A PostgreSQL cluster of the test's own (`scripts/pg-throwaway.sh`), which it can halt and
/// resume. Removed on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    /// The server URL (database `postgres`).
    pub url: String,
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh")
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        // The server runs as the `postgres` user when the tests run as root: let it in.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port().to_string();
        let out = Command::new(pg_script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .arg(&port)
            .output()
            .expect("run pg-throwaway.sh");
        assert!(
            out.status.success(),
            "cannot start a PostgreSQL cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        PgCluster { dir, url }
    }

    fn run(&self, cmd: &str) {
        let out = Command::new(pg_script())
            .arg(cmd)
            .arg(self.dir.path().join("pg"))
            .output()
            .expect("run pg-throwaway.sh");
        assert!(
            out.status.success(),
            "pg-throwaway.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop the server (fast shutdown: sessions are terminated), keeping the data.
    pub fn halt(&self) {
        self.run("halt");
    }

    /// Start it again on the same port.
    pub fn resume(&self) {
        self.run("resume");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new(pg_script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .output();
    }
}

/// The PostgreSQL backend pid of `node`'s change listener.
pub async fn listener_backend(server: &str, node: &ServerProcess) -> i32 {
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
         ORDER BY backend_start DESC LIMIT 1",
    )
    .bind(format!("tollgate-listener-{}", node.pid()))
    .fetch_one(&admin)
    .await
    .expect("the node's listener connection");
    admin.close().await;
    pid
}
