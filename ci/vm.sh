#!/usr/bin/env bash
# Boots Linux 7.3 (Debian's experimental kernel packages) under qemu with
# endio inside, and runs one command there as root.
#
#   bash ci/vm.sh [--smp N] [--mem SIZE] [--disk SIZE]... [--timeout SECS] -- CMD...
#   bash ci/vm.sh --quick    # CI subset: boot, native dontcache detection,
#                            # one dm-flakey case, one crash replay (a few minutes)
#   bash ci/vm.sh --full     # every VM test (scripts/vm_suite.sh)
#   --ci                     # a skip exits 0 (with its reason), for .ci/run
#
# CMD runs inside the VM from /vm (the scripts of ci/vm/), with endio, the
# test programs, busybox and dmsetup on PATH, cgroup v2 mounted and the
# modules loaded (virtio_blk, loop, dm-mod, dm-flakey, dm-log-writes, brd,
# ext4).
# Each --disk is a fresh sparse raw file under target/vm/ attached as
# /dev/vda, /dev/vdb, ... (default: one 1G disk). Output of CMD is printed;
# the exit status of this script is CMD's.
#
# What it needs it installs (apt-get, once): qemu-system-x86, busybox-static,
# kmod, cpio, dmsetup. The kernel packages are fetched once from the mirror
# of the machine's own apt sources, suite experimental, with a private apt
# state under target/vm/apt (the machine's apt configuration is untouched),
# and cached in target/vm/. The CPU is emulated (TCG: nested KVM does not
# work here), so the guest is slow; every boot has a timeout.
#
# Exit status: CMD's; 77 when the kernel packages (or the tools) cannot be
# had, with the reason on stderr (tests treat it as a skip); 124 when the VM
# timed out; 125 when the VM ended without reporting CMD's status.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VM="$ROOT/target/vm"
KVER=7.3-amd64
SKIP=77

SMP=2
MEM=2G
DISKS=()
TIMEOUT=""
PRESET=""
CI=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) SMP="$2"; shift ;;
        --mem) MEM="$2"; shift ;;
        --disk) DISKS+=("$2"); shift ;;
        --timeout) TIMEOUT="$2"; shift ;;
        --quick|--full) PRESET="${1#--}" ;;
        --ci) CI=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        --) shift; break ;;
        *) echo "vm.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$PRESET" in
    quick)
        [ ${#DISKS[@]} = 0 ] && DISKS=(1G 256M 32M 512M)
        set -- sh /vm/quick.sh
        TIMEOUT="${TIMEOUT:-600}" ;;
    full)
        exec bash "$ROOT/scripts/vm_suite.sh" $([ "$CI" = 1 ] && echo --ci) ;;
esac
[ $# -gt 0 ] || { echo "vm.sh: no command (try --help)" >&2; exit 2; }
[ ${#DISKS[@]} -gt 0 ] || DISKS=(1G)
TIMEOUT="${TIMEOUT:-900}"
mkdir -p "$VM"

# Without the kernel or the tools: a skip, with the reason (--ci: status 0).
skip() {
    echo "vm.sh: skipped: $*" >&2
    [ "$CI" = 1 ] && exit 0
    exit $SKIP
}

# --- Host tools -------------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static \
    || need_pkgs+=(busybox-static)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v dmsetup >/dev/null || [ -x /sbin/dmsetup ] || need_pkgs+=(dmsetup)
command -v file >/dev/null || need_pkgs+=(file)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || skip "needs ${need_pkgs[*]} (root installs them with apt-get)"
    echo "vm.sh: installing ${need_pkgs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${need_pkgs[@]}" >"$VM/apt-install.log" 2>&1 \
        || { apt-get update >>"$VM/apt-install.log" 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${need_pkgs[@]}" >>"$VM/apt-install.log" 2>&1; } \
        || skip "apt-get install ${need_pkgs[*]} failed (see $VM/apt-install.log)"
fi
PATH="$PATH:/sbin:/usr/sbin"

# --- Kernel packages, once ---------------------------------------------------
KDIR="$VM/kernel-$KVER"
# The Debian mirror of the machine's own apt sources (one-line or deb822).
debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }
             tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
    done | grep -E '/debian/?$' | grep -v security | head -1 | sed 's:/*$::' || true
}
fetch_kernel() {
    local mirror apt debs
    mirror="$(debian_mirror)"
    [ -n "$mirror" ] || skip "no Debian mirror in the machine's apt sources"
    apt="$VM/apt"
    mkdir -p "$apt/lists/partial" "$apt/debs"
    echo "deb $mirror experimental main" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=$apt/lists" -o "Debug::NoLocking=1")
    echo "vm.sh: fetching the $KVER kernel packages (experimental suite, once)" >&2
    apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 \
        || skip "apt-get update of the experimental suite failed (see $apt/update.log)"
    (cd "$apt/debs" && apt-get "${opts[@]}" download "linux-binary-$KVER" "linux-modules-$KVER") \
        >"$apt/download.log" 2>&1 \
        || skip "the $KVER kernel packages cannot be downloaded (see $apt/download.log)"
    rm -rf "$KDIR.tmp"
    mkdir -p "$KDIR.tmp"
    for d in "$apt"/debs/*.deb; do dpkg-deb -x "$d" "$KDIR.tmp"; done
    [ -f "$KDIR.tmp/usr/lib/modules/$KVER/vmlinuz" ] || skip "no vmlinuz in the $KVER packages"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
    rm -f "$apt"/debs/*.deb
}
[ -f "$KDIR/usr/lib/modules/$KVER/vmlinuz" ] || fetch_kernel
VMLINUZ="$KDIR/usr/lib/modules/$KVER/vmlinuz"
MODSRC="$KDIR/usr/lib/modules/$KVER"

# --- Binaries ----------------------------------------------------------------
cd "$ROOT"
echo "vm.sh: building endio (release)" >&2
cargo build --release --quiet -p endio-cli --bin endio
cargo build --release --quiet -p endio --example crash_workload
# The dontcache-mode integration tests run inside too (the same binary).
MODE_TEST="$(cargo test --release --quiet -p endio-cli --test dontcache_mode --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\/deps\/dontcache_mode-[^"]*\)".*/\1/p' | tail -1)"
[ -x "$MODE_TEST" ] || { echo "vm.sh: no dontcache_mode test binary" >&2; exit 2; }
gcc -O2 -Wall -static -o "$VM/dcloop" "$ROOT/ci/vm/dcloop.c"


# --- Initramfs ---------------------------------------------------------------
IR="$VM/initramfs"
rm -rf "$IR"
mkdir -p "$IR"/{bin,sbin,dev,proc,sys,tmp,run,vm,var/tmp,lib/modules/$KVER}
cp /bin/busybox "$IR/bin/busybox"
copy_with_libs() { # FILE DESTDIR
    cp -L "$1" "$2/"
    ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
        while read -r lib; do
            mkdir -p "$IR$(dirname "$lib")"
            cp -Ln "$lib" "$IR$lib"
        done
}
copy_with_libs "$ROOT/target/release/endio" "$IR/bin"
copy_with_libs "$ROOT/target/release/examples/crash_workload" "$IR/bin"
copy_with_libs "$(command -v dmsetup)" "$IR/sbin"
copy_with_libs "$MODE_TEST" "$IR/bin"
mv "$IR/bin/$(basename "$MODE_TEST")" "$IR/bin/dontcache_mode"
cp "$VM/dcloop" "$IR/bin/"
cp "$ROOT"/ci/vm/*.sh "$IR/vm/"
cp "$ROOT/ci/vm/init" "$IR/init"
chmod +x "$IR/init"

# Modules with their dependencies, decompressed; depmod for modprobe.
WANT=(virtio_blk loop dm-mod dm-flakey dm-log-writes brd ext4)
declare -A MODPATH=()
while read -r p; do
    n="$(basename "$p")"; n="${n%.ko*}"; MODPATH["${n//-/_}"]="$p"
done < <(find "$MODSRC/kernel" -name '*.ko*')
declare -A DONE=()
add_module() {
    local n="${1//-/_}" p dep
    [ -n "${DONE[$n]:-}" ] && return 0
    DONE[$n]=1
    p="${MODPATH[$n]:-}"
    [ -n "$p" ] || return 0 # built in
    local rel="${p#"$MODSRC/"}" dst
    dst="$IR/lib/modules/$KVER/${rel%.xz}"
    mkdir -p "$(dirname "$dst")"
    case "$p" in
        *.xz) xz -dc "$p" >"$dst" ;;
        *.zst) zstd -dcq "$p" >"$dst" ;;
        *) cp "$p" "$dst" ;;
    esac
    for dep in $(modinfo -F depends "$dst" | tr , ' '); do add_module "$dep"; done
}
for m in "${WANT[@]}"; do add_module "$m"; done
touch "$IR/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo}
depmod -b "$IR" "$KVER"
printf '%s\n' "${WANT[@]}" >"$IR/vm/modules"

# The command, quoted for the guest's shell.
{
    echo '#!/bin/sh'
    printf '%q ' "$@"
    echo
} >"$IR/vm/cmd"
(cd "$IR" && find . | cpio -o -H newc --quiet | gzip -1) >"$VM/initrd.gz"

# --- Disks and boot ----------------------------------------------------------
DRIVES=()
i=0
for size in "${DISKS[@]}"; do
    img="$VM/disk$i.img"
    rm -f "$img"
    truncate -s "$size" "$img"
    DRIVES+=(-drive "file=$img,if=virtio,format=raw,cache=none,aio=threads")
    i=$((i + 1))
done

LOG="$VM/console.log"
MARK="@@endio-vm-exit"
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
    -kernel "$VMLINUZ" -initrd "$VM/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
    -display none -monitor none -serial stdio -no-reboot "${DRIVES[@]}" </dev/null |
    sed -u 's/\r$//' | tee "$LOG" | grep -v --line-buffered -e "^$MARK " -e "^\[ *[0-9.]*\] reboot: Power down"
qrc=${PIPESTATUS[0]}
set -e
rc="$(sed -n "s/^$MARK \([0-9]*\)\$/\1/p" "$LOG" | tail -1)"
if [ -n "$rc" ]; then
    exit "$rc"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "vm.sh: the VM timed out after ${TIMEOUT}s (console in $LOG)" >&2
    exit 124
fi
echo "vm.sh: the VM ended (qemu status $qrc) without reporting the command's status (console in $LOG)" >&2
exit 125
