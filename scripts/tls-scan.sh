#!/bin/sh
# Scans the gateway's TLS listeners (HTTPS on INGEST_PORT, MQTT on MQTT_TLS_PORT)
# with Debian's sslscan and fails on any weak protocol, cipher or option: SSLv2/3,
# TLS 1.0/1.1, a cipher that is not AEAD (GCM, ChaCha20-Poly1305) or under 128
# bits, insecure renegotiation, compression. Part of `make check-all`.
# Usage: scripts/tls-scan.sh [BINARY]   (default build/iot-ingest)
set -eu
bin=${1:-build/iot-ingest}
command -v sslscan >/dev/null || { echo "tls-scan: sslscan is not installed (scripts/deps.sh test)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/iot-tls-scan.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
port=$(free_port)
mport=$(free_port)
DATABASE_URL="sqlite:$dir/scan.db" INGEST_PORT=$port MQTT_TLS_PORT=$mport \
    TLS_CERT_FILE="$dir/cert.pem" TLS_KEY_FILE="$dir/key.pem" LOG_LEVEL=warn \
    "$bin" serve >"$dir/gw.log" 2>&1 &
pid=$!
i=0
until curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/health"; do
    i=$((i + 1))
    [ "$i" -lt 100 ] && kill -0 "$pid" 2>/dev/null || { cat "$dir/gw.log" >&2; exit 1; }
    sleep 0.1
done
status=0
for p in "$port" "$mport"; do
    out=$(sslscan --no-colour --no-heartbleed "127.0.0.1:$p" 2>&1)
    bad=$(printf '%s\n' "$out" | awk '
        /^(SSLv2|SSLv3|TLSv1\.0|TLSv1\.1) +enabled/ {print "protocol: " $0}
        /Insecure session renegotiation supported/ {print "renegotiation: " $0}
        /^Compression enabled/ {print "compression: " $0}
        /^(Preferred|Accepted) / {
            if ($3 + 0 < 128 || $5 !~ /(GCM|CHACHA20|POLY1305)/) print "cipher: " $0
            n++
        }
        END { if (n == 0) print "no cipher accepted: the scan did not reach the server" }')
    if [ -n "$bad" ]; then
        echo "tls-scan: 127.0.0.1:$p: weak or broken:" >&2
        printf '%s\n' "$bad" >&2
        status=1
    else
        printf '%s\n' "$out" | awk -v p="$p" '/^(TLSv1\.[23]) +enabled/ {v = v " " $1}
            /^(Preferred|Accepted) / {c++}
            END {printf "tls-scan: 127.0.0.1:%s: protocols%s, %d AEAD ciphers, nothing weak\n", p, v, c}'
    fi
done
exit $status
