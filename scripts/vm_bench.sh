#!/usr/bin/env bash
# Side-by-side dontcache benchmark on Linux 7.3 (ci/vm.sh, one boot): on one
# virtio disk, the kernel's own RWF_DONTCACHE (endio's native passthrough,
# and a plain synchronous pwritev2/preadv2 loop) vs endio's emulation vs
# buffered vs direct, for 1 MiB sequential and 4 KiB random writes and reads,
# and writes inside a 256M memory cgroup. Prints a markdown table (also in
# target/vm/bench.md; raw JSON in target/vm/bench.out).
#
#   bash scripts/vm_bench.sh [--quick] [--reps N]
#
# --reps N runs endio's native and emulated dontcache N times each,
# alternating, and reports medians with their spread and the ratios of the
# medians (scripts/vm_report.py); the other rows run once.
# The guest CPU is emulated (TCG): compare ratios within one run, never the
# absolute figures. endio runs 16 I/Os in flight, the plain loop one.
# Exit status: 77 when the kernel packages cannot be had, non-zero if a job
# failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZES=(256M 32M 512M)
REPS=1
TIMEOUT=1800
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SIZES=(32M 4M 320M) ;;
        --reps) REPS="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "vm_bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$REPS" in
    ''|*[!0-9]*|0) echo "vm_bench.sh: --reps takes a positive number, not '$REPS'" >&2; exit 2 ;;
esac
# One repetition of the native/emulated pairs takes about a minute here.
TIMEOUT=$((TIMEOUT + REPS * 300))
OUT="$ROOT/target/vm/bench.out"
mkdir -p "$ROOT/target/vm"
bash "$ROOT/ci/vm.sh" --disk 1G --timeout "$TIMEOUT" -- sh /vm/bench.sh "${SIZES[@]}" "$REPS" >"$OUT"
rc=$?
[ $rc = 77 ] && exit 77
grep -v '^@@j ' "$OUT" >&2
python3 "$ROOT/scripts/vm_report.py" "$OUT" "$ROOT/target/vm/bench.md" || rc=1
exit $rc
