#!/usr/bin/env python3
"""Summarises one run of run.sh as a Markdown table.

    report.py results.jsonl [RUN_ID]     (default: the newest run)

Per workload and target: the median over rounds (min-max beside it) of
requests/s, p50 and p99 latency, GB/s, server CPU seconds per GB, and peak
RSS; then the ratio of unimirror to nginx-static and to the best peer.
"""
import json
import statistics
import sys

# The target each workload measures unimirror as, and what "better" means.
UNIMIRROR = {"small-disk": "unimirror-nomem"}
HIGHER = {"small-mem": "rps", "small-disk": "rps", "small-cold": "rps",
          "large-hot": "gbps", "cold-200": "seconds", "switch": "flip_to_first_ms"}
LOWER_IS_BETTER = {"seconds", "flip_to_first_ms"}


def load(path, run):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    runs = sorted({r["run"] for r in rows})
    run = run or runs[-1]
    return run, [r for r in rows if r["run"] == run]


def figures(r):
    f = dict(r)
    secs = r.get("seconds") or 0
    if secs and "requests" in r and r["workload"] != "cold-200":
        f["rps"] = r["requests"] / secs
    if secs and r.get("bytes"):
        f["gbps"] = r["bytes"] / secs / 1e9
        if r.get("cpu_s") is not None:
            f["cpu_s_per_gb"] = r["cpu_s"] / (r["bytes"] / 1e9)
    return f


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main():
    run, rows = load(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    machine = next((r for r in rows if r["workload"] == "machine"), None)
    print(f"run {run}" + (f", machine {machine['busy_percent']}% busy before it, "
                          f"{machine['cpus']} CPUs" if machine else ""))
    print()
    print("| workload | target | req/s | p50 ms | p99 ms | GB/s | CPU s/GB | seconds | origin read | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by = {}
    for r in rows:
        if r["workload"] == "machine":
            continue
        by.setdefault((r["workload"], r["target"]), []).append(figures(r))
    medians = {}
    for (w, t), rs in by.items():
        col = lambda k: [r.get(k) for r in rs]
        ms = lambda k: [None if v is None else v / 1000 for v in col(k)]
        mib = [None if v is None else v / 1024 for v in col("rss_kib")]
        key = HIGHER.get(w)
        if key:
            vals = [v for v in col(key) if v is not None]
            if vals:
                medians[(w, t)] = statistics.median(vals)
        seconds = col("flip_to_first_ms") if w == "switch" else col("seconds")
        print(f"| {w} | {t} | {spread(col('rps'), '{:,.0f}')} | {spread(ms('p50_us'), '{:.2f}')} "
              f"| {spread(ms('p99_us'), '{:.2f}')} | {spread(col('gbps'), '{:.2f}')} "
              f"| {spread(col('cpu_s_per_gb'), '{:.2f}')} "
              f"| {spread(seconds, '{:.3f}') + (' ms' if w == 'switch' else '')} "
              f"| {spread(col('origin_ratio'), '{:.2f}x')} | {spread(mib, '{:.0f}')} |")
    print()
    print("| workload | measure | unimirror / nginx-static | unimirror vs best peer |")
    print("|---|---|---|---|")
    for w in dict.fromkeys(w for w, _ in by):
        key = HIGHER.get(w)
        ours = medians.get((w, UNIMIRROR.get(w, "unimirror")))
        if ours is None or w == "switch":
            continue
        lower = key in LOWER_IS_BETTER
        # Ratios read "higher is better for unimirror" either way.
        ratio = lambda other: (other / ours if lower else ours / other) if other else None
        static = ratio(medians.get((w, "nginx-static")))
        peers = {t: v for (ww, t), v in medians.items()
                 if ww == w and not t.startswith("unimirror")}
        best = (min if lower else max)(peers, key=peers.get) if peers else None
        fmt = lambda x: "-" if x is None else f"{x:.2f}x"
        print(f"| {w} | {key} | {fmt(static)} | {fmt(ratio(peers.get(best)))} ({best}) |")


if __name__ == "__main__":
    main()
