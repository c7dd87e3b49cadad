#!/usr/bin/env bash
# iot-ingest benchmarks (`make bench`). Writes docs/BENCHMARKS.md.
#
#  1. Ingest throughput: wrk (one thread, keep-alive) POSTs pre-generated
#     packets (bench/packets.lua; 10 readings each, 100 devices x 10 sensors,
#     bodies from bench/gen_bodies.sh) to the gateway, with rate limits off,
#     at 16 and 64 connections, BENCH_DURATION s after a BENCH_WARMUP s
#     warm-up, on SQLite with DB_SYNC=full and DB_SYNC=normal, and on
#     PostgreSQL (DATABASE_URL_PG, else a throwaway cluster; BENCH_PG=0: none).
#     Each run has a fresh gateway
#     and database; the gateway's idle RSS is read before the load, its peak
#     RSS (VmHWM) and CPU time after.
#  2. The reference ceiling in the same run: nginx answering 204 to the same
#     POSTs on loopback (temporary config, its own port).
#  3. What-if rows: the same load with one thing changed (group commit off, the
#     old per-sensor readings index added back, the time index dropped), to
#     price each part of the write path.
#  4. A CPU profile of the gateway under load (perf record, per-thread CPU, perf
#     trace), when perf works.
#  5. The baseline job over BENCH_JOB_SENSORS sensors x BENCH_JOB_READINGS
#     readings generated with SQL into a fresh SQLite file, timed by hyperfine.
#  6. The peers of issue 13, in the same run and measured the same way: InfluxDB
#     1.6 and VictoriaMetrics (Debian packages) fed the same readings as line
#     protocol on /write, one packet = one request, and the seed's design
#     (bench/peers/seed_app.py: FastAPI + SQLite, one commit per packet) fed the
#     same JSON bodies and keys. Then the standard SQLite row again with 1 and
#     100 readings per packet (CPU per reading).
#  7. Issue 16's history API (history_run): a sensor with BENCH_HISTORY_READINGS
#     readings over a year (bench/history_data.sql, bench/history_data_pg.sql),
#     rolled up by `job retention`, queried through `serve` with curl.
#  8. Issue 16's retention under load (retention_run): the standard load without
#     and then with `job retention` deleting BENCH_RETENTION_READINGS old readings.
#  9. Issue 17's MQTT row (ingest_rows): the same bodies published at QoS 1 by
#     bench/peers/mqtt_load.c to a fresh gateway and database, SQLite DB_SYNC=full
#     (and PostgreSQL) at the largest connection count, right after the HTTP row of
#     the same settings. Every gateway listens on MQTT too (MQTT_PORT).
#
# Settings (environment): see bench/README.md. BENCH_QUICK=1 is a short run of
# what the Targets section needs. Installs wrk, nginx-light, hyperfine, sqlite3,
# curl and the peers (influxdb, victoria-metrics, python3-fastapi,
# python3-uvicorn, python3-uvloop, python3-httptools) with apt-get when they
# are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${IOT_INGEST_BIN:-$ROOT/build/iot-ingest}
# BENCH_ONLY=targets (or peers): only the rows of issue 13's Targets (nginx,
# SQLite DB_SYNC=full, PostgreSQL when given, the peers, the readings-per-packet
# variants). BENCH_ONLY=history, retention: only that step of issue 16 (both
# backends); BENCH_ONLY=mqtt: issue 17's MQTT rows and the HTTP rows they are
# compared with; BENCH_ONLY=tls: issue 19's HTTPS rows and their HTTP rows; a list (`history,retention`, `targets history`) runs each part.
# BENCH_QUICK=1: the same, short and small, into build/BENCHMARKS-quick.md (alone:
# BENCH_ONLY=targets). Each default below still gives way to its own variable.
ONLY=${BENCH_ONLY:-}
[ "${BENCH_QUICK:-0}" = 1 ] && ONLY=${ONLY:-targets}
ONLY=$(echo "$ONLY" | tr ',' ' ' | xargs)
# What runs: the ingest rows (everything but the three steps below), the history
# API step, the retention-under-load step, the MQTT rows (with their HTTP rows).
if [ -z "$ONLY" ]; then Q_INGEST=1 Q_HIST=1 Q_RET=1 Q_MQTT=1 Q_TLS=1; else Q_INGEST=0 Q_HIST=0 Q_RET=0 Q_MQTT=0 Q_TLS=0; fi
for o in $ONLY; do
    case "$o" in
    targets | peers) Q_INGEST=1 ;;
    history) Q_HIST=1 ;;
    retention) Q_RET=1 ;;
    mqtt) Q_MQTT=1 ;;
    tls) Q_TLS=1 ;;
    *) echo "bench: BENCH_ONLY=$o: use targets, history, retention, mqtt or tls" >&2; exit 2 ;;
    esac
done
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    Q_DURATION=3 Q_WARMUP=1 Q_CONNS=64 Q_BODIES=500 Q_OUT=$ROOT/build/BENCHMARKS-quick.md
    Q_HIST_READINGS=100000 Q_RET_READINGS=190000 Q_RET_DURATION=10
else
    Q_DURATION=15 Q_WARMUP=5 Q_CONNS="16 64" Q_BODIES=2000 Q_OUT=$ROOT/docs/BENCHMARKS.md
    Q_HIST_READINGS=10000000 Q_RET_READINGS=10000000 Q_RET_DURATION=
fi
if [ -n "$ONLY" ]; then Q_SYNCS=full Q_EXTRA=0; else Q_SYNCS="full normal" Q_EXTRA=1; fi
DURATION=${BENCH_DURATION:-$Q_DURATION}
WARMUP=${BENCH_WARMUP:-$Q_WARMUP}
RET_DURATION=${BENCH_RETENTION_DURATION:-${Q_RET_DURATION:-$DURATION}}
CONNS=${BENCH_CONNECTIONS:-$Q_CONNS}
SYNCS=${BENCH_SYNCS:-$Q_SYNCS}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
BODIES_N=${BENCH_BODIES_N:-$Q_BODIES}
GW_LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
PROFILE=${BENCH_PROFILE:-$Q_EXTRA}
WHATIF=${BENCH_WHATIF:-$Q_EXTRA}
# The growth row: the standard workload on a fleet of BENCH_GROWTH_DEVICES x 10 sensors.
GROWTH=${BENCH_GROWTH:-$Q_INGEST}
GROWTH_DEVICES=${BENCH_GROWTH_DEVICES:-10000}
PROFILE_SYNC=${BENCH_PROFILE_SYNC:-normal}
PROFILE_SECS=${BENCH_PROFILE_SECS:-10}
JOBS=${BENCH_JOBS:-$Q_EXTRA}
JOB_SENSORS=${BENCH_JOB_SENSORS:-10000}
JOB_READINGS=${BENCH_JOB_READINGS:-100}
JOB_RUNS=${BENCH_JOB_RUNS:-3}
PEERS=${BENCH_PEERS:-$Q_INGEST}
# libmicrohttpd alone answering 204 (bench/peers/mhd204.c), direct and through suspend/resume.
MHD=${BENCH_MHD:-$Q_INGEST}
MHD204=${BENCH_MHD204:-$ROOT/build/bench/mhd204}
if [ "$Q_INGEST" = 1 ]; then Q_VARIANTS="1 100"; else Q_VARIANTS=; fi
READINGS_VARIANTS=${BENCH_READINGS_VARIANTS-$Q_VARIANTS}
INGEST=$Q_INGEST
# Issue 16, history API: sensor 1's readings (the device's 10 sensors hold 1.9x
# as many in all) over the HIST_DAYS days before the current hour, rolled up,
# then each query HIST_WARM times unmeasured and HIST_RUNS times measured.
HISTORY=${BENCH_HISTORY:-$Q_HIST}
HIST_READINGS=${BENCH_HISTORY_READINGS:-$Q_HIST_READINGS}
HIST_DAYS=${BENCH_HISTORY_DAYS:-365}
HIST_RUNS=${BENCH_HISTORY_RUNS:-7}
HIST_WARM=${BENCH_HISTORY_WARM:-6}
# Issue 16, retention under load: RET_READINGS readings older than RET_KEEP_DAYS
# (spread over the RET_SPAN_DAYS days before that cutoff) and RET_RECENT newer ones,
# deleted by `job retention` (RETENTION_DAYS=RET_KEEP_DAYS) while the standard load
# runs for RET_DURATION s; the job is given RET_TIMEOUT s in all.
RETENTION=${BENCH_RETENTION:-$Q_RET}
RET_READINGS=${BENCH_RETENTION_READINGS:-$Q_RET_READINGS}
RET_RECENT=${BENCH_RETENTION_RECENT:-$((RET_READINGS / 10))}
RET_KEEP_DAYS=${BENCH_RETENTION_DAYS:-30}
RET_SPAN_DAYS=${BENCH_RETENTION_SPAN_DAYS:-335}
RET_TIMEOUT=${BENCH_RETENTION_TIMEOUT:-1800}
# Issue 17, MQTT: the standard bodies at QoS 1 (bench/peers/mqtt_load.c), MQTT_INFLIGHT
# PUBLISHes in flight per connection, next to the HTTP row of the same settings.
MQTT=${BENCH_MQTT:-$Q_MQTT}
MQTT_INFLIGHT=${BENCH_MQTT_INFLIGHT:-1}
MQTT_LOAD=${BENCH_MQTT_LOAD:-$ROOT/build/bench/mqtt_load}
# Issue 19, TLS: the standard load over HTTPS (TLS_CERT_FILE, a certificate made for the
# run), keep-alive and a new connection per request, next to the HTTP row.
TLS=${BENCH_TLS:-$Q_TLS}
# The history queries' X-API-Key (the gateway of that step only).
HIST_KEY=bench-history-key
SEED_SYNC=${BENCH_SEED_SYNC:-full}
# A partial run (BENCH_ONLY) never replaces the full report.
[ -n "$ONLY" ] && [ "${BENCH_QUICK:-0}" != 1 ] && Q_OUT=$ROOT/build/BENCHMARKS-partial.md
OUT=${BENCH_OUT:-$Q_OUT}
# The seed peer needs Debian's python3 (FastAPI), whatever python3 is first in PATH.
PY=/usr/bin/python3
PG_URL=${DATABASE_URL_PG:-}
# Without DATABASE_URL_PG, a throwaway PostgreSQL cluster of this run (fsync on,
# synchronous_commit on: the comparison with SQLite DB_SYNC=full), unless BENCH_PG=0.
PG_OWN=
export BENCH_DEVICES=${BENCH_DEVICES:-100} BENCH_SENSORS=${BENCH_SENSORS:-10}
export BENCH_READINGS=${BENCH_READINGS:-10}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iot-bench.XXXXXX")
PIDS=()

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [ -n "$PG_OWN" ] && sh "$ROOT/scripts/pg-cluster.sh" stop "$PG_OWN" >/dev/null 2>&1
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools

need_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    command -v curl >/dev/null || missing+=(curl)
    if [ "$PEERS" = 1 ]; then
        local p
        for p in influxdb victoria-metrics python3-fastapi python3-uvicorn python3-uvloop \
            python3-httptools; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
        done
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} with apt-get"
    [ "$(id -u)" = 0 ] || die "not root: install ${missing[*]} first (apt-get install ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
        { apt-get update -q >>"$WORK/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
        die "apt-get install ${missing[*]} failed; see $WORK/apt.log"
}

NGINX=$(command -v nginx || echo /usr/sbin/nginx)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until URL answers HTTP at all (any status), up to 20 s.
wait_http() {
    local url=$1 pid=$2 _
    for _ in $(seq 1 200); do
        if curl -sk -o /dev/null --max-time 1 "$url"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Sum of a /proc/PID/status field (kB) over PID and its children (nginx workers).
proc_kb() {
    local field=$1 pid=$2 total=0 p v
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# utime + stime in clock ticks over PID and its children (threads included).
proc_ticks() {
    local pid=$1 total=0 p v
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# wrk_run URL BODIES CONNS SECONDS OUTFILE: prints the BENCH line of packets.lua.
wrk_run() {
    BENCH_BODIES=$2 BENCH_CLOSE=${BENCH_CLOSE:-0} wrk -t"$WRK_THREADS" -c"$3" -d"$4"s \
        --timeout 10s -s "$ROOT/bench/packets.lua" "$1" >"$5" 2>&1 || true
    grep '^BENCH ' "$5" || { cat "$5" >&2; return 1; }
}

# mqtt_run mqtt://HOST:PORT BODIES CONNS SECONDS OUTFILE: the same bodies published at
# QoS 1 (bench/peers/mqtt_load.c); prints its BENCH line, in packets.lua's format.
mqtt_run() {
    local hp=${1#mqtt://}
    "$MQTT_LOAD" -c "$3" -d "$4" -k "$MQTT_INFLIGHT" -t 10 "${hp%:*}" "${hp##*:}" "$2" >"$5" 2>&1 || true
    grep '^BENCH ' "$5" || { cat "$5" >&2; return 1; }
}

# load_run TARGET BODIES CONNS SECONDS OUTFILE: mqtt_run for an mqtt:// TARGET, else wrk_run.
load_run() {
    case "$1" in
    mqtt://*) mqtt_run "$@" ;;
    *) wrk_run "$@" ;;
    esac
}

# Bytes the process (and its children) sent to storage, from /proc/PID/io.
proc_write_bytes() {
    local pid=$1 total=0 p v
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        v=$(awk '$1 == "write_bytes:" {print $2}' "/proc/$p/io" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# The writer's counters from the gateway's /metrics: "commits batch_sum tx_seconds".
writer_counters() {
    curl -sk --max-time 5 "$1" | awk '
        /^iot_ingest_commits_total / {c = $2}
        /^iot_ingest_commit_batch_size_sum / {b = $2}
        /^iot_ingest_commit_duration_seconds_sum / {d = $2}
        END {printf "%d %d %.6f\n", c, b, d}'
}

# measure NAME BACKEND SYNC CONNS PID URL BODIES [METRICS_URL]: warm-up, measured run,
# one results row. URL mqtt://HOST:PORT: the load is MQTT (mqtt_run), else wrk.
measure() {
    local name=$1 backend=$2 sync=$3 c=$4 pid=$5 url=$6 bodies=$7 metrics=${8:-}
    local idle t0 t1 w0 w1 m0="0 0 0" m1="0 0 0" line tag=$1-$2-$3-$4${BENCH_TAG:-}
    sleep 1
    idle=$(proc_kb VmRSS "$pid")
    say "$name $backend $sync c=$c${BENCH_TAG:-}: warm-up ${WARMUP}s"
    load_run "$url" "$bodies" "$c" "$WARMUP" "$WORK/wrk-warm-$tag.txt" >/dev/null
    say "$name $backend $sync c=$c${BENCH_TAG:-}: measuring ${DURATION}s"
    # A local PostgreSQL server's own CPU and disk writes (its backends are the
    # postmaster's children); 0 when it is remote or not ours to read.
    local dbpid=0 d0=0 d1=0 dw0=0 dw1=0
    [ "$backend" = postgresql ] && dbpid=${PG_PID:-0}
    [ "$dbpid" != 0 ] && d0=$(proc_ticks "$dbpid") && dw0=$(proc_write_bytes "$dbpid")
    [ -n "$metrics" ] && m0=$(writer_counters "$metrics")
    t0=$(proc_ticks "$pid")
    w0=$(proc_write_bytes "$pid")
    line=$(load_run "$url" "$bodies" "$c" "$DURATION" "$WORK/wrk-$tag.txt")
    t1=$(proc_ticks "$pid")
    w1=$(proc_write_bytes "$pid")
    [ -n "$metrics" ] && m1=$(writer_counters "$metrics")
    [ "$dbpid" != 0 ] && d1=$(proc_ticks "$dbpid") && dw1=$(proc_write_bytes "$dbpid")
    # shellcheck disable=SC2086  # split "commits batch tx" into $1..$6
    set -- $m0 $m1
    printf '%s\t%s\t%s\t%s\t%s idle_kb=%s peak_kb=%s cpu_ticks=%s disk_bytes=%s commits=%s batch_sum=%s tx_ms=%s db_ticks=%s db_disk_bytes=%s readings=%s variant=%s\n' \
        "$name" "$backend" "$sync" "$c" "${line#BENCH }" "$idle" "$(proc_kb VmHWM "$pid")" \
        "$((t1 - t0))" "$((w1 - w0))" "$(($4 - $1))" "$(($5 - $2))" \
        "$(awk -v a="$3" -v b="$6" 'BEGIN {printf "%d", (b - a) * 1000}')" \
        "$((d1 - d0))" "$((dw1 - dw0))" "$BENCH_READINGS" "${BENCH_TAG:-standard}" >>"$WORK/results.tsv"
    say "  $line"
}

stop_pid() {
    local pid=$1 p
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------- libmicrohttpd alone

# mhd_run CONNS MODE: bench/peers/mhd204.c, the gateway's HTTP library with the
# gateway's daemon flags and HTTP_THREADS, answering 204 to the same POSTs:
# "direct" from the request callback, "suspend" after parking each request and
# resuming it from another thread in batches (what the gateway does around a
# commit). Prices the library and the suspend/resume hand-off against nginx.
mhd_run() {
    local c=$1 mode=$2 port pid
    [ -x "$MHD204" ] || { say "no $MHD204 (make build/bench/mhd204): no libmicrohttpd rows"; return 0; }
    port=$(free_port)
    "$MHD204" "$port" "${HTTP_THREADS:-2}" "$mode" >"$WORK/mhd-$mode-$c.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$pid" || die "mhd204 did not start: $(cat "$WORK/mhd-$mode-$c.log")"
    measure "mhd-$mode" - - "$c" "$pid" "http://127.0.0.1:$port/ingest/packets" "$WORK/bodies-nginx.tsv"
    stop_pid "$pid"
}

# ---------------------------------------------------------------- nginx

nginx_run() {
    local c=$1 port dir pid
    port=$(free_port)
    dir=$WORK/nginx-$c
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$port;
        location / { return 204; }
    }
}
CONF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$dir/logs/stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$pid" || die "nginx did not start: $(cat "$dir/logs/error.log")"
    measure nginx - - "$c" "$pid" "http://127.0.0.1:$port/ingest/packets" "$WORK/bodies-nginx.tsv"
    stop_pid "$pid"
}

# The postmaster's pid of DATABASE_URL_PG when the server runs on this machine and
# its data directory is readable (needs psql and a role allowed to SHOW it); else 0.
pg_server_pid() {
    local dir pid
    dir=$(psql "$PG_URL" -Atc 'SHOW data_directory' 2>/dev/null) || { echo 0; return; }
    pid=$(head -1 "$dir/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    [ -d "/proc/$pid" ] && echo "$pid" || echo 0
}

# ---------------------------------------------------------------- gateway

# gateway_start DBURL SYNC TAG: starts `serve`, sets GW_PID, GW_URL and GW_MQTT (every
# gateway also listens on MQTT, as `make run` does; idle unless the row is MQTT's).
gateway_start() {
    local url=$1 sync=$2 tag=$3 port mport
    port=$(free_port)
    mport=$(free_port)
    # shellcheck disable=SC2086  # GW_ENV_EXTRA holds VAR=VALUE words
    env DATABASE_URL="$url" DB_SYNC="$sync" INGEST_HOST=127.0.0.1 INGEST_PORT="$port" \
        MQTT_PORT="$mport" RATE_LIMIT_IP_RPS=0 RATE_LIMIT_DEVICE_RPS=0 LOG_LEVEL="$GW_LOG_LEVEL" \
        ${GW_ENV_EXTRA:-} "$BIN" serve >"$WORK/gw-$tag.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_URL=${GW_SCHEME:-http}://127.0.0.1:$port
    GW_MQTT=mqtt://127.0.0.1:$mport
    wait_http "$GW_URL/health" "$GW_PID" || { tail -5 "$WORK/gw-$tag.log" >&2; return 1; }
}

# gateway_run BACKEND SYNC CONNS: one row, a fresh database and gateway; the load is wrk,
# or with BENCH_LOAD=mqtt the MQTT publisher (row name "mqtt", files tagged mqtt-...).
gateway_run() {
    local backend=$1 sync=$2 c=$3 url tag=$1-$2-$3${BENCH_TAG:-} err name=gateway
    case "${BENCH_LOAD:-wrk}" in
    https | https-close) name=${BENCH_LOAD} tag=${BENCH_LOAD}-$tag ;;
    esac
    if [ "${BENCH_LOAD:-wrk}" = mqtt ]; then
        name=mqtt tag=mqtt-$tag
        if [ ! -x "$MQTT_LOAD" ]; then
            say "mqtt $backend $sync c=$c: skipped: no $MQTT_LOAD (make build/bench/mqtt_load)"
            printf 'mqtt\t%s\t%s\t%s\tvariant=%s skipped=no %s\n' "$backend" "$sync" "$c" \
                "${BENCH_TAG:-standard}" "$MQTT_LOAD" >>"$WORK/results.tsv"
            return 0
        fi
    fi
    if [ "$backend" = sqlite ]; then url=sqlite:$WORK/gw-$tag.db; else url=$PG_URL; fi
    # Provisioning durability does not matter here: DB_SYNC=normal keeps a large fleet quick.
    if ! DB_SYNC=normal "$ROOT/bench/gen_bodies.sh" "$url" "$WORK/bodies-$tag.tsv" "$BODIES_N" \
        >"$WORK/gen-$tag.log" 2>&1; then
        err=$(grep -v '^sim:' "$WORK/gen-$tag.log" | head -1 | tr '\t' ' ')
        say "$name $backend $sync c=$c: skipped: $err"
        printf '%s\t%s\t%s\t%s\tvariant=%s skipped=%s\n' "$name" "$backend" "$sync" "$c" \
            "${BENCH_TAG:-standard}" "${err:-provisioning failed}" >>"$WORK/results.tsv"
        return 0
    fi
    [ -n "${PRE_SQL:-}" ] && sqlite3 "$WORK/gw-$tag.db" "$PRE_SQL"
    if ! gateway_start "$url" "$sync" "$tag"; then
        err=$(grep -i 'error\|fail' "$WORK/gw-$tag.log" | head -1)
        say "$name $backend $sync c=$c: skipped: gateway did not start: $err"
        printf '%s\t%s\t%s\t%s\tvariant=%s skipped=%s\n' "$name" "$backend" "$sync" "$c" \
            "${BENCH_TAG:-standard}" "gateway did not start: ${err:-see log}" >>"$WORK/results.tsv"
        stop_pid "$GW_PID"
        return 0
    fi
    local target=$GW_URL/ingest/packets
    [ "$name" = mqtt ] && target=$GW_MQTT
    measure "$name" "$backend" "$sync" "$c" "$GW_PID" "$target" "$WORK/bodies-$tag.tsv" "$GW_URL/metrics"
    if [ "$backend" = sqlite ]; then
        sqlite3 "$WORK/gw-$tag.db" "SELECT class || '/' || late, count(*) FROM sensor_readings GROUP BY 1" \
            | tr '|' '=' | tr '\n' ' ' >"$WORK/mix-$tag.txt" || true
    fi
    stop_pid "$GW_PID"
    grep -E 'level=(warn|error)' "$WORK/gw-$tag.log" | head -3 >"$WORK/gwwarn-$tag.txt" || true
}

# tls_rows BACKEND CONNS: the HTTPS rows (keep-alive, then a new connection and TLS
# handshake per request), with a certificate made for the run (ECDSA P-256, as
# docs/tls.md's recipe).
tls_rows() {
    if [ ! -s "$WORK/tls.pem" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
            -keyout "$WORK/tls.key" -out "$WORK/tls.pem" >"$WORK/tls-gen.log" 2>&1 ||
            { say "https: skipped: openssl could not make a certificate"; return 0; }
    fi
    local tls_env="TLS_CERT_FILE=$WORK/tls.pem TLS_KEY_FILE=$WORK/tls.key"
    GW_SCHEME=https GW_ENV_EXTRA="${GW_ENV_EXTRA:-} $tls_env" BENCH_LOAD=https \
        gateway_run "$1" full "$2"
    GW_SCHEME=https GW_ENV_EXTRA="${GW_ENV_EXTRA:-} $tls_env" BENCH_LOAD=https-close \
        BENCH_CLOSE=1 gateway_run "$1" full "$2"
}

# ingest_rows BACKEND SYNCS CONNS: the gateway rows of BACKEND; with MQTT=1 the MQTT row
# (DB_SYNC=full, the largest of CONNS) right after the HTTP row of the same settings, so
# the two run back to back; with TLS=1 (SQLite) the HTTPS rows after them.
ingest_rows() {
    local sync c last
    last=$(echo "$3" | awk '{print $NF}')
    for sync in $2; do
        for c in $3; do
            gateway_run "$1" "$sync" "$c"
            if [ "$MQTT" = 1 ] && [ "$sync" = full ] && [ "$c" = "$last" ]; then
                BENCH_LOAD=mqtt gateway_run "$1" full "$c"
            fi
            if [ "$TLS" = 1 ] && [ "$1" = sqlite ] && [ "$sync" = full ] && [ "$c" = "$last" ]; then
                tls_rows "$1" "$c"
            fi
        done
    done
}

# ---------------------------------------------------------------- what-if variants

# The standard workload at the largest connection count with one thing changed, to
# show what each part of the write path costs: group commit off (COMMIT_BATCH_MAX=1);
# the per-sensor index (sensor_id, ts) that the reading chain replaced, added back
# (the layout of schema 3); and the (ts, sensor_id) index dropped.
whatif_runs() {
    local c sync=full
    c=$(echo "$CONNS" | awk '{print $NF}')
    BENCH_TAG=-batch1 GW_ENV_EXTRA=COMMIT_BATCH_MAX=1 gateway_run sqlite "$sync" "$c"
    BENCH_TAG=-sensorindex PRE_SQL="CREATE INDEX sensor_readings_sensor_ts ON sensor_readings(sensor_id, ts)" \
        gateway_run sqlite "$sync" "$c"
    BENCH_TAG=-noindex PRE_SQL="DROP INDEX sensor_readings_ts_sensor" gateway_run sqlite "$sync" "$c"
}

# ---------------------------------------------------------------- profile

profile_run() {
    command -v perf >/dev/null || { say "perf missing: no profile"; return 0; }
    local tag=profile url=sqlite:$WORK/gw-profile.db c
    c=$(echo "$CONNS" | awk '{print $NF}')
    "$ROOT/bench/gen_bodies.sh" "$url" "$WORK/bodies-$tag.tsv" "$BODIES_N" >"$WORK/gen-$tag.log" 2>&1 ||
        { say "profile: provisioning failed"; return 0; }
    gateway_start "$url" "$PROFILE_SYNC" "$tag" || { say "profile: gateway did not start"; return 0; }
    say "profile: DB_SYNC=$PROFILE_SYNC c=$c, perf record for ${PROFILE_SECS}s, then perf trace for 3s"
    wrk_run "$GW_URL/ingest/packets" "$WORK/bodies-$tag.tsv" "$c" 3 "$WORK/wrk-prof-warm.txt" >/dev/null
    # One wrk run covers both: the CPU profile, then the syscall summary (which slows the
    # gateway down, so it comes last and is not part of any throughput figure).
    BENCH_BODIES=$WORK/bodies-$tag.tsv wrk -t"$WRK_THREADS" -c"$c" -d"$((PROFILE_SECS + 5))"s \
        --timeout 10s -s "$ROOT/bench/packets.lua" "$GW_URL/ingest/packets" >"$WORK/wrk-prof.txt" 2>&1 &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 1
    local m0 m1 s0 s1
    s0=$(date +%s.%N)
    thread_ticks "$GW_PID" >"$WORK/threads-before.txt"
    m0=$(writer_counters "$GW_URL/metrics")
    perf record -F 499 --call-graph dwarf,16384 -p "$GW_PID" -o "$WORK/perf.data" \
        -- sleep "$PROFILE_SECS" >"$WORK/perf-record.log" 2>&1 || say "perf record failed"
    thread_ticks "$GW_PID" >"$WORK/threads-after.txt"
    m1=$(writer_counters "$GW_URL/metrics")
    s1=$(date +%s.%N)
    echo "$m0 $m1 $(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.3f", b - a}')" \
        >"$WORK/profile-writer.txt"
    timeout 20 perf trace -s -p "$GW_PID" -o "$WORK/perf-trace.txt" -- sleep 3 \
        >/dev/null 2>&1 || say "perf trace failed (no syscall summary)"
    wait "$wrk_pid" || true
    stop_pid "$wrk_pid"
    stop_pid "$GW_PID"
    local r=(perf report -i "$WORK/perf.data" --stdio -g none)
    "${r[@]}" --no-children --sort comm,dso 2>/dev/null | grep -E '^ +[0-9]' | head -20 \
        >"$WORK/perf-comm.txt" || true
    "${r[@]}" --no-children --sort sym 2>/dev/null | grep -E '^ +[0-9]' | grep -v '\] 0x0000' \
        | head -30 >"$WORK/perf-sym.txt" || true
    # Inclusive time of the program's own functions and of SQLite's big phases.
    "${r[@]}" --children --sort sym 2>/dev/null | grep -E '^ +[0-9]' | grep -v '\] 0x0000' \
        | grep -E ' (writer_main|run_batch|process_job|router_apply|sq_[a-z_]+|sqlite3WalFrames|sqlite3WalCheckpoint|sqlite3BtreeInsert|sqlite3VdbeExec|sqlite3_step|fdatasync|__GI_fdatasync|on_request|ep_packets|packet_decode|json_loadb|json_dumps|json_reply|auth_device|secret_hash|resolver_get|broker_publish|memory_publish|__libc_pwrite64|__libc_pread64|__libc_sendmsg|__libc_recv|epoll_wait|malloc|free)( |$)' \
        | head -45 >"$WORK/perf-children.txt" || true
}

# "TID COMM TICKS" for every thread of PID.
thread_ticks() {
    local t
    for t in "/proc/$1/task"/*; do
        echo "$(basename "$t") $(tr ' ' '_' <"$t/comm") $(sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}')"
    done
}

# ---------------------------------------------------------------- jobs

jobs_run() {
    local db=$WORK/jobs.db now t0 t1
    now=$(($(date +%s) * 1000))
    DATABASE_URL=sqlite:$db "$BIN" db init >/dev/null
    say "jobs: generating $JOB_SENSORS sensors x $JOB_READINGS readings"
    t0=$(date +%s.%N)
    sed -e "s/@NOW@/$now/g" -e "s/@SENSORS@/$JOB_SENSORS/g" -e "s/@READINGS@/$JOB_READINGS/g" \
        "$ROOT/bench/jobs_data.sql" | sqlite3 "$db" >/dev/null
    t1=$(date +%s.%N)
    echo "gen_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')" >"$WORK/jobs.txt"
    echo "rows=$(sqlite3 "$db" 'SELECT count(*) FROM sensor_readings')" >>"$WORK/jobs.txt"
    echo "db_mb=$(($(stat -c %s "$db") / 1048576))" >>"$WORK/jobs.txt"
    cp "$db" "$WORK/jobs-pristine.db"
    say "jobs: hyperfine, $JOB_RUNS runs of job baseline"
    hyperfine --runs "$JOB_RUNS" --export-json "$WORK/jobs-hyperfine.json" \
        --prepare "cp '$WORK/jobs-pristine.db' '$WORK/jobs-run.db'; rm -f '$WORK/jobs-run.db-wal' '$WORK/jobs-run.db-shm'" \
        "env DATABASE_URL=sqlite:$WORK/jobs-run.db LOG_LEVEL=warn '$BIN' job baseline" \
        >"$WORK/hyperfine.txt" 2>&1 || { cat "$WORK/hyperfine.txt" >&2; return 1; }
    # One more run for its summary line and peak RSS, then a second run on the same data.
    cp "$WORK/jobs-pristine.db" "$WORK/jobs-run.db"; rm -f "$WORK/jobs-run.db-wal" "$WORK/jobs-run.db-shm"
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'rss_kb=%M')
    DATABASE_URL=sqlite:$WORK/jobs-run.db LOG_LEVEL=warn "${timer[@]}" \
        "$BIN" job baseline >"$WORK/jobs-summary.txt" 2>"$WORK/jobs-time.txt"
    DATABASE_URL=sqlite:$WORK/jobs-run.db LOG_LEVEL=warn "$BIN" job baseline >"$WORK/jobs-summary2.txt" 2>&1
}

# ---------------------------------------------------------------- peers (issue 13)

# peer_skip NAME BACKEND SYNC CONNS REASON: a results row saying why a peer did not run.
peer_skip() {
    say "$1 c=$4: skipped: $5"
    printf '%s\t%s\t%s\t%s\tvariant=standard skipped=%s\n' "$1" "$2" "$3" "$4" "$5" >>"$WORK/results.tsv"
}

# peer_done PID DIR: stops a peer and removes its temporary directory.
peer_done() {
    stop_pid "$1"
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$2"
}

# InfluxDB 1.x with its data, meta and WAL directories in DIR, loopback only, the
# packaged default wal-fsync-delay = "0s" (an fsync per write) written out; fed the
# standard readings as line protocol, one packet per POST /write.
influxdb_run() {
    local c=$1 port rpc dir=$WORK/influxdb-$1 pid
    port=$(free_port)
    rpc=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[logging]
  level = "warn"
CONF
    influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_http "http://127.0.0.1:$port/ping" "$pid" ||
        ! curl -sf -o /dev/null -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE bench"; then
        peer_skip influxdb - - "$c" "influxd did not start: $(tail -1 "$dir/influxd.log" | tr '\t' ' ')"
        peer_done "$pid" "$dir"
        return 0
    fi
    BENCH_CONTENT_TYPE=text/plain BENCH_BODY_NL=1 measure influxdb - - "$c" "$pid" \
        "http://127.0.0.1:$port/write?db=bench" "$WORK/bodies-lines.tsv"
    peer_done "$pid" "$dir"
}

# VictoriaMetrics with a temporary data directory, loopback only, the same line
# protocol on its Influx-compatible /write.
victoriametrics_run() {
    local c=$1 port dir=$WORK/victoriametrics-$1 pid
    port=$(free_port)
    mkdir -p "$dir"
    victoria-metrics -storageDataPath="$dir/data" -httpListenAddr="127.0.0.1:$port" \
        -loggerLevel=ERROR -retentionPeriod=100y >"$dir/vm.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_http "http://127.0.0.1:$port/health" "$pid"; then
        peer_skip victoriametrics - - "$c" "victoria-metrics did not start: $(tail -1 "$dir/vm.log" | tr '\t' ' ')"
        peer_done "$pid" "$dir"
        return 0
    fi
    BENCH_CONTENT_TYPE=text/plain BENCH_BODY_NL=1 measure victoriametrics - - "$c" "$pid" \
        "http://127.0.0.1:$port/write?db=bench" "$WORK/bodies-lines.tsv"
    peer_done "$pid" "$dir"
}

# The seed's design (bench/peers/seed_app.py, uvicorn with one worker) on a SQLite
# database provisioned with the fleet and keys of the nginx bodies, fed those bodies.
seed_run() {
    local c=$1 port dir=$WORK/seed-$1 pid
    port=$(free_port)
    mkdir -p "$dir"
    if ! "$PY" "$ROOT/bench/peers/seed_app.py" provision "$WORK/bodies-nginx.db" "$dir/seed.db" \
        >"$dir/seed.log" 2>&1; then
        peer_skip seed sqlite "$SEED_SYNC" "$c" "provisioning failed: $(tail -1 "$dir/seed.log")"
        return 0
    fi
    SEED_SYNC=$SEED_SYNC "$PY" "$ROOT/bench/peers/seed_app.py" serve "$dir/seed.db" "$port" \
        >>"$dir/seed.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_http "http://127.0.0.1:$port/health" "$pid"; then
        peer_skip seed sqlite "$SEED_SYNC" "$c" "seed_app did not start: $(tail -1 "$dir/seed.log")"
        peer_done "$pid" "$dir"
        return 0
    fi
    measure seed sqlite "$SEED_SYNC" "$c" "$pid" "http://127.0.0.1:$port/ingest/packets" \
        "$WORK/bodies-nginx.tsv"
    stop_pid "$pid"
    sqlite3 "$dir/seed.db" "SELECT class || '/' || late, count(*) FROM sensor_readings GROUP BY 1" \
        | tr '|' '=' | tr '\n' ' ' >"$WORK/mix-seed-$c.txt" || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$dir"
}

peers_run() {
    "$PY" "$ROOT/bench/peers/lineproto.py" "$WORK/bodies-nginx.tsv" "$WORK/bodies-lines.tsv" ||
        die "line protocol bodies failed"
    local c
    for c in $CONNS; do
        influxdb_run "$c"
        victoriametrics_run "$c"
        seed_run "$c"
    done
}

# The standard SQLite DB_SYNC=full row at the largest connection count with other
# readings per packet (BENCH_READINGS_VARIANTS, 1 and 100), for CPU per reading. More
# readings than a device has sensors: the same number of sensors in fewer, larger
# devices (100: 10 devices x 100 sensors), still one reading per sensor per packet.
# Growth: the standard workload (SQLite full, largest connection count) on a fleet
# of GROWTH_DEVICES x BENCH_SENSORS sensors, one body per device so every sensor
# reports; compared with the 1,000-sensor row of the same run.
growth_runs() {
    local c
    c=$(echo "$CONNS" | awk '{print $NF}')
    BENCH_TAG=-growth BENCH_DEVICES=$GROWTH_DEVICES BODIES_N=$GROWTH_DEVICES \
        gateway_run sqlite full "$c"
}

readings_runs() {
    local c n total=$((BENCH_DEVICES * BENCH_SENSORS))
    c=$(echo "$CONNS" | awk '{print $NF}')
    for n in $READINGS_VARIANTS; do
        if [ "$n" -gt "$BENCH_SENSORS" ]; then
            BENCH_TAG=-r$n BENCH_READINGS=$n BENCH_DEVICES=$((total / n > 0 ? total / n : 1)) \
                BENCH_SENSORS=$n gateway_run sqlite full "$c"
        else
            BENCH_TAG=-r$n BENCH_READINGS=$n gateway_run sqlite full "$c"
        fi
    done
}

# ---------------------------------------------------------------- history API and retention (issue 16)

# step_skip STEP BACKEND REASON: the step's result file says why it did not run.
step_skip() {
    say "$1 $2: skipped: $3"
    printf 'backend=%s\nskipped=%s\n' "$2" "$3" >"$WORK/$1-$2.txt"
}

# ms since the epoch, and the whole seconds between two of them.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
hour_ms() {
    local s
    s=$(date +%s)
    echo $(((s - s % 3600) * 1000))
}
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN {printf "%.2f", (b - a) / 1000}'; }

# step_db BACKEND NAME: a fresh database for a step in STEP_URL: a new SQLite file, or a
# new database NAME on the PostgreSQL server (dropped by step_db_done).
step_db() {
    if [ "$1" = sqlite ]; then
        STEP_URL=sqlite:$WORK/$2.db
        return 0
    fi
    STEP_URL=$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_URL" "$2")
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2" >"$WORK/$2-createdb.log" 2>&1
}

# step_db_done BACKEND NAME: removes what step_db made (the disk space is the point).
step_db_done() {
    [ "${BENCH_KEEP:-0}" = 1 ] && return 0
    if [ "$1" = sqlite ]; then
        rm -f "$WORK/$2.db" "$WORK/$2.db-wal" "$WORK/$2.db-shm"
    else
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $2" >/dev/null 2>&1 || true
    fi
}

# db_bytes BACKEND URL: the database's size on disk.
db_bytes() {
    if [ "$1" = sqlite ]; then
        stat -c %s "${2#sqlite:}"
    else
        psql -Atc 'SELECT pg_database_size(current_database())' "$2"
    fi
}

# db_count BACKEND URL WHERE: readings matching WHERE (ts in UTC ms as on SQLite).
db_count() {
    if [ "$1" = sqlite ]; then
        sqlite3 "${2#sqlite:}" "SELECT count(*) FROM sensor_readings WHERE $3"
    else
        psql -Atc "SELECT count(*) FROM sensor_readings WHERE $(echo "$3" |
            sed -E "s/ts ([<>=]+) ([0-9]+)/ts \1 timestamptz 'epoch' + \2 * interval '1 millisecond'/g")" "$2"
    fi
}

# hist_gen BACKEND URL START_MS SPAN_MS TOTAL LOG: bench/history_data.sql (SQLite) or
# bench/history_data_pg.sql (PostgreSQL) into URL, @NOW@ = STEP_NOW_MS.
hist_gen() {
    local f=history_data.sql
    [ "$1" = postgresql ] && f=history_data_pg.sql
    sed -e "s/@NOW@/$STEP_NOW_MS/g" -e "s/@START@/$3/g" -e "s/@SPAN@/$4/g" -e "s/@TOTAL@/$5/g" \
        "$ROOT/bench/$f" >"$6.sql"
    if [ "$1" = sqlite ]; then
        sqlite3 "${2#sqlite:}" <"$6.sql" >"$6" 2>&1
    else
        psql -q -v ON_ERROR_STOP=1 -f "$6.sql" "$2" >"$6" 2>&1
    fi
}

# rollup_job URL LOG: `job retention` with RETENTION_DAYS=0 (rolls every complete hour
# up, deletes nothing); prints its summary line.
rollup_job() {
    DATABASE_URL=$1 RETENTION_DAYS=0 LOG_LEVEL=warn "$BIN" job retention >"$2" 2>&1 ||
        { say "job retention failed: $(tail -1 "$2")"; return 1; }
    grep '^retention:' "$2" | tail -1
}

# hist_query NAME URL OUT: HIST_WARM unmeasured calls of the history API, then HIST_RUNS
# timed by curl (time_total: connect, request, whole answer); appends q_NAME_* to OUT.
hist_query() {
    local name=$1 url=$2 out=$3 i times=$WORK/hq-$1-$STEP_BACKEND.times
    for ((i = 0; i < HIST_WARM; i++)); do
        curl -s -o /dev/null --max-time 60 -H "X-API-Key: $HIST_KEY" "$url" || true
    done
    : >"$times"
    for ((i = 0; i < HIST_RUNS; i++)); do
        curl -s -o "$WORK/history-answer.json" --max-time 60 -w '%{http_code} %{time_total}\n' \
            -H "X-API-Key: $HIST_KEY" "$url" >>"$times" || echo "000 0" >>"$times"
    done
    python3 - "$name" "$times" "$WORK/history-answer.json" >>"$out" <<'PY'
import json, statistics, sys
name, times, answer = sys.argv[1:4]
rows = [line.split() for line in open(times) if line.strip()]
ms = sorted(float(t) * 1000 for _, t in rows)
bad = [c for c, _ in rows if c != "200"]
try:
    a = json.load(open(answer))
    items = len(a.get("points", a.get("readings", [])))
except (OSError, ValueError):
    items = -1
print(f"q_{name}_ms={statistics.median(ms):.2f}\nq_{name}_min_ms={ms[0]:.2f}\n"
      f"q_{name}_max_ms={ms[-1]:.2f}\nq_{name}_items={items}\nq_{name}_non200={len(bad)}")
PY
}

# history_run BACKEND: the history API of issue 16 on a sensor with HIST_READINGS
# readings over HIST_DAYS days (bench/history_data*.sql), once `job retention` rolled
# the hours up (RETENTION_DAYS=0: nothing deleted), through `serve` and curl.
history_run() {
    local backend=$1 name=bench_history out=$WORK/history-$1.txt t0 total sum summary to from
    # Sensor 1 holds 10 of every 19 readings: a multiple of 10 for it.
    total=$(((HIST_READINGS + 9 - (HIST_READINGS + 9) % 10) * 19 / 10))
    STEP_BACKEND=$backend
    STEP_NOW_MS=$(hour_ms)
    if ! step_db "$backend" "$name"; then
        step_skip history "$backend" "no database: $(tail -1 "$WORK/$name-createdb.log")"
        return 0
    fi
    printf 'backend=%s\nreadings=%s\nreadings_sensor=%s\ndays=%s\n' "$backend" "$total" \
        "$((total * 10 / 19))" "$HIST_DAYS" >"$out"
    DATABASE_URL=$STEP_URL "$BIN" db init >/dev/null
    say "history $backend: generating $total readings over $HIST_DAYS days"
    t0=$(now_ms)
    hist_gen "$backend" "$STEP_URL" "$((STEP_NOW_MS - HIST_DAYS * 86400000))" \
        "$((HIST_DAYS * 86400000))" "$total" "$WORK/history-gen-$backend.log" ||
        { step_skip history "$backend" "generation failed: $(tail -1 "$WORK/history-gen-$backend.log")"
          step_db_done "$backend" "$name"; return 0; }
    echo "gen_s=$(secs_since "$t0")" >>"$out"
    echo "db_bytes=$(db_bytes "$backend" "$STEP_URL")" >>"$out"
    say "history $backend: job retention (RETENTION_DAYS=0: roll-up only)"
    t0=$(now_ms)
    summary=$(rollup_job "$STEP_URL" "$WORK/history-rollup-$backend.log") ||
        { step_skip history "$backend" "job retention failed: $(tail -1 "$WORK/history-rollup-$backend.log")"
          step_db_done "$backend" "$name"; return 0; }
    printf 'rollup_s=%s\nrollup_summary=%s\n' "$(secs_since "$t0")" "$summary" >>"$out"
    if ! GW_ENV_EXTRA="API_KEY=$HIST_KEY" gateway_start "$STEP_URL" full "history-$backend"; then
        step_skip history "$backend" "gateway did not start"
        stop_pid "$GW_PID"; step_db_done "$backend" "$name"; return 0
    fi
    sum="$GW_URL/ingest/devices/histbench-d1/sensors/histbench-s01/readings"
    to=$((STEP_NOW_MS / 1000))
    from=$((to - HIST_DAYS * 86400))
    say "history $backend: queries, $HIST_WARM unmeasured + $HIST_RUNS measured each"
    hist_query day "$sum?from=$from&to=$to&step=1d&agg=avg" "$out"
    hist_query hour "$sum?from=$from&to=$to&step=1h&agg=avg" "$out"
    # A raw page from 100 days back (the middle of the span when it is shorter).
    echo "raw_days=$((HIST_DAYS < 200 ? HIST_DAYS / 2 : 100))" >>"$out"
    hist_query raw "$sum?from=$((to - (HIST_DAYS < 200 ? HIST_DAYS / 2 : 100) * 86400))&to=$to&limit=1000" "$out"
    stop_pid "$GW_PID"
    grep -E 'level=(warn|error)' "$WORK/gw-history-$backend.log" | head -1 | sed 's/^/gw_warning=/' >>"$out" || true
    step_db_done "$backend" "$name"
}

# kv_line PREFIX "BENCH k=v ...": the wrk figures as PREFIX_k=v lines.
kv_line() {
    local t
    for t in ${2#BENCH }; do echo "$1_$t"; done
}

# retention_run BACKEND: the standard load (largest connection count, DB_SYNC=full)
# on a database that also holds RET_READINGS readings older than RET_KEEP_DAYS days,
# rolled up beforehand (as the hourly scheduler would have); RET_DURATION s measured
# without the job, then RET_DURATION s while `job retention` (RETENTION_DAYS=
# RET_KEEP_DAYS) deletes them. The job starts with the second load; if it outlasts
# it, it is left to finish (up to RET_TIMEOUT s from its start) and reported as not
# finished within the load: that window then ran wholly under the job.
retention_run() {
    local backend=$1 name=bench_retention out=$WORK/retention-$1.txt c t0 old recent cutoff
    local summary line tag=retention-$1 wrk_pid job_pid end rc job_end
    c=$(echo "$CONNS" | awk '{print $NF}')
    old=$((RET_READINGS - RET_READINGS % 19))
    recent=$((RET_RECENT - RET_RECENT % 19))
    STEP_BACKEND=$backend
    STEP_NOW_MS=$(hour_ms)
    cutoff=$((STEP_NOW_MS - RET_KEEP_DAYS * 86400000))
    if ! step_db "$backend" "$name"; then
        step_skip retention "$backend" "no database: $(tail -1 "$WORK/$name-createdb.log")"
        return 0
    fi
    printf 'backend=%s\nold=%s\nrecent=%s\nkeep_days=%s\nspan_days=%s\nconns=%s\nduration=%s\n' \
        "$backend" "$old" "$recent" "$RET_KEEP_DAYS" "$RET_SPAN_DAYS" "$c" "$RET_DURATION" >"$out"
    if ! DB_SYNC=normal "$ROOT/bench/gen_bodies.sh" "$STEP_URL" "$WORK/bodies-$tag.tsv" "$BODIES_N" \
        >"$WORK/gen-$tag.log" 2>&1; then
        step_skip retention "$backend" "provisioning failed: $(grep -v '^sim:' "$WORK/gen-$tag.log" | head -1)"
        step_db_done "$backend" "$name"; return 0
    fi
    say "retention $backend: generating $old readings older than $RET_KEEP_DAYS days, $recent newer"
    t0=$(now_ms)
    # The old ones over the RET_SPAN_DAYS days before the cutoff; the recent ones from an
    # hour after it to an hour before now, so the job deletes exactly the old ones.
    if ! hist_gen "$backend" "$STEP_URL" "$((cutoff - RET_SPAN_DAYS * 86400000))" \
        "$((RET_SPAN_DAYS * 86400000))" "$old" "$WORK/$tag-gen-old.log" ||
        { [ "$recent" != 0 ] && ! hist_gen "$backend" "$STEP_URL" "$((cutoff + 3600000))" \
            "$((RET_KEEP_DAYS * 86400000 - 7200000))" "$recent" "$WORK/$tag-gen-recent.log"; }; then
        step_skip retention "$backend" "generation failed: $(tail -qn1 "$WORK/$tag"-gen-*.log | head -1)"
        step_db_done "$backend" "$name"
        return 0
    fi
    echo "gen_s=$(secs_since "$t0")" >>"$out"
    echo "db_bytes=$(db_bytes "$backend" "$STEP_URL")" >>"$out"
    say "retention $backend: rolling the hours up first (RETENTION_DAYS=0)"
    t0=$(now_ms)
    summary=$(rollup_job "$STEP_URL" "$WORK/$tag-rollup.log") ||
        { step_skip retention "$backend" "job retention (roll-up) failed: $(tail -1 "$WORK/$tag-rollup.log")"
          step_db_done "$backend" "$name"; return 0; }
    printf 'rollup_s=%s\nrollup_summary=%s\n' "$(secs_since "$t0")" "$summary" >>"$out"
    if ! gateway_start "$STEP_URL" full "$tag"; then
        step_skip retention "$backend" "gateway did not start"
        stop_pid "$GW_PID"; step_db_done "$backend" "$name"; return 0
    fi
    say "retention $backend c=$c: warm-up ${WARMUP}s, then ${RET_DURATION}s without the job"
    wrk_run "$GW_URL/ingest/packets" "$WORK/bodies-$tag.tsv" "$c" "$WARMUP" "$WORK/wrk-$tag-warm.txt" >/dev/null
    line=$(wrk_run "$GW_URL/ingest/packets" "$WORK/bodies-$tag.tsv" "$c" "$RET_DURATION" "$WORK/wrk-$tag-base.txt") ||
        line="BENCH failed=1"
    kv_line base "$line" >>"$out"
    say "  without the job: $line"
    say "retention $backend c=$c: ${RET_DURATION}s while job retention (RETENTION_DAYS=$RET_KEEP_DAYS) runs"
    BENCH_BODIES=$WORK/bodies-$tag.tsv wrk -t"$WRK_THREADS" -c"$c" -d"$RET_DURATION"s --timeout 10s \
        -s "$ROOT/bench/packets.lua" "$GW_URL/ingest/packets" >"$WORK/wrk-$tag-job.txt" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    t0=$(now_ms)
    rm -f "$WORK/$tag-job.end"
    (
        rc=0
        DATABASE_URL=$STEP_URL RETENTION_DAYS=$RET_KEEP_DAYS DB_SYNC=full LOG_LEVEL=info \
            timeout "$RET_TIMEOUT" "$BIN" job retention >"$WORK/$tag-job.log" 2>&1 || rc=$?
        echo "$rc $(now_ms)" >"$WORK/$tag-job.end"
    ) &
    job_pid=$!
    PIDS+=("$job_pid")
    wait "$wrk_pid" || true
    stop_pid "$wrk_pid"
    end=$(now_ms)
    if [ -s "$WORK/$tag-job.end" ]; then echo "job_in_load=1"; else echo "job_in_load=0"; fi >>"$out"
    [ -s "$WORK/$tag-job.end" ] || say "  the job outlasted the load: waiting for it (up to ${RET_TIMEOUT}s in all)"
    wait "$job_pid" || true
    stop_pid "$job_pid"
    line=$(grep '^BENCH ' "$WORK/wrk-$tag-job.txt") || { cat "$WORK/wrk-$tag-job.txt" >&2; line="BENCH failed=1"; }
    kv_line job "$line" >>"$out"
    say "  with the job: $line"
    read -r rc job_end <"$WORK/$tag-job.end" || { rc=1; job_end=$end; }
    {
        echo "job_rc=$rc"
        echo "job_s=$(awk -v a="$t0" -v b="$job_end" 'BEGIN {printf "%.2f", (b - a) / 1000}')"
        echo "load_s=$(awk -v a="$t0" -v b="$end" 'BEGIN {printf "%.2f", (b - a) / 1000}')"
        echo "job_summary=$(grep '^retention:' "$WORK/$tag-job.log" | tail -1)"
        echo "job_error=$(grep -E 'level=error' "$WORK/$tag-job.log" | head -1)"
        echo "old_left=$(db_count "$backend" "$STEP_URL" "ts < $cutoff" 2>/dev/null || echo '?')"
    } >>"$out"
    say "  job: rc=$rc $(grep '^retention:' "$WORK/$tag-job.log" | tail -1)"
    stop_pid "$GW_PID"
    grep -E 'level=(warn|error)' "$WORK/gw-$tag.log" | head -1 | sed 's/^/gw_warning=/' >>"$out" || true
    step_db_done "$backend" "$name"
}

# ---------------------------------------------------------------- main

need_tools
command -v perf >/dev/null || say "perf not installed: the profile is skipped"
if [ "${BENCH_NO_BUILD:-0}" != 1 ] && [ -z "${IOT_INGEST_BIN:-}" ]; then
    say "building"
    make -s -C "$ROOT" all build/bench/mhd204 build/bench/mqtt_load >"$WORK/build.log" 2>&1 ||
        { cat "$WORK/build.log" >&2; die "build failed"; }
fi
[ -x "$BIN" ] || die "$BIN missing (run make)"

{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cores=$(nproc)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cpu=$(lscpu 2>/dev/null | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')"
    echo "kernel=$(uname -r)"
    echo "mem_gb=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo +dirty)"
    echo "binary=$("$BIN" --version)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "sqlite=$(sqlite3 --version | awk '{print $1}')"
    echo "hyperfine=$(hyperfine --version | awk '{print $2}')"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "wrk_threads=$WRK_THREADS"
    echo "devices=$BENCH_DEVICES"
    echo "sensors=$BENCH_SENSORS"
    echo "readings=$BENCH_READINGS"
    echo "bodies=$BODIES_N"
    echo "log_level=$GW_LOG_LEVEL"
    echo "pg=$([ -n "$PG_URL" ] && echo given || echo none)"
    echo "job_sensors=$JOB_SENSORS"
    echo "job_readings=$JOB_READINGS"
    echo "profile_sync=$PROFILE_SYNC"
    echo "profile_secs=$PROFILE_SECS"
    echo "only=${ONLY:-all}"
    echo "quick=${BENCH_QUICK:-0}"
    echo "readings_variants=$READINGS_VARIANTS"
    echo "growth_devices=$GROWTH_DEVICES"
    echo "ingest=$INGEST"
    echo "history=$HISTORY"
    echo "history_readings=$HIST_READINGS"
    echo "history_days=$HIST_DAYS"
    echo "history_runs=$HIST_RUNS"
    echo "history_warm=$HIST_WARM"
    echo "retention=$RETENTION"
    echo "retention_readings=$RET_READINGS"
    echo "retention_recent=$RET_RECENT"
    echo "retention_keep_days=$RET_KEEP_DAYS"
    echo "retention_span_days=$RET_SPAN_DAYS"
    echo "retention_duration=$RET_DURATION"
    echo "retention_timeout=$RET_TIMEOUT"
    echo "mqtt=$MQTT"
    echo "mqtt_inflight=$MQTT_INFLIGHT"
    if [ "$PEERS" = 1 ]; then
        echo "influxdb=$(dpkg-query -W -f='${Version}' influxdb 2>/dev/null)"
        echo "victoriametrics=$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null)"
        echo "seed_stack=$("$PY" -c 'import fastapi, pydantic, uvicorn, sys; print("Python %d.%d, FastAPI %s, pydantic %s, uvicorn %s" % (sys.version_info[0], sys.version_info[1], fastapi.__version__, pydantic.VERSION, uvicorn.__version__))' 2>/dev/null)"
        echo "seed_sync=$SEED_SYNC"
    fi
    # Gateway settings the caller set (they apply to every gateway run).
    env | grep -E '^(COMMIT_BATCH_MAX|HTTP_THREADS|WRITE_QUEUE_MAX|SQLITE_CACHE_MB|BROKER_URL|HTTP_MAX_CONNECTIONS|STATE_CACHE_MAX|SENSOR_CACHE_TTL_S)=' \
        | sed 's/^/setting_/' || true
} >"$WORK/meta.env"
: >"$WORK/results.tsv"

# nginx gets the bodies of the first SQLite fleet (keys do not matter to it).
"$ROOT/bench/gen_bodies.sh" "sqlite:$WORK/bodies-nginx.db" "$WORK/bodies-nginx.tsv" "$BODIES_N" \
    >"$WORK/gen-nginx.log" 2>&1 || { cat "$WORK/gen-nginx.log" >&2; die "body generation failed"; }
echo "body_bytes=$(awk -F'\t' '{n += length($3)} END {printf "%d", n / NR}' "$WORK/bodies-nginx.tsv")" \
    >>"$WORK/meta.env"

if [ -z "$PG_URL" ] && [ "${BENCH_PG:-1}" = 1 ]; then
    if PG_OWN=$(PG_CLUSTER_FSYNC=on sh "$ROOT/scripts/pg-cluster.sh" start); then
        PG_URL=$PG_OWN
        echo "pg=own" >>"$WORK/meta.env"
        say "PostgreSQL: a throwaway cluster of this run (fsync on)"
    else
        PG_OWN=
        say "PostgreSQL: no cluster could be started (scripts/pg-cluster.sh): no PostgreSQL rows"
    fi
fi

if [ "$INGEST" = 1 ]; then
    for c in $CONNS; do nginx_run "$c"; done
    if [ "$MHD" = 1 ]; then
        for c in $CONNS; do mhd_run "$c" direct && mhd_run "$c" suspend; done
    fi
fi
if [ "$INGEST" = 1 ] || [ "$MQTT" = 1 ] || [ "$TLS" = 1 ]; then
    # BENCH_ONLY=mqtt: the MQTT rows and only the HTTP rows they are compared with.
    if [ "$INGEST" = 1 ]; then row_syncs=$SYNCS row_conns=$CONNS
    else row_syncs=full row_conns=$(echo "$CONNS" | awk '{print $NF}'); fi
    ingest_rows sqlite "$row_syncs" "$row_conns"
    if [ -n "$PG_URL" ] && { [ "$INGEST" = 1 ] || [ "$MQTT" = 1 ]; }; then
        PG_PID=$(pg_server_pid)
        [ "$PG_PID" != 0 ] || say "PostgreSQL server not local or not readable: its CPU is not counted"
        ingest_rows postgresql "$row_syncs" "$row_conns"
    fi
fi
[ "$PEERS" = 1 ] && peers_run
[ -n "$READINGS_VARIANTS" ] && readings_runs
[ "$GROWTH" = 1 ] && growth_runs
[ "$WHATIF" = 1 ] && whatif_runs
[ "$PROFILE" = 1 ] && profile_run
[ "$JOBS" = 1 ] && jobs_run
# BENCH_STEP_SQLITE=0: the history and retention steps on PostgreSQL only (a partial run).
if [ "$HISTORY" = 1 ]; then
    if [ "${BENCH_STEP_SQLITE:-1}" = 1 ]; then history_run sqlite; else step_skip history sqlite "not run"; fi
    if [ -n "$PG_URL" ]; then history_run postgresql; else step_skip history postgresql "not run"; fi
fi
if [ "$RETENTION" = 1 ]; then
    if [ "${BENCH_STEP_SQLITE:-1}" = 1 ]; then retention_run sqlite; else step_skip retention sqlite "not run"; fi
    if [ -n "$PG_URL" ]; then retention_run postgresql; else step_skip retention postgresql "not run"; fi
fi

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.env"
python3 "$ROOT/bench/report.py" "$WORK" "$OUT"
say "wrote $OUT"
