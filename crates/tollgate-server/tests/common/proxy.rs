//! A TCP proxy between a server process and PostgreSQL that can stop forwarding: the
//! connection neither answers nor closes, like a network path that silently stalled.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct StallProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallProxy {
    /// Forward every connection to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let s = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, to, &s));
                }
            }
        });
        StallProxy { port, stalled }
    }

    /// Stop forwarding, on every connection, existing and new (data read meanwhile is held).
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Forward again (what was held goes through).
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// `url` (`postgres://user@127.0.0.1:PORT/db`) through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("a URL with user@host");
        let (_, path) = rest.split_once('/').expect("a URL with a database");
        format!("{scheme_user}@127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.resume();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, stalled: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            return;
        }
    }
}
