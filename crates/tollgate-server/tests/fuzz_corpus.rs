//! Every committed fuzz input — the corpus each target starts from and every input that once
//! failed (`fuzz/regressions/<target>/`) — replayed through the same property the fuzzer
//! checks (`fuzz/checks/<target>.rs`), on the stable compiler, in the normal suite.

use std::path::{Path, PathBuf};

use tollgate_testkit::{Case, case};

#[path = "../../../fuzz/checks/scope.rs"]
mod scope;
#[path = "../../../fuzz/checks/state_body.rs"]
mod state_body;
#[path = "../../../fuzz/checks/token.rs"]
mod token;
#[path = "../../../fuzz/checks/token_body.rs"]
mod token_body;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = tollgate_testkit::workspace().join("fuzz");
    let mut found = Vec::new();
    for dir in [
        fuzz.join("corpus").join(target),
        fuzz.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        found.extend(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file()),
        );
    }
    found.sort();
    found
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed inputs for the {target} target"
    );
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let name = file.display().to_string();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!(
                "fuzz input {} fails its property",
                Path::new(&name).display()
            );
        }
    }
}

fn every_committed_fuzz_input_keeps_its_property() {
    replay("token", token::check);
    replay("scope", scope::check);
    replay("token_body", token_body::check);
    replay("state_body", state_body::check);
}

pub fn cases() -> Vec<Case> {
    vec![case!(sync every_committed_fuzz_input_keeps_its_property).once()]
}
