#!/bin/sh
# Real CPU hotplug under load: endio stress --real-hotplug (offlines and
# forced rollbacks through cpuN/hotplug/fail) on every vCPU of the VM; no
# completion lost or duplicated, every CPU back online at the end.
#
#   sh hotplug.sh [--bios N]
. /vm/lib.sh
BIOS=2000000
[ "${1:-}" = --bios ] && BIOS="$2"
cpus=$(grep -c ^processor /proc/cpuinfo)
echo "vCPUs: $cpus; rollback control: $(ls /sys/devices/system/cpu/cpu1/hotplug/fail 2>/dev/null || echo none)"
endio stress --real-hotplug --bios "$BIOS" --json >/tmp/stress.json 2>/tmp/stress.err
rc=$?
cat /tmp/stress.err | tail -5
# One compact JSON line: pick the figures out.
fig() { sed -n "s/.*\"$1\":\([0-9a-z.]*\).*/\1/p" /tmp/stress.json | head -1; }
echo "stress: bios $(fig bios) cpus $(fig cpus) seconds $(fig seconds) lost $(fig lost) duplicated $(fig duplicated) timed_out $(fig timed_out)"
rh=$(sed -n 's/.*"real_hotplug":{\([^}]*\)}.*/\1/p' /tmp/stress.json)
echo "real hotplug: $rh"
check "stress --real-hotplug exits 0" [ $rc = 0 ]
check "no completion lost" [ "$(fig lost)" = 0 ]
check "no completion duplicated" [ "$(fig duplicated)" = 0 ]
check "the completer went idle" [ "$(fig timed_out)" = false ]
off=$(echo "$rh" | sed -n 's/.*"offlines":\([0-9]*\).*/\1/p')
rb=$(echo "$rh" | sed -n 's/.*"rollbacks":\([0-9]*\).*/\1/p')
[ "${off:-0}" -gt 0 ] && [ "${rb:-0}" -gt 0 ]
check "real CPUs went offline ($off times) and offlines were rolled back ($rb times)" [ $? = 0 ]
offline=$(cat /sys/devices/system/cpu/offline)
check "every CPU is back online (offline: '${offline}')" [ -z "$offline" ]
emit stress /tmp/stress.json
summary "cpu hotplug ($cpus vCPUs)"
