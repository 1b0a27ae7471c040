//! The README's permission table is the registry's (regenerate with
//! `TOLLGATE_UPDATE_SNAPSHOTS=1 cargo test -p tollgate-server --test readme`).

use tollgate_core::permissions::permission_table_markdown;
use tollgate_testkit::{Case, Need, case};

const START: &str = "<!-- permission-table:start -->\n";
const END: &str = "<!-- permission-table:end -->";

fn readme_permission_table_matches_the_registry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("README has the table's start marker")
        + START.len();
    let end = readme.find(END).expect("README has the table's end marker");
    let table = permission_table_markdown();
    if std::env::var("TOLLGATE_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{}{}", &readme[..start], table, &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == table,
        "the README's permission table is out of date: run TOLLGATE_UPDATE_SNAPSHOTS=1 cargo test -p tollgate-server --test readme"
    );
}

/// The fenced block after `<!-- example:NAME -->` in the README.
fn example(readme: &str, name: &str) -> String {
    let marker = format!("<!-- example:{name} -->\n");
    let start = readme.find(&marker).expect("the README marks the example") + marker.len();
    let rest = &readme[start..];
    let body = rest.split_once('\n').expect("a fence line").1;
    body[..body.find("\n```").expect("the fence closes")].to_owned() + "\n"
}

/// The README's Python and JavaScript examples, run with the official clients against a real
/// server, exactly as printed except for the address and the password.
async fn readme_examples_run_as_printed() {
    let root = tollgate_testkit::workspace();
    let clients = tollgate_testkit::clients_dir();
    let python = clients.join("venv/bin/python");
    let modules = clients.join("js/node_modules");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let password = "Readme-passw0rd!";
    let server = crate::common::process::ServerProcess::start(
        dir.path(),
        &db,
        &[
            ("TOLLGATE_ADMIN_EMAIL", "admin@tollgate.local"),
            ("TOLLGATE_ADMIN_PASSWORD", password),
        ],
    );
    let adapt = |code: String| {
        assert!(code.contains("http://127.0.0.1:8080") && code.contains('…'));
        code.replace("http://127.0.0.1:8080", &server.url)
            .replace('…', password)
    };

    let py = dir.path().join("example.py");
    std::fs::write(&py, adapt(example(&readme, "python"))).unwrap();
    let out = std::process::Command::new(&python)
        .arg(&py)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim().starts_with("tgat_") && stdout.trim().len() == 54,
        "{stdout}"
    );

    let js = dir.path().join("example.js");
    std::fs::write(&js, adapt(example(&readme, "js"))).unwrap();
    let out = std::process::Command::new("node")
        .arg(&js)
        .env("NODE_PATH", &modules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the JavaScript example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It lists the application the Python example created.
    assert!(stdout.contains("Plant floor"), "{stdout}");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(sync readme_permission_table_matches_the_registry).once(),
        case!(readme_examples_run_as_printed, multi_thread = 2)
            .once()
            .needs(Need::OfficialClients),
    ]
}
