#!/usr/bin/env bash
# The load benchmark of issue 6: Tollgate against the physical limit of token-checked HTTP on
# this machine, in one invocation.
#
#   scripts/bench-load.sh                  # every case on SQLite (about 30 minutes on 2 cores)
#   DUR=5s RUNS=1 scripts/bench-load.sh    # a quick look
#   CASES="i j l m n" scripts/bench-load.sh   # only these cases (by letter; g always runs;
#                                             # the start-up with --preload-tokens is skipped)
#   BACKENDS="sqlite postgres" scripts/bench-load.sh   # every case on SQLite, then on
#                                             # PostgreSQL, with PG ÷ SQLite per case
#   BACKENDS=postgres PG_URL=postgres://USER@HOST:PORT/postgres scripts/bench-load.sh
#
# BACKENDS (default sqlite): the backends to run the cases on, in this order. PostgreSQL: on
# the server PG_URL (a role that may create databases; the script makes and drops databases
# tollgate_bench_seed and tollgate_bench_run in it) or, without PG_URL, on a throwaway cluster
# it starts itself (scripts/pg-throwaway.sh, fsync off, in PG_DIR on PG_PORT, default 18482)
# and removes at the end. The SQLite seed is copied into PostgreSQL with `tollgate db copy`
# (the same data set and secrets), once per invocation; each server starts on a fresh clone
# of that copy (CREATE DATABASE … TEMPLATE). On the throwaway cluster the database's
# processes count as the server's CPU (not as other processes').
#
# 1. seeds a data directory with TOKENS application tokens (1,000,000) over APPS applications
#    (1,000) and DEVICES devices (10,000), straight into the store (bench_seed example);
# 2. starts `tollgate serve` on that SQLite copy and times start-up to ready, twice: as
#    configured by default (tokens load on first use) and with --preload-tokens (every token
#    loaded into memory in the background; also timed), recording the resident memory of each;
# 3. drives it with wrk (-t1 -c32, RUNS runs of DUR each, medians) for the cases
#      a  device.get with a custom token that holds it
#      a2 the same with a token restricted to that device, to 127.0.0.0/8 and ::1, and to a
#         rate it never reaches (issue 14: the restrictions' cost on the hot path)
#      o  device.get with every feature of issues 13-15 on at once: usage recording (on by
#         default), a token restricted as a2's plus a usage limit it never reaches, expiring
#         inside the first warning lead time (every answer carries Tollgate-Token-Expires),
#         in an application with a token policy of its own
#      b  devices.get, first page
#      b2 devices.get, a page filtered by name
#      h  application.get
#      i  applicationApiTokens.get, first page (1,000 tokens in the application)
#      j  applicationApiToken.get
#      k  flows.get (three flows)
#      l  device.getState, m device.getCompositeState, n data.lastValueQuery for one device
#         (h-n with reader.token, which holds the read actions of issue 17)
#      c  an unknown but well-formed token
#      d  a malformed token
#      e  an inactive token
#      f  device.sendState, one report per request
#      f2 device.sendState, 100 reports of three values per request (300 points), to a device
#         of its own; printed also as reports/s and points/s
#    and reads /metrics around c, d and e (credential lookups) and b-n (lookups of the reads
#    answered from memory) to show how often the database was asked;
# 4. builds and runs the reference limit server (LIMIT_SRC, default ../shared/bench/limit,
#    copied to LIMIT_BUILD, default /tmp/tollgate-limit-bench, never into the repository) and
#    drives its authorized GET:
#      g  the limit server's authorized GET
#    The limit server runs from the start, idle beside Tollgate: after every run of a case, g
#    runs once (A B A B …), and a case's ratio to g is the median of its runs' ratios to the
#    g run right after each, so a machine whose speed drifts during the benchmark (2 shared
#    cores do) moves both sides of a ratio alike. PAIRED=0 measures g only once, at the end
#    (half the time; the ratios then compare minutes apart);
#    Before a case's first run, wrk drives it for WARMUP (1s; 0 for none), not measured.
# 5. prints req/s, p50 and p99 of every case and its ratio to g; writes them to OUT. With
#    PostgreSQL too: the same table for PostgreSQL, and per case PG ÷ SQLite (req/s; the
#    ratio of the two × (g), "paired"; and the CPU per request of the server and, on a
#    throwaway cluster, the database).
#
# wrk shares the machine's cores with the server, as in the limit server's own run. Before
# each measurement the script waits (up to QUIET_WAIT s) for other processes to go quiet and
# reports the CPU they used during it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-15s}
RUNS=${RUNS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
TOKENS=${TOKENS:-1000000}
APPS=${APPS:-1000}
DEVICES=${DEVICES:-10000}
PORT=${PORT:-18480}
LIMIT_PORT=${LIMIT_PORT:-18481}
QUIET_WAIT=${QUIET_WAIT:-120}
PAIRED=${PAIRED:-1}
WARMUP=${WARMUP:-1s}
CASES=${CASES:-}
BACKENDS=${BACKENDS:-sqlite}
PG_URL=${PG_URL:-}
PG_PORT=${PG_PORT:-18482}
PG_DIR=${PG_DIR:-${TMPDIR:-/tmp}/tollgate-bench-pg-$PG_PORT}
for b in $BACKENDS; do
  case $b in sqlite|postgres) ;; *) echo "BACKENDS: sqlite and/or postgres, not $b" >&2; exit 2 ;; esac
done
has_backend() { [[ " $BACKENDS " == *" $1 "* ]]; }
# wanted NAME: whether case NAME (its letter before the first _) is selected.
wanted() { [ -z "$CASES" ] || [ "${1%%_*}" = g ] || [[ " $CASES " == *" ${1%%_*} "* ]]; }
LIMIT_SRC=${LIMIT_SRC:-$ROOT/../shared/bench/limit}
SEED=${SEED:-target/bench-load/seed-$TOKENS-$APPS-$DEVICES}
OUT=${OUT:-target/bench-load/$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
log() { printf '%s\n' "$*" >&2; }

command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ -d "$LIMIT_SRC" ] || { log "the limit server's sources are not at $LIMIT_SRC (set LIMIT_SRC)"; exit 1; }

log "== build"
# NO_BUILD=1: use the release binaries as they are.
[ -n "${NO_BUILD:-}" ] || cargo build --release --bin tollgate --example bench_seed 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true
BIN=$ROOT/target/release/tollgate

# (A seed from before restricted tokens, or before the all-features token existed, is made
# again; so is one whose all-features token expires within a day.)
seed_stale() {
  [ ! -f "$SEED/seeded" ] || [ ! -f "$SEED/secrets/restricted.token" ] || [ ! -f "$SEED/secrets/reader.token" ] \
    || [ ! -f "$SEED/secrets/allfeatures.expires" ] || [ ! -f "$SEED/secrets/gateway.device" ] \
    || [ "$(cat "$SEED/secrets/allfeatures.expires")" -lt $(( ($(date +%s) + 86400) * 1000 )) ]
}
if seed_stale; then
  log "== seed $TOKENS tokens, $APPS applications, $DEVICES devices into $SEED"
  rm -rf "$SEED"; mkdir -p "$SEED"
  start=$(date +%s)
  target/release/examples/bench_seed "sqlite://$SEED/tollgate.db" "$SEED/secrets" "$TOKENS" "$APPS" "$DEVICES"
  echo $(( $(date +%s) - start )) > "$SEED/seconds"
  touch "$SEED/seeded"
fi
S=$SEED/secrets
APP=$(cat "$S/app.id"); DEV=$(cat "$S/device.id")
VALID=$(cat "$S/valid.token"); INACTIVE=$(cat "$S/inactive.token")
RESTRICTED=$(cat "$S/restricted.token")
READER=$(cat "$S/reader.token"); READER_ID=$(cat "$S/reader.id")
UNKNOWN=$(cat "$S/unknown.token"); MALFORMED=$(cat "$S/malformed.token")
ALLF=$(cat "$S/allfeatures.token"); ALLF_ID=$(cat "$S/allfeatures.id")
ALLF_APP=$(cat "$S/allfeatures.app"); ALLF_DEV=$(cat "$S/allfeatures.device")
GATEWAY=$(cat "$S/gateway.device")

# --- CPU used by other processes, to know whether a measurement was disturbed ----------------
busy_total() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
proc_ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
wait_quiet() {
  local waited=0 b0 t0 b1 t1 pct
  while [ "$waited" -lt "$QUIET_WAIT" ]; do
    read -r b0 t0 < <(busy_total); sleep 1; read -r b1 t1 < <(busy_total)
    pct=$(( $(nproc) * 100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    [ "$pct" -le 15 ] && return 0
    [ "$waited" = 0 ] && log "  machine busy (${pct}% of a core); waiting"
    waited=$((waited + 1))
  done
  log "  still busy after ${QUIET_WAIT}s: measuring anyway"
}


SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true   # a server stopped by a signal exits non-zero
  fi
  SERVER_PID=
}
# PostgreSQL: PG_STARTED when this script started the throwaway cluster (removed at the end);
# PG_POSTMASTER its postmaster's pid (for the database's CPU); PG_BASE the server's URL
# without the database name (set once PostgreSQL is in use).
PG_STARTED=; PG_POSTMASTER=; PG_BASE=
cleanup() {
  stop_server
  [ -n "${LIMIT_PID:-}" ] && kill "$LIMIT_PID" 2>/dev/null || true
  if [ -n "$PG_STARTED" ]; then
    scripts/pg-throwaway.sh stop "$PG_DIR"
  elif [ -n "$PG_BASE" ]; then
    pg "$PG_URL" -c "DROP DATABASE IF EXISTS tollgate_bench_run WITH (FORCE)" \
      -c "DROP DATABASE IF EXISTS tollgate_bench_seed WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
rss_mb() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }

# CPU ticks of the throwaway cluster: the postmaster, its live children, and the children it
# has reaped (a backend that exits during a run moves its time there).
pg_ticks() {
  local pm=$PG_POSTMASTER
  if [ -z "$pm" ] || [ ! -r "/proc/$pm/stat" ]; then echo 0; return; fi
  # shellcheck disable=SC2046  # one pid per word
  echo $(( $(awk '{print $16+$17}' "/proc/$pm/stat") + $(proc_ticks "$pm" $(ps -o pid= --ppid "$pm")) ))
}
# server_ticks PID: the server's CPU ticks, with the database's when it is the throwaway
# PostgreSQL cluster (it does the server's work then).
server_ticks() {
  if [ "$BACKEND" = postgres ]; then echo $(( $(proc_ticks "$1") + $(pg_ticks) )); else proc_ticks "$1"; fi
}

# psql, quietly (no notices for databases that do not exist yet).
pg() { PGOPTIONS='-c client_min_messages=warning' psql -q "$@"; }

BACKEND=sqlite   # the backend of the server being measured
PREFIX=          # its results' key prefix: "" for SQLite, "pg-" for PostgreSQL

if has_backend postgres; then
  if ! command -v psql >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  if [ -z "$PG_URL" ]; then
    log "== throwaway PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DIR)"
    PG_URL=$(scripts/pg-throwaway.sh start "$PG_DIR" "$PG_PORT"); PG_STARTED=1
    PG_POSTMASTER=$(head -1 "$PG_DIR/data/postmaster.pid")
  fi
  PG_BASE=${PG_URL%/*}
  PG_RUN_URL=$PG_BASE/tollgate_bench_run
  PG_VERSION=$(psql -tA "$PG_URL" -c 'SHOW server_version' | cut -d' ' -f1)
  log "== copy the seed into PostgreSQL $PG_VERSION (tollgate db copy)"
  src=$OUT/data-pgsource; rm -rf "$src"; mkdir -p "$src"
  cp "$SEED"/tollgate.db* "$src"/   # db copy migrates its source: leave the seed as it is
  pg "$PG_URL" -c "DROP DATABASE IF EXISTS tollgate_bench_run WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS tollgate_bench_seed WITH (FORCE)" -c "CREATE DATABASE tollgate_bench_seed"
  t0=$(date +%s%N)
  "$BIN" db copy --from "sqlite://$src/tollgate.db" --to "$PG_BASE/tollgate_bench_seed" >"$OUT/db-copy.log" 2>&1 \
    || { cat "$OUT/db-copy.log" >&2; exit 1; }
  COPY_S=$(awk -v n="$(( $(date +%s%N) - t0 ))" 'BEGIN{printf "%.1f", n/1e9}')
  log "  $(grep '^copied' "$OUT/db-copy.log") in ${COPY_S} s"
  # Frozen and analysed once: clones start with the statistics and no vacuum to do.
  pg "$PG_BASE/tollgate_bench_seed" -c "VACUUM (FREEZE, ANALYZE)"
  rm -rf "$src"
fi

# start_tollgate NAME [serve args...]: a fresh copy of the seeded database (SQLite: a copy of
# the file; PostgreSQL: a clone of the copied seed); sets STARTUP_MS.
start_tollgate() {
  local name=$1; shift
  local dir=$OUT/data-$name db=()
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$BACKEND" = postgres ]; then
    pg "$PG_URL" -c "DROP DATABASE IF EXISTS tollgate_bench_run WITH (FORCE)" \
      -c "CREATE DATABASE tollgate_bench_run TEMPLATE tollgate_bench_seed"
    db=(--database-url "$PG_RUN_URL")
  else
    cp "$SEED"/tollgate.db* "$dir"/
  fi
  wait_quiet
  local t0; t0=$(date +%s%N)
  RUST_LOG=info TOLLGATE_ADMIN_PASSWORD=bench-password-1 "$BIN" serve --listen "127.0.0.1:$PORT" \
    --data-dir "$dir" "${db[@]}" "$@" >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server-$name.log" >&2; exit 1; }
    sleep 0.01
  done
  STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ "$BACKEND" = postgres ]; then
    # Caches answer only once the change feed is up: measure the cached path, not the wait.
    local n=0
    until [[ $(curl -s "http://127.0.0.1:$PORT/health") == *'"cache":"live"'* ]]; do
      n=$((n + 1)); [ "$n" -lt 3000 ] || { log "the cache did not go live in 30 s"; exit 1; }
      sleep 0.01
    done
  fi
}

BASE=http://127.0.0.1:$PORT
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check() { local want=$1; shift; local got; got=$(code "$@"); [ "$got" = "$want" ] || { log "sanity: expected $want, got $got for $*"; exit 1; }; }
# Does this request's answer carry the expiry warning header?
warns() { local h; h=$(curl -s -o /dev/null -D - "$@"); grep -qi '^tollgate-token-expires:' <<<"$h"; }
LVQ_BODY="{\"attribute\":\"temperature\",\"deviceIds\":[\"$DEV\"]}"

cat >"$OUT/state.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"temperature":21.5}}'
LUA
# f2: REPORTS reports a request, every one at a time no other report of the benchmark has, so
# each is stored, never merged into an earlier one. Each wrk invocation (the warm-up and every
# run) starts its times below the last one's: a day before the script was written, minus
# 1,000,000 ms for every second since then, counting down from there; threads interleave. So
# invocations never overlap while the server stores fewer than 1,000,000 reports a second.
REPORTS=100
cat >"$OUT/batch.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local written, threads, step = $(date +%s), 0, $THREADS
local reports, counter = $REPORTS, 0
local start = (written - 86400) * 1000 - (os.time() - written) * 1000000
function setup(thread) thread:set("k", threads); threads = threads + 1 end
function request()
  local parts = {}
  for i = 1, reports do
    local t = start - counter * step - (k or 0)
    counter = counter + 1
    parts[i] = string.format('{"time":%d,"data":{"temperature":%d.5,"humidity":%d,"door":%s}}',
      t, 20 + counter % 10, counter % 60, counter % 2 == 0 and "true" or "false")
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
end
LUA

read_lookups() { curl -s "$BASE/metrics" | awk -F'[ }]' '/^tollgate_read_answers_total.*from="database"/{s+=$NF} END{print s+0}'; }
cat >"$OUT/lvq.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$LVQ_BODY'
LUA

# Token checks answered by the database (only the credential line: the session checks'
# line has the same label).
db_checks() { curl -s "$BASE/metrics" | awk -F'[ }]' '/^tollgate_credential_checks_total.*result="database"/{print $NF}'; }
lease_lapses() { curl -s "$BASE/health" | grep -o '"leaseLapses":[0-9]*' | cut -d: -f2; }

declare -A RPS P50 P99 OTHER DBQ CPU STARTMS RSS0 RSS1 LAPSES RATIO GBESIDE
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# run_case NAME PID wrk-args...: RUNS runs, medians into RPS/P50/P99 (ms) and CPU (the
# server's CPU per request, µs; with the throwaway PostgreSQL's), under key $PREFIX$NAME.
run_case() {
  local name=$1 pid=$2; shift 2
  wanted "$name" || return 0
  local key=$PREFIX$name
  local rps=() p50=() p99=() others=() cpu=() ratio=() beside=() n
  # Warm-up, not measured: the first run of a case was at times half as fast as the next
  # (caches, the allocator, the connection set-up of 32 clients).
  [ "$WARMUP" = 0 ] || wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$@" >"$OUT/warmup-$key.txt" 2>&1
  for n in $(seq 1 "$RUNS"); do
    local f=$OUT/wrk-$key-$n.txt
    wait_quiet
    local b0 t0 s0 b1 t1 s1
    read -r b0 t0 < <(busy_total); s0=$(server_ticks "$pid")
    local TIMEFORMAT='%U %S'
    { time wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency "$@" >"$f" 2>&1; } 2>"$f.time"
    read -r b1 t1 < <(busy_total); s1=$(server_ticks "$pid")
    rps+=("$(awk '/^Requests\/sec/{print $2}' "$f")")
    p50+=("$(awk '$1=="50%"{print $2}' "$f")")
    p99+=("$(awk '$1=="99%"{print $2}' "$f")")
    # Server CPU per request in µs (a tick is 10,000 µs).
    cpu+=("$(awk -v t=$((s1 - s0)) '/requests in/{printf "%.1f", ($1 > 0 ? t * 10000 / $1 : 0)}' "$f")")
    grep -q 'Non-2xx' "$f" && [[ $name != [cde]_* ]] && log "  $key run $n: $(grep 'Non-2xx' "$f" | xargs)"
    # A refused write is not a stored report: a write case counting refusals is no measurement.
    if grep -q 'Non-2xx' "$f" && [[ $name == f* ]]; then log "  $key: refused writes; stopping"; exit 1; fi
    # Other processes' CPU during the run, in % of one core: all busy time minus the server's
    # and wrk's (ticks are 1/100 s on Linux; /proc/stat's total covers every core).
    local wrk_ticks; wrk_ticks=$(awk '{printf "%d", ($1 + $2) * 100}' "$f.time")
    # (Accurate to about ±10 %: tick rounding, and kernel work for the server's sockets is not
    # always charged to it. Below zero means "nothing measurable".)
    local other=$(( 100 * $(nproc) * ((b1 - b0) - (s1 - s0) - wrk_ticks) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    others+=("$(( other < 0 ? 0 : other ))")
    # B: the limit server's run right after, for this run's ratio.
    if [ "$PAIRED" = 1 ] && [ "$name" != g_limit_authorized_get ]; then
      local gf=$OUT/g-beside-$key-$n.txt
      wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -H "$(H "$LVALID")" "$LURL" >"$gf" 2>&1
      ratio+=("$(awk -v r="${rps[-1]}" '/^Requests\/sec/{printf "%.4f", r / $2}' "$gf")")
      beside+=("$(awk '/^Requests\/sec/{print $2}' "$gf")")
    fi
  done
  if [ ${#ratio[@]} -gt 0 ]; then
    RATIO[$key]=$(printf '%s\n' "${ratio[@]}" | median)
    GBESIDE[$key]=$(printf '%s\n' "${beside[@]}" | median)
  fi
  RPS[$key]=$(printf '%s\n' "${rps[@]}" | median)
  P50[$key]=$(printf '%s\n' "${p50[@]}" | to_ms | median)
  P99[$key]=$(printf '%s\n' "${p99[@]}" | to_ms | median)
  CPU[$key]=$(printf '%s\n' "${cpu[@]}" | median)
  OTHER[$key]=$(printf '%s ' "${others[@]}")
  log "  $key: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, server CPU ${CPU[$key]} µs/request (other processes used ${OTHER[$key]}% of a core)${RATIO[$key]:+; ${RATIO[$key]} × (g) beside it (g ${GBESIDE[$key]} req/s)}"
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f\n", v}'; }
H() { echo "Authorization: Bearer $1"; }
DEVURL=$BASE/applications/$APP/devices/$DEV
AURL=$BASE/applications/$APP
ALLF_URL=$BASE/applications/$ALLF_APP/devices/$ALLF_DEV

# --- start-up and memory with everything preloaded (the worst case for memory) ----------------
PRELOAD_MS=-; WARM_MS=-; PRELOAD_RSS=-; PRELOADED=-
if [ -z "$CASES" ] && has_backend sqlite; then
log "== start-up with --preload-tokens"
start_tollgate preload --preload-tokens
PRELOAD_MS=$STARTUP_MS
t0=$(date +%s%N)
until grep -q "preloaded tokens" "$OUT/server-preload.log"; do sleep 0.05; done
WARM_MS=$(( ($(date +%s%N) - t0) / 1000000 + PRELOAD_MS ))
PRELOAD_RSS=$(rss_mb "$SERVER_PID")
PRELOADED=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^tollgate_cached_tokens /{print $2}')
log "  ready in ${PRELOAD_MS} ms; every token in memory after ${WARM_MS} ms; RSS ${PRELOAD_RSS} MiB, ${PRELOADED} tokens cached"
stop_server
fi

# --- the measured server: default configuration, on one backend ------------------------------
# measure_backend sqlite|postgres: start-up, sanity checks and every selected case.
measure_backend() {
BACKEND=$1
if [ "$BACKEND" = postgres ]; then PREFIX=pg-; else PREFIX=; fi
log "== start-up as configured by default ($BACKEND)"
start_tollgate "${PREFIX}default"
STARTMS[$BACKEND]=$STARTUP_MS; RSS0[$BACKEND]=$(rss_mb "$SERVER_PID")
log "  ready in ${STARTUP_MS} ms, RSS ${RSS0[$BACKEND]} MiB"
check 200 -H "Authorization: Bearer $VALID" "$BASE/applications/$APP/devices/$DEV"
check 200 -H "Authorization: Bearer $VALID" "$BASE/applications/$APP/devices"
check 401 -H "Authorization: Bearer $UNKNOWN" "$BASE/applications/$APP/devices/$DEV"
check 401 -H "Authorization: Bearer $MALFORMED" "$BASE/applications/$APP/devices/$DEV"
check 401 -H "Authorization: Bearer $INACTIVE" "$BASE/applications/$APP/devices/$DEV"
check 200 -X POST -H "Authorization: Bearer $VALID" -H 'Content-Type: application/json' \
  -d '{"data":{"temperature":21.5}}' "$BASE/applications/$APP/devices/$DEV/state"
local n p
for n in 1 2 3; do
  check 201 -X POST -H "Authorization: Bearer $READER" -H 'Content-Type: application/json' \
    -d "{\"name\":\"flow $n\",\"triggers\":[],\"nodes\":[{\"id\":\"n1\",\"type\":\"DebugNode\",\"config\":{}}]}" "$BASE/applications/$APP/flows"
done
for p in "" /tokens "/tokens/$READER_ID" /flows "/devices?filterField=name&filter=device%201*" \
    "/devices/$DEV/state" "/devices/$DEV/compositeState"; do
  check 200 -H "Authorization: Bearer $READER" "$BASE/applications/$APP$p"
done
check 200 -X POST -H "Authorization: Bearer $READER" -H 'Content-Type: application/json' \
  -d "$LVQ_BODY" "$BASE/applications/$APP/data/last-value-query"
check 200 -H "$(H "$ALLF")" "$ALLF_URL"
warns -H "$(H "$ALLF")" "$ALLF_URL" || { log "sanity: the all-features token's answer has no Tollgate-Token-Expires"; exit 1; }
log "sanity: 200 device.get, 200 devices.get, 401 unknown/malformed/inactive, 200 sendState, 200 for the reads, 200 with the expiry warning for the all-features token: ok"
local lapses0; lapses0=$(lease_lapses)

log "== tollgate ($BACKEND)"
run_case a_device_get "$SERVER_PID" -H "$(H "$VALID")" "$DEVURL"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$(H "$RESTRICTED")" "$DEVURL")" = 200 ] || { log "the restricted token is refused"; exit 1; }
run_case a2_device_get_restricted "$SERVER_PID" -H "$(H "$RESTRICTED")" "$DEVURL"
if wanted o_device_get_all_features; then
  local used0 used1 sent
  used0=$(allf_used)
  run_case o_device_get_all_features "$SERVER_PID" -H "$(H "$ALLF")" "$ALLF_URL"
  warns -H "$(H "$ALLF")" "$ALLF_URL" || { log "the all-features token's answer lost Tollgate-Token-Expires"; exit 1; }
  used1=$(allf_used)
  if [ -n "$used1" ]; then
    sent=$(cat "$OUT/wrk-${PREFIX}o_device_get_all_features-"*.txt | awk '/requests in/{s+=$1} END{print s+0}')
    log "    usage recording counted $(( used1 - used0 )) authorized device.get of the $sent sent (applicationApiToken.usage)"
    (( used1 - used0 >= sent )) || { log "usage recording missed requests of case o"; exit 1; }
  fi
fi
local c name tok url before
for c in "b_devices_get|$VALID|$AURL/devices" "b2_devices_get_filtered|$VALID|$AURL/devices?filterField=name&filter=device%201*" \
    "h_application_get|$READER|$AURL" "i_tokens_get|$READER|$AURL/tokens" "j_token_get|$READER|$AURL/tokens/$READER_ID" \
    "k_flows_get|$READER|$AURL/flows" "l_get_state|$READER|$DEVURL/state" "m_get_composite_state|$READER|$DEVURL/compositeState"; do
  IFS='|' read -r name tok url <<<"$c"
  curl -s -o /dev/null -H "$(H "$tok")" "$url"   # warm
  before=$(read_lookups)
  run_case "$name" "$SERVER_PID" -H "$(H "$tok")" "$url"
  DBQ[$PREFIX$name]=$(( $(read_lookups) - before ))
done
before=$(read_lookups)
run_case n_last_value_query "$SERVER_PID" -s "$OUT/lvq.lua" -H "$(H "$READER")" "$AURL/data/last-value-query"
DBQ[${PREFIX}n_last_value_query]=$(( $(read_lookups) - before ))
for c in c_unknown:$UNKNOWN d_malformed:$MALFORMED e_inactive:$INACTIVE; do
  before=$(db_checks)
  run_case "${c%%:*}" "$SERVER_PID" -H "$(H "${c#*:}")" "$DEVURL"
  DBQ[$PREFIX${c%%:*}]=$(( $(db_checks) - before ))
  log "    database lookups during it: ${DBQ[$PREFIX${c%%:*}]}"
done
run_case f_send_state "$SERVER_PID" -s "$OUT/state.lua" -H "$(H "$VALID")" "$DEVURL/state"
run_case f2_send_state_batched "$SERVER_PID" -s "$OUT/batch.lua" -H "$(H "$VALID")" "$AURL/devices/$GATEWAY/state"
if [ -n "${RPS[${PREFIX}f2_send_state_batched]:-}" ]; then
  log "    $(awk -v r="${RPS[${PREFIX}f2_send_state_batched]}" -v n=$REPORTS 'BEGIN{printf "%.0f reports/s, %.0f points/s", r * n, r * n * 3}')"
  # Every report answered 200 is a row of its own (none merged into another at the same time).
  local answered stored
  answered=$(cat "$OUT/warmup-${PREFIX}f2_send_state_batched.txt" "$OUT/wrk-${PREFIX}f2_send_state_batched-"*.txt | awk -v n=$REPORTS '/requests in/{s+=$1} END{print s * n}')
  stored=$(gateway_reports)
  log "    reports stored for the gateway device: $stored, answered: $answered"
  (( stored >= answered )) || { log "case f2 stored fewer reports than were answered (merged at equal times?)"; exit 1; }
fi
LAPSES[$BACKEND]=$(( $(lease_lapses) - lapses0 ))
RSS1[$BACKEND]=$(rss_mb "$SERVER_PID")
stop_server
}
# Stored reports of f2's device, counted in the measured server's database.
gateway_reports() {
  local q="SELECT COUNT(*) FROM device_reports WHERE device_id = '$GATEWAY'"
  if [ "$BACKEND" = postgres ]; then pg "$PG_RUN_URL" -At -c "$q"
  else
    command -v sqlite3 >/dev/null || { log "installing sqlite3"; apt-get install -y -qq sqlite3 >/dev/null; }
    sqlite3 "$OUT/data-default/tollgate.db" "$q"
  fi
}
# Authorized device.get of the all-features token so far, from its own usage report (which
# flushes the node's counts first). Needs jq; without it, nothing (and the check is skipped).
allf_used() {
  command -v jq >/dev/null || return 0
  local body; body=$(curl -s -H "$(H "$ALLF")" "$BASE/applications/$ALLF_APP/tokens/$ALLF_ID/usage")
  jq '[.periods[0].actions[] | select(.action == "device.get") | .authorized] | add // 0' <<<"$body"
}

# --- the measuring stick, started before the cases (see step 4 above) --------------------------
# Built outside this workspace (cargo would take it for a member) and never committed.
LIMIT=${LIMIT_BUILD:-${TMPDIR:-/tmp}/tollgate-limit-bench}
mkdir -p "$LIMIT"
(cd "$LIMIT_SRC" && tar --exclude=./target --exclude=./data -cf - .) | (cd "$LIMIT" && tar -xf -)
(cd "$LIMIT" && cargo build --release --bin limit-server --example gen_tokens 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true)
if [ ! -f "$LIMIT/data/tokens.tsv" ]; then (cd "$LIMIT" && target/release/examples/gen_tokens data >&2); fi
LDEV=$(grep -o 'DEV=[0-9a-f]*' "$LIMIT_SRC/run.sh" | head -1 | cut -d= -f2)
LVALID=$(cat "$LIMIT/data/valid.token"); LAPP=$(cat "$LIMIT/data/valid.app")
(cd "$LIMIT" && exec target/release/limit-server "$LIMIT_PORT" data/tokens.tsv) >"$OUT/limit-server.log" 2>&1 &
LIMIT_PID=$!
until curl -sf "http://127.0.0.1:$LIMIT_PORT/hello" >/dev/null 2>&1; do sleep 0.05; done
LURL=http://127.0.0.1:$LIMIT_PORT/applications/$LAPP/devices/$LDEV
[ "$(code -H "$(H "$LVALID")" "$LURL")" = 200 ] || { log "limit server sanity check failed"; exit 1; }
LIMIT_RSS=$(rss_mb "$LIMIT_PID")

for b in sqlite postgres; do
  if has_backend "$b"; then measure_backend "$b"; fi
done
BACKEND=sqlite; PREFIX=

# --- the measuring stick: g, the limit server's authorized GET --------------------------------
log "== limit server (reference)"
run_case g_limit_authorized_get "$LIMIT_PID" -H "$(H "$LVALID")" "$LURL"
kill "$LIMIT_PID" 2>/dev/null || true; wait "$LIMIT_PID" 2>/dev/null || true; LIMIT_PID=

# --- report ---------------------------------------------------------------------------------
G=${RPS[g_limit_authorized_get]}; GP99=${P99[g_limit_authorized_get]}
ALL_CASES="a_device_get a2_device_get_restricted o_device_get_all_features b_devices_get b2_devices_get_filtered h_application_get i_tokens_get j_token_get k_flows_get l_get_state m_get_composite_state n_last_value_query c_unknown d_malformed e_inactive f_send_state f2_send_state_batched"
# ratio KEY: the case's ratio to (g): the median of its runs' ratios to the g run beside each
# (PAIRED=1), or its median against g's own median.
ratio() { if [ -n "${RATIO[$1]:-}" ]; then echo "${RATIO[$1]}"; else awk -v r="${RPS[$1]}" -v g="$G" 'BEGIN{printf "%.4f", r/g}'; fi; }
# table PREFIX: every case of one backend against (g).
table() {
  local pre=$1 k r
  echo "| case | req/s | p50 ms | p99 ms | × (g) req/s | (g) req/s beside it | p99 ÷ (g) p99 | database lookups | others' CPU % per run |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for k in $ALL_CASES g_limit_authorized_get; do
    r=$pre$k; [ "$k" = g_limit_authorized_get ] && r=$k
    [ -n "${RPS[$r]:-}" ] || continue
    awk -v k="$k" -v r="${RPS[$r]}" -v p="${P50[$r]}" -v q="${P99[$r]}" -v g="$G" -v gq="$GP99" -v d="${DBQ[$r]:-}" -v o="${OTHER[$r]}" -v x="$(ratio "$r")" -v gb="${GBESIDE[$r]:-$G}" \
      'BEGIN{printf "| %s | %.0f | %.3f | %.3f | %.2f | %.0f | %.2f | %s | %s |\n", k, r, p, q, x, gb, q/gq, d, o}'
  done
}
{
  if has_backend sqlite; then
    table ""
    echo
    echo "start-up to ready with $TOKENS tokens: ${STARTMS[sqlite]} ms (default); ${PRELOAD_MS} ms with --preload-tokens, every token in memory after ${WARM_MS} ms (${PRELOADED} cached)"
    echo "resident memory: ${RSS0[sqlite]} MiB at start, ${RSS1[sqlite]} MiB after the cases (default); ${PRELOAD_RSS} MiB with every token in memory; limit server ${LIMIT_RSS} MiB with every token in memory"
  fi
  if has_backend postgres; then
    has_backend sqlite && echo
    echo "PostgreSQL $PG_VERSION$([ -n "$PG_STARTED" ] && echo ' (throwaway cluster on this machine, fsync off)'), one node:"
    echo
    table pg-
    echo
    echo "start-up to ready with $TOKENS tokens on PostgreSQL: ${STARTMS[postgres]} ms (default; seed copied in by tollgate db copy in ${COPY_S} s); resident memory ${RSS0[postgres]} MiB at start, ${RSS1[postgres]} MiB after the cases; lease lapses during the cases: ${LAPSES[postgres]}"
  fi
  if has_backend sqlite && has_backend postgres; then
    echo
    # "paired": PostgreSQL's × (g) over SQLite's, each against the g runs beside it, so the
    # machine's drift between the two backends' runs (minutes apart) cancels out.
    echo "| case | SQLite req/s | PostgreSQL req/s | PG ÷ SQLite req/s | PG ÷ SQLite paired | ≥ 0.9 (paired) | SQLite × (g) | PostgreSQL × (g) | CPU µs/request SQLite | CPU µs/request PostgreSQL$([ -n "$PG_STARTED" ] && echo ' (server + database)') |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for k in $ALL_CASES; do
      if [ -z "${RPS[$k]:-}" ] || [ -z "${RPS[pg-$k]:-}" ]; then continue; fi
      awk -v k="$k" -v s="${RPS[$k]}" -v p="${RPS[pg-$k]}" -v xs="$(ratio "$k")" -v xp="$(ratio "pg-$k")" -v cs="${CPU[$k]}" -v cp="${CPU[pg-$k]}" \
        'BEGIN{printf "| %s | %.0f | %.0f | %.2f | %.2f | %s | %.2f | %.2f | %.1f | %.1f |\n", k, s, p, p/s, xp/xs, (xp/xs >= 0.9 ? "yes" : "no"), xs, xp, cs, cp}'
    done
  fi
  for k in f2_send_state_batched pg-f2_send_state_batched; do
    [ -n "${RPS[$k]:-}" ] || continue
    awk -v k="$k" -v r="${RPS[$k]}" -v n=$REPORTS -v q="${P99[$k]}" \
      'BEGIN{printf "%s: %.0f requests/s of %d reports = %.0f reports/s, %.0f points/s (p99 %.1f ms)\n", k, r, n, r * n, r * n * 3, q}'
  done
  echo "runs: $RUNS × $DUR, wrk -t$THREADS -c$CONNS; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
} | tee "$OUT/result.md"
rm -rf "$OUT"/data-*   # the database copies (hundreds of MB); logs and wrk output stay
log "results in $OUT"
