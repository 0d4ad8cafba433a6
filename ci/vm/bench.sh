#!/bin/sh
# Side by side on /dev/vda, one boot: the kernel's own dontcache (endio's
# native passthrough, and dcloop's plain pwritev2/preadv2 loop) vs endio's
# emulation vs buffered vs direct, for 1 MiB sequential and 4 KiB random
# writes and reads; then writes inside a 256M memory cgroup. Every result is
# emitted as tagged JSON for scripts/vm_bench.sh.
#
#   sh bench.sh [SEQ_SIZE [RAND_SIZE [MEMCG_SIZE [REPS]]]]   (default 256M 32M 512M 1)
#
# endio's native and emulated dontcache run REPS times each, alternating
# (native first in odd repetitions, emulated first in even ones); the other
# jobs run once, in the first repetition. Tags carry the repetition: TAG:R.
. /vm/lib.sh
SEQ=${1:-256M}; RAND=${2:-32M}; MEMSZ=${3:-512M}; REPS=${4:-1}
DEV=/dev/vda
n=0
endio_job() { # TAG RW SIZE MODE [EXTRA...]
    tag=$1 rw=$2 size=$3 mode=$4; shift 4
    n=$((n + 1))
    if endio bench --target $DEV --size "$size" --rw "$rw" --mode "$mode" --no-plot --json /tmp/b$n.json "$@" >/tmp/b.log 2>&1; then
        emit "$tag" /tmp/b$n.json
    else
        bad "endio bench $rw $mode $*"; cat /tmp/b.log
    fi
}
kernel_job() { # TAG RW SIZE BS MODE
    if dcloop $DEV "$2" "$4" "$3" "$5" >/tmp/k.json 2>/tmp/k.log; then emit "$1" /tmp/k.json
    else bad "dcloop $2 $5"; cat /tmp/k.log; fi
}
# pair TAG RW SIZE [EXTRA...]: endio's native and emulated dontcache, in
# the order of repetition $r.
pair() {
    ptag=$1 prw=$2 psize=$3; shift 3
    if [ $((r % 2)) = 1 ]; then
        endio_job "$ptag:$r" "$prw" "$psize" dontcache "$@"
        endio_job "$ptag-emulated:$r" "$prw" "$psize" dontcache --dontcache-emulated "$@"
    else
        endio_job "$ptag-emulated:$r" "$prw" "$psize" dontcache --dontcache-emulated "$@"
        endio_job "$ptag:$r" "$prw" "$psize" dontcache "$@"
    fi
}
mkdir -p /sys/fs/cgroup/kernel-loop
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
echo 256M >/sys/fs/cgroup/kernel-loop/memory.max
r=1
while [ "$r" -le "$REPS" ]; do
    for w in "write $SEQ 1M" "read $SEQ 1M" "randwrite $RAND 4k" "randread $RAND 4k"; do
        set -- $w
        rw=$1 size=$2 bs=$3
        echo "bench: $rw $bs over $size, repetition $r of $REPS"
        pair endio "$rw" "$size"
        [ "$r" = 1 ] || continue
        endio_job endio:1 "$rw" "$size" buffered
        endio_job endio:1 "$rw" "$size" direct
        kernel_job kernel:1 "$rw" "$size" "$bs" buffered
        kernel_job kernel:1 "$rw" "$size" "$bs" dontcache
        kernel_job kernel:1 "$rw" "$size" "$bs" direct
    done
    echo "bench: writes of $MEMSZ inside a 256M memory cgroup, repetition $r of $REPS"
    pair memcg write "$MEMSZ" --memcg 256M
    if [ "$r" = 1 ]; then
        endio_job memcg:1 write "$MEMSZ" buffered --memcg 256M
        # The kernel's own loop in a cgroup of the same limit.
        for m in buffered dontcache; do
            if sh -c "echo \$\$ >/sys/fs/cgroup/kernel-loop/cgroup.procs && exec dcloop $DEV write 1M $MEMSZ $m" >/tmp/k.json 2>/tmp/k.log; then
                emit memcg-kernel:1 /tmp/k.json
            else bad "dcloop in memcg $m"; cat /tmp/k.log; fi
        done
    fi
    r=$((r + 1))
done
rmdir /sys/fs/cgroup/kernel-loop
echo "bench: memory.peak of that cgroup is not kept; resident_max is the device's cache"
summary "vm bench"
