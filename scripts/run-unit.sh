#!/bin/sh
# Runs each Criterion unit-test binary given; fails if any fails.
set -u
fail=0; total=0
for t in "$@"; do
    total=$((total + 1))
    "$t" --jobs 2 || fail=$((fail + 1))
done
echo "unit test binaries: $((total - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
