#!/usr/bin/env bash
# endio's benchmarks in one command (see BENCHMARKS.md).
#
#   bash scripts/bench.sh            # full run: results, plots and RESULTS.md in docs/bench/
#   bash scripts/bench.sh --quick    # CI: every code path runs once or twice, tiny
#                                    # sizes, fewer QD cells, about 2 minutes; results in
#                                    # ${CARGO_TARGET_DIR:-target}/bench-quick/
#                                    # (docs/bench/ untouched)
#   bash scripts/bench.sh --out DIR  # results elsewhere
#
# Sections: 1 completion path against its rivals (endio-harness
# bench-completion), 2 deferral overhead in the engine (engine_throughput
# example, deferred (the worker drives its ring) vs deferred via the
# reaper thread vs inline at QD 1, 16 and 64, null and io_uring backends),
# 3 endio (registered buffers, its default, and without) vs fio vs fio with
# registered buffers and files (temp file and loop device; 4 KiB random
# direct reads at QD 1, 16 and 64, 1 MiB sequential read and write), 4 dontcache under memory pressure (endio
# bench --memcg). Sections 2 and 3 rotate the order of the contenders from
# one repetition to the next; section 3 also warms the memory up before
# each buffered workload (see bench_lib.sh); RESULTS.md gives medians,
# min-max and CPU time per I/O, and a goals table computed from the numbers.
#
# Exit status: non-zero only if a benchmark failed to run (never on numbers).
# Root is needed for the loop device, the memcg and installing fio; without it
# those parts are skipped and say so. Everything the script creates (temp dir,
# loop devices, memcgs left by an interrupted endio) is removed on exit, also
# on failure or Ctrl-C.
set -uo pipefail

QUICK=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "$OUT" ]; then
    if [ $QUICK = 1 ]; then OUT="$TARGET_DIR/bench-quick"; else OUT="$ROOT/docs/bench"; fi
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"

# DEF_*: section 2 (QDs per backend); FIO_*: section 3 (FIO_RT caps the
# sequential jobs, RR_RT is the length of the time-based random reads; the
# QDs of the random reads per target); MEM_*: section 4.
if [ $QUICK = 1 ]; then
    DEF_REPS=2; DEF_SECS=0.5; DEF_QDS_null="1 16 64"; DEF_QDS_uring="16 64"
    FIO_SIZE=64M; FIO_RT=2; RR_RT=1; FIO_REPS=1
    RR_QDS_file="1 16"; RR_QDS_loop="16 64"
    MEM_SIZE=128M; MEM_LIMIT=256M; MEM_REPS=1
else
    DEF_REPS=6; DEF_SECS=3; DEF_QDS_null="1 16 64"; DEF_QDS_uring="1 16 64"
    FIO_SIZE=1G; FIO_RT=10; RR_RT=5; FIO_REPS=5
    RR_QDS_file="1 16 64"; RR_QDS_loop="1 16 64"
    MEM_SIZE=2G; MEM_LIMIT=256M; MEM_REPS=3
fi

START=$(date +%s)
FAILED=()
SKIPPED=()
LOOPS=()
PIDS=()      # every benchmark process started (for memcgs it may leave behind)
CUR=""       # the one running now
TMPD=""
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1
source "$ROOT/scripts/bench_lib.sh"

log() { printf '\n== %s [%ss]\n' "$*" "$(( $(date +%s) - START ))"; }
skip() { echo "SKIPPED: $*"; SKIPPED+=("$*"); }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CUR" ]; then kill "$CUR" 2>/dev/null; wait "$CUR" 2>/dev/null; fi
    for pid in "${PIDS[@]}"; do
        # a memcg of an endio bench that was killed before it could remove it
        for d in /sys/fs/cgroup/memory /sys/fs/cgroup/unified /sys/fs/cgroup; do
            [ -d "$d" ] || continue
            find "$d" -maxdepth 6 -type d -name "endio-bench-$pid" 2>/dev/null |
                while read -r cg; do rmdir "$cg" 2>/dev/null && echo "removed memcg $cg"; done
        done
    done
    for dev in "${LOOPS[@]}"; do
        losetup -d "$dev" 2>/dev/null && echo "detached $dev"
    done
    [ -n "$TMPD" ] && rm -rf "$TMPD"
    exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Runs a benchmark command with stdout+stderr to $RAW/NAME.txt (and the
# terminal); records a failure without stopping the run.
run() {
    local name="$1"; shift
    echo "\$ $*" | tee "$RAW/$name.txt"
    "$@" > >(tee -a "$RAW/$name.txt") 2>&1 &
    local pid=$!
    PIDS+=("$pid"); CUR=$pid
    wait "$pid"
    local rc=$?
    CUR=""
    if [ $rc != 0 ]; then
        echo "FAILED ($rc): $name" | tee -a "$RAW/$name.txt"
        FAILED+=("$name")
    fi
    return $rc
}

# ---------------------------------------------------------------- setup
log "build"
if ! cargo build --release -q -p endio-cli -p endio-harness -p endio --bins --examples; then
    echo "bench.sh: the build failed" >&2
    exit 1
fi
ENDIO="$TARGET_DIR/release/endio"
HARNESS="$TARGET_DIR/release/endio-harness"
THROUGHPUT="$TARGET_DIR/release/examples/engine_throughput"

# a real filesystem, never tmpfs
BASE="${BENCH_DIR:-/var/tmp}"
if [ "$(stat -f -c %T "$BASE" 2>/dev/null)" = tmpfs ]; then BASE="$TARGET_DIR"; fi
TMPD="$(mktemp -d "$BASE/endio-bench.XXXXXX")"
FSTYPE="$(findmnt -n -o FSTYPE -T "$TMPD" 2>/dev/null || stat -f -c %T "$TMPD")"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "mode: $([ $QUICK = 1 ] && echo quick || echo full)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "kernel: $(uname -r)"
    echo "cpu: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "virtualization: $(systemd-detect-virt 2>/dev/null || echo unknown)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "temp dir: $TMPD ($FSTYPE on $(df --output=source "$TMPD" | tail -1))"
    echo "free page reporting to the hypervisor: $(page_reporting)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest other processes at start:"
    ps -eo pcpu,comm --sort=-pcpu | sed -n '2,6p' | sed 's/^/  /'
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# ------------------------------------------------------ 1. completion path
log "1. completion path: endio-harness bench-completion"
if [ $QUICK = 1 ]; then
    run completion "$HARNESS" bench-completion --quick --json "$OUT/completion.json"
    run completion-inflight32 "$HARNESS" bench-completion --quick --inflight 32 \
        --loads 10k,sat --json "$OUT/completion-inflight32.json"
else
    run completion "$HARNESS" bench-completion --json "$OUT/completion.json"
    run completion-inflight32 "$HARNESS" bench-completion --inflight 32 \
        --json "$OUT/completion-inflight32.json"
fi

# --------------------------------------------------- 2. deferral overhead
log "2. deferral overhead: deferred vs deferred via the reaper vs inline, 4 KiB randread, QD ${DEF_QDS_null// /, } (null) and ${DEF_QDS_uring// /, } (uring)"
# null backend: the completion path alone; uring: the same on real I/O
# (O_DIRECT on the temp file). $DEF_REPS repetitions; each repetition runs
# every QD, deferred and inline in turn, who goes first alternating. The
# example prints CPU time (getrusage) and context switches per I/O.
for backend in null uring; do
    size=64m; [ $backend = uring ] && size=256m
    qds_var="DEF_QDS_$backend"
    for i in $(seq 1 "$DEF_REPS"); do
        order="$(order "$i" deferred reaper inline)"
        for qd in ${!qds_var}; do
            for how in $order; do
                flag=""
                case $how in inline) flag="--inline" ;; reaper) flag="--reaper" ;; esac
                run "deferral-$backend-qd$qd-$how-$i" "$THROUGHPUT" --backend $backend --rw randread \
                    --bs 4k --qd "$qd" --size $size --seconds "$DEF_SECS" --dir "$TMPD" $flag
            done
        done
    done
done

# -------------------------------------------------------- 3. endio vs fio
log "3. endio (with and without registered buffers) vs fio vs fio with registered buffers and files"
HAVE_FIO=0
need_tool fio fio && HAVE_FIO=1
if [ $HAVE_FIO = 1 ]; then
    fio --version > "$RAW/fio-version.txt"
    echo "fio: $(cat "$RAW/fio-version.txt")"
else
    skip "endio vs fio: fio is not installed and could not be installed (needs root and apt); endio side still runs"
fi

# one loop device for this section, over a sparse file in the temp dir
attach_loop() { # backing size -> prints the device
    local backing="$1" size="$2" dev
    truncate -s "$size" "$backing" || return 1
    dev="$(losetup --find --show --direct-io=on "$backing" 2>/dev/null)" ||
        dev="$(losetup --find --show "$backing")" || return 1
    LOOPS+=("$dev")
    echo "$dev"
}

TARGETS=("file:$TMPD/fio-target")
if [ $IS_ROOT = 1 ] && command -v losetup >/dev/null; then
    if attach_loop "$TMPD/loop-backing" "$FIO_SIZE" > "$TMPD/loopname"; then
        LOOP="$(cat "$TMPD/loopname")"
        echo "loop device: $LOOP over sparse $TMPD/loop-backing ($(losetup -n -O DIO "$LOOP" | tr -d ' ' | sed 's/1/direct-io on/;s/0/direct-io off/'))"
        TARGETS+=("loop:$LOOP")
    else
        FAILED+=("losetup")
    fi
else
    skip "endio vs fio on a loop device: needs root and losetup"
fi

# workload: name rw bs mode time_based iodepth. The sequential write comes
# first: it lays out the target the reads then read.
workloads_for() { # target kind -> one workload a line
    local kind="$1" qds_var="RR_QDS_$1" qd
    echo "seqwrite write 1M buffered 0 16"
    echo "seqread read 1M buffered 0 16"
    for qd in ${!qds_var}; do echo "randread$qd randread 4k direct 1 $qd"; done
}

# fio's registered buffers pin memory (RLIMIT_MEMLOCK); root has no limit to
# speak of, others may be below what QD x bs needs.
fixed_fits() { # bs iodepth
    local bs="$1" qd="$2" lim need
    [ $IS_ROOT = 1 ] && return 0
    lim="$(ulimit -l)"
    [ "$lim" = unlimited ] && return 0
    case "$bs" in *M) need=$(( ${bs%M} * 1024 * qd )) ;; *k) need=$(( ${bs%k} * qd )) ;; *) need=0 ;; esac
    [ "$need" -lt "$lim" ]
}

run_endio() { # tag target rw bs mode tb iodepth registered(true/false)
    local tag="$1" target="$2" rw="$3" bs="$4" mode="$5" tb="$6" qd="$7" registered="$8"
    local extra=(--runtime "$FIO_RT"); [ "$tb" = 1 ] && extra=(--runtime "$RR_RT" --time-based)
    extra+=(--registered-buffers="$registered")
    run "$tag" "$ENDIO" bench --target "$target" --size "$FIO_SIZE" --rw "$rw" --bs "$bs" \
        --iodepth "$qd" --mode "$mode" "${extra[@]}" \
        --json "$RAW/$tag.json" --no-plot
}
run_fio() { # tag target rw bs mode tb iodepth fixed(0/1)
    local tag="$1" target="$2" rw="$3" bs="$4" mode="$5" tb="$6" qd="$7" fixed="$8"
    local direct=0; [ "$mode" = direct ] && direct=1
    local fsync=0; [ "$rw" = write ] && fsync=1
    local extra=(--runtime="$FIO_RT"); [ "$tb" = 1 ] && extra=(--runtime="$RR_RT" --time_based)
    # fixed=0: the io_uring engine's defaults spelled out: no registered
    # buffers/files, no polled I/O, no SQ thread. fixed=1: registered
    # buffers and files, the upper reference. fio 3.33 asks for COOP_TASKRUN,
    # SINGLE_ISSUER and DEFER_TASKRUN itself. invalidate=1 drops the target's
    # page cache first, as endio bench does.
    run "$tag" fio --name="$tag" --filename="$target" --ioengine=io_uring --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --direct=$direct --size="$FIO_SIZE" "${extra[@]}" \
        --invalidate=1 --fixedbufs="$fixed" --hipri=0 --registerfiles="$fixed" --sqthread_poll=0 \
        --end_fsync=$fsync --numjobs=1 \
        --output-format=json --output="$RAW/$tag.json"
}

for t in "${TARGETS[@]}"; do
    tkind="${t%%:*}"; tpath="${t#*:}"
    for rep in $(seq 1 "$FIO_REPS"); do
        mapfile -t wls < <(workloads_for "$tkind")
        for w in "${wls[@]}"; do
            read -r wname rw bs mode tb qd <<<"$w"
            # who goes first rotates: each tool takes each place in turn
            tools="$(order "$rep" endio endioplain fio fiofixed)"
            # an untimed pass of the same kind first, so that every contender
            # starts right after a buffered job of its own kind (bench_lib.sh)
            if [ "$mode" = buffered ] && ! warm_up "$tpath" "$FIO_SIZE" "$rw"; then
                FAILED+=("warm-up $rw of $tpath")
            fi
            for tool in $tools; do
                tag="vs-$tkind-$wname-$tool-$rep"
                case $tool in
                    endio) run_endio "$tag" "$tpath" "$rw" "$bs" "$mode" "$tb" "$qd" true ;;
                    endioplain) run_endio "$tag" "$tpath" "$rw" "$bs" "$mode" "$tb" "$qd" false ;;
                    fio) [ $HAVE_FIO = 1 ] && run_fio "$tag" "$tpath" "$rw" "$bs" "$mode" "$tb" "$qd" 0 ;;
                    fiofixed)
                        if [ $HAVE_FIO = 0 ]; then :
                        elif fixed_fits "$bs" "$qd"; then
                            run_fio "$tag" "$tpath" "$rw" "$bs" "$mode" "$tb" "$qd" 1
                        elif [ "$rep" = 1 ]; then
                            skip "fio --fixedbufs $tkind $wname: RLIMIT_MEMLOCK ($(ulimit -l) KiB) is below $qd x $bs"
                        fi ;;
                esac
            done
        done
    done
done
rm -f "$TMPD/fio-target"
for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null; done
LOOPS=()
rm -f "$TMPD/loop-backing"

# ------------------------------------- 4. dontcache under memory pressure
log "4. dontcache under memory pressure: --memcg $MEM_LIMIT, $MEM_SIZE write then read"
if ! "$ENDIO" bench --help 2>/dev/null | grep -q -- '--memcg'; then
    skip "dontcache under memory pressure: this endio bench has no --memcg"
elif [ $IS_ROOT = 0 ]; then
    skip "dontcache under memory pressure: --memcg and the loop device need root"
else
    # a loop device (the raw block device a database would use: no native
    # RWF_DONTCACHE there, so endio emulates it)
    if attach_loop "$TMPD/mem-backing" "$MEM_SIZE" > "$TMPD/loopname"; then
        LOOP="$(cat "$TMPD/loopname")"
        run memcg-loop "$ENDIO" bench --target "$LOOP" --size "$MEM_SIZE" --rw write,read --bs 1M \
            --iodepth 16 --mode buffered,dontcache,direct --memcg "$MEM_LIMIT" \
            --json "$OUT/memcg-loop.json" --plot "$OUT/memcg-loop.svg"
        for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null; done
        LOOPS=()
        rm -f "$TMPD/mem-backing"
    else
        FAILED+=("losetup (memcg)")
    fi
    # an ext4 file: the kernel's native RWF_DONTCACHE, and endio's emulation
    run memcg-file-native "$ENDIO" bench --target "$TMPD/mem-file" --size "$MEM_SIZE" --rw write,read \
        --bs 1M --iodepth 16 --mode buffered,dontcache,direct --memcg "$MEM_LIMIT" \
        --json "$OUT/memcg-file-native.json" --plot "$OUT/memcg-file-native.svg"
    run memcg-file-emulated "$ENDIO" bench --target "$TMPD/mem-file" --size "$MEM_SIZE" --rw write,read \
        --bs 1M --iodepth 16 --mode dontcache --dontcache-emulated --memcg "$MEM_LIMIT" \
        --json "$OUT/memcg-file-emulated.json" --plot "$OUT/memcg-file-emulated.svg"
    # native vs emulated is a close call: more alternating repetitions of
    # just those two (the runs above count as the first)
    for i in $(seq 2 "$MEM_REPS"); do
        for how in emulated native; do
            flag=(); [ $how = emulated ] && flag=(--dontcache-emulated)
            run "memcg-file-$how-$i" "$ENDIO" bench --target "$TMPD/mem-file" --size "$MEM_SIZE" \
                --rw write,read --bs 1M --iodepth 16 --mode dontcache "${flag[@]}" \
                --memcg "$MEM_LIMIT" --json "$RAW/memcg-file-$how-$i.json" --no-plot
        done
    done
    rm -f "$TMPD/mem-file"
fi

# ------------------------------------------------------------------ report
log "report"
{
    cat "$OUT/machine.txt" | sed 's/^/    /'
    echo
    python3 "$ROOT/scripts/bench_report.py" "$OUT"
} > "$OUT/RESULTS.md" || FAILED+=("report")
if [ ${#SKIPPED[@]} -gt 0 ]; then
    { echo; echo "Skipped:"; for s in "${SKIPPED[@]}"; do echo "- $s"; done; } >> "$OUT/RESULTS.md"
fi
cat "$OUT/RESULTS.md"

echo
echo "bench.sh: $(( $(date +%s) - START )) s; results in $OUT"
for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "bench.sh: FAILED to run: ${FAILED[*]}" >&2
    exit 1
fi
exit 0
