# Helpers of the VM test scripts (sourced). Disks of the standard layout
# (ci/vm.sh --quick, scripts/vm_suite.sh): vda 1G benchmarks and detection,
# vdb 256M device faults, vdc 32M crash data, vdd 512M crash log.
PASS=0
FAIL=0
ok() { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
# check NAME CMD...: PASS when CMD succeeds.
check() { n="$1"; shift; if "$@"; then ok "$n"; else bad "$n"; fi; }
summary() { echo "$1: $PASS passed, $FAIL failed"; [ "$FAIL" = 0 ]; }
# Prints FILE with each line tagged for the host (scripts/vm_bench.sh).
emit() { sed "s/^/@@j $1 /" "$2"; }
# Zeroes the first MiB blocks of a device, bypassing the cache.
zero_mib() { dd if=/dev/zero of="$1" bs=1M count="$2" oflag=direct 2>/dev/null; }
# How many of the first N MiB blocks of a device are still all zero, read
# with O_DIRECT (from the device, not from a cache).
zero_blocks() {
    z=$(dd if=/dev/zero bs=1M count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    n=0; i=0
    while [ "$i" -lt "$2" ]; do
        s=$(dd if="$1" bs=1M skip="$i" count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
        [ "$s" = "$z" ] && n=$((n + 1))
        i=$((i + 1))
    done
    echo "$n"
}
dm_remove() { dmsetup remove --retry "$1" >/dev/null 2>&1 || dmsetup remove -f "$1" >/dev/null 2>&1; }
