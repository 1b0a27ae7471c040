#!/usr/bin/env bash
# Wrong-password login floods against a release server on a fresh SQLite database: the
# server's peak resident memory and /health latency while CONCURRENCY clients keep sending
# wrong passwords for SECONDS. Two cases: the default throttle (one client address: most
# attempts are answered 429 before any hashing), and the throttle opened wide
# (--login-address-burst 1000000: the worst case, an attacker with many addresses, where every
# attempt reaches the bounded hashing queue). /health is probed on the main listener and on
# the server's --health-listen address (its own thread). See BENCHMARKS.md ("Logins under attack").
#
#   scripts/bench-logins.sh            # 1000 clients, 20 s per case
#   CONCURRENCY=256 SECONDS_EACH=10 scripts/bench-logins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-1000}
SECONDS_EACH=${SECONDS_EACH:-20}
ulimit -n "$(ulimit -Hn)"
cargo build --release --bin tollgate --example login_flood
bin=target/release/tollgate
flood=target/release/examples/login_flood

run_case() {
  local name=$1; shift
  local dir port hport pid
  dir=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  hport=$((port + 1))
  TOLLGATE_ADMIN_PASSWORD=bench-password-123 "$bin" serve --listen "127.0.0.1:$port" \
    --health-listen "127.0.0.1:$hport" --data-dir "$dir" "$@" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $name (server options: ${*:-defaults})"
  "$flood" "http://127.0.0.1:$port" "$pid" "$CONCURRENCY" "$SECONDS_EACH" "http://127.0.0.1:$hport"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run_case "default throttle"
run_case "throttle opened wide" --login-address-burst 1000000
