#!/usr/bin/env bash
# The load benchmark of issue 6: Tollgate against the physical limit of token-checked HTTP on
# this machine, in one invocation.
#
#   scripts/bench-load.sh                  # everything (about 12 minutes on 2 cores)
#   DUR=5s RUNS=1 scripts/bench-load.sh    # a quick look
#   CASES="i j l m n" scripts/bench-load.sh   # only these cases (by letter; g always runs;
#                                             # the start-up with --preload-tokens is skipped)
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
#    and reads /metrics around c, d and e (credential lookups) and b-n (lookups of the reads
#    answered from memory) to show how often the database was asked;
# 4. builds and runs the reference limit server (LIMIT_SRC, default ../shared/bench/limit,
#    copied to LIMIT_BUILD, default /tmp/tollgate-limit-bench, never into the repository) and
#    drives its authorized GET:
#      g  the limit server's authorized GET
# 5. prints req/s, p50 and p99 of every case and its ratio to g; writes them to OUT.
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
CASES=${CASES:-}
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
cargo build --release --bin tollgate --example bench_seed 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true
BIN=$ROOT/target/release/tollgate

# (A seed from before restricted tokens existed is made again.)
if [ ! -f "$SEED/seeded" ] || [ ! -f "$SEED/secrets/restricted.token" ] || [ ! -f "$SEED/secrets/reader.token" ]; then
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
trap stop_server EXIT
rss_mb() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_tollgate NAME [serve args...]: a fresh copy of the seeded database; sets STARTUP_MS.
start_tollgate() {
  local name=$1; shift
  local dir=$OUT/data-$name
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$SEED"/tollgate.db* "$dir"/
  wait_quiet
  local t0; t0=$(date +%s%N)
  RUST_LOG=info TOLLGATE_ADMIN_PASSWORD=bench-password-1 "$BIN" serve --listen "127.0.0.1:$PORT" \
    --data-dir "$dir" "$@" >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server-$name.log" >&2; exit 1; }
    sleep 0.01
  done
  STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# --- start-up and memory with everything preloaded (the worst case for memory) ----------------
PRELOAD_MS=-; WARM_MS=-; PRELOAD_RSS=-; PRELOADED=-
if [ -z "$CASES" ]; then
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

# --- the measured server: default configuration ----------------------------------------------
log "== start-up as configured by default"
start_tollgate default
DEFAULT_MS=$STARTUP_MS; DEFAULT_RSS=$(rss_mb "$SERVER_PID")
log "  ready in ${DEFAULT_MS} ms, RSS ${DEFAULT_RSS} MiB"
BASE=http://127.0.0.1:$PORT
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check() { local want=$1; shift; local got; got=$(code "$@"); [ "$got" = "$want" ] || { log "sanity: expected $want, got $got for $*"; exit 1; }; }
check 200 -H "Authorization: Bearer $VALID" "$BASE/applications/$APP/devices/$DEV"
check 200 -H "Authorization: Bearer $VALID" "$BASE/applications/$APP/devices"
check 401 -H "Authorization: Bearer $UNKNOWN" "$BASE/applications/$APP/devices/$DEV"
check 401 -H "Authorization: Bearer $MALFORMED" "$BASE/applications/$APP/devices/$DEV"
check 401 -H "Authorization: Bearer $INACTIVE" "$BASE/applications/$APP/devices/$DEV"
check 200 -X POST -H "Authorization: Bearer $VALID" -H 'Content-Type: application/json' \
  -d '{"data":{"temperature":21.5}}' "$BASE/applications/$APP/devices/$DEV/state"
for n in 1 2 3; do
  check 201 -X POST -H "Authorization: Bearer $READER" -H 'Content-Type: application/json' \
    -d "{\"name\":\"flow $n\",\"triggers\":[],\"nodes\":[{\"id\":\"n1\",\"type\":\"DebugNode\",\"config\":{}}]}" "$BASE/applications/$APP/flows"
done
LVQ_BODY="{\"attribute\":\"temperature\",\"deviceIds\":[\"$DEV\"]}"
for p in "" /tokens "/tokens/$READER_ID" /flows "/devices?filterField=name&filter=device%201*" \
    "/devices/$DEV/state" "/devices/$DEV/compositeState"; do
  check 200 -H "Authorization: Bearer $READER" "$BASE/applications/$APP$p"
done
check 200 -X POST -H "Authorization: Bearer $READER" -H 'Content-Type: application/json' \
  -d "$LVQ_BODY" "$BASE/applications/$APP/data/last-value-query"
log "sanity: 200 device.get, 200 devices.get, 401 unknown/malformed/inactive, 200 sendState, 200 for the reads: ok"

cat >"$OUT/state.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"temperature":21.5}}'
EOF

read_lookups() { curl -s "$BASE/metrics" | awk -F'[ }]' '/^tollgate_read_answers_total.*from="database"/{s+=$NF} END{print s+0}'; }
cat >"$OUT/lvq.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$LVQ_BODY'
EOF

# Token checks answered by the database (only the credential line: the session checks'
# line has the same label).
db_checks() { curl -s "$BASE/metrics" | awk -F'[ }]' '/^tollgate_credential_checks_total.*result="database"/{print $NF}'; }

declare -A RPS P50 P99 OTHER DBQ
# run_case NAME PID wrk-args...: RUNS runs, medians into RPS/P50/P99 (ms).
run_case() {
  local name=$1 pid=$2; shift 2
  wanted "$name" || return 0
  local rps=() p50=() p99=() others=() n
  for n in $(seq 1 "$RUNS"); do
    local f=$OUT/wrk-$name-$n.txt
    wait_quiet
    local b0 t0 s0 b1 t1 s1 w0
    read -r b0 t0 < <(busy_total); s0=$(proc_ticks "$pid")
    local TIMEFORMAT='%U %S'
    { time wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency "$@" >"$f" 2>&1; } 2>"$f.time"
    read -r b1 t1 < <(busy_total); s1=$(proc_ticks "$pid")
    rps+=("$(awk '/^Requests\/sec/{print $2}' "$f")")
    p50+=("$(awk '$1=="50%"{print $2}' "$f")")
    p99+=("$(awk '$1=="99%"{print $2}' "$f")")
    # Other processes' CPU during the run, in % of one core: all busy time minus the server's
    # and wrk's (ticks are 1/100 s on Linux; /proc/stat's total covers every core).
    local wrk_ticks; wrk_ticks=$(awk '{printf "%d", ($1 + $2) * 100}' "$f.time")
    # (Accurate to about ±10 %: tick rounding, and kernel work for the server's sockets is not
    # always charged to it. Below zero means "nothing measurable".)
    local other=$(( 100 * $(nproc) * ((b1 - b0) - (s1 - s0) - wrk_ticks) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    others+=("$(( other < 0 ? 0 : other ))")
  done
  RPS[$name]=$(printf '%s\n' "${rps[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  P50[$name]=$(printf '%s\n' "${p50[@]}" | to_ms | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  P99[$name]=$(printf '%s\n' "${p99[@]}" | to_ms | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  OTHER[$name]=$(printf '%s ' "${others[@]}")
  log "  $name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms (other processes used ${OTHER[$name]}% of a core)"
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f\n", v}'; }

H() { echo "Authorization: Bearer $1"; }
DEVURL=$BASE/applications/$APP/devices/$DEV
log "== tollgate"
run_case a_device_get "$SERVER_PID" -H "$(H "$VALID")" "$DEVURL"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$(H "$RESTRICTED")" "$DEVURL")" = 200 ] || { log "the restricted token is refused"; exit 1; }
run_case a2_device_get_restricted "$SERVER_PID" -H "$(H "$RESTRICTED")" "$DEVURL"
AURL=$BASE/applications/$APP
for c in "b_devices_get|$VALID|$AURL/devices" "b2_devices_get_filtered|$VALID|$AURL/devices?filterField=name&filter=device%201*" \
    "h_application_get|$READER|$AURL" "i_tokens_get|$READER|$AURL/tokens" "j_token_get|$READER|$AURL/tokens/$READER_ID" \
    "k_flows_get|$READER|$AURL/flows" "l_get_state|$READER|$DEVURL/state" "m_get_composite_state|$READER|$DEVURL/compositeState"; do
  IFS='|' read -r name tok url <<<"$c"
  curl -s -o /dev/null -H "$(H "$tok")" "$url"   # warm
  before=$(read_lookups)
  run_case "$name" "$SERVER_PID" -H "$(H "$tok")" "$url"
  DBQ[$name]=$(( $(read_lookups) - before ))
done
before=$(read_lookups)
run_case n_last_value_query "$SERVER_PID" -s "$OUT/lvq.lua" -H "$(H "$READER")" "$AURL/data/last-value-query"
DBQ[n_last_value_query]=$(( $(read_lookups) - before ))
for c in c_unknown:$UNKNOWN d_malformed:$MALFORMED e_inactive:$INACTIVE; do
  before=$(db_checks)
  run_case "${c%%:*}" "$SERVER_PID" -H "$(H "${c#*:}")" "$DEVURL"
  DBQ[${c%%:*}]=$(( $(db_checks) - before ))
  log "    database lookups during it: ${DBQ[${c%%:*}]}"
done
run_case f_send_state "$SERVER_PID" -s "$OUT/state.lua" -H "$(H "$VALID")" "$DEVURL/state"
TOLLGATE_RSS_AFTER=$(rss_mb "$SERVER_PID")
stop_server

# --- the measuring stick ----------------------------------------------------------------------
log "== limit server (reference)"
# Built outside this workspace (cargo would take it for a member) and never committed.
LIMIT=${LIMIT_BUILD:-${TMPDIR:-/tmp}/tollgate-limit-bench}
mkdir -p "$LIMIT"
(cd "$LIMIT_SRC" && tar --exclude=./target --exclude=./data -cf - .) | (cd "$LIMIT" && tar -xf -)
(cd "$LIMIT" && cargo build --release --bin limit-server --example gen_tokens 2>&1 | grep -Ev '^\s+(Compiling|Downloaded)' >&2 || true)
if [ ! -f "$LIMIT/data/tokens.tsv" ]; then (cd "$LIMIT" && target/release/examples/gen_tokens data >&2); fi
LDEV=$(grep -o 'DEV=[0-9a-f]*' "$LIMIT_SRC/run.sh" | head -1 | cut -d= -f2)
LVALID=$(cat "$LIMIT/data/valid.token"); LAPP=$(cat "$LIMIT/data/valid.app")
wait_quiet
(cd "$LIMIT" && exec target/release/limit-server "$LIMIT_PORT" data/tokens.tsv) >"$OUT/limit-server.log" 2>&1 &
SERVER_PID=$!
until curl -sf "http://127.0.0.1:$LIMIT_PORT/hello" >/dev/null 2>&1; do sleep 0.05; done
LURL=http://127.0.0.1:$LIMIT_PORT/applications/$LAPP/devices/$LDEV
[ "$(code -H "$(H "$LVALID")" "$LURL")" = 200 ] || { log "limit server sanity check failed"; exit 1; }
LIMIT_RSS=$(rss_mb "$SERVER_PID")
run_case g_limit_authorized_get "$SERVER_PID" -H "$(H "$LVALID")" "$LURL"
stop_server

# --- report ---------------------------------------------------------------------------------
G=${RPS[g_limit_authorized_get]}; GP99=${P99[g_limit_authorized_get]}
{
  echo "| case | req/s | p50 ms | p99 ms | × (g) req/s | p99 ÷ (g) p99 | database lookups | others' CPU % per run |"
  echo "|---|---|---|---|---|---|---|---|"
  for k in a_device_get a2_device_get_restricted b_devices_get b2_devices_get_filtered h_application_get i_tokens_get j_token_get k_flows_get l_get_state m_get_composite_state n_last_value_query c_unknown d_malformed e_inactive f_send_state g_limit_authorized_get; do
    [ -n "${RPS[$k]:-}" ] || continue
    awk -v k="$k" -v r="${RPS[$k]}" -v p="${P50[$k]}" -v q="${P99[$k]}" -v g="$G" -v gq="$GP99" -v d="${DBQ[$k]:-}" -v o="${OTHER[$k]}" \
      'BEGIN{printf "| %s | %.0f | %.3f | %.3f | %.2f | %.2f | %s | %s |\n", k, r, p, q, r/g, q/gq, d, o}'
  done
  echo
  echo "start-up to ready with $TOKENS tokens: ${DEFAULT_MS} ms (default); ${PRELOAD_MS} ms with --preload-tokens, every token in memory after ${WARM_MS} ms (${PRELOADED} cached)"
  echo "resident memory: ${DEFAULT_RSS} MiB at start, ${TOLLGATE_RSS_AFTER} MiB after the cases (default); ${PRELOAD_RSS} MiB with every token in memory; limit server ${LIMIT_RSS} MiB with every token in memory"
  echo "runs: $RUNS × $DUR, wrk -t$THREADS -c$CONNS; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
} | tee "$OUT/result.md"
rm -rf "$OUT"/data-*   # the database copies (hundreds of MB); logs and wrk output stay
log "results in $OUT"
