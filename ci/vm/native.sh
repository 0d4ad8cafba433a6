#!/bin/sh
# Native RWF_DONTCACHE on Linux 7.3: endio detects it on a virtio disk and on
# a loop device and uses it; --dontcache-emulated forces the emulation.
. /vm/lib.sh
mode_of() { grep -c "\"mode\": \"$1\"" "$2"; }
bench() { out="$1"; shift; endio bench --size 64M --rw write,read --mode dontcache --no-plot --json "$out" "$@" >/tmp/bench.log 2>&1; }

check "bench dontcache on /dev/vda succeeds" bench /tmp/vda.json --target /dev/vda
check "dontcache on /dev/vda is native (write and read jobs)" [ "$(mode_of native /tmp/vda.json)" = 2 ]
max=$(grep -m1 '"resident_max_bytes"' /tmp/vda.json | tr -dc 0-9)
check "native dontcache write on /dev/vda keeps the cache under half the range (max $max bytes)" [ "${max:-999999999}" -lt $((32 << 20)) ]
check "bench --dontcache-emulated on /dev/vda succeeds" bench /tmp/vda-emu.json --target /dev/vda --dontcache-emulated
check "--dontcache-emulated on /dev/vda is emulated" [ "$(mode_of emulated /tmp/vda-emu.json)" = 2 ]

truncate -s 64M /tmp/loop.img
loopdev=$(losetup -f)
losetup "$loopdev" /tmp/loop.img
check "bench dontcache on $loopdev succeeds" bench /tmp/loop.json --target "$loopdev"
check "dontcache on a loop device is native" [ "$(mode_of native /tmp/loop.json)" = 2 ]
losetup -d "$loopdev"; rm -f /tmp/loop.img
# The integration tests make their loop devices over files of a disk
# filesystem: an ext2 on /dev/vdd for now (the crash log disk, rewritten later).
mkdir -p /mnt/disk
if mke2fs -q /dev/vdd >/dev/null 2>&1 && mount -t ext2 /dev/vdd /mnt/disk; then
    check "the dontcache_mode integration tests pass on this kernel" \
        env ENDIO_BIN=/bin/endio ENDIO_TEST_BDEV=/dev/vda TMPDIR=/mnt/disk /bin/dontcache_mode --test-threads=1 -q
    umount /mnt/disk
else
    bad "an ext2 on /dev/vdd for the dontcache_mode tests"
fi
[ "$FAIL" = 0 ] || cat /tmp/bench.log
summary "native dontcache"
