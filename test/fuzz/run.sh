#!/usr/bin/env bash
# Runs libFuzzer targets and prints what each did: executions, coverage (libFuzzer's cov: and ft:
# from its final stats), corpus size, time. Fails on any crash, leak, UBSan report or timeout; the
# input that did it is in $FUZZ_ARTIFACTS (default ./fuzz-artifacts).
#
#   run.sh BINARY SEED_DIR [libFuzzer flags...]   one target (ctest -L fuzz: -runs=N)
#   run.sh --all BUILD_DIR [libFuzzer flags...]   every target of a COGS_FUZZ build (make fuzz)
#
# The seeds (test/fuzz/corpus/<target>, in the repository) are only read. New inputs go to
# $FUZZ_CORPUS/<target> when FUZZ_CORPUS is set (make fuzz keeps them in the build dir, so that
# longer runs build on each other), else to a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = "--all" ]; then
    bin_dir=$2/bin
    shift 2
    status=0
    for bin in "$bin_dir"/fuzz-*; do
        name=$(basename "$bin")
        bash "$0" "$bin" "$here/corpus/${name#fuzz-}" "$@" || status=1
    done
    exit $status
fi

bin=$1
seeds=$2
shift 2
name=$(basename "$bin")
if [ -n "${FUZZ_CORPUS:-}" ]; then
    work=$FUZZ_CORPUS/${name#fuzz-}
    mkdir -p "$work"
    cleanup() { rm -f "$log"; }
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/cogs-$name-XXXXXX")
    cleanup() { rm -rf "$work" "$log"; }
fi
log=$(mktemp "${TMPDIR:-/tmp}/cogs-$name-log-XXXXXX")
trap cleanup EXIT
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
mkdir -p "$artifacts"

# The HTTP server refuses header blocks and URIs beyond a few KiB: its inputs may be longer.
max_len=4096
if [ "$name" = "fuzz-http" ]; then
    max_len=20000
fi

start=$(date +%s)
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_len=$max_len -timeout=60 -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
    "$@" "$work" "$seeds" >"$log" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
if [ $rc -ne 0 ]; then
    echo "$name: FAILED (exit $rc) after ${elapsed} s; its input is in $artifacts" >&2
    tail -n 60 "$log" >&2
    exit 1
fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
corpus=$(find "$work" "$seeds" -type f | wc -l)
echo "$name: ${execs:-?} executions in ${elapsed} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus} inputs, 0 crashes"
