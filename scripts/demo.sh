#!/bin/sh
# make run: checks that INGEST_PORT (8000) and MQTT_PORT (1883) are free,
# creates iot-ingest.db with the demo fleet (idempotent), prints a first packet
# to send over HTTP and over MQTT, and serves on 127.0.0.1 until Ctrl-C.
set -eu
bin=${1:-build/iot-ingest}
export DATABASE_URL=${DATABASE_URL:-sqlite:iot-ingest.db}
export INGEST_HOST=${INGEST_HOST:-127.0.0.1}
export INGEST_PORT=${INGEST_PORT:-8000}
export MQTT_PORT=${MQTT_PORT:-1883}
# Before anything is printed or created: is the port free? (ss is in iproute2,
# on every Debian; without it, serve still fails with its own one line.)
port_taken() {
    [ "$1" -gt 0 ] && command -v ss >/dev/null 2>&1 &&
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}
if port_taken "$INGEST_PORT"; then
    echo "make run: port $INGEST_PORT is already in use (another iot-ingest?);" \
        "pick another: INGEST_PORT=8001 make run" >&2
    exit 1
fi
if port_taken "$MQTT_PORT"; then
    echo "make run: MQTT port $MQTT_PORT is already in use (a broker?);" \
        "pick another: MQTT_PORT=1884 make run (or MQTT_PORT=0 for none)" >&2
    exit 1
fi
"$bin" db init >/dev/null
"$bin" db demo >/dev/null
cat <<MSG

iot-ingest is starting on http://$INGEST_HOST:$INGEST_PORT and mqtt://$INGEST_HOST:$MQTT_PORT
(database: $DATABASE_URL).
The demo fleet's keys are public and for trying things out only.

Send a first packet (in another terminal):

  curl -s -X POST http://$INGEST_HOST:$INGEST_PORT/ingest/packets \\
    -H 'Content-Type: application/json' \\
    -H 'X-Device-Key: demo-key-1-NOT-SECRET-do-not-use-in-production' \\
    -d '{"device_uuid":"demo-device-1","readings":[{"sensor_uuid":"demo-device-1-temp","value":21.5},{"sensor_uuid":"demo-device-1-hum","value":55}]}'

Or over MQTT (mosquitto_pub is in Debian's mosquitto-clients; the PUBACK
leaves after the commit; subscribe to devices/demo-device-1/results for the answer):

  mosquitto_pub -h $INGEST_HOST -p $MQTT_PORT -q 1 \\
    -u demo-device-1 -P demo-key-1-NOT-SECRET-do-not-use-in-production \\
    -t devices/demo-device-1/packets \\
    -m '{"readings":[{"sensor_uuid":"demo-device-1-co2","value":640}]}'

Then look at the device:

  curl -s http://$INGEST_HOST:$INGEST_PORT/ingest/devices/demo-device-1/status \\
    -H 'X-Device-Key: demo-key-1-NOT-SECRET-do-not-use-in-production'

Stop with Ctrl-C.
MSG
exec "$bin" serve
