#!/usr/bin/env bash
# Revocation on three nodes under faults (not part of CI; figures go to docs/deployment.md).
#
# Builds the release binary and crates/tollgate-server/examples/bench_revocation.rs, starts a
# throwaway PostgreSQL cluster, and runs ROUNDS revocations in each scenario (none, killed,
# stalled, restarted; see the example's header), with other clients' reads and writes in
# flight. Prints a Markdown table: how long the revoking node took to answer, how soon after
# its 2xx the other nodes refused, and how many requests sent after the 2xx were accepted
# (must be 0; the run fails otherwise).
#
#   ROUNDS=100 LEASE_MS=750 SCENARIOS=none,killed,stalled,restarted scripts/bench-revocation.sh
#
# Everything runs on this machine (loopback only): nodes, database and clients share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-100}
LEASE_MS=${LEASE_MS:-750}
SCENARIOS=${SCENARIOS:-none,killed,stalled,restarted}

need=()
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release -p tollgate-server --bin tollgate --example bench_revocation
work=$(mktemp -d /tmp/tollgate-revocation.XXXXXX)
chmod 755 "$work"
cleanup() { scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"; }
trap cleanup EXIT
pg=$(scripts/pg-throwaway.sh start "$work/pg" $(( 20000 + RANDOM % 20000 )))

echo "== machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql --version); lease ${LEASE_MS} ms; $(date -u +%Y-%m-%dT%H:%MZ)"
target/release/examples/bench_revocation --bin target/release/tollgate --pg "$pg" --pg-dir "$work/pg" \
  --rounds "$ROUNDS" --lease-ms "$LEASE_MS" --scenarios "$SCENARIOS" --logs "$work"
