//! `cargo fuzz` target; the property is in `fuzz/checks/token.rs` (also replayed over the
//! committed corpus by the normal test suite).
#![no_main]

#[path = "../../checks/token.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
