//! The README's permission table is the registry's (regenerate with
//! `TOLLGATE_UPDATE_SNAPSHOTS=1 cargo test -p tollgate-server --test readme`).

use tollgate_core::permissions::permission_table_markdown;
use tollgate_testkit::{Case, case};

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

pub fn cases() -> Vec<Case> {
    vec![case!(sync readme_permission_table_matches_the_registry).once()]
}
