#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (this is what CI runs: .ci/run).
#
# 1. installs what the tests need and is missing: Debian's chromium, chromium-driver,
#    postgresql, nodejs/npm, python3-venv; the official Losant clients into target/clients;
# 2. starts a throwaway PostgreSQL cluster (removed on exit);
# 3. checks formatting and lints;
# 4. runs every test on SQLite, then the server's integration suite again on PostgreSQL;
# 5. runs each fuzz target for 20 s from the committed corpus (scripts/fuzz.sh).
#
# Nothing is skipped: a test whose dependency is missing fails (TOLLGATE_REQUIRE_ALL=1).
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

export TOLLGATE_REQUIRE_ALL=1
export TOLLGATE_CLIENTS_DIR="$root/target/clients"
export TOLLGATE_TEST_PG_SERVER="$pg_url"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "all tests on SQLite"
cargo test --workspace

step "server integration suite on PostgreSQL"
TOLLGATE_TEST_POSTGRES_URL="$pg_url" cargo test -p tollgate-server --tests

step "fuzz targets, 20 s each from the committed corpus"
scripts/fuzz.sh 20

step "done"
