#!/usr/bin/env python3
"""Tables (Markdown) from one run of scripts/bench.sh: bench_report.py OUT_DIR.

Reads OUT_DIR/completion*.json, OUT_DIR/raw/deferral-*.txt,
OUT_DIR/raw/vs-*.json (endio bench, fio, fio with registered buffers and
files), OUT_DIR/memcg-*.json. Repeated runs are summarised as the median
and the spread (min-max); ratios are ratios of medians. The goals of the
engine's hot path are judged from those numbers. Missing pieces are
reported as missing; never fails on numbers.
"""
import glob
import json
import os
import re
import statistics
import sys

from report_lib import fmt, load, median, median_spread, ratio, table

OUT = sys.argv[1] if len(sys.argv) > 1 else "docs/bench"
RAW = os.path.join(OUT, "raw")
MiB = 1024 * 1024


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
CPU_IO = re.compile(r"cpu/io (\d+) ns")
DEFERRAL = re.compile(r"deferral-(\w+)-qd(\d+)-(deferred|reaper|inline)-(\d+)\.txt")


def deferral_results():
    """{(backend, qd): {how: [{"iops", "cs", "cpu_ns"}]}} of section 2."""
    res = {}
    for p in glob.glob(os.path.join(RAW, "deferral-*.txt")):
        m = DEFERRAL.match(os.path.basename(p))
        if not m:
            continue
        backend, qd, how, _ = m.groups()
        for line in open(p):
            lm = LINE.match(line)
            if lm:
                cm = CPU_IO.search(line)
                res.setdefault((backend, int(qd)), {}).setdefault(how, []).append({
                    "iops": float(lm.group(2)), "cs": float(lm.group(4)),
                    "cpu_ns": float(cm.group(1)) if cm else None})
    return res


def deferral_section(res):
    print("\n## Deferral overhead in the engine: 4 KiB random reads, deferred vs inline\n")
    if not res:
        print("missing: no deferral results")
        return
    print("engine_throughput example: every handler submits the next I/O (closed loop). "
          "deferred = handlers flagged for task context (the default of endio), run by the "
          "worker of the CPU, which drives that CPU's ring itself; via reaper = the same "
          "handlers handed over from the ring's reaper thread (`--reaper`, "
          "`EngineBuilder::worker_driven(false)`); inline = unflagged, run in atomic "
          "context by the thread that reaps. null: the completion path alone; uring: O_DIRECT "
          "reads of the temp file. Median (min–max, n runs); the ratios are of the medians. "
          "CPU = the process's user + system time (getrusage) over the run, per I/O.\n")
    rows = []
    for backend in ("null", "uring"):
        for qd in sorted(q for b, q in res if b == backend):
            r = res[(backend, qd)]
            col = lambda how, k: [x[k] for x in r.get(how, []) if x[k] is not None]
            d, v, i = col("deferred", "iops"), col("reaper", "iops"), col("inline", "iops")
            rows.append([backend, qd, median_spread(d), median_spread(v), median_spread(i),
                         fmt(ratio(median(d), median(i))), fmt(ratio(median(v), median(i))),
                         median_spread(col("deferred", "cpu_ns")),
                         median_spread(col("reaper", "cpu_ns")),
                         median_spread(col("inline", "cpu_ns")),
                         fmt(median(col("deferred", "cs"))), fmt(median(col("reaper", "cs"))),
                         fmt(median(col("inline", "cs")))])
    print(table(["backend", "QD", "IOPS deferred", "IOPS deferred via reaper", "IOPS inline",
                 "deferred/inline", "via reaper/inline", "CPU ns/I/O deferred",
                 "CPU ns/I/O via reaper", "CPU ns/I/O inline", "ctxsw/I/O deferred",
                 "ctxsw/I/O via reaper", "ctxsw/I/O inline"], rows))


# -------------------------------------------------------------- vs fio
def endio_job(path):
    d = load(path)
    if not d or not d.get("jobs"):
        return None
    j = d["jobs"][0]
    if j.get("errors"):
        return None
    ios = j["read"]["total_ios"] + j["write"]["total_ios"]
    cpu = j["cpu"]["user_s"] + j["cpu"]["sys_s"]
    return {"mibs": j["mib_per_s"], "p99": j["lat_us"]["p99"], "iops": j["iops"],
            "cpu_us": 1e6 * cpu / ios if ios else None,
            "cs": j["ctx"] / ios if ios and "ctx" in j else None}


def fio_job(path):
    d = load(path)
    if not d or not d.get("jobs"):
        return None
    j = d["jobs"][0]
    if j.get("error"):
        return None
    side = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    ios = j["read"]["total_ios"] + j["write"]["total_ios"]
    # usr_cpu and sys_cpu: percent of the job's runtime (ms)
    runtime_s = (j.get("job_runtime") or max(j["read"]["runtime"], j["write"]["runtime"])) / 1000.0
    cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100.0 * runtime_s
    return {"mibs": side["bw_bytes"] / MiB, "p99": pct.get("99.000000", 0) / 1000.0,
            "iops": side["iops"],
            "cpu_us": 1e6 * cpu / ios if ios else None,
            "cs": j["ctx"] / ios if ios and "ctx" in j else None}


TOOLS = ("endio", "endioplain", "fio", "fiofixed")
VS = re.compile(r"vs-(\w+?)-(\w+)-(endio|endioplain|fio|fiofixed)-(\d+)\.json")


def vs_results():
    """{(target, workload): {tool: [job]}} of section 3."""
    res = {}
    for p in glob.glob(os.path.join(RAW, "vs-*.json")):
        m = VS.match(os.path.basename(p))
        if not m:
            continue
        target, wl, tool, _ = m.groups()
        r = endio_job(p) if tool.startswith("endio") else fio_job(p)
        if r:
            res.setdefault((target, wl), {}).setdefault(tool, []).append(r)
    return res


def workloads(res):
    """The workloads run, in order: sequential write, read, then random reads by QD."""
    names = {wl for _, wl in res}
    rr = sorted((n for n in names if n.startswith("randread")), key=lambda n: int(n[8:] or 0))
    return [n for n in ("seqwrite", "seqread") if n in names] + rr


def wl_desc(wl):
    if wl == "seqwrite":
        return "1 MiB seq write, buffered (+end fsync), QD16"
    if wl == "seqread":
        return "1 MiB seq read, buffered, QD16"
    return f"4 KiB rand read, direct, QD{wl[8:]}"


def vs_metric(wl):
    """(key, unit, decimals): IOPS for the random reads, MiB/s for the rest."""
    return ("iops", "IOPS", 0) if wl.startswith("randread") else ("mibs", "MiB/s", 0)


def vs_section(res):
    print("\n## endio vs fio: same target, workload, size and runtime\n")
    if not res:
        print("missing: no endio-vs-fio results")
        return
    print("endio = `endio bench` (handlers deferred to task context, buffers registered "
          "with the rings: its defaults); endio plain = the same with "
          "`--registered-buffers=false`; "
          "fio = `--ioengine=io_uring` with the same options and `--invalidate=1`; "
          "fio fixed = the same plus `--fixedbufs=1 --registerfiles=1` (the upper reference). "
          "Who goes first rotates between repetitions, and each buffered workload is "
          "preceded by an untimed pass of the same kind over the target, so that no "
          "contender pays alone for memory the hypervisor took back (see machine.txt). "
          "Median (min–max, n runs); ratios are of the medians.\n")
    rows = []
    cost = []
    for target in ("file", "loop"):
        for wl in workloads(res):
            r = res.get((target, wl))
            if not r:
                continue
            key, unit, n = vs_metric(wl)
            col = lambda tool, k: [x[k] for x in r.get(tool, []) if x[k] is not None]
            m = {t: median(col(t, key)) for t in TOOLS}
            rows.append([target, wl_desc(wl), unit] +
                        [median_spread(col(t, key), n) for t in TOOLS] +
                        [fmt(ratio(m["endio"], m["fio"])), fmt(ratio(m["endio"], m["fiofixed"])),
                         fmt(ratio(m["endioplain"], m["fio"]))])
            cost.append([target, wl_desc(wl)] +
                        [" / ".join(fmt(median(col(t, k)), d) for t in TOOLS)
                         for k, d in (("cpu_us", 2), ("cs", 3), ("p99", 0))])
    print(table(["target", "workload", "unit", "endio", "endio plain", "fio", "fio fixed",
                 "endio/fio", "endio/fio fixed", "endio plain/fio"], rows))
    print("\nCost per I/O, medians, endio / endio plain / fio / fio fixed. CPU: user + system time of the "
          "process (endio: getrusage over the job; fio: `usr_cpu` + `sys_cpu` × the job's "
          "runtime) per I/O; context switches: endio's getrusage count, fio's `ctx`, per I/O.\n")
    print(table(["target", "workload", "CPU µs/I/O", "ctxsw/I/O", "p99 µs"], cost))


# ------------------------------------------------ goals of the hot path
def handoff_overhead(name):
    """(ratio, detail) of the completion path's hand-off overhead at
    saturation: (endio-adaptive − inline) / (cheapest rival − inline),
    CPU ns per completion."""
    d = load(os.path.join(OUT, name))
    if not d:
        return None, f"{name} missing"
    sat = {c.get("contender"): (c.get("cpu") or {}).get("ns_per_completion")
           for c in d.get("cells", []) if c.get("load") == "saturation"}
    e, i = sat.get("endio-adaptive"), sat.get("inline")
    rivals = {k: v for k, v in sat.items()
              if k in ("crossbeam", "std-mpsc", "mutex-condvar", "tokio-spawn-blocking") and v is not None}
    if e is None or i is None or not rivals:
        return None, "saturation cells of endio-adaptive, inline or the rivals missing"
    best = min(rivals, key=rivals.get)
    detail = (f"endio-adaptive {e:.0f} ns, inline {i:.0f} ns, cheapest rival {best} "
              f"{rivals[best]:.0f} ns CPU per completion")
    if rivals[best] - i <= 0:
        return None, detail + " (the rival costs no more than inline: no hand-off cost to compare with)"
    return (e - i) / (rivals[best] - i), detail


def goals_section(dres, vres):
    print("\n## Goals of the engine's hot path (computed from the tables above)\n")
    rows = []

    def goal(text, measured, ok, detail=""):
        verdict = "not run" if measured is None else ("met" if ok(measured) else "missed")
        rows.append([text, fmt(measured), verdict, detail])

    def vs(target, wl, tool):
        r = vres.get((target, wl), {})
        key = vs_metric(wl)[0]
        e = median([x[key] for x in r.get("endio", [])])
        o = median([x[key] for x in r.get(tool, [])])
        unit = vs_metric(wl)[1]
        detail = f"{fmt(e, 0)} vs {fmt(o, 0)} {unit}" if e is not None and o is not None else "not run"
        return ratio(e, o), detail

    for target in ("file", "loop"):
        m, det = vs(target, "randread16", "fio")
        goal(f"{target}: endio/fio, 4 KiB rand read direct QD16 ≥ 1.0", m, lambda x: x >= 1.0, det)
        m, det = vs(target, "randread16", "fiofixed")
        goal(f"{target}: endio/fio fixed (registered buffers+files), 4 KiB rand read direct QD16 ≥ 0.95",
             m, lambda x: x >= 0.95, det)
    for target in ("file", "loop"):
        for wl in ("randread1", "randread64", "seqread", "seqwrite"):
            m, det = vs(target, wl, "fio")
            goal(f"{target}: endio/fio, {wl_desc(wl)} ≥ 1.0", m, lambda x: x >= 1.0, det)
    r = dres.get(("null", 16), {})
    d = median([x["iops"] for x in r.get("deferred", [])])
    i = median([x["iops"] for x in r.get("inline", [])])
    goal("null backend: deferred/inline IOPS, QD16 ≥ 0.8", ratio(d, i), lambda x: x >= 0.8,
         f"{fmt(d, 0)} vs {fmt(i, 0)} IOPS" if d is not None and i is not None else "not run")
    for name, window in (("completion-inflight32.json", 32), ("completion.json", 4096)):
        m, det = handoff_overhead(name)
        goal(f"completion path, window {window}: hand-off overhead (endio − inline) / "
             f"(cheapest rival − inline), CPU ns per completion at saturation ≤ 0.5",
             m, lambda x: x <= 0.5, det)
    print(table(["goal", "measured", "verdict", "detail"], rows))


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
DEFERRAL_RES = deferral_results()
VS_RES = vs_results()
deferral_section(DEFERRAL_RES)
vs_section(VS_RES)
goals_section(DEFERRAL_RES, VS_RES)
memcg_section()
