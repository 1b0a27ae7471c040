#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests.
#   scripts/pg-throwaway.sh start DIR PORT   initdb + start; prints the server URL
#   scripts/pg-throwaway.sh halt DIR         stop the server (fast shutdown), keep the cluster
#   scripts/pg-throwaway.sh resume DIR       start a halted cluster again on the same port
#   scripts/pg-throwaway.sh stop DIR         stop and remove the cluster
# Uses Debian's PostgreSQL binaries; as root it runs the server as the 'postgres' user
# (initdb refuses root). Durability is off (fsync=off): this cluster only lives for a test run.
set -euo pipefail
cmd=${1:?start|halt|resume|stop}; dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
run_server() {
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null
}
case "$cmd" in
  start)
    port=${3:?port}
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    echo "$port" > "$dir/port"
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U tollgate >/dev/null
    run_server
    echo "postgres://tollgate@127.0.0.1:$port/postgres"
    ;;
  halt)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  resume)
    run_server
    ;;
  stop)
    if [ -d "$dir/data" ]; then as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start DIR PORT | halt DIR | resume DIR | stop DIR" >&2; exit 2 ;;
esac
