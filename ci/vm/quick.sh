#!/bin/sh
# The quick VM subset (CI): native detection, one dm-flakey case, one crash
# replay. Disks: the standard layout of lib.sh.
status=0
sh /vm/native.sh || status=1
sh /vm/faults.sh --quick || status=1
sh /vm/crash.sh --modes dontcache --seeds 1 --ops 150 || status=1
exit $status
