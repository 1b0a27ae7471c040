#!/usr/bin/env bash
# Scale-out benchmark (not part of CI; figures go to docs/deployment.md).
#
# 1. Revocation propagation: two release-build nodes on one throwaway PostgreSQL cluster;
#    REVOCATIONS tokens, each cached on node B, deactivated through node A; how long until B
#    refuses it (scripts/bench-propagation.py): median, p90, worst.
# 2. Authorized-request throughput of one node, SQLite vs PostgreSQL: wrk, CONNECTIONS
#    connections for DURATION seconds against GET /applications/{id} with an application
#    token (authorization from the token cache plus one database read per request).
#
# Everything runs on this machine (loopback only): server, database and load generator share
# its cores, so figures are for comparison on the same machine, not absolute capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
REVOCATIONS=${REVOCATIONS:-100}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}

as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release -p tollgate-server
bin=$PWD/target/release/tollgate

work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-throwaway.sh stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT

pg=$(scripts/pg-throwaway.sh start "$work/pg" $(( 20000 + RANDOM % 20000 )))
export TOLLGATE_ADMIN_EMAIL=bench@example.com TOLLGATE_ADMIN_PASSWORD=bench-password-1
export RUST_LOG=warn

# start_node NAME DATABASE_URL: starts a node, waits until healthy, prints its URL.
start_node() {
  local port=$(( 40000 + RANDOM % 20000 ))
  mkdir -p "$work/$1"
  "$bin" serve --listen "127.0.0.1:$port" --database-url "$2" --data-dir "$work/$1" \
    >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && { echo "http://127.0.0.1:$port"; return; }
    sleep 0.05
  done
  echo "node $1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "== machine"
echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql --version)"

echo
echo "== revocation propagation, node A -> node B on one PostgreSQL ($REVOCATIONS revocations)"
psql -q "$pg" -c "CREATE DATABASE propagation"
db=${pg%/*}/propagation
a=$(start_node a "$db")
b=$(start_node b "$db")
# Let B's change feed come up (its cache is not used before the first heartbeat returns).
until curl -s "$b/health" | grep -q '"cache":"live"'; do sleep 0.05; done
python3 scripts/bench-propagation.py "$a" "$b" "$REVOCATIONS"
stop_nodes

load() { # NAME URL
  read -r app token < <(python3 scripts/bench-propagation.py setup "$2")
  echo "-- $1: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s GET /applications/{id} (application token)"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -H "Authorization: Bearer $token" -H "Accept: application/json" "$2/applications/$app" \
    | grep -E 'Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors|requests in'
  # Was the credential cache in use throughout? (PostgreSQL: lease lapses mean it was not.)
  echo "   health after the run: $(curl -s "$2/health")"
}

echo
echo "== authorized-request throughput of one node"
url=$(start_node sqlite "sqlite://$work/sqlite/tollgate.db")
load SQLite "$url"
stop_nodes
psql -q "$pg" -c "CREATE DATABASE throughput"
url=$(start_node postgres "${pg%/*}/throughput")
until curl -s "$url/health" | grep -q '"cache":"live"'; do sleep 0.05; done
load PostgreSQL "$url"
stop_nodes
