#!/usr/bin/env bash
# Every Linux 7.3 VM test, in two boots (see ci/vm.sh):
#   1. 2 vCPUs, the standard disks: native dontcache detection (virtio, loop,
#      forced emulation, the dontcache_mode tests), the device-fault matrix
#      (dm-flakey error_writes and drop_writes, the error target; endio in
#      every mode beside the kernel's own I/O, 2 trials each), crash
#      consistency (dm-log-writes, 4 modes x 3 seeds, every flush mark).
#   2. 8 vCPUs: endio stress --real-hotplug with forced rollbacks.
#
#   bash scripts/vm_suite.sh [--ci]
#
# Exit status: 0 when every test passed; 77 (--ci: 0) when the kernel
# packages cannot be had; otherwise the first failing boot's status.
# Takes ~5 minutes on 2 host cores (emulated CPUs).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CI=()
[ "${1:-}" = --ci ] && CI=(--ci)
status=0
for run in "--disk 1G --disk 256M --disk 32M --disk 512M --timeout 1500 -- sh /vm/full.sh" \
           "--smp 8 --mem 2G --timeout 900 -- sh /vm/hotplug.sh"; do
    echo "== ci/vm.sh $run"
    # shellcheck disable=SC2086
    bash "$ROOT/ci/vm.sh" "${CI[@]}" $run
    rc=$?
    [ $rc = 77 ] && exit 77
    [ $rc != 0 ] && [ $status = 0 ] && status=$rc
done
[ $status = 0 ] && echo "vm suite: every test passed" || echo "vm suite: FAILED (status $status)"
exit $status
