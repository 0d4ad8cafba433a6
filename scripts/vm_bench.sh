#!/usr/bin/env bash
# Side-by-side dontcache benchmark on Linux 7.3 (ci/vm.sh, one boot): on one
# virtio disk, the kernel's own RWF_DONTCACHE (endio's native passthrough,
# and a plain synchronous pwritev2/preadv2 loop) vs endio's emulation vs
# buffered vs direct, for 1 MiB sequential and 4 KiB random writes and reads,
# and writes inside a 256M memory cgroup. Prints a markdown table (also in
# target/vm/bench.md; raw JSON in target/vm/bench.out).
#
#   bash scripts/vm_bench.sh [--quick]
#
# The guest CPU is emulated (TCG): compare ratios within one run, never the
# absolute figures. endio runs 16 I/Os in flight, the plain loop one.
# Exit status: 77 when the kernel packages cannot be had, non-zero if a job
# failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZES=()
[ "${1:-}" = --quick ] && SIZES=(32M 4M 320M)
OUT="$ROOT/target/vm/bench.out"
mkdir -p "$ROOT/target/vm"
bash "$ROOT/ci/vm.sh" --disk 1G --timeout 1800 -- sh /vm/bench.sh "${SIZES[@]}" >"$OUT"
rc=$?
[ $rc = 77 ] && exit 77
grep -v '^@@j ' "$OUT" >&2
python3 - "$OUT" "$ROOT/target/vm/bench.md" <<'PY' || rc=1
import json, sys
docs = []
cur, depth = None, 0
for line in open(sys.argv[1]):
    if not line.startswith("@@j "):
        continue
    parts = line.rstrip("\n").split(" ", 2)
    tag, rest = parts[1], parts[2] if len(parts) > 2 else ""
    if cur is None:
        cur, depth = [tag, ""], 0
    cur[1] += rest + "\n"
    depth += rest.count("{") - rest.count("}")
    if depth == 0:
        docs.append(cur)
        cur = None
rows = []
def mib(b): return f"{b / 1048576:.0f}"
for tag, text in docs:
    d = json.loads(text)
    if "jobs" in d:
        for j in d["jobs"]:
            mode = j["mode"]
            if mode == "dontcache":
                mode += " " + j["dontcache"]["mode"]
            who = "endio" + (" (memcg 256M)" if tag.startswith("memcg") else "")
            rows.append((j["rw"], j["bs"], who, mode, j["mib_per_s"], j["lat_us"], j["cache"]["resident_max_bytes"],
                         j["cache"]["resident_end_bytes"], j["cpu"]["user_s"] + j["cpu"]["sys_s"], j["errors"]))
    else:
        who = "pwritev2 loop" + (" (memcg 256M)" if tag.startswith("memcg") else "")
        mode = d["mode"] + (" native" if d["mode"] == "dontcache" else "")
        rows.append((d["rw"], d["bs"], who, mode, d["mib_per_s"], d["lat_us"], d["cache"]["resident_max_bytes"],
                     d["cache"]["resident_end_bytes"], d["cpu"]["user_s"] + d["cpu"]["sys_s"], d["errors"]))
hdr = "| job | bs | who | mode | MiB/s | p50 µs | p99 µs | p99.9 µs | cache max MiB | cache end MiB | CPU s | errors |"
out = [hdr, "|" + "---|" * 12]
for rw, bs, who, mode, mbs, lat, cmax, cend, cpu, err in rows:
    out.append(f"| {rw} | {bs // 1024}k | {who} | {mode} | {mbs:.0f} | {lat['p50']:.0f} | {lat['p99']:.0f} | {lat['p999']:.0f} | {mib(cmax)} | {mib(cend)} | {cpu:.2f} | {err} |")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
exit $rc
