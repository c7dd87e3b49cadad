#!/bin/sh
# Fails if the product binary carries test code: a global symbol that an object
# of the test-support library (tests/support/, linked only into the unit tests
# and the fuzzers) defines, or any symbol of the fault-injecting store or the
# in-memory HTTP harness (store_fault_*, http_harness_*), wherever it came from.
# Usage: scripts/no-test-code.sh BINARY SUPPORT_OBJECT...
set -u
bin=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
nm -g --defined-only "$@" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/support"
nm --defined-only "$bin" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/product"
{
    comm -12 "$tmp/support" "$tmp/product"
    grep -E '^(store_fault_|http_harness_)' "$tmp/product"
} | sort -u >"$tmp/found"
if [ -s "$tmp/found" ]; then
    echo "no-test-code: $bin contains test-support symbols:" $(cat "$tmp/found") >&2
    exit 1
fi
echo "no-test-code: $bin has none of the $(wc -l <"$tmp/support") test-support symbols"
