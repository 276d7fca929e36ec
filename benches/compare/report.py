#!/usr/bin/env python3
"""Summarises one run of run.sh as a Markdown table.

    report.py results.jsonl [RUN_ID]     (default: the newest run)

Per workload and target: the median over rounds (min-max beside it) of
requests/s, p50 and p99 latency, GB/s, server CPU seconds per GB, and peak
RSS; then the ratio of unimirror to nginx-static and to the best peer; then
the million workload's own tables (memory, and latency in a 1M-file release
against a 10,000-file one), each figure beside its goal.
"""
import json
import statistics
import sys

# The target each workload measures unimirror as, and what "better" means.
UNIMIRROR = {"small-disk": "unimirror-nomem"}
HIGHER = {"small-mem": "rps", "small-disk": "rps", "small-cold": "rps",
          "large-hot": "gbps", "cold-200": "seconds", "switch": "flip_to_first_ms"}
LOWER_IS_BETTER = {"seconds", "flip_to_first_ms"}
# Goals of the million workload: resident memory at most this plus the
# memory tier's budget, and at most this many µs of latency more per
# request than in the 10,000-file volume.
MILLION_RSS_MIB = 100
MILLION_DELTA_US = 50


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


def spread(values, fmt, to="-"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}{to}{fmt.format(max(values))})"


def main():
    run, rows = load(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    machine = next((r for r in rows if r["workload"] == "machine"), None)
    print(f"run {run}" + (f", machine {machine['busy_percent']}% busy before it, "
                          f"{machine['cpus']} CPUs" if machine else ""))
    by = {}
    for r in rows:
        if r["workload"] not in ("machine", "million"):
            by.setdefault((r["workload"], r["target"]), []).append(figures(r))
    if by:
        comparison(by)
    million = [r for r in rows if r["workload"] == "million"]
    if million:
        million_tables(million)


def comparison(by):
    print()
    print("| workload | target | req/s | p50 ms | p99 ms | GB/s | CPU s/GB | seconds | origin read | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
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


def million_tables(rows):
    kind = lambda k: [r for r in rows if r.get("kind") == k]
    mib = lambda kib: kib / 1024
    print()
    print("million: a release of 1,000,000 files")
    print()
    print("| step | files | seconds | peak RSS MiB | note |")
    print("|---|---|---|---|---|")
    for g in kind("generate"):
        when = "this run" if g["generated"] else f"kept, generated {g['generated_at']}"
        print(f"| generate {g['tree'].rsplit('/', 1)[-1]} | {g['files']:,} | {g['seconds']:.1f} "
              f"| | {g['directories']:,} directories, {mib(g['bytes'] / 1024):.0f} MiB; {when} |")
    for r in kind("release"):
        when = "this run" if r["released"] else "an earlier run; tree unchanged"
        print(f"| release {r['volume']} | {r['files']:,} | {r['seconds']:.1f} | {mib(r['max_rss_kib']):.0f} "
              f"| release {r['id']} ({when}), {r['new_objects']:,} new objects, "
              f"manifest {mib(r['manifest_size'] / 1024):.1f} MiB |")

    samples = kind("rss")
    if samples:
        budget = mib(samples[0]["memory_tier_kib"])
        goal = MILLION_RSS_MIB + budget
        print()
        print(f"Daemon memory, /proc/PID/status (memory tier {budget:.0f} MiB; "
              f"goal: RSS <= {MILLION_RSS_MIB} MiB + the tier = {goal:.0f} MiB):")
        print()
        print("| sample | VmRSS MiB | VmHWM MiB | RssAnon MiB | RssFile MiB | met? |")
        print("|---|---|---|---|---|---|")
        what = {"start": "right after start (ready, one request in each volume)",
                "warm": "after the warm passes (VmHWM: peak since start)",
                "load": "after random load over all files (VmHWM: peak during it)"}
        for r in samples:
            worst = mib(max(r["vmrss_kib"], r["vmhwm_kib"]))
            print(f"| {what.get(r['at'], r['at'])} | {mib(r['vmrss_kib']):.1f} | {mib(r['vmhwm_kib']):.1f} "
                  f"| {mib(r['rssanon_kib']):.1f} | {mib(r['rssfile_kib']):.1f} "
                  f"| {'yes' if worst <= goal else 'no'} |")

    # Per (connections, volume): wrk's rows, and the daemon's own view of
    # the same runs (access log time, page faults), matched by round.
    runs, served = {}, {}
    for r in kind("latency"):
        f = figures(r)
        f["cpu_us"] = r["cpu_s"] / r["requests"] * 1e6 if r.get("requests") else None
        runs.setdefault((r["connections"], r["volume"]), []).append(f)
    for r in kind("served"):
        served.setdefault((r["connections"], r["volume"]), []).append(r)
    if not runs:
        return
    print()
    print("Latency, random paths, objects hot in the memory tier (median of rounds).")
    print("wrk's mean and percentiles include its correction for coordinated omission")
    print("(for each response slower than twice the mean interval it adds samples), so")
    print("a stall raises them. The daemon's time is its access log's: from the parsed")
    print("request to the end of the body. CPU µs: the daemon's CPU time per request.")
    print()
    print("| connections | volume | files | req/s | mean µs | p50 µs | p99 µs | daemon mean µs "
          "| daemon p99 µs | CPU µs | page faults (major) | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (c, v), rs in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] != "tenk")):
        col = lambda k: [r.get(k) for r in rs]
        ss = served.get((c, v), [])
        scol = lambda k: [r.get(k) for r in ss]
        faults = (f"{statistics.median(scol('minor_faults')):,.0f} "
                  f"({statistics.median(scol('major_faults')):,.0f})" if ss else "-")
        print(f"| {c} | {v} | {rs[0]['files']:,} | {spread(col('rps'), '{:,.0f}')} "
              f"| {spread(col('mean_us'), '{:.1f}')} | {spread(col('p50_us'), '{:.0f}')} "
              f"| {spread(col('p99_us'), '{:.0f}')} | {spread(scol('served_mean_us'), '{:.2f}')} "
              f"| {spread(scol('served_p99_us'), '{:.0f}')} | {spread(col('cpu_us'), '{:.2f}')} "
              f"| {faults} | {sum(col('errors'))} |")
    print()
    # Differences are taken within each round, where the two volumes ran
    # back to back, and their median over the rounds is shown (the machine
    # drifts more between rounds than between two neighbouring runs).
    by_round = {}
    for r in kind("latency"):
        by_round.setdefault((r["connections"], r["round"]), {}).setdefault(r["volume"], {}).update(
            mean_us=r["mean_us"], cpu_us=r["cpu_s"] / r["requests"] * 1e6)
    for r in kind("served"):
        by_round.setdefault((r["connections"], r["round"]), {}).setdefault(r["volume"], {}).update(
            served_mean_us=r["served_mean_us"])
    print("Cost of the 1,000,000-file manifest per request (million - tenk, within each round;")
    print(f"goal: < {MILLION_DELTA_US} µs). At 64 connections each request also waits behind the other")
    print("63 on the daemon's one core, so a difference in what one request costs appears")
    print("about 64 times in the mean latency; 'per request' divides it by the connections,")
    print("and is what the goal is judged on (at 1 connection, the mean latency itself).")
    print()
    print("| connections | mean latency (wrk) | per request | daemon time | daemon CPU | met? |")
    print("|---|---|---|---|---|---|")
    for c in sorted({c for c, _ in runs}):
        pairs = [v for (cc, _), v in sorted(by_round.items()) if cc == c
                 and "million" in v and "tenk" in v]
        if not pairs:
            continue
        d = lambda k: [p["million"][k] - p["tenk"][k] for p in pairs
                       if k in p["million"] and k in p["tenk"]]
        per = [x / c for x in d("mean_us")]
        met = statistics.median(per) < MILLION_DELTA_US
        signed = lambda xs, f: spread(xs, f, " to ")
        print(f"| {c} | {signed(d('mean_us'), '{:+.1f}')} | {signed(per, '{:+.2f}')} "
              f"| {signed(d('served_mean_us'), '{:+.2f}')} | {signed(d('cpu_us'), '{:+.2f}')} "
              f"| {'yes' if met else 'no'} |")
    print()
    print("(µs; the median over the rounds, and their range in brackets)")


if __name__ == "__main__":
    main()
