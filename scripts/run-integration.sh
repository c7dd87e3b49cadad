#!/bin/sh
# Runs the integration suite (tests/integration) against the real binary over
# real HTTP and a real SQLite file.
# Usage: scripts/run-integration.sh [extra pytest args, e.g. -k packet_id -x]
#   IOT_INGEST_BIN  binary to test (default: $PWD/build/iot-ingest)
set -eu
bin=${IOT_INGEST_BIN:-$PWD/build/iot-ingest}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
IOT_INGEST_BIN=$bin
export IOT_INGEST_BIN
cd "$(dirname "$0")/.."
if [ ! -x "$IOT_INGEST_BIN" ]; then
    echo "run-integration: $IOT_INGEST_BIN is missing or not executable (run make first)" >&2
    exit 1
fi
# ASan builds: errors and leaks make the process exit non-zero, which the tests
# observe (serve must exit 0 on SIGTERM, CLI commands must exit 0).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
