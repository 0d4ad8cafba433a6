#!/bin/sh
# Crash consistency with dm-log-writes: the crash workload through endio
# onto a log-writes mapping of /dev/vdc (log on /dev/vdd), a mark after every
# completed flush, then the log replayed to every mark and checked (see the
# crash_workload example's docs).
#
#   sh crash.sh [--modes "buffered dontcache ..."] [--seeds "1 2 ..."] [--ops N]
. /vm/lib.sh
MODES="buffered dontcache dontcache-emulated direct"
SEEDS="1 2"
OPS=300
while [ $# -gt 0 ]; do
    case "$1" in
        --modes) MODES="$2"; shift ;;
        --seeds) SEEDS="$2"; shift ;;
        --ops) OPS="$2"; shift ;;
    esac
    shift
done
DATA=/dev/vdc; LOG=/dev/vdd; SIZE=$((16 << 20))
workloads=0; marks=0; violations=0
for mode in $MODES; do
    for seed in $SEEDS; do
        zero_mib $DATA 16
        dmsetup create lw --table "0 $(blockdev --getsz $DATA) log-writes $DATA $LOG" \
            || { bad "dmsetup create log-writes"; continue; }
        crash_workload run --device /dev/mapper/lw --mode "$mode" --seed "$seed" --ops "$OPS" \
            --size $SIZE --mark lw >/tmp/manifest 2>/tmp/workload.err
        rc=$?
        dm_remove lw
        head -1 /tmp/manifest
        check "workload $mode seed $seed: every write and flush succeeded" [ $rc = 0 ]
        [ $rc = 0 ] || cat /tmp/workload.err
        blockdev --flushbufs $LOG
        crash_workload check --log $LOG --manifest /tmp/manifest --device $DATA >/tmp/check.out 2>/tmp/check.err
        rc=$?
        cat /tmp/check.out; head -20 /tmp/check.err
        check "replay $mode seed $seed: the oracle holds at every flush mark" [ $rc = 0 ]
        if [ $workloads = 0 ]; then
            # The oracle is not vacuous: the same log against another seed's data fails.
            sed '1s/ seed=[0-9]* / seed=987654321 /' /tmp/manifest >/tmp/manifest.wrong
            crash_workload check --log $LOG --manifest /tmp/manifest.wrong >/tmp/wrong.out 2>/dev/null
            wrc=$?
            wv=$(sed -n 's/.*violations \([0-9]*\).*/\1/p' /tmp/wrong.out)
            [ $wrc = 1 ] && [ "${wv:-0}" -gt 0 ]
            check "the oracle rejects the log against another seed's data ($wv violations)" [ $? = 0 ]
        fi
        workloads=$((workloads + 1))
        m=$(sed -n 's/.*flush marks checked \([0-9]*\).*/\1/p' /tmp/check.out)
        v=$(sed -n 's/.*violations \([0-9]*\).*/\1/p' /tmp/check.out)
        marks=$((marks + ${m:-0})); violations=$((violations + ${v:-0}))
        echo "crash $mode $seed marks=${m:-0} violations=${v:-?} rc=$rc" >>/tmp/crash.txt
    done
done
echo "crash consistency: $workloads workloads, $marks flush points checked, $violations violations"
[ -f /tmp/crash.txt ] && emit crash /tmp/crash.txt
summary "crash consistency"
