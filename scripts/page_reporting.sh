#!/usr/bin/env bash
# Prints whether a virtio balloon reports free pages to the hypervisor
# (feature bit 5, VIRTIO_BALLOON_F_REPORTING). When it does, memory left
# free for a few seconds is taken back by the host, and whoever uses it next
# pays a host fault per page: the benchmark scripts warm the memory up
# before each job so that no contender pays for it alone.
for d in /sys/bus/virtio/devices/*; do
    [ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] || continue
    if [ "$(cut -c6 "$d/features" 2>/dev/null)" = 1 ]; then
        order="$(cat /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || echo '?')"
        echo "on (virtio-balloon, free blocks of order $order and up)"
        exit 0
    fi
done
echo off
