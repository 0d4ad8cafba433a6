#!/usr/bin/env python3
"""Tables (Markdown) from one run of the VM benchmark (ci/vm/bench.sh):
vm_report.py BENCH_OUT REPORT_MD.

BENCH_OUT holds the guest's output; each result is a JSON document whose
lines are tagged `@@j TAG:REP` (an endio bench job, or one run of the plain
pwritev2/preadv2 loop). Rows that ran several times are summarised as the
median with the spread (min-max, n); every ratio is a ratio of two medians,
from the same boot. Never fails on numbers.
"""
import json
import sys

from report_lib import fmt, median, median_spread, ratio, table

MiB = 1024 * 1024


def documents(path):
    """(tag, rep, doc) of every tagged JSON document, in order."""
    docs, cur, depth = [], None, 0
    for line in open(path, errors="replace"):
        if not line.startswith("@@j "):
            continue
        parts = line.rstrip("\n").split(" ", 2)
        tag, rest = parts[1], parts[2] if len(parts) > 2 else ""
        if cur is None:
            cur, depth = [tag, ""], 0
        cur[1] += rest + "\n"
        depth += rest.count("{") - rest.count("}")
        if depth == 0:
            name, _, rep = cur[0].partition(":")
            try:
                docs.append((name, int(rep or 1), json.loads(cur[1])))
            except ValueError:
                pass
            cur = None
    return docs


def rows(docs):
    """One dict per job run: key (rw, bs, who, mode) and its figures."""
    out = []
    for tag, rep, d in docs:
        memcg = " (memcg 256M)" if tag.startswith("memcg") else ""
        if "jobs" in d:
            for j in d["jobs"]:
                mode = j["mode"]
                if mode == "dontcache":
                    mode += " " + j["dontcache"]["mode"]
                out.append(run(j, "endio" + memcg, mode, rep))
        else:
            mode = d["mode"] + (" native" if d["mode"] == "dontcache" else "")
            out.append(run(d, "pwritev2 loop" + memcg, mode, rep))
    return out


def run(j, who, mode, rep):
    return {
        "key": (j["rw"], j["bs"], who, mode),
        "rep": rep,
        "mibs": j["mib_per_s"],
        "p50": j["lat_us"]["p50"],
        "p99": j["lat_us"]["p99"],
        "p999": j["lat_us"]["p999"],
        "cmax": j["cache"]["resident_max_bytes"] / MiB,
        "cend": j["cache"]["resident_end_bytes"] / MiB,
        "cpu": j["cpu"]["user_s"] + j["cpu"]["sys_s"],
        "errors": j["errors"],
    }


def main():
    runs = rows(documents(sys.argv[1]))
    keys = []
    for r in runs:
        if r["key"] not in keys:
            keys.append(r["key"])
    by = {k: [r for r in runs if r["key"] == k] for k in keys}
    reps = max((r["rep"] for r in runs), default=0)

    def col(k, f):
        return [r[f] for r in by.get(k, [])]

    head = ["job", "bs", "who", "mode", "MiB/s", "p50 µs", "p99 µs", "p99.9 µs",
            "cache max MiB", "cache end MiB", "CPU s", "errors"]
    all_rows = []
    for k in keys:
        rw, bs, who, mode = k
        all_rows.append([rw, f"{bs // 1024}k", who, mode,
                         median_spread(col(k, "mibs")), median_spread(col(k, "p50")),
                         median_spread(col(k, "p99")), median_spread(col(k, "p999")),
                         median_spread(col(k, "cmax")), median_spread(col(k, "cend")),
                         median_spread(col(k, "cpu"), 2), sum(col(k, "errors"))])
    # endio's emulation over the kernel's dontcache, same device, same boot.
    pairs = []
    for k in keys:
        rw, bs, who, mode = k
        if who.startswith("endio") and mode == "dontcache emulated":
            native = (rw, bs, who, "dontcache native")
            if native in by:
                pairs.append((k, native))
    ratio_rows = []
    for em, na in pairs:
        rw, bs, who, _ = em
        cells = [rw, f"{bs // 1024}k", who, f"{len(by[em])}/{len(by[na])}"]
        for f in ("mibs", "p99", "p999", "cmax", "cpu"):
            cells.append(fmt(ratio(median(col(em, f)), median(col(na, f)))))
        ratio_rows.append(cells)
    text = [f"Repetitions: {reps} (endio's native and emulated dontcache alternate; "
            "the other rows ran once).", "",
            table(head, all_rows), "",
            "endio's emulated dontcache over the kernel's own (endio's native "
            "passthrough), ratios of medians:", "",
            table(["job", "bs", "who", "runs em/na", "MiB/s", "p99", "p99.9",
                   "cache max", "CPU"], ratio_rows), ""]
    out = "\n".join(text)
    with open(sys.argv[2], "w") as f:
        f.write(out)
    print(out)


if __name__ == "__main__":
    main()
