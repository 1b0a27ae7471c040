#!/usr/bin/env bash
# Fuzz the parsers: scripts/fuzz.sh [SECONDS] [--quick]
#
# The properties are in fuzz/checks/<target>.rs; the targets are two cargo-fuzz projects:
# fuzz/core (token: the bearer-secret parser and redaction; scope: the scope parser) and
# fuzz/server (token_body, state_body: request-body decoding through extract::decode). Each
# run starts from the committed corpus in fuzz/corpus/<target>/; new inputs go to a scratch
# directory. A crash stops the run with the input saved under fuzz/artifacts/; copy it to
# fuzz/regressions/<target>/ so the normal test suite replays it for ever
# (crates/tollgate-server/tests/fuzz_corpus.rs replays every corpus and regression file).
#
#   (default)  all four targets, SECONDS each (default 60), with `cargo +nightly fuzz` and
#              AddressSanitizer; cargo-fuzz is installed into target/tools when missing.
#   --quick    what CI runs: the two fuzz/core targets, SECONDS each (default 15), built by the
#              stable compiler with libFuzzer's coverage instrumentation (no nightly, no
#              cargo-fuzz, and only tollgate-core's few dependencies to compile). The body
#              targets need every server dependency built again with instrumentation, which
#              does not fit the suite's time: CI replays their corpus instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0; secs=""
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    *[!0-9]*|"") echo "usage: $0 [SECONDS] [--quick]" >&2; exit 2 ;;
    *) secs=$a ;;
  esac
done
scratch=$(mktemp -d /tmp/tollgate-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

crashed() {
  if [ -n "$(ls -A "$1" 2>/dev/null)" ]; then
    echo "fuzz target $2 crashed: the input is in $1; copy it to fuzz/regressions/$2/" >&2
    exit 1
  fi
}

if [ "$quick" = 1 ]; then
  secs=${secs:-15}
  triple=$(rustc -vV | sed -n 's/^host: //p')
  export CARGO_TARGET_DIR="$root/target/fuzz-quick"
  # The instrumentation cargo-fuzz asks of rustc, minus the sanitizer (which needs nightly):
  # the targets are safe Rust, and what the run looks for is panics (failed properties).
  # --target keeps these flags off build scripts and proc macros.
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --manifest-path fuzz/core/Cargo.toml --release --bins --target "$triple" --quiet
  for t in token scope; do
    mkdir -p "$scratch/$t" "$scratch/artifacts-$t"
    echo "== fuzz $t for ${secs}s (quick)"
    "$CARGO_TARGET_DIR/$triple/release/$t" "$scratch/$t" "fuzz/corpus/$t" \
      -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$scratch/artifacts-$t/" 2>&1 |
      grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY)' || true
    if [ -n "$(ls -A "$scratch/artifacts-$t")" ]; then
      mkdir -p "fuzz/artifacts/$t" && cp "$scratch/artifacts-$t"/* "fuzz/artifacts/$t/"
    fi
    crashed "fuzz/artifacts/$t" "$t"
  done
  echo "quick fuzzing passed: token, scope, ${secs}s each"
  exit 0
fi

secs=${secs:-60}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "the nightly toolchain is not installed: cargo fuzz needs cargo +nightly" >&2
  exit 1
fi
fuzz=cargo-fuzz
if ! command -v cargo-fuzz >/dev/null; then
  [ -x target/tools/bin/cargo-fuzz ] || cargo install cargo-fuzz --locked --root target/tools
  fuzz="$root/target/tools/bin/cargo-fuzz"
fi
for project in core server; do
  case $project in core) targets=(token scope) ;; server) targets=(token_body state_body) ;; esac
  for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "== fuzz $t for ${secs}s"
    "$fuzz" +nightly run --fuzz-dir "fuzz/$project" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 2>&1 |
      grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' || true
    crashed "fuzz/$project/artifacts/$t" "$t"
  done
done
echo "fuzzing passed: 4 targets, ${secs}s each"
