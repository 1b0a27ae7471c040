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
        let port = free_port();
        let log_path = dir.join(format!("server-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(binary());
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
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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

/// The value of an environment variable a test depends on. In CI (TOLLGATE_REQUIRE_ALL=1) a
/// missing dependency fails the test; elsewhere the test says loudly that it did not run.
pub fn require_env(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("TOLLGATE_REQUIRE_ALL").is_ok_and(|v| v == "1") => {
            panic!("{what} is required: set {name} (scripts/test.sh does)")
        }
        _ => {
            eprintln!("NOT RUN: {what} is unavailable; set {name} or use scripts/test.sh");
            None
        }
    }
}
