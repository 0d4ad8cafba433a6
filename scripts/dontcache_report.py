#!/usr/bin/env python3
"""Tables (Markdown) from one run of scripts/dontcache_bench.sh:
dontcache_report.py OUT_DIR.

Reads OUT_DIR/machine.txt and OUT_DIR/raw/sN-TARGET-PATTERN-CONTENDER-rREP.json
(one endio bench job each) with the machine's busy CPU seconds during each
run next to it (.cpu). Repetitions are summarised as the median and the
spread (min-max, n); every ratio is a ratio of two medians. Failed or
missing runs are left out and counted; never fails on numbers.
"""
import glob
import os
import re
import sys

from report_lib import fmt, load, median, median_spread, ratio, table

OUT = sys.argv[1] if len(sys.argv) > 1 else "target/dontcache-bench"
RAW = os.path.join(OUT, "raw")
MiB = 1024 * 1024
NAME = re.compile(r"^(s\d)-(file|loop)-(\w+)-(\w+)-r(\d+)\.json$")


def read_float(path):
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------- the runs
class Run:
    """One endio bench job of the script (the first job of its JSON)."""

    def __init__(self, doc, job, machine_cpu):
        self.doc = doc
        self.j = job
        self.machine_cpu = machine_cpu

    def get(self, *keys):
        x = self.j
        for k in keys:
            if not isinstance(x, dict):
                return None
            x = x.get(k)
        return x

    @property
    def mibs(self):
        return self.j.get("mib_per_s")

    def lat(self, p):
        return self.get("lat_us", p)

    @property
    def cpu_s(self):
        c = self.j.get("cpu") or {}
        if c.get("user_s") is None or c.get("sys_s") is None:
            return None
        return c["user_s"] + c["sys_s"]

    @property
    def cpu_us_per_mib(self):
        mib = (self.j.get("bytes") or 0) / MiB
        return self.cpu_s * 1e6 / mib if self.cpu_s is not None and mib else None

    @property
    def size(self):
        return (self.doc.get("target") or {}).get("size_bytes")

    @property
    def ios(self):
        return sum((self.j.get(d) or {}).get("total_ios") or 0 for d in ("read", "write"))

    @property
    def dc_kind(self):
        dc = self.j.get("dontcache")
        return dc.get("mode") if isinstance(dc, dict) else None

    @property
    def short(self):
        """Stopped by --runtime before the whole size was moved."""
        size = self.size
        return bool(size) and (self.j.get("bytes") or 0) < size

    def memcg(self, *keys):
        x = self.doc.get("memcg")
        for k in keys:
            if not isinstance(x, dict):
                return None
            x = x.get(k)
        return x


def collect():
    """{(section, target, pattern, contender): [Run]} and the failed tags."""
    res, failed = {}, []
    for p in sorted(glob.glob(os.path.join(RAW, "s*.json"))):
        m = NAME.match(os.path.basename(p))
        if not m:
            continue
        sec, tgt, pat, who, _ = m.groups()
        d = load(p)
        jobs = [j for j in (d or {}).get("jobs", []) if j.get("clone") is None]
        if not jobs or jobs[0].get("errors") or jobs[0].get("error"):
            failed.append(os.path.basename(p)[:-5])
            continue
        res.setdefault((sec, tgt, pat, who), []).append(
            Run(d, jobs[0], read_float(p[:-5] + ".cpu")))
    # runs whose JSON is missing altogether (the run failed before writing it)
    for p in sorted(glob.glob(os.path.join(RAW, "s*.txt"))):
        tag = os.path.basename(p)[:-4]
        if not os.path.exists(os.path.join(RAW, tag + ".json")) and tag not in failed:
            failed.append(tag)
    return res, failed


RES, FAILED = collect()


def runs(sec, tgt, pat, who):
    return RES.get((sec, tgt, pat, who), [])


def col(rs, f):
    return [x for x in (f(r) for r in rs) if x is not None]


def kinds(rs):
    """The dontcache mode(s) the runs reported (native, emulated)."""
    ks = sorted({r.dc_kind for r in rs if r.dc_kind})
    return "/".join(ks) if ks else "–"


def notes_for(rs):
    """Runs of a sequential pattern that the time cap stopped early (the
    random ones are capped by design)."""
    out = []
    rs = [r for r in rs if not str(r.j.get("rw", "")).startswith("rand")]
    if any(r.short for r in rs):
        out.append(f"{sum(r.short for r in rs)} of {len(rs)} stopped at the time cap")
    return "; ".join(out)


PATTERNS = {"seqwrite": "1 MiB sequential write", "seqread": "1 MiB sequential read",
            "randwrite": "4 KiB random write", "randread": "4 KiB random read"}


def requested():
    """The sections the run was asked for (machine.txt's 'sections' line)."""
    try:
        with open(os.path.join(OUT, "machine.txt")) as f:
            m = re.search(r"^sections: ([\d,]+)", f.read(), re.M)
    except OSError:
        m = None
    return set(m.group(1).split(",")) if m else {"1", "2", "3", "4"}


def missing(sec):
    """True (and says why) when section SEC has no runs."""
    if any(k[0] == sec for k in RES):
        return False
    if sec[1:] not in requested():
        print("not requested (--sections)")
    else:
        print("no results (see Skipped and the runs left out below)")
    return True


# ----------------------------------------------------------- section 1
RECLAIM = [  # memory.stat counters, in the order shown, where the kernel has them
    ("pgscan", "pgscan"), ("pgsteal", "pgsteal"),
    ("workingset_refault_file", "refault file"), ("pgpgout", "pgpgout (folios)"),
]


def section1():
    print("\n## 1. dontcache under memory pressure (loop device, memory cgroup)\n")
    if missing("s1"):
        return
    some = next(r for k, v in RES.items() if k[0] == "s1" for r in v)
    limit = some.memcg("limit_bytes")
    print(f"`endio bench --target LOOP --memcg {fmt((limit or 0) / MiB, 0)}M --bs 1M --iodepth 16`, "
          f"{fmt((some.size or 0) / MiB, 0)} MiB moved per job, memory cgroup {some.memcg('version')}; "
          "one process per job, the write then the read of each mode, the order of the modes "
          "rotating from one repetition to the next. Writes are timed to the end of their fsync. "
          "Median (min–max, n repetitions). CPU = the endio process's user + system time "
          "(its threads, io_uring workers included; not the loop device's or the kernel's "
          "writeback threads); machine CPU = busy time of all CPUs during the run, every "
          "process included (other load on the machine too).\n")
    for pat in ("seqwrite", "seqread"):
        print(f"\n### {PATTERNS[pat]}\n")
        rows = []
        for mode in ("dontcache", "buffered", "direct"):
            rs = runs("s1", "loop", pat, mode)
            label = mode if mode != "dontcache" else f"dontcache ({kinds(rs)})"
            rows.append([label, median_spread(col(rs, lambda r: r.mibs)),
                         median_spread(col(rs, lambda r: r.lat("p99"))),
                         median_spread(col(rs, lambda r: r.lat("p999"))),
                         median_spread(col(rs, lambda r: r.cpu_s), 2),
                         median_spread(col(rs, lambda r: r.cpu_us_per_mib)),
                         median_spread(col(rs, lambda r: r.machine_cpu), 2),
                         notes_for(rs)])
        print(table(["mode", "MiB/s", "p99 µs", "p99.9 µs", "CPU s", "CPU µs/MiB",
                     "machine CPU s", "note"], rows))
        # reclaim: whatever the memory cgroup reported
        rows = []
        keys = []
        for mode in ("dontcache", "buffered", "direct"):
            for r in runs("s1", "loop", pat, mode):
                for k in (r.memcg("stat_delta") or {}):
                    if k not in keys:
                        keys.append(k)
        shown = [(k, label) for k, label in RECLAIM if k in keys]
        has_high = any("high" in (r.memcg("events") or {})
                       for mode in ("dontcache", "buffered", "direct")
                       for r in runs("s1", "loop", pat, mode))
        for mode in ("dontcache", "buffered", "direct"):
            rs = runs("s1", "loop", pat, mode)
            row = [mode,
                   median_spread(col(rs, lambda r: (r.memcg("peak_bytes") or 0) / MiB
                                     if r.memcg("peak_bytes") is not None else None)),
                   median_spread(col(rs, lambda r: r.memcg("limit_hits")))]
            if has_high:
                row.append(median_spread(col(rs, lambda r: (r.memcg("events") or {}).get("high"))))
            row.append(fmt(max(col(rs, lambda r: (r.memcg("events") or {}).get("oom_kill")), default=None), 0))
            for k, _ in shown:
                row.append(median_spread(col(rs, lambda r, k=k: (r.memcg("stat_delta") or {}).get(k))))
            row.append(median_spread(col(rs, lambda r: r.get("cache", "resident_max_bytes") / MiB
                                         if r.get("cache", "resident_max_bytes") is not None else None)))
            rows.append(row)
        print("\nReclaim in the memory cgroup during the job: limit hits (v2 memory.events max, "
              "v1 memory.failcnt), the growth of memory.stat counters: pgscan, pgsteal and "
              "refault file (workingset_refault_file: pages read again soon after reclaim took "
              "them) count pages; cgroup v1 has no pgscan/pgsteal, and its pgpgout counts "
              "uncharge events, one per folio of any size (reclaimed, dropped by dontcache or "
              "truncated), so it is not a page count. target cache max: the most of the device "
              "seen in the page cache during the job.\n")
        print(table(["mode", "peak MiB", "limit hits"] + (["high events"] if has_high else []) + ["OOM kills"]
                    + [f"{label}" for _, label in shown] + ["target cache max MiB"], rows))
        d, b = runs("s1", "loop", pat, "dontcache"), runs("s1", "loop", pat, "buffered")
        m = lambda rs, f: median(col(rs, f))
        print("\ndontcache / buffered (ratio of the medians): "
              f"MiB/s {fmt(ratio(m(d, lambda r: r.mibs), m(b, lambda r: r.mibs)))}, "
              f"p99 {fmt(ratio(m(d, lambda r: r.lat('p99')), m(b, lambda r: r.lat('p99'))))}, "
              f"p99.9 {fmt(ratio(m(d, lambda r: r.lat('p999')), m(b, lambda r: r.lat('p999'))))}, "
              f"CPU µs/MiB {fmt(ratio(m(d, lambda r: r.cpu_us_per_mib), m(b, lambda r: r.cpu_us_per_mib)))}"
              + "".join(f", {label} {fmt(ratio(m(d, lambda r, k=k: (r.memcg('stat_delta') or {}).get(k)), m(b, lambda r, k=k: (r.memcg('stat_delta') or {}).get(k))))}"
                        for k, label in shown))


# ----------------------------------------------------------- section 2
def section2():
    print("\n## 2. Write tail latency: dontcache vs direct\n")
    if missing("s2"):
        return
    print("`endio bench --iodepth 16`, no memory cgroup; 1 MiB sequential writes of the whole "
          "target, 4 KiB random writes capped in time; writes timed to the end of their fsync. "
          "Latency: submission to completion of each write (a dontcache or buffered write "
          "completes once copied to the page cache unless it is throttled; a direct one once "
          "the device has it). Median (min–max, n repetitions); dontcache/direct is the ratio "
          "of the medians.\n")
    rows = []
    for tgt in ("file", "loop"):
        for pat in ("seqwrite", "randwrite"):
            d, x = runs("s2", tgt, pat, "dontcache"), runs("s2", tgt, pat, "direct")
            if not d and not x:
                continue
            dm, xm = median(col(d, lambda r: r.lat("p999"))), median(col(x, lambda r: r.lat("p999")))
            rows.append([tgt, PATTERNS[pat], kinds(d),
                         median_spread(col(d, lambda r: r.lat("p999"))),
                         median_spread(col(x, lambda r: r.lat("p999"))),
                         fmt(ratio(dm, xm)),
                         f"{fmt(median(col(d, lambda r: r.lat('p99'))), 0)} / {fmt(median(col(x, lambda r: r.lat('p99'))), 0)}",
                         f"{fmt(median(col(d, lambda r: r.mibs)), 0)} / {fmt(median(col(x, lambda r: r.mibs)), 0)}",
                         fmt(median(col(d + x, lambda r: r.ios)), 0),
                         notes_for(d + x)])
    print(table(["target", "pattern", "dontcache", "p99.9 µs dontcache", "p99.9 µs direct",
                 "dontcache/direct", "p99 µs dontcache / direct", "MiB/s dontcache / direct",
                 "I/Os per job", "note"], rows))
    if any(isinstance(r[8], str) and r[8] != "n/a" and float(r[8].replace(",", "")) < 10000
           for r in rows):
        print("\nWith fewer than 10,000 I/Os per job, p99.9 is one of the few slowest I/Os of "
              "each job (near its maximum): read those cells with their spread.")


# ----------------------------------------------------------- section 3
def section3():
    print("\n## 3. Sequential read: dontcache vs buffered on a file\n")
    if missing("s3"):
        return
    d, b = runs("s3", "file", "seqread", "dontcache"), runs("s3", "file", "seqread", "buffered")
    size = next((r.size for r in d + b if r.size), 0)
    print(f"`endio bench --rw read --bs 1M --iodepth 16` of a {fmt(size / MiB, 0)} MiB file, "
          "its page cache dropped before each job; residency = the file's pages in the page "
          "cache, as a share of its size. Median (min–max, n repetitions).\n")
    pct = lambda k: (lambda r: 100 * r.get("cache", k) / r.size
                     if r.size and r.get("cache", k) is not None else None)
    rows = []
    for mode, rs in (("dontcache", d), ("buffered", b)):
        rows.append([mode if mode != "dontcache" else f"dontcache ({kinds(rs)})",
                     median_spread(col(rs, lambda r: r.mibs)),
                     median_spread(col(rs, lambda r: r.lat("p99"))),
                     median_spread(col(rs, pct("resident_end_bytes")), 1),
                     median_spread(col(rs, pct("resident_max_bytes")), 1),
                     median_spread(col(rs, lambda r: r.cpu_us_per_mib)),
                     notes_for(rs)])
    print(table(["mode", "MiB/s", "p99 µs", "resident end / size %", "resident max / size %",
                 "CPU µs/MiB", "note"], rows))
    print(f"\ndontcache / buffered (ratio of the median MiB/s): "
          f"{fmt(ratio(median(col(d, lambda r: r.mibs)), median(col(b, lambda r: r.mibs))))}")


# ----------------------------------------------------------- section 4
def section4():
    print("\n## 4. The kernel's dontcache vs endio's emulation on the same file\n")
    if missing("s4"):
        return
    print("`endio bench --mode dontcache` (native: the kernel's flag where it has it for the "
          "file) vs `--mode dontcache --dontcache-emulated`, `--iodepth 16`; 4 KiB random jobs "
          "capped in time. Median (min–max, n repetitions); emulated/native is the ratio of the "
          "medians. cache max = the most of the file seen in the page cache during the job.\n")
    rows = []
    warn = []
    for pat in ("seqwrite", "seqread", "randwrite", "randread"):
        n, e = runs("s4", "file", pat, "native"), runs("s4", "file", pat, "emulated")
        if not n and not e:
            continue
        if n and kinds(n) != "native":
            warn.append(f"{PATTERNS[pat]}: the runs without --dontcache-emulated reported "
                        f"dontcache mode {kinds(n)}, so this kernel or filesystem has no native "
                        "dontcache for them and the comparison is emulated against emulated")
        cm = lambda rs: col(rs, lambda r: r.get("cache", "resident_max_bytes") / MiB
                            if r.get("cache", "resident_max_bytes") is not None else None)
        rows.append([PATTERNS[pat],
                     median_spread(col(n, lambda r: r.mibs)), median_spread(col(e, lambda r: r.mibs)),
                     fmt(ratio(median(col(e, lambda r: r.mibs)), median(col(n, lambda r: r.mibs)))),
                     median_spread(col(n, lambda r: r.lat("p99"))), median_spread(col(e, lambda r: r.lat("p99"))),
                     fmt(ratio(median(col(e, lambda r: r.lat("p99"))), median(col(n, lambda r: r.lat("p99"))))),
                     median_spread(cm(n), 1), median_spread(cm(e), 1),
                     f"{fmt(median(col(n, lambda r: r.cpu_us_per_mib)), 0)} / {fmt(median(col(e, lambda r: r.cpu_us_per_mib)), 0)}",
                     f"{fmt(median(col(n, lambda r: r.machine_cpu)), 2)} / {fmt(median(col(e, lambda r: r.machine_cpu)), 2)}",
                     notes_for(n + e)])
    print(table(["pattern", "MiB/s native", "MiB/s emulated", "emulated/native",
                 "p99 µs native", "p99 µs emulated", "p99 emulated/native",
                 "cache max MiB native", "cache max MiB emulated",
                 "CPU µs/MiB native / emulated", "machine CPU s native / emulated", "note"], rows))
    for w in warn:
        print(f"\nNote: {w}.")


def header():
    print("# dontcache against its alternatives: scripts/dontcache_bench.sh\n")
    try:
        with open(os.path.join(OUT, "machine.txt")) as f:
            text = f.read()
    except OSError:
        print("machine.txt is missing")
        return
    print("\n".join("    " + line for line in text.splitlines()))
    if "mode: quick" in text:
        print("\nQuick run: tiny sizes (section 1 moves less than the memory cgroup's limit, "
              "so there is no memory pressure) and few repetitions; it checks that every path "
              "runs, its numbers mean little.")


header()
section1()
section2()
section3()
section4()
if FAILED:
    print(f"\nRuns left out of the tables (failed, I/O errors or no JSON): {', '.join(FAILED)}")
