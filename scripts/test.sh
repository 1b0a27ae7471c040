#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (this is what CI runs: .ci/run).
#
# 1. installs what the tests need and is missing: Debian's chromium, chromium-driver,
#    postgresql, nodejs/npm, python3-venv; the official Losant clients into target/clients;
# 2. starts a throwaway PostgreSQL cluster (removed on exit);
# 3. checks formatting, and lints with clippy while building every target;
# 4. runs the SQLite pass (every unit test; each crate's integration binary, tests/all.rs,
#    with store and server behaviour on SQLite and the backend-independent tests), then the
#    PostgreSQL pass (store and server behaviour again, on PostgreSQL, and the tests that need
#    PostgreSQL itself: several nodes, copying a deployment to it).
# 5. fuzzes the token and scope parsers for 15 s each from the committed corpus (scripts/fuzz.sh --quick).
#
# Nothing is skipped: the harness (crates/tollgate-testkit) fails a test whose dependency is
# missing unless TOLLGATE_ALLOW_SKIP=1 is set, and this script refuses to run with it set.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "system packages"
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

step "official Losant clients"
scripts/install-clients.sh

step "throwaway PostgreSQL"
pgdir=$(mktemp -d /tmp/tollgate-pg.XXXXXX)
pgport=$(( 20000 + RANDOM % 20000 ))
trap 'scripts/pg-throwaway.sh stop "$pgdir"' EXIT
pg_url=$(scripts/pg-throwaway.sh start "$pgdir" "$pgport")
echo "$pg_url"

if [ -n "${TOLLGATE_ALLOW_SKIP:-}" ]; then
  echo "scripts/test.sh runs everything: unset TOLLGATE_ALLOW_SKIP" >&2
  exit 2
fi
unset TOLLGATE_TEST_POSTGRES_URL TOLLGATE_TEST_BACKEND
export TOLLGATE_CLIENTS_DIR="$root/target/clients"
# A clean build (CI) gains nothing from incremental compilation's bookkeeping.
export CARGO_INCREMENTAL=0
export TOLLGATE_TEST_PG_SERVER="$pg_url"

step "format"
cargo fmt --all -- --check

# Lints and the test build in one compilation: clippy's driver compiles the workspace's own
# crates (dependencies are built by rustc as usual), so `cargo clippy` would build every
# dependency a second time for nothing. This is `cargo clippy --workspace --all-targets --
# -D warnings`, and it also leaves every test binary built.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
[ -x "$RUSTC_WORKSPACE_WRAPPER" ] || { echo "clippy is not installed: rustup component add clippy" >&2; exit 1; }

step "lints (clippy -D warnings) and the build of every target"
cargo test --workspace --all-targets --no-run

step "SQLite pass: unit tests, and each crate's tests/all.rs on SQLite"
cargo test --workspace --lib --bins --tests

step "PostgreSQL pass: store and server behaviour on PostgreSQL, several nodes"
TOLLGATE_TEST_BACKEND=postgres cargo test -p tollgate-store -p tollgate-server --test all

step "quick fuzzing: the token and scope parsers, 15 s each from the committed corpus"
scripts/fuzz.sh 15 --quick

step "done"
