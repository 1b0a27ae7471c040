#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 20), starting from the
# committed corpus in fuzz/corpus/<target>/. New interesting inputs go to a scratch
# directory, not into the committed corpus. A crash stops the run with the input saved in
# fuzz/artifacts/<target>/; make it a regression test in the normal suite.
#
# Needs the nightly toolchain (cargo +nightly) and cargo-fuzz (installed from the registry
# when missing). The fuzz crate is its own workspace, so normal builds never need nightly.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
targets=(token scope token_body state_body)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "the nightly toolchain is not installed: the fuzz targets need cargo +nightly" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

scratch=$(mktemp -d /tmp/tollgate-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build --fuzz-dir fuzz
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' || true
  # `cargo fuzz run` fails (and pipefail keeps that) when the target crashed.
  if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t crashed: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzzing passed: ${#targets[@]} targets, ${secs}s each"
