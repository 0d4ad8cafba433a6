#!/bin/sh
# Device faults with device-mapper on /dev/vdb: dm-flakey error_writes and
# drop_writes over the whole device, the error target over [4M, 8M); writes
# of 16M through endio bench (buffered, dontcache native and emulated,
# direct) and through the kernel's own pwritev2 loop (dcloop), then reads
# over the error target. Oracle: the device under the mapping read back with
# O_DIRECT (a lost write leaves its 1 MiB block zero). A trial is "reported"
# when the tool exits non-zero, "silent" when it exits 0 although writes were
# lost. endio must report every lost write except under drop_writes, which
# drops writes and completes them as successes: nobody above the device can
# know (expected silent for every tool).
#
#   sh faults.sh [--quick] [--trials N]
. /vm/lib.sh
QUICK=0; TRIALS=1
while [ $# -gt 0 ]; do
    case "$1" in --quick) QUICK=1 ;; --trials) TRIALS="$2"; shift ;; esac
    shift
done
DEV=/dev/vdb
MIB=16
SECTORS=$(blockdev --getsz $DEV)
RESULTS=/tmp/faults.txt
: >$RESULTS

make_dm() { # FAULT
    case "$1" in
        error_writes|drop_writes)
            dmsetup create fault --table "0 $SECTORS flakey $DEV 0 0 3600 1 $1" ;;
        error_range)
            printf '0 8192 linear %s 0\n8192 8192 error\n16384 %s linear %s 16384\n' \
                $DEV $((SECTORS - 16384)) $DEV | dmsetup create fault ;;
    esac
}

# run_tool TOOL RW: runs one job on /dev/mapper/fault; its exit status.
run_tool() {
    case "$1" in
        endio-buffered) endio bench --target /dev/mapper/fault --size ${MIB}M --rw "$2" --mode buffered --no-plot --json /tmp/j.json ;;
        endio-dontcache) endio bench --target /dev/mapper/fault --size ${MIB}M --rw "$2" --mode dontcache --no-plot --json /tmp/j.json ;;
        endio-dontcache-emulated) endio bench --target /dev/mapper/fault --size ${MIB}M --rw "$2" --mode dontcache --dontcache-emulated --no-plot --json /tmp/j.json ;;
        endio-direct) endio bench --target /dev/mapper/fault --size ${MIB}M --rw "$2" --mode direct --no-plot --json /tmp/j.json ;;
        kernel-buffered) dcloop /dev/mapper/fault "$2" 1M ${MIB}M buffered ;;
        kernel-dontcache) dcloop /dev/mapper/fault "$2" 1M ${MIB}M dontcache ;;
        kernel-direct) dcloop /dev/mapper/fault "$2" 1M ${MIB}M direct ;;
    esac >/tmp/tool.log 2>&1
}

# trial FAULT TOOL N: one write trial, one line in $RESULTS.
trial() {
    zero_mib $DEV $MIB
    make_dm "$1" || { bad "dmsetup create ($1)"; return; }
    run_tool "$2" write
    rc=$?
    dm_remove fault
    lost=$(zero_blocks $DEV $MIB)
    if [ "$lost" = 0 ]; then verdict=no-loss
    elif [ "$rc" != 0 ]; then verdict=reported
    else verdict=silent; fi
    echo "write $1 $2 $3 rc=$rc lost_mib=$lost $verdict" | tee -a $RESULTS
    case "$2/$1/$verdict" in
        endio-*/drop_writes/silent) ;;
        endio-*/drop_writes/*) bad "$2 under drop_writes: $verdict (the fault was not injected?)" ;;
        endio-*/*/reported) ;;
        endio-*) bad "$2 under $1: $verdict"; cat /tmp/tool.log ;;
    esac
}

# read_trial TOOL N: reads over the error target must fail.
read_trial() {
    dd if=/dev/urandom of=/tmp/fill bs=1M count=$MIB 2>/dev/null
    dd if=/tmp/fill of=$DEV bs=1M oflag=direct 2>/dev/null; rm -f /tmp/fill
    make_dm error_range || { bad "dmsetup create (error_range)"; return; }
    run_tool "$1" read
    rc=$?
    dm_remove fault
    if [ "$rc" != 0 ]; then verdict=reported; else verdict=silent; fi
    echo "read error_range $1 $2 rc=$rc lost_mib=4 $verdict" | tee -a $RESULTS
    case "$1/$verdict" in
        endio-*/silent) bad "$1 read over the error target: silent"; cat /tmp/tool.log ;;
    esac
}

if [ $QUICK = 1 ]; then
    FAULTS=error_writes
    TOOLS=endio-dontcache
    READ_TOOLS=""
else
    FAULTS="error_writes drop_writes error_range"
    TOOLS="endio-buffered endio-dontcache endio-dontcache-emulated endio-direct kernel-buffered kernel-dontcache kernel-direct"
    READ_TOOLS="endio-buffered endio-dontcache endio-dontcache-emulated endio-direct kernel-buffered kernel-dontcache kernel-direct"
fi
for f in $FAULTS; do
    for t in $TOOLS; do
        n=1; while [ $n -le "$TRIALS" ]; do trial "$f" "$t" $n; n=$((n + 1)); done
    done
done
for t in $READ_TOOLS; do
    n=1; while [ $n -le "$TRIALS" ]; do read_trial "$t" $n; n=$((n + 1)); done
done
[ $QUICK = 1 ] && check "endio dontcache reports a dm-flakey error_writes fault" grep -q 'error_writes endio-dontcache 1 .* reported$' $RESULTS
echo "fault table (trials, reported, silent; drop_writes: silent expected for everyone):"
awk '{ k = $1 " " $2 " " $3; t[k]++; if ($NF == "reported") r[k]++; if ($NF == "silent") s[k]++; if (!(k in o)) { o[k] = ++n; key[n] = k } }
     END { printf "%-5s %-12s %-26s %6s %8s %6s\n", "io", "fault", "tool", "trials", "reported", "silent";
           for (i = 1; i <= n; i++) { k = key[i]; split(k, a, " "); printf "%-5s %-12s %-26s %6d %8d %6d\n", a[1], a[2], a[3], t[k], r[k] + 0, s[k] + 0 } }' $RESULTS
emit faults $RESULTS
summary "device faults"
