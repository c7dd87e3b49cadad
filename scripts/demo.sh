#!/bin/sh
# make run: checks that INGEST_PORT (8000) is free, creates iot-ingest.db with
# the demo fleet (idempotent), prints a first packet to send, and serves on
# 127.0.0.1:8000 until Ctrl-C.
set -eu
bin=${1:-build/iot-ingest}
export DATABASE_URL=${DATABASE_URL:-sqlite:iot-ingest.db}
export INGEST_HOST=${INGEST_HOST:-127.0.0.1}
export INGEST_PORT=${INGEST_PORT:-8000}
# Before anything is printed or created: is the port free? (ss is in iproute2,
# on every Debian; without it, serve still fails with its own one line.)
if [ "$INGEST_PORT" != 0 ] && command -v ss >/dev/null 2>&1 &&
    [ -n "$(ss -Hltn "sport = :$INGEST_PORT" 2>/dev/null)" ]; then
    echo "make run: port $INGEST_PORT is already in use (another iot-ingest?);" \
        "pick another: INGEST_PORT=8001 make run" >&2
    exit 1
fi
"$bin" db init >/dev/null
"$bin" db demo >/dev/null
cat <<MSG

iot-ingest is starting on http://$INGEST_HOST:$INGEST_PORT (database: $DATABASE_URL).
The demo fleet's keys are public and for trying things out only.

Send a first packet (in another terminal):

  curl -s -X POST http://$INGEST_HOST:$INGEST_PORT/ingest/packets \\
    -H 'Content-Type: application/json' \\
    -H 'X-Device-Key: demo-key-1-NOT-SECRET-do-not-use-in-production' \\
    -d '{"device_uuid":"demo-device-1","readings":[{"sensor_uuid":"demo-device-1-temp","value":21.5},{"sensor_uuid":"demo-device-1-hum","value":55}]}'

Then look at the device:

  curl -s http://$INGEST_HOST:$INGEST_PORT/ingest/devices/demo-device-1/status \\
    -H 'X-Device-Key: demo-key-1-NOT-SECRET-do-not-use-in-production'

Stop with Ctrl-C.
MSG
exec "$bin" serve
