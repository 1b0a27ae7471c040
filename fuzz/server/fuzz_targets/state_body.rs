//! `cargo fuzz` target; the property is in `fuzz/checks/state_body.rs` (also replayed over the
//! committed corpus by the normal test suite).
#![no_main]

#[path = "../../checks/state_body.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
