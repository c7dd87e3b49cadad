#!/bin/sh
# A throwaway PostgreSQL cluster for tests and local runs.
#
#   scripts/pg-cluster.sh start          initdb into a new /tmp/iot-pg.XXXXXX, start it on a
#                                        free port, listening on 127.0.0.1 only, create the
#                                        database "iot"; prints the DATABASE_URL on stdout
#   scripts/pg-cluster.sh stop  URL|DIR  stops the cluster and removes its directory
#   scripts/pg-cluster.sh down  URL|DIR  stops the server (pg_ctl stop -m fast), keeps the data
#   scripts/pg-cluster.sh up    URL|DIR  starts it again on the same port
#   scripts/pg-cluster.sh dir   URL      prints the cluster directory of a URL
#
# As root, the cluster belongs to the "postgres" user (PostgreSQL refuses to
# run as root); otherwise to the calling user. Authentication is "trust" on
# loopback: this is a test cluster, never a production one. fsync is off unless
# PG_CLUSTER_FSYNC=on (a throwaway cluster does not need to survive power loss).
# Binaries: PG_BINDIR, else /usr/lib/postgresql/15/bin, else the newest installed.
set -eu

die() {
    echo "pg-cluster: $*" >&2
    exit 1
}

find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        echo /usr/lib/postgresql/15/bin
        return
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && {
            echo "$d"
            return
        }
    done
    die "no PostgreSQL server binaries found (apt-get install postgresql, or set PG_BINDIR)"
}

BIN=$(find_bindir)

# Runs a command as the cluster's owner, from a directory that owner can read.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        (cd /tmp && runuser -u postgres -- "$@")
    else
        (cd /tmp && "$@")
    fi
}

# Resolves a URL (postgresql://...:PORT/...) or a directory to a cluster directory.
cluster_dir() {
    arg=${1:-}
    [ -n "$arg" ] || die "which cluster? pass the DATABASE_URL or the directory"
    if [ -d "$arg" ] && [ -f "$arg/port" ]; then
        echo "$arg"
        return
    fi
    port=$(echo "$arg" | sed -n 's|^postgres[a-z]*://[^/]*:\([0-9][0-9]*\)/.*$|\1|p')
    [ -n "$port" ] || die "cannot find a port in \"$arg\""
    for d in /tmp/iot-pg.*; do
        if [ -f "$d/port" ] && [ "$(cat "$d/port")" = "$port" ]; then
            echo "$d"
            return
        fi
    done
    die "no cluster of this script listens on port $port"
}

# Starts the server of dir on port; fails if the port is taken.
server_start() {
    dir=$1
    port=$2
    fsync=${PG_CLUSTER_FSYNC:-off}
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=$fsync" start >/dev/null 2>&1
}

cmd_start() {
    [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1 || die "running as root needs a postgres user"
    dir=$(mktemp -d /tmp/iot-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    chmod 0700 "$dir"
    if ! as_owner "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed"
    fi
    # A free port: try random ones until the server starts (it refuses a port in use).
    tries=0
    while :; do
        tries=$((tries + 1))
        port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
        echo "$port" >"$dir/port"
        if server_start "$dir" "$port"; then break; fi
        if [ $tries -ge 20 ]; then
            cat "$dir/server.log" >&2 2>/dev/null || true
            rm -rf "$dir"
            die "could not start the server on any port"
        fi
    done
    if ! as_owner "$BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres iot; then
        cmd_stop "$dir"
        die "createdb failed"
    fi
    echo "postgresql://postgres@127.0.0.1:$port/iot"
}

cmd_down() {
    dir=$(cluster_dir "${1:-}")
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

cmd_up() {
    dir=$(cluster_dir "${1:-}")
    server_start "$dir" "$(cat "$dir/port")" || die "could not start the server again"
}

cmd_stop() {
    dir=$(cluster_dir "${1:-}")
    if ! as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1; then
        # Still running (pg_ctl failed): end that postmaster only, by its pid.
        if [ -f "$dir/data/postmaster.pid" ]; then
            pid=$(head -n 1 "$dir/data/postmaster.pid")
            [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop "${2:-}" ;;
down) cmd_down "${2:-}" ;;
up) cmd_up "${2:-}" ;;
dir) cluster_dir "${2:-}" ;;
*)
    echo "usage: $0 start | stop URL|DIR | down URL|DIR | up URL|DIR | dir URL" >&2
    exit 2
    ;;
esac
