# Helpers the benchmark scripts share (sourced by bench.sh and
# dontcache_bench.sh; runs nothing itself). IS_ROOT must be set.

# A tool the script needs: there, or installed from the distribution
# (root and apt-get), else missing.
need_tool() { # command package
    command -v "$1" >/dev/null && return 0
    if [ "$IS_ROOT" = 1 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's $2 (for $1)"
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; })
    fi
    command -v "$1" >/dev/null
}

# The contenders of repetition REP (1-based) in turn: the list rotated by
# REP-1 (ABC, BCA, CAB, ...; two alternate AB, BA).
order() { # rep contender...
    local rep="$1"; shift
    local list=("$@") n=$# k i out=()
    k=$(( (rep - 1) % n ))
    for ((i = 0; i < n; i++)); do out+=("${list[$(( (i + k) % n ))]}"); done
    echo "${out[*]}"
}

# Whether a virtio balloon reports free pages to the hypervisor (feature
# bit 5, VIRTIO_BALLOON_F_REPORTING): "on (...)" or "off".
page_reporting() {
    local d
    for d in /sys/bus/virtio/devices/*; do
        [ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] || continue
        if [ "$(cut -c6 "$d/features" 2>/dev/null)" = 1 ]; then
            echo "on (virtio-balloon, free blocks of order $(cat /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || echo '?') and up)"
            return
        fi
    done
    echo off
}

# Memory that a job frees and leaves unused for a few seconds may be handed
# back to the hypervisor (free page reporting, above), and whoever
# allocates it next pays a host fault per page: a buffered 1 MiB write run
# right after direct random reads (whose cache drop freed the target's
# pages) ran at a quarter of the speed of the same write run after another
# buffered job, whichever tool ran it. An untimed pass over the whole target
# before a measured job leaves its pages cached; the job drops that cache
# and reuses the memory at once, so no contender pays for it alone.
warm_up() { # target size(iec) read|write
    local mib=$(( $(numfmt --from=iec "$2") >> 20 ))
    case "$3" in
        write) dd if=/dev/zero of="$1" bs=1M count="$mib" conv=notrunc,fsync status=none ;;
        *) dd if="$1" of=/dev/null bs=1M count="$mib" status=none ;;
    esac
}
