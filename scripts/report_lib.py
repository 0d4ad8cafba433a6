"""What the benchmark reports share: reading a run's JSON, medians with
their spread, ratios and markdown tables."""

import json
import statistics


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median_spread(xs, n=0):
    """'median (min–max, n=K)' of the runs, n decimals."""
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return f"{m:,.{n}f} (n=1)"
    return f"{m:,.{n}f} ({min(xs):,.{n}f}–{max(xs):,.{n}f}, n={len(xs)})"


def median(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    """a / b of two medians (None when either is missing or b is 0)."""
    return a / b if a is not None and b else None


def fmt(x, n=2):
    return "n/a" if x is None else f"{x:,.{n}f}"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)
