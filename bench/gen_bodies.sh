#!/bin/sh
# Provisions the benchmark fleet in a database and writes the wrk request
# bodies for it (bench/packets.lua reads them).
#
# Usage: bench/gen_bodies.sh DATABASE_URL OUT_FILE [PACKETS]
#   DATABASE_URL  sqlite:PATH or postgresql://...; created (db init) if needed
#   OUT_FILE      one request per line: HEADER<TAB>DEVICE_KEY<TAB>JSON_BODY
#   PACKETS       bodies to write (default 2000), devices in turn
# Fleet: BENCH_DEVICES (100) devices x BENCH_SENSORS (10) sensors with the
# simulator's thresholds; BENCH_READINGS (10) readings per packet, no
# timestamps (the gateway stamps them, so the bodies can be replayed).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${IOT_INGEST_BIN:-$root/build/iot-ingest}
[ $# -ge 2 ] || { echo "usage: $0 DATABASE_URL OUT_FILE [PACKETS]" >&2; exit 2; }
DATABASE_URL=$1 "$bin" db init >/dev/null
DATABASE_URL=$1 exec "$bin" sim --emit "$2" --emit-packets "${3:-2000}" \
    --devices "${BENCH_DEVICES:-100}" --sensors "${BENCH_SENSORS:-10}" \
    --readings-per-packet "${BENCH_READINGS:-10}" --seed "${BENCH_SEED:-1}" --progress 0
