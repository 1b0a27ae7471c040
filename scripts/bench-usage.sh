#!/usr/bin/env bash
# What per-token usage recording costs on the hot path (issue 13): authorized device.get with
# `--token-usage on` and `--token-usage off`, runs alternating between the two so that load
# from other processes falls on both alike, and the limit server's authorized GET in the same
# invocation.
#
#   scripts/bench-usage.sh                      # RUNS=3 pairs of DUR=10s
#   DUR=5s RUNS=1 scripts/bench-usage.sh        # a quick look
#
# A small seed (TOKENS=10000 over APPS=100, DEVICES=1000; bench_seed as in bench-load.sh); wrk
# -t1 -c32 shares the cores with the server. Prints req/s, p50, p99 per run and the medians,
# and the ratios on/off and on/limit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10s}; RUNS=${RUNS:-3}; CONNS=${CONNS:-32}; THREADS=${THREADS:-1}
TOKENS=${TOKENS:-10000}; APPS=${APPS:-100}; DEVICES=${DEVICES:-1000}
PORT=${PORT:-18490}; LIMIT_PORT=${LIMIT_PORT:-18491}
LIMIT_SRC=${LIMIT_SRC:-$( [ -d "$ROOT/../shared/bench/limit" ] && echo "$ROOT/../shared/bench/limit" || echo /work/shared/bench/limit )}
LIMIT=${LIMIT_BUILD:-${TMPDIR:-/tmp}/tollgate-limit-bench}
SEED=${SEED:-target/bench-usage/seed-$TOKENS-$APPS-$DEVICES}
OUT=${OUT:-target/bench-usage/$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
log() { printf '%s\n' "$*" >&2; }

[ -n "${NO_BUILD:-}" ] || cargo build --release --bin tollgate --example bench_seed 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true
BIN=$ROOT/target/release/tollgate
if [ ! -f "$SEED/seeded" ]; then
  rm -rf "$SEED"; mkdir -p "$SEED"
  target/release/examples/bench_seed "sqlite://$SEED/tollgate.db" "$SEED/secrets" "$TOKENS" "$APPS" "$DEVICES"
  touch "$SEED/seeded"
fi
APP=$(cat "$SEED/secrets/app.id"); DEV=$(cat "$SEED/secrets/device.id"); VALID=$(cat "$SEED/secrets/valid.token")

SERVER_PID=
stop_server() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; SERVER_PID=; }
trap stop_server EXIT
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f\n", v}'; }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# measure NAME URL TOKEN: one wrk run, appended to $OUT/NAME.tsv (req/s, p50 ms, p99 ms).
measure() {
  local f=$OUT/wrk-$1-$(date +%s%N).txt
  wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -H "Authorization: Bearer $3" "$2" >"$f" 2>&1
  printf '%s\t%s\t%s\n' "$(awk '/^Requests\/sec/{print $2}' "$f")" \
    "$(awk '$1=="50%"{print $2}' "$f" | to_ms)" "$(awk '$1=="99%"{print $2}' "$f" | to_ms)" >>"$OUT/$1.tsv"
  log "  $1: $(tail -1 "$OUT/$1.tsv")"
}

start_tollgate() { # NAME --token-usage on|off
  local dir=$OUT/data-$1; rm -rf "$dir"; mkdir -p "$dir"; cp "$SEED"/tollgate.db* "$dir"/
  TOLLGATE_TOKEN_USAGE=$2 TOLLGATE_ADMIN_PASSWORD=bench-password-1 "$BIN" serve \
    --listen "127.0.0.1:$PORT" --data-dir "$dir" >"$OUT/server-$1.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.02; done
  local url=http://127.0.0.1:$PORT/applications/$APP/devices/$DEV
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VALID" "$url")" = 200 ] || { log "sanity check failed"; exit 1; }
}

URL=http://127.0.0.1:$PORT/applications/$APP/devices/$DEV
for n in $(seq 1 "$RUNS"); do
  for mode in on off; do
    start_tollgate "$mode" "$mode"; measure "usage_$mode" "$URL" "$VALID"; stop_server
  done
done

mkdir -p "$LIMIT"
(cd "$LIMIT_SRC" && tar --exclude=./target --exclude=./data -cf - .) | (cd "$LIMIT" && tar -xf -)
(cd "$LIMIT" && cargo build --release --bin limit-server --example gen_tokens 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true)
[ -f "$LIMIT/data/tokens.tsv" ] || (cd "$LIMIT" && target/release/examples/gen_tokens data >&2)
LDEV=$(grep -o 'DEV=[0-9a-f]*' "$LIMIT_SRC/run.sh" | head -1 | cut -d= -f2)
(cd "$LIMIT" && exec target/release/limit-server "$LIMIT_PORT" data/tokens.tsv) >"$OUT/limit-server.log" 2>&1 &
SERVER_PID=$!
until curl -sf "http://127.0.0.1:$LIMIT_PORT/hello" >/dev/null 2>&1; do sleep 0.05; done
for n in $(seq 1 "$RUNS"); do
  measure limit "http://127.0.0.1:$LIMIT_PORT/applications/$(cat "$LIMIT/data/valid.app")/devices/$LDEV" "$(cat "$LIMIT/data/valid.token")"
done
stop_server

{
  echo "| case | req/s (median) | p50 ms | p99 ms |"; echo "|---|---|---|---|"
  for k in usage_on usage_off limit; do
    printf '| %s | %s | %s | %s |\n' "$k" "$(cut -f1 "$OUT/$k.tsv" | median)" "$(cut -f2 "$OUT/$k.tsv" | median)" "$(cut -f3 "$OUT/$k.tsv" | median)"
  done
  on=$(cut -f1 "$OUT/usage_on.tsv" | median); off=$(cut -f1 "$OUT/usage_off.tsv" | median); lim=$(cut -f1 "$OUT/limit.tsv" | median)
  awk -v a="$on" -v b="$off" -v c="$lim" 'BEGIN{printf "\non / off = %.3f; on / limit = %.3f\n", a/b, a/c}'
  echo "runs: $RUNS × $DUR each, alternating on/off; wrk -t$THREADS -c$CONNS; $(nproc) cores"
} | tee "$OUT/result.md"
rm -rf "$OUT"/data-*
