//! The operator's commands against a running server: `tollgate user passwd|list|disable|
//! enable`, and the validation of `serve`'s options (clear messages for bad values; booleans
//! from the environment as 1/0/true/false).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, binary, http};
use serde_json::{Value, json};

/// Run `tollgate ARGS` on `db`, with `stdin` as standard input.
fn tollgate(db: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .env("TOLLGATE_DATABASE_URL", db)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn login(base: &str, email: &str, password: &str) -> http::Reply {
    http::call(
        base,
        "POST",
        "/auth/user",
        None,
        Some(&json!({ "email": email, "password": password })),
    )
}

async fn user_commands_reset_list_disable_and_enable() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(dir.path(), &db, &[]);
    let base = server.url.clone();

    let o = tollgate(
        &db,
        &[
            "user",
            "add",
            "--email",
            "op@example.com",
            "--first-name",
            "Op",
        ],
        "first-password-1\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let session = login(&base, "op@example.com", "first-password-1").expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    http::get(&base, "/me", &session).expect(200);

    // A weak password and an unknown user are refused with a message; nothing changes.
    let o = tollgate(&db, &["user", "passwd", "op@example.com"], "weak\n");
    assert!(!o.status.success());
    assert!(text(&o).contains("at least 12 characters"), "{}", text(&o));
    let o = tollgate(
        &db,
        &["user", "passwd", "ghost@example.com"],
        "Good-passw0rd-1\n",
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no user with the email ghost@example.com"),
        "{}",
        text(&o)
    );
    login(&base, "op@example.com", "first-password-1").expect(200);

    let o = tollgate(
        &db,
        &["user", "passwd", "op@example.com"],
        "Good-passw0rd-1\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("changed the password of op@example.com; 2 sessions ended"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("by=\"operator\"") || text(&o).contains("by=operator"),
        "logged as the operator's: {}",
        text(&o)
    );
    assert!(
        !text(&o).contains("Good-passw0rd-1"),
        "the password is never printed"
    );
    assert_eq!(
        login(&base, "op@example.com", "first-password-1").status,
        401
    );
    let session = login(&base, "op@example.com", "Good-passw0rd-1").expect(200)["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let o = tollgate(&db, &["user", "list", "--json"], "");
    assert!(o.status.success(), "{}", text(&o));
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    let emails: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["admin@example.com", "op@example.com"]);
    assert_eq!(users[1]["disabled"], false);
    assert_eq!(users[1]["sessions"], 1);
    assert_eq!(users[1]["firstName"], "Op");
    let table = tollgate(&db, &["user", "list"], "");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("op@example.com") && l.contains("active")),
        "{table}"
    );

    let o = tollgate(&db, &["user", "disable", "op@example.com"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("disabled op@example.com; 1 session ended"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("user disabled") && text(&o).contains("operator"),
        "logged as the operator's: {}",
        text(&o)
    );
    let r = login(&base, "op@example.com", "Good-passw0rd-1");
    assert_eq!(r.status, 401);
    assert!(
        r.body["message"].as_str().unwrap().contains("disabled"),
        "{:?}",
        r.body
    );
    // The session is refused on the very next request: on PostgreSQL the command's commit
    // notified the server; on SQLite the command told it and waited for its answer.
    if db.starts_with("sqlite") {
        assert!(
            text(&o).contains("the running server has applied the change"),
            "{}",
            text(&o)
        );
        assert_eq!(http::get(&base, "/me", &session).status, 401);
    } else {
        crate::common::eventually(
            "the session is refused",
            std::time::Duration::from_secs(10),
            || async { (http::get(&base, "/me", &session).status == 401).then_some(()) },
        )
        .await;
    }
    let o = tollgate(&db, &["user", "list", "--json"], "");
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users[1]["disabled"], true);
    assert_eq!(users[1]["sessions"], 0);

    let o = tollgate(&db, &["user", "enable", "op@example.com"], "");
    assert!(o.status.success(), "{}", text(&o));
    login(&base, "op@example.com", "Good-passw0rd-1").expect(200);
}

fn bad_option_values_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(binary());
        c.arg("serve")
            .args(args)
            .env("TOLLGATE_DATA_DIR", dir.path())
            .env_remove("TOLLGATE_DATABASE_URL");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = run(&["--log-format", "yaml"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid value 'yaml'") && err.contains("text, json"),
        "{err}"
    );

    let o = run(&["--session-days", "0"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--session-days") && err.contains("0 is not in 1..=3650"),
        "{err}"
    );

    let o = run(&[], &[("TOLLGATE_LAST_USED_FLUSH_SECS", "0")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--last-used-flush-secs"));

    let o = run(&[], &[("TOLLGATE_SECURE_COOKIES", "maybe")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid value 'maybe'"), "{err}");

    let o = run(&["--cors-origin", "https://dash.example.com/"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without a path or a trailing slash"), "{err}");
    let o = run(&["--cors-origin", "dash.example.com"], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("https://host[:port]"));
}

async fn booleans_from_the_environment_accept_1_and_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(
        dir.path(),
        &db,
        &[
            ("TOLLGATE_SECURE_COOKIES", "1"),
            ("TOLLGATE_PRELOAD_TOKENS", "0"),
        ],
    );
    // The console's login page sets its form cookie with Secure (and the __Host- prefix).
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET /console/login HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    let cookie = raw
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {raw}"));
    assert!(
        cookie.contains("__Host-tollgate_login=") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            user_commands_reset_list_disable_and_enable,
            multi_thread = 2
        ),
        case!(sync bad_option_values_are_refused_with_a_clear_message).once(),
        case!(
            booleans_from_the_environment_accept_1_and_0,
            multi_thread = 2
        )
        .once(),
    ]
}
