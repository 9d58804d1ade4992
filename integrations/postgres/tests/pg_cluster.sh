#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for the tests, on a Unix socket in a temp directory
# (no TCP port: nothing to collide with).
#
#   pg_cluster.sh start <state-dir>   initdb + start; writes <state-dir>/conninfo and
#                                     <state-dir>/datadir
#   pg_cluster.sh stop <state-dir>    stops it (immediate) and removes its directory
#   pg_cluster.sh pause <state-dir>   stops it, keeping the data (tests of a server outage)
#   pg_cluster.sh resume <state-dir>  starts it again on the same socket
#
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (the
# Debian package creates it), which owns the temp directory. EMISSIONS_PG_BIN overrides
# /usr/lib/postgresql/15/bin. EMISSIONS_PG_DURABLE=1 keeps the server's default durability
# (fsync, synchronous_commit): for benchmarks; tests run without.
set -euo pipefail

cmd=${1:?usage: pg_cluster.sh start|stop|pause|resume <state-dir>}
state=${2:?usage: pg_cluster.sh start|stop|pause|resume <state-dir>}
bin=${EMISSIONS_PG_BIN:-/usr/lib/postgresql/15/bin}

as_server_user=()
if [[ $(id -u) -eq 0 ]]; then
  as_server_user=(runuser -u postgres --)
fi

pg_ctl() {
  "${as_server_user[@]}" "$bin/pg_ctl" "$@"
}

start_server() {
  local dir=$1
  # fsync off: the data is thrown away; the tests need speed, not durability.
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if [[ ${EMISSIONS_PG_DURABLE:-0} == 1 ]]; then durability=""; fi
  pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -c listen_addresses='' -p 5432 $durability -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
}

case $cmd in
  start)
    [[ -x $bin/initdb ]] || { echo "pg_cluster.sh: $bin/initdb not found (apt-get install postgresql-15)" >&2; exit 1; }
    if [[ -f $state/datadir ]]; then "$0" stop "$state" || true; fi
    mkdir -p "$state"
    dir=$(mktemp -d /tmp/emissions-pg.XXXXXX)
    if [[ ${#as_server_user[@]} -gt 0 ]]; then chown postgres: "$dir"; fi
    "${as_server_user[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
      --locale=C --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    start_server "$dir"
    echo "$dir" >"$state/datadir"
    echo "host=$dir port=5432 dbname=postgres user=postgres" >"$state/conninfo"
    echo "PostgreSQL 15 up on $dir/.s.PGSQL.5432"
    ;;
  stop)
    [[ -f $state/datadir ]] || exit 0
    dir=$(cat "$state/datadir")
    pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir" "$state/datadir" "$state/conninfo"
    ;;
  pause)
    # A fast shutdown (connections terminated, WAL flushed): with synchronous_commit off, an
    # immediate one would lose the last commits, and bring deleted outbox rows back.
    dir=$(cat "$state/datadir")
    pg_ctl -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  resume)
    dir=$(cat "$state/datadir")
    start_server "$dir"
    ;;
  *)
    echo "pg_cluster.sh: unknown command '$cmd'" >&2
    exit 2
    ;;
esac
