#!/bin/sh
# Every VM test of the standard disk layout (lib.sh), one boot.
status=0
sh /vm/native.sh || status=1
sh /vm/faults.sh --trials "${FAULT_TRIALS:-2}" || status=1
sh /vm/crash.sh --seeds "1 2 3" || status=1
exit $status
