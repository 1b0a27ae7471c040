//! Connections under attack (issue 12, item 2), on real sockets against the real binary: a
//! client holding half a request is closed within the header timeout, an idle kept-alive
//! connection within the idle timeout, and past the connection cap new connections wait
//! (and are served once there is room) instead of the server running out of file
//! descriptors.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tollgate_testkit::{Case, case};

use crate::common::process::ServerProcess;

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tollgate.db").display())
}

fn connect(server: &ServerProcess) -> TcpStream {
    let s = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Read until the server closes the connection or `within` passes; true when it closed.
/// What arrived is appended to `got`.
fn closed_within(s: &mut TcpStream, within: Duration, got: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("{e}"),
        }
    }
    false
}

/// Read one HTTP response (headers and a Content-Length body) within `within`.
fn read_response(s: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        return Some(text);
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    None
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";

fn half_a_request_is_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &sqlite(&dir),
        &[
            ("TOLLGATE_HEADER_TIMEOUT_MS", "500"),
            ("TOLLGATE_IDLE_TIMEOUT_SECS", "60"),
        ],
    );
    // Slowloris: the request line and one header, then nothing.
    let mut slow = connect(&server);
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let mut got = Vec::new();
    assert!(
        closed_within(&mut slow, Duration::from_secs(10), &mut got),
        "a half-sent request was still open after 10 s"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "it was never answered"
    );
    // Trickling bytes does not extend the deadline: the whole head is due in time.
    let mut trickle = connect(&server);
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if trickle.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut sink = Vec::new();
        if closed_within(&mut trickle, Duration::from_millis(100), &mut sink) {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a client trickling its headers one byte per 100 ms was kept for {:?}",
        started.elapsed()
    );
    // A connection that opens and sends nothing is closed too.
    let mut silent = connect(&server);
    assert!(closed_within(
        &mut silent,
        Duration::from_secs(10),
        &mut Vec::new()
    ));
    // A whole request is answered as ever.
    let mut ok = connect(&server);
    ok.write_all(HEALTH).unwrap();
    let res = read_response(&mut ok, Duration::from_secs(10)).expect("a response");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

fn an_idle_kept_alive_connection_is_closed_and_a_busy_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &sqlite(&dir),
        &[
            ("TOLLGATE_HEADER_TIMEOUT_MS", "10000"),
            ("TOLLGATE_IDLE_TIMEOUT_SECS", "1"),
        ],
    );
    // Requests one after another on one connection, each well within the idle timeout,
    // for more than the idle timeout in all: the connection stays.
    let mut busy = connect(&server);
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        busy.write_all(HEALTH).unwrap();
        let res = read_response(&mut busy, Duration::from_secs(5)).expect("kept alive");
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered >= 5);
    // Then silence: closed once idle for the timeout (well before the header timeout).
    let mut got = Vec::new();
    assert!(
        closed_within(&mut busy, Duration::from_secs(8), &mut got),
        "an idle connection was still open after 8 s"
    );
}

/// A server with a connection cap of 2 (and `extra` settings), and two kept-alive connections
/// that fill it.
fn server_at_a_cap_of_two(
    dir: &tempfile::TempDir,
    extra: &[(&str, &str)],
) -> (ServerProcess, Vec<TcpStream>) {
    let mut env = vec![
        ("TOLLGATE_MAX_CONNECTIONS", "2"),
        ("TOLLGATE_HEADER_TIMEOUT_MS", "60000"),
        ("TOLLGATE_IDLE_TIMEOUT_SECS", "60"),
    ];
    env.extend_from_slice(extra);
    let server = ServerProcess::start(dir.path(), &sqlite(dir), &env);
    let held = (0..2)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(HEALTH).unwrap();
            read_response(&mut s, Duration::from_secs(10)).expect("served");
            s
        })
        .collect();
    (server, held)
}

fn past_the_connection_cap_new_connections_wait_and_are_served_later() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut held) = server_at_a_cap_of_two(&dir, &[]);
    // A third connects (the kernel queues it) but is not served while the cap is full.
    let mut third = connect(&server);
    third.write_all(HEALTH).unwrap();
    assert!(
        read_response(&mut third, Duration::from_millis(1500)).is_none(),
        "a third connection was served past a cap of 2"
    );
    // Room again: it is served.
    held.pop();
    let res =
        read_response(&mut third, Duration::from_secs(10)).expect("served once there is room");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    drop(held);
    assert!(server.log().contains("connection cap reached"));
}

/// `--health-listen`: with the main listener's connection cap full (nothing more is served
/// there), the health listener still answers `/health` with the full body, and it answers
/// nothing but `/health`.
fn the_health_listener_answers_while_the_main_listener_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let health_port = crate::common::process::free_port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let (server, held) = server_at_a_cap_of_two(&dir, &[("TOLLGATE_HEALTH_LISTEN", &health_addr)]);
    let mut main = connect(&server);
    main.write_all(HEALTH).unwrap();
    assert!(
        read_response(&mut main, Duration::from_millis(1000)).is_none(),
        "the main listener served a third connection past a cap of 2"
    );
    let ask = |request: &[u8]| {
        let mut s = TcpStream::connect(&health_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(request).unwrap();
        read_response(&mut s, Duration::from_secs(10)).expect("the health listener answers")
    };
    let res = ask(HEALTH);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        res.contains(r#""status":"ok""#) && res.contains(r#""database":"ok""#),
        "{res}"
    );
    let other = ask(b"GET /applications HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(other.contains("answers only GET /health"), "{other}");
    drop(held);
    assert!(
        server
            .log()
            .contains("health checks are also answered on their own listener"),
        "{}",
        server.log()
    );
}

fn many_stalled_connections_do_not_exhaust_file_descriptors() {
    // prlimit is in util-linux, which every Debian system has; missing, the test fails.
    assert!(
        std::process::Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok(),
        "prlimit (util-linux) is required for this test"
    );
    let dir = tempfile::tempdir().unwrap();
    // 256 open files at most, hard and soft: the server sizes its cap below that.
    let server = ServerProcess::start_wrapped(
        dir.path(),
        &sqlite(&dir),
        &[("TOLLGATE_HEADER_TIMEOUT_MS", "1500")],
        &["prlimit", "--nofile=256:256"],
    );
    // 400 connections that send half a request each.
    let stalled: Vec<TcpStream> = (0..400)
        .filter_map(|_| {
            let mut s = TcpStream::connect(server.url.trim_start_matches("http://")).ok()?;
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n");
            Some(s)
        })
        .collect();
    assert!(stalled.len() >= 300, "{} connected", stalled.len());
    // A real request still gets through, once stalled connections time out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = false;
    while Instant::now() < deadline && !answered {
        if let Ok(mut s) = TcpStream::connect(server.url.trim_start_matches("http://")) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = s.write_all(HEALTH);
            answered = read_response(&mut s, Duration::from_secs(10))
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"));
        }
    }
    drop(stalled);
    let log = server.log();
    assert!(answered, "/health was not answered; log:\n{log}");
    assert!(
        !log.contains("Too many open files"),
        "the server ran out of file descriptors:\n{log}"
    );
    assert!(
        log.contains("max-connections lowered to stay below the open-file limit"),
        "{log}"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(sync half_a_request_is_closed_within_the_header_timeout).once(),
        case!(sync an_idle_kept_alive_connection_is_closed_and_a_busy_one_is_not).once(),
        case!(sync past_the_connection_cap_new_connections_wait_and_are_served_later).once(),
        case!(sync the_health_listener_answers_while_the_main_listener_is_full).once(),
        case!(sync many_stalled_connections_do_not_exhaust_file_descriptors).once(),
    ]
}
