#!/bin/sh
# Installs the Debian 12 packages that building and testing iot-ingest need.
# Idempotent and quiet when everything is already present.
# Usage: scripts/deps.sh [build|test]
set -eu
mode=${1:-build}
pkgs="build-essential pkg-config libmicrohttpd-dev libjansson-dev libyajl-dev libsqlite3-dev
      libgnutls28-dev nettle-dev zlib1g-dev libcurl4-openssl-dev libpq-dev libnats-dev libuv1-dev
      sqlite3 curl"
if [ "$mode" = test ]; then
    pkgs="$pkgs libcriterion-dev python3 python3-pytest python3-psycopg2 postgresql nats-server
          prometheus systemd clang-14 libclang-rt-14-dev clang-tools-14 clang-format valgrind
          mosquitto-clients python3-paho-mqtt nginx openssl sslscan"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
