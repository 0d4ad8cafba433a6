#!/usr/bin/env bash
# dontcache against its alternatives, repeated, with a Markdown report.
#
#   bash scripts/dontcache_bench.sh              # full run: 5 repetitions, 1 GiB targets
#   bash scripts/dontcache_bench.sh --reps N     # N repetitions of every cell
#   bash scripts/dontcache_bench.sh --quick      # CI: every path runs, tiny sizes,
#                                                # 2 repetitions, under 3 minutes
#   bash scripts/dontcache_bench.sh --sections 1,3   # only those sections
#   bash scripts/dontcache_bench.sh --out DIR    # results elsewhere
#   ENDIO=PATH bash scripts/dontcache_bench.sh   # that endio binary (e.g. an
#                                                # older build), not the fresh one
#
# Results: ${CARGO_TARGET_DIR:-target}/dontcache-bench/REPORT.md, the raw
# JSON and logs of every run in raw/ next to it.
#
# Sections (one `endio bench` process per pattern, contender and
# repetition; the order of the contenders changes from one repetition to
# the next: ABC, BCA, CAB, ...):
#  1 dontcache under memory pressure: a loop device, --memcg 256M, 1 MiB
#    sequential write and read of more than the limit; dontcache, buffered,
#    direct; throughput, latency, CPU per MiB, the memory cgroup's reclaim.
#  2 write tail latency, dontcache vs direct: 1 MiB sequential and 4 KiB
#    random writes (iodepth 16) on a file and on a loop device; p99.9.
#  3 sequential read, dontcache vs buffered on a file: throughput and what
#    dontcache leaves in the page cache.
#  4 the kernel's native dontcache vs endio's emulation on the same file:
#    1 MiB sequential and 4 KiB random writes and reads.
#
# Exit status: non-zero only if a benchmark failed to run (never on numbers).
# Root is needed for the loop device and the memory cgroup; without it those
# parts are skipped and say so. Everything the script creates (temp dir,
# loop device, memory cgroups left by an interrupted endio) is removed on
# exit, also on failure or Ctrl-C.
set -uo pipefail

QUICK=0
REPS=""
OUT=""
SECTIONS="1,2,3,4"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --reps) REPS="${2:-}"; shift ;;
        --sections) SECTIONS="${2:-}"; shift ;;
        --out) OUT="${2:-}"; shift ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "dontcache_bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$REPS" in
    "") if [ $QUICK = 1 ]; then REPS=2; else REPS=5; fi ;;
    *[!0-9]*|0) echo "dontcache_bench.sh: --reps takes a positive number, not '$REPS'" >&2; exit 2 ;;
esac
case ",$SECTIONS," in
    *[!0-9,]*) echo "dontcache_bench.sh: --sections takes a list of 1 to 4, e.g. 1,3" >&2; exit 2 ;;
esac
want() { case ",$SECTIONS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[ -n "$OUT" ] || OUT="$TARGET_DIR/dontcache-bench"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"
rm -f "$OUT/REPORT.md"

# LOOP_SIZE: the loop device of sections 1 and 2; FILE_SIZE: the file of
# sections 2, 3 and 4; MEM_LIMIT: section 1's memory cgroup; RAND_RT caps
# each 4 KiB random job, SEQ_RT each sequential one (a safety net: at these
# sizes they end by size first).
if [ $QUICK = 1 ]; then
    LOOP_SIZE=128M; FILE_SIZE=128M; MEM_LIMIT=256M; RAND_RT=2; SEQ_RT=30
else
    LOOP_SIZE=1G; FILE_SIZE=1G; MEM_LIMIT=256M; RAND_RT=15; SEQ_RT=120
fi
QD=16

START=$(date +%s)
FAILED=()
SKIPPED=()
LOOPS=()
PIDS=()      # every benchmark process started (for memcgs it may leave behind)
CUR=""       # the one running now
TMPD=""
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

log() { printf '\n== %s [%ss]\n' "$*" "$(( $(date +%s) - START ))"; }
skip() { echo "SKIPPED: $*"; SKIPPED+=("$*"); }

# memory cgroups named as endio names them (endio-bench-PID) whose process
# is gone: ours, killed before they could remove their cgroup, or older
# ones. A cgroup of a live process (another run on this machine) is left.
remove_stale_memcgs() {
    local d cg pid
    for d in /sys/fs/cgroup/memory /sys/fs/cgroup/unified /sys/fs/cgroup; do
        [ -d "$d" ] || continue
        while read -r cg; do
            pid="${cg##*/endio-bench-}"
            case "$pid" in ''|*[!0-9]*) continue ;; esac
            [ -d "/proc/$pid" ] && continue
            rmdir "$cg" 2>/dev/null && echo "removed memcg $cg"
        done < <(find "$d" -maxdepth 6 -type d -name 'endio-bench-*' 2>/dev/null)
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CUR" ]; then kill "$CUR" 2>/dev/null; wait "$CUR" 2>/dev/null; fi
    [ ${#PIDS[@]} -gt 0 ] && remove_stale_memcgs
    for dev in "${LOOPS[@]}"; do
        losetup -d "$dev" 2>/dev/null && echo "detached $dev"
    done
    [ -n "$TMPD" ] && rm -rf "$TMPD"
    exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Busy CPU time of the whole machine (every process and kernel thread), in
# clock ticks: user nice system irq softirq steal of /proc/stat's cpu line.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
HZ="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# Runs a benchmark command with stdout+stderr to $RAW/NAME.txt (and the
# terminal) and the machine's busy CPU seconds during it to $RAW/NAME.cpu;
# records a failure without stopping the run.
run() {
    local name="$1"; shift
    echo "\$ $*" | tee "$RAW/$name.txt"
    local b0; b0="$(machine_busy)"
    "$@" > >(tee -a "$RAW/$name.txt") 2>&1 &
    local pid=$!
    PIDS+=("$pid"); CUR=$pid
    wait "$pid"
    local rc=$?
    CUR=""
    local b1; b1="$(machine_busy)"
    awk -v a="$b0" -v b="$b1" -v hz="$HZ" 'BEGIN { printf "%.3f\n", (b - a) / hz }' > "$RAW/$name.cpu"
    if [ $rc != 0 ]; then
        echo "FAILED ($rc): $name" | tee -a "$RAW/$name.txt"
        FAILED+=("$name")
    fi
    return $rc
}

source "$ROOT/scripts/bench_lib.sh"

# ---------------------------------------------------------------- setup
log "build"
if ! cargo build --release -q -p endio-cli; then
    echo "dontcache_bench.sh: the build failed" >&2
    exit 1
fi
ENDIO="${ENDIO:-$TARGET_DIR/release/endio}"
if ! need_tool python3 python3; then
    echo "dontcache_bench.sh: python3 is needed for the report and could not be installed (needs root and apt)" >&2
    exit 1
fi

# a real filesystem, never tmpfs
BASE="${BENCH_DIR:-/var/tmp}"
if [ "$(stat -f -c %T "$BASE" 2>/dev/null)" = tmpfs ]; then BASE="$TARGET_DIR"; fi
TMPD="$(mktemp -d "$BASE/endio-dcbench.XXXXXX")"
FSTYPE="$(findmnt -n -o FSTYPE -T "$TMPD" 2>/dev/null || stat -f -c %T "$TMPD")"
FILE="$TMPD/host-file"

CGROUP="none"
if grep -q ' - cgroup2 .*' /proc/self/mountinfo && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CGROUP="v2"
elif grep -q ' - cgroup cgroup .*memory' /proc/self/mountinfo; then
    CGROUP="v1"
fi

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "mode: $([ $QUICK = 1 ] && echo quick || echo full)"
    echo "repetitions: $REPS"
    echo "sections: $SECTIONS"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "endio: $ENDIO"
    echo "kernel: $(uname -r)"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "virtualization: $(systemd-detect-virt 2>/dev/null || echo unknown)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "memory cgroup: $CGROUP"
    echo "free page reporting to the hypervisor: $(page_reporting)"
    echo "temp dir: $TMPD ($FSTYPE on $(df --output=source "$TMPD" | tail -1))"
    echo "sizes: loop device $LOOP_SIZE, file $FILE_SIZE, memory cgroup $MEM_LIMIT, iodepth $QD, 4 KiB random jobs capped at ${RAND_RT} s"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest other processes at start:"
    ps -eo pcpu,comm --sort=-pcpu | sed -n '2,6p' | sed 's/^/  /'
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# the loop device (sections 1 and 2), over a file in the temp dir
LOOP=""
if want 1 || want 2; then
    if [ $IS_ROOT = 0 ]; then
        skip "loop device (sections 1 and 2 on it): losetup needs root"
    elif ! need_tool losetup util-linux; then
        skip "loop device (sections 1 and 2 on it): losetup is not installed and could not be installed"
    else
        truncate -s "$LOOP_SIZE" "$TMPD/loop-backing" &&
            LOOP="$(losetup --find --show --direct-io=on "$TMPD/loop-backing" 2>/dev/null ||
                    losetup --find --show "$TMPD/loop-backing")"
        if [ -n "$LOOP" ]; then
            LOOPS+=("$LOOP")
            dio="$(losetup -n -O DIO "$LOOP" 2>/dev/null | tr -d ' ')"
            echo "loop device: $LOOP over $TMPD/loop-backing (direct-io $([ "$dio" = 1 ] && echo on || echo off))" |
                tee -a "$OUT/machine.txt"
            # written once before any measured run, so no job pays for
            # allocating the backing file's blocks
            run prefill-loop "$ENDIO" bench --target "$LOOP" --size "$LOOP_SIZE" --rw write \
                --mode direct --no-plot
        else
            FAILED+=("losetup")
            skip "loop device (sections 1 and 2 on it): losetup failed"
        fi
    fi
fi
# the file (sections 2, 3 and 4), laid out once the same way
if want 2 || want 3 || want 4; then
    run prefill-file "$ENDIO" bench --target "$FILE" --size "$FILE_SIZE" --rw write \
        --mode direct --no-plot
fi

# One measured job: bench TAG TARGET SIZE RW MODE [extra endio bench args].
bench() {
    local tag="$1" target="$2" size="$3" rw="$4" mode="$5"; shift 5
    local rt="$SEQ_RT"; case "$rw" in rand*) rt="$RAND_RT" ;; esac
    # untimed, so that no mode pays alone for memory left free (bench_lib.sh)
    warm_up "$target" "$size" read || FAILED+=("warm-up read of $target")
    run "$tag" "$ENDIO" bench --target "$target" --size "$size" --rw "$rw" --iodepth "$QD" \
        --mode "$mode" --runtime "$rt" "$@" --json "$RAW/$tag.json" --no-plot
}

# ------------------------------------- 1. dontcache under memory pressure
if want 1; then
    log "1. dontcache under memory pressure: loop device, --memcg $MEM_LIMIT, $LOOP_SIZE 1 MiB write then read, $REPS repetitions"
    if [ $IS_ROOT = 0 ]; then
        skip "1. dontcache under memory pressure: the memory cgroup and the loop device need root"
    elif [ "$CGROUP" = none ]; then
        skip "1. dontcache under memory pressure: no memory cgroup controller is mounted"
    elif ! "$ENDIO" bench --help 2>/dev/null | grep -q -- '--memcg'; then
        skip "1. dontcache under memory pressure: this endio bench has no --memcg"
    elif [ -z "$LOOP" ]; then
        skip "1. dontcache under memory pressure: no loop device"
    else
        for rep in $(seq 1 "$REPS"); do
            for mode in $(order "$rep" dontcache buffered direct); do
                # the read reads what the write of the same mode just wrote
                for rw in write read; do
                    bench "s1-loop-seq$rw-$mode-r$rep" "$LOOP" "$LOOP_SIZE" "$rw" "$mode" \
                        --bs 1M --memcg "$MEM_LIMIT"
                done
            done
        done
    fi
fi

# --------------------------------- 2. write tail latency: dontcache vs direct
if want 2; then
    log "2. write p99.9, dontcache vs direct: 1 MiB sequential and 4 KiB random writes, file and loop device, $REPS repetitions"
    targets=("file:$FILE:$FILE_SIZE")
    if [ -n "$LOOP" ]; then
        targets+=("loop:$LOOP:$LOOP_SIZE")
    else
        skip "2. write p99.9 on a loop device: no loop device (root and losetup needed)"
    fi
    for rep in $(seq 1 "$REPS"); do
        for t in "${targets[@]}"; do
            IFS=: read -r tkind tpath tsize <<<"$t"
            for wl in seqwrite:write:1M randwrite:randwrite:4k; do
                IFS=: read -r wname rw bs <<<"$wl"
                for mode in $(order "$rep" dontcache direct); do
                    bench "s2-$tkind-$wname-$mode-r$rep" "$tpath" "$tsize" "$rw" "$mode" --bs "$bs"
                done
            done
        done
    done
fi

# ---------------------------- 3. sequential read: dontcache vs buffered, file
if want 3; then
    log "3. sequential read, dontcache vs buffered: $FILE_SIZE file, 1 MiB, $REPS repetitions"
    for rep in $(seq 1 "$REPS"); do
        for mode in $(order "$rep" dontcache buffered); do
            bench "s3-file-seqread-$mode-r$rep" "$FILE" "$FILE_SIZE" read "$mode" --bs 1M
        done
    done
fi

# -------------------------------- 4. native vs emulated dontcache on a file
if want 4; then
    log "4. the kernel's dontcache vs endio's emulation: $FILE_SIZE file on $FSTYPE, $REPS repetitions"
    for rep in $(seq 1 "$REPS"); do
        for wl in seqwrite:write:1M seqread:read:1M randwrite:randwrite:4k randread:randread:4k; do
            IFS=: read -r wname rw bs <<<"$wl"
            for how in $(order "$rep" native emulated); do
                flag=(); [ "$how" = emulated ] && flag=(--dontcache-emulated)
                bench "s4-file-$wname-$how-r$rep" "$FILE" "$FILE_SIZE" "$rw" dontcache --bs "$bs" "${flag[@]}"
            done
        done
    done
fi

# ------------------------------------------------------------------ report
log "report"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo "duration: $(( $(date +%s) - START )) s" >> "$OUT/machine.txt"
{
    python3 "$ROOT/scripts/dontcache_report.py" "$OUT"
    if [ ${#SKIPPED[@]} -gt 0 ]; then
        echo; echo "Skipped:"; for s in "${SKIPPED[@]}"; do echo "- $s"; done
    fi
    if [ ${#FAILED[@]} -gt 0 ]; then
        echo; echo "Failed to run (see raw/NAME.txt): ${FAILED[*]}"
    fi
} > "$OUT/REPORT.md" || FAILED+=("report")
cat "$OUT/REPORT.md"

echo
echo "dontcache_bench.sh: $(( $(date +%s) - START )) s; report in $OUT/REPORT.md, raw results in $RAW"
for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "dontcache_bench.sh: FAILED to run: ${FAILED[*]}" >&2
    exit 1
fi
exit 0
