//! The core's integration tests in one binary: property tests of the scope rules over
//! invented future registries, and of the time-series aggregation against a naive
//! computation. Pure logic: they run once (the SQLite pass of `scripts/test.sh`).

mod restriction_properties;
mod scope_properties;
mod timeseries_properties;

/// With `autotests = false`, a test file that is not a module here would never be compiled.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let all = std::fs::read_to_string(dir.join("all.rs")).unwrap();
    let mut missing: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .filter(|stem| stem != "all" && !all.contains(&format!("mod {stem};")))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "declare these in tests/all.rs: {missing:?}"
    );
}
