#!/bin/sh
# Runs the integration suite (tests/integration) against the real binary over
# real HTTP: first on a SQLite file, then on a throwaway PostgreSQL cluster
# (scripts/pg-cluster.sh), which is stopped and removed afterwards, also when
# tests fail or the run is interrupted.
# Usage: scripts/run-integration.sh [extra pytest args, e.g. -k packet_id -x]
#        scripts/run-integration.sh tests/integration/test_packets.py[::test_x] ...
#   (an argument naming a test file runs only those files, not the whole suite;
#   paths are relative to the repository's root)
#   IOT_INGEST_BIN        binary to test (default: $PWD/build/iot-ingest)
#   IOT_TEST_BACKENDS     "sqlite postgresql" (default) or one of them
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
backends=${IOT_TEST_BACKENDS:-sqlite postgresql}
suite=tests/integration
for a in "$@"; do
    case $a in *.py | *.py::*) suite= ;; esac
done
status=0
for backend in $backends; do
    echo "== integration suite on $backend =="
    if [ "$backend" = postgresql ]; then
        url=$(sh scripts/pg-cluster.sh start) || { echo "run-integration: no PostgreSQL cluster" >&2; exit 1; }
        trap 'sh scripts/pg-cluster.sh stop "$url" >/dev/null 2>&1 || true' EXIT INT TERM
        IOT_TEST_BACKEND=postgresql IOT_TEST_PG_URL=$url \
            /usr/bin/python3 -m pytest -q -p no:cacheprovider $suite "$@" || status=$?
        sh scripts/pg-cluster.sh stop "$url" >/dev/null 2>&1 || true
        trap - EXIT INT TERM
    else
        IOT_TEST_BACKEND=sqlite /usr/bin/python3 -m pytest -q -p no:cacheprovider $suite "$@" || status=$?
    fi
    [ "$status" -eq 0 ] || break
done
exit "$status"
