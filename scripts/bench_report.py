#!/usr/bin/env python3
"""Tables (Markdown) from one run of scripts/bench.sh: bench_report.py OUT_DIR.

Reads OUT_DIR/completion*.json, OUT_DIR/raw/deferral-*.txt,
OUT_DIR/raw/vs-*.json (endio bench and fio), OUT_DIR/memcg-*.json.
Missing pieces are reported as missing; never fails on numbers.
"""
import glob
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "docs/bench"
RAW = os.path.join(OUT, "raw")
MiB = 1024 * 1024


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mean_spread(xs):
    if not xs:
        return "n/a"
    m = statistics.mean(xs)
    if len(xs) == 1:
        return f"{m:,.0f}"
    sd = statistics.stdev(xs)
    return f"{m:,.0f} ± {sd:,.0f} (min {min(xs):,.0f}, max {max(xs):,.0f}, n={len(xs)})"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ------------------------------------------------------------ completion
def completion_section(name, title):
    d = load(os.path.join(OUT, name))
    print(f"\n### {title}\n")
    if d is None:
        print(f"missing: {name} (the run failed or was skipped)")
        return
    cells = d.get("cells") or d.get("results") or []
    if not cells:
        print("```\n" + json.dumps(d)[:2000] + "\n```")
        return
    st = d.get("settings", {})
    ms = d.get("machine", {})
    print(f"{st.get('producers')} producers (one per CPU), window {st.get('inflight_per_producer')} "
          f"completions in flight per producer, {st.get('duration_s')} s per cell; "
          f"load average at start {ms.get('start', {}).get('loadavg')}, at end {ms.get('end', {}).get('loadavg')}\n")
    f = lambda v, n: "–" if v is None else f"{v:,.{n}f}"
    rows = []
    for c in cells:
        lat = c.get("latency_us") or {}
        rows.append([
            c.get("contender"), c.get("load"), f(c.get("completions_per_s"), 0),
            f(c.get("ctx_switches_per_completion"), 4),
            f(c.get("handoff_ctx_switches_per_completion"), 4),
            f(c.get("wakeups_per_completion"), 4),
            f(lat.get("p50"), 1), f(lat.get("p99"), 1), f(lat.get("p999"), 1),
        ])
    print(table(["contender", "offered load", "completions/s", "ctxsw/completion",
                 "hand-off ctxsw/completion", "wakeups/completion", "p50 µs", "p99 µs",
                 "p99.9 µs"], rows))
    goals = d.get("goals")
    if goals:
        print()
        rows = []
        for g in goals:
            met = g.get("met")
            rows.append([g.get("goal"), f(g.get("measured"), 3),
                         "met" if met else ("not run" if met is None else "MISSED"),
                         (g.get("detail") or "").replace("|", "/")])
        print(table(["goal", "measured", "verdict", "detail"], rows))


# -------------------------------------------------------------- deferral
LINE = re.compile(r"^\s*(\w+):\s+(\d+) IOPS\s+([\d.]+) MiB/s.*ctxsw/io ([\d.]+)")


def deferral_section():
    print("\n## Deferral overhead in the engine: 4 KiB random reads, QD 16\n")
    rows = []
    found = False
    for backend in ("null", "uring"):
        iops = {"deferred": [], "inline": []}
        cs = {"deferred": [], "inline": []}
        for how in iops:
            for p in sorted(glob.glob(os.path.join(RAW, f"deferral-{backend}-{how}-*.txt"))):
                for line in open(p):
                    m = LINE.match(line)
                    if m:
                        iops[how].append(float(m.group(2)))
                        cs[how].append(float(m.group(4)))
        if not iops["deferred"] and not iops["inline"]:
            continue
        found = True
        loss = "n/a"
        if iops["deferred"] and iops["inline"]:
            loss = f"{100 * (1 - statistics.mean(iops['deferred']) / statistics.mean(iops['inline'])):.1f} %"
        rows.append([backend, mean_spread(iops["deferred"]), mean_spread(iops["inline"]),
                     loss,
                     f"{statistics.mean(cs['deferred']):.2f}" if cs["deferred"] else "n/a",
                     f"{statistics.mean(cs['inline']):.2f}" if cs["inline"] else "n/a"])
    if not found:
        print("missing: no deferral results")
        return
    print(table(["backend", "IOPS deferred (task context)", "IOPS inline (reaper)",
                 "loss", "ctxsw/io deferred", "ctxsw/io inline"], rows))
    print("\nGoal: loss ≤ 5 %.")


# -------------------------------------------------------------- vs fio
def endio_job(path):
    d = load(path)
    if not d or not d.get("jobs"):
        return None
    j = d["jobs"][0]
    if j.get("errors"):
        return None
    return {"mibs": j["mib_per_s"], "p99": j["lat_us"]["p99"], "p999": j["lat_us"]["p999"],
            "iops": j["iops"]}


def fio_job(path):
    d = load(path)
    if not d or not d.get("jobs"):
        return None
    j = d["jobs"][0]
    if j.get("error"):
        return None
    side = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    p = lambda k: pct.get(k, 0) / 1000.0
    return {"mibs": side["bw_bytes"] / MiB, "p99": p("99.000000"), "p999": p("99.900000"),
            "iops": side["iops"]}


def vs_section():
    print("\n## endio vs fio: same target, workload, size, runtime, iodepth 16\n")
    files = glob.glob(os.path.join(RAW, "vs-*.json"))
    if not files:
        print("missing: no endio-vs-fio results")
        return
    res = {}
    for p in files:
        m = re.match(r"vs-(\w+)-(\w+)-(endio|fio)-(\d+)\.json", os.path.basename(p))
        if not m:
            continue
        target, wl, tool, rep = m.groups()
        r = endio_job(p) if tool == "endio" else fio_job(p)
        if r:
            res.setdefault((target, wl), {}).setdefault(tool, []).append(r)
    desc = {"seqwrite": "1 MiB seq write, buffered (+end fsync)",
            "seqread": "1 MiB seq read, buffered", "randread": "4 KiB rand read, direct, QD16"}
    rows = []
    for target in ("file", "loop"):
        for wl in ("seqwrite", "seqread", "randread"):
            r = res.get((target, wl))
            if not r:
                continue
            e = [x["mibs"] for x in r.get("endio", [])]
            f = [x["mibs"] for x in r.get("fio", [])]
            ratio = f"{statistics.mean(e) / statistics.mean(f):.2f}" if e and f else "n/a"
            fmt = lambda xs: (" / ".join(f"{x:.0f}" for x in xs)) if xs else "n/a"
            ep99 = [x["p99"] for x in r.get("endio", [])]
            fp99 = [x["p99"] for x in r.get("fio", [])]
            rows.append([target, desc[wl],
                         f"{statistics.mean(e):.0f} ({fmt(e)})" if e else "n/a",
                         f"{statistics.mean(f):.0f} ({fmt(f)})" if f else "n/a",
                         ratio,
                         f"{statistics.mean(ep99):.0f} / {statistics.mean(fp99):.0f}" if ep99 and fp99 else "n/a"])
    print(table(["target", "workload", "endio MiB/s mean (runs)", "fio MiB/s mean (runs)",
                 "endio/fio", "p99 µs endio / fio"], rows))
    print("\nGoal: endio/fio ≥ 0.95.")


# -------------------------------------------------------------- memcg
def memcg_section():
    print("\n## dontcache under memory pressure\n")
    any_ = False
    for name, title in (("memcg-loop.json", "loop device (no native RWF_DONTCACHE: endio emulates)"),
                        ("memcg-file-native.json", "ext4 file (dontcache = the kernel's native RWF_DONTCACHE)"),
                        ("memcg-file-emulated.json", "ext4 file, endio's emulation forced (--dontcache-emulated)")):
        d = load(os.path.join(OUT, name))
        if d is None:
            print(f"\nmissing: {name}")
            continue
        any_ = True
        mc = d.get("memcg")
        lim = ""
        if isinstance(mc, dict):
            lim = f", memcg limit {mc.get('limit_bytes', 0) / MiB:.0f} MiB" if mc.get("limit_bytes") else ""
        print(f"\n### {title}{lim}\n")
        rows = []
        series = []
        for j in d["jobs"]:
            mode = j["mode"]
            dc = j.get("dontcache")
            if mode == "dontcache" and isinstance(dc, dict):
                how = dc.get("how") or dc.get("mode") or dc.get("kind")
                if how:
                    mode = f"dontcache ({how})"
            c = j["cache"]
            fs = j.get("end_fsync_s")
            rows.append([j["rw"], mode, f"{j['mib_per_s']:.0f}",
                         f"{j['lat_us']['p99'] / 1000:.2f}", f"{j['lat_us']['p999'] / 1000:.2f}",
                         f"{c['resident_max_bytes'] / MiB:.0f}", f"{c['resident_end_bytes'] / MiB:.0f}",
                         f"{100 * c['resident_end_bytes'] / max(1, j['bytes']):.1f} %",
                         f"{j['cpu']['user_s'] + j['cpu']['sys_s']:.2f}",
                         f"{fs:.2f}" if isinstance(fs, (int, float)) else "–",
                         "yes" if j.get("errors") == 0 and not j.get("error_message") else f"ERR {j.get('error_message')}"])
            s = j.get("series") or []
            series.append(f"- {j['rw']} {mode}: " + ", ".join(f"{x['mib_per_s']:.0f}" for x in s))
        print(table(["rw", "mode", "MiB/s", "p99 ms", "p99.9 ms", "resident max MiB",
                     "resident end MiB", "resident end / written", "CPU s", "end fsync s", "ok"], rows))
        print("\nPer-second throughput series (MiB/s, one value per second of each job):\n")
        print("\n".join(series))
    if not any_:
        print("missing: no memcg results")
        return
    memcg_goals()


def dc_jobs(paths):
    """{rw: [job]} of the dontcache jobs in these endio bench JSON files."""
    out = {}
    for p in paths:
        d = load(p)
        if not d:
            continue
        for j in d["jobs"]:
            if j["mode"] == "dontcache" and not j.get("errors"):
                out.setdefault(j["rw"], []).append(j)
    return out


def job(path, rw, mode):
    d = load(path)
    if not d:
        return None
    for j in d["jobs"]:
        if j["rw"] == rw and j["mode"] == mode and not j.get("errors"):
            return j
    return None


def memcg_goals():
    print("\n### Goals of dontcache under memory pressure (computed from the tables above)\n")
    rows = []
    loop = os.path.join(OUT, "memcg-loop.json")
    nat = os.path.join(OUT, "memcg-file-native.json")
    for rw in ("write", "read"):
        lb, ld = job(loop, rw, "buffered"), job(loop, rw, "dontcache")
        nb, nd = job(nat, rw, "buffered"), job(nat, rw, "dontcache")
        if lb and ld and nb and nd:
            lr = ld["mib_per_s"] / lb["mib_per_s"]
            nr = nd["mib_per_s"] / nb["mib_per_s"]
            rows.append([f"{rw}: endio dontcache/buffered on the loop device ≥ native RWF_DONTCACHE/buffered on the ext4 file",
                         f"{lr:.2f}× vs {nr:.2f}×", "met" if lr >= nr else "MISSED"])
    natives = dc_jobs([nat] + sorted(glob.glob(os.path.join(RAW, "memcg-file-native-*.json"))))
    emus = dc_jobs([os.path.join(OUT, "memcg-file-emulated.json")] +
                   sorted(glob.glob(os.path.join(RAW, "memcg-file-emulated-*.json"))))
    for rw in ("write", "read"):
        n = [j["mib_per_s"] for j in natives.get(rw, [])]
        e = [j["mib_per_s"] for j in emus.get(rw, [])]
        if n and e:
            r = statistics.mean(e) / statistics.mean(n)
            f = lambda xs: ", ".join(f"{x:.0f}" for x in xs)
            rows.append([f"{rw}: emulated ≥ 0.9× native on the same ext4 file (mean of alternating runs)",
                         f"{r:.2f}× (emulated {f(e)} MiB/s; native {f(n)} MiB/s)",
                         "met" if r >= 0.9 else "MISSED"])
    lb, ld = job(loop, "write", "buffered"), job(loop, "write", "dontcache")
    if lb and ld:
        rows.append(["p99 write latency of dontcache below buffered's (loop device)",
                     f"{ld['lat_us']['p99'] / 1000:.1f} ms vs {lb['lat_us']['p99'] / 1000:.1f} ms "
                     f"(p99.9 {ld['lat_us']['p999'] / 1000:.1f} vs {lb['lat_us']['p999'] / 1000:.1f})",
                     "met" if ld["lat_us"]["p99"] < lb["lat_us"]["p99"] else "MISSED"])
    for name, label in ((loop, "loop device"), (nat, "ext4 file, native"),
                        (os.path.join(OUT, "memcg-file-emulated.json"), "ext4 file, emulated")):
        for rw in ("write", "read"):
            j = job(name, rw, "dontcache")
            if j:
                mx = j["cache"]["resident_max_bytes"] / max(1, j["bytes"])
                end = j["cache"]["resident_end_bytes"] / max(1, j["bytes"])
                rows.append([f"residency ≤ 5 % of bytes moved: {label}, {rw}",
                             f"max {100 * mx:.1f} %, end {100 * end:.1f} %",
                             "met" if mx <= 0.05 else "MISSED"])
    print(table(["goal", "measured", "verdict"], rows))


print("# Results of one scripts/bench.sh run\n")
print("## Completion path: endio-harness bench-completion")
completion_section("completion.json", "default window (--inflight 4096)")
completion_section("completion-inflight32.json", "device-like window (--inflight 32)")
deferral_section()
vs_section()
memcg_section()
