#!/bin/sh
# Runs the libFuzzer harnesses built into build-fuzz/ (see tests/fuzz/README.md).
# Usage: tests/fuzz/run.sh fuzz|smoke SECONDS NAME...
#   fuzz   grows build-fuzz/corpus/NAME (kept between runs) from the seeds
#   smoke  replays tests/fuzz/regressions/NAME/*, then runs a fixed number of
#          inputs (FUZZ_SMOKE_RUNS, default 300000; FUZZ_SMOKE_RUNS_REQUEST,
#          default 15000) with a fixed seed from the seeds alone, in a scratch
#          corpus (SECONDS x 6 is only a safety cap)
# Each harness: the committed regressions are replayed first, then it fuzzes
# for SECONDS. A crash leaves its input in build-fuzz/artifacts/NAME/.
# Ends with "fuzz: N passed, N failed"; exits 1 if any failed.
set -u
mode=$1 secs=$2
shift 2
cd "$(dirname "$0")/../.."
pass=0 fail=0
failed=""
for name in "$@"; do
    bin=build-fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    regress=tests/fuzz/regressions/$name
    art=build-fuzz/artifacts/$name/
    mkdir -p "$art" "$seeds"
    opts="-timeout=30 -rss_limit_mb=4096 -print_final_stats=0 -artifact_prefix=$art"
    [ -f "tests/fuzz/$name.dict" ] && opts="$opts -dict=tests/fuzz/$name.dict"
    ok=1

    files=$(find "$regress" -type f ! -name '.*' ! -name '*.md' 2>/dev/null | sort)
    if [ -n "$files" ]; then
        n=$(echo "$files" | wc -l)
        echo "fuzz $name: replaying $n regression input(s) from $regress"
        # shellcheck disable=SC2086
        if ! "$bin" $opts $files >"build-fuzz/$name-regress.log" 2>&1; then
            echo "fuzz $name: a regression input fails again; log: build-fuzz/$name-regress.log" >&2
            tail -n 40 "build-fuzz/$name-regress.log" >&2
            ok=0
        fi
    fi

    if [ "$mode" = smoke ]; then
        work=$(mktemp -d "build-fuzz/smoke-$name.XXXXXX")
        # A fixed seed and a fixed number of runs: the same inputs on every
        # machine, fast or slow, so the smoke test cannot be flaky.
        # The whole-request harness is ~100x slower than the parsers.
        if [ "$name" = request ]; then runs=${FUZZ_SMOKE_RUNS_REQUEST:-15000}; else runs=${FUZZ_SMOKE_RUNS:-300000}; fi
        extra="-seed=1 -runs=$runs"
    else
        work=build-fuzz/corpus/$name
        mkdir -p "$work"
        extra=""
    fi
    log=build-fuzz/$name-$mode.log
    echo "fuzz $name: ${secs}s ($mode)"
    # shellcheck disable=SC2086
    if [ "$mode" = smoke ]; then limit=$((secs * 6)); else limit=$secs; fi
    if "$bin" $opts $extra -max_total_time="$limit" "$work" "$seeds" >"$log" 2>&1; then
        grep -E '^(Done|#[0-9]+ +DONE)' "$log" | tail -n 1 | sed "s/^/fuzz $name: /"
    else
        echo "fuzz $name: FAILED; log: $log; the input is in $art" >&2
        tail -n 60 "$log" >&2
        echo "fuzz $name: after fixing, keep the input: cp $art<file> $regress/" >&2
        ok=0
    fi
    [ "$mode" = smoke ] && rm -rf "$work"
    if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $name"; fi
done
[ -n "$failed" ] && echo "fuzz: failed:$failed" >&2
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
