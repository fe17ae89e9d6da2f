#!/usr/bin/env python3
"""README's performance table, from the results files of scrape_latency.py, overhead.py and
engine_parse.py (bench/run-all.sh runs them, then this).

    .venv/bin/python bench/table.py [--results-dir DIR]

Each row: the figure, its target, min / median / max over the runs, the same-run baseline, the
ratio, the command, and the load average around the run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def mmm(s: dict, fmt: str = ".2f") -> str:
    return f"{s['min']:{fmt}} / {s['median']:{fmt}} / {s['max']:{fmt}}"


def load(r: dict) -> str:
    return f"{r['loadavg_before'][0]:.1f} → {r['loadavg_after'][0]:.1f}"


def scrape_rows(r: dict) -> list[list[str]]:
    h, ratio, render = r["summary"]["http"], r["summary"]["ratio"], r["summary"]["render"]
    cmd = "`bench/scrape_latency.py`"
    samples = r["runs"][-1]["samples"]["exporter"]
    return [
        [f"GET /metrics p50, 8 GPUs, 4 engines, 3 models ({samples} samples)", "≤ 1.5x floor",
         mmm(h["exporter"]["p50_ms"]) + " ms", f"floor {mmm(h['floor']['p50_ms'])} ms; bare registry "
         f"{mmm(h['baseline']['p50_ms'])} ms", f"{mmm(ratio['p50_to_floor'])}x floor; {mmm(ratio['p50_to_baseline'])}x bare",
         cmd, load(r)],
        ["GET /metrics p99", "≤ 1.5x floor, ≤ 5 ms", mmm(h["exporter"]["p99_ms"]) + " ms",
         f"floor {mmm(h['floor']['p99_ms'])} ms; bare registry {mmm(h['baseline']['p99_ms'])} ms",
         f"{mmm(ratio['p99_to_floor'])}x floor; {mmm(ratio['p99_to_baseline'])}x bare", cmd, load(r)],
        ["render of /metrics in process (snapshot + families + OpenMetrics), p50", "≤ 0.5x the library's",
         mmm(render["cached"]) + " ms (line cache)", f"prometheus_client's WSGI app, same bytes: {mmm(render['library'])} ms",
         mmm(ratio["render_p50_cached_to_library"]) + "x", cmd, load(r)],
    ] + ([["render just after a GPU tick (every moving value new): what each job run pays to render ahead, p50", "–",
           mmm(render["cached, after a tick"]) + " ms (line cache)",
           f"the same state rendered again: {mmm(render['cached'])} ms", "", cmd, load(r)]]
         if "cached, after a tick" in render else [])


def overhead_rows(r: dict) -> list[list[str]]:
    e, node, bare = r["summary"]["exporter"], r["summary"]["node_exporter"], r["summary"]["baseline"]
    setup = r["setup"]
    sizes = sorted({size // 1000 for size in setup["engine_page_bytes"]})
    node_desc = (f"{setup['gpus']} GPUs at {setup['gpu_interval_s']:g} s, {setup['engines']} vLLM engines of "
                 f"{'-'.join(str(k) for k in (sizes[0], sizes[-1])[:len(sizes)])} kB at "
                 f"{setup['engine_interval_s']} s, scraped every {setup['scrape_interval_s']:g} s, "
                 f"{setup['runs']} x {setup['duration_s']:g} s")
    cmd = "`bench/overhead.py`"
    startup = [run["startup"]["exporter"]["first_complete_scrape_s"] for run in r["runs"]]
    spread = {"min": min(startup), "median": statistics.median(startup), "max": max(startup)}

    def versus(figure: str, unit: str) -> str:
        return f"node_exporter {mmm(node[figure])}{unit}; bare prometheus_client process {mmm(bare[figure])}{unit}"

    def ratios(figure: str) -> str:
        return (f"{mmm(e['ratio_to_node_exporter'][figure])}x node_exporter; "
                f"{mmm(e['ratio_to_baseline'][figure])}x bare")

    return [
        [f"CPU, {node_desc}", "≤ 5 millicores", mmm(e["millicores"]) + " m", versus("millicores", " m"),
         ratios("millicores"), cmd, load(r)],
        ["RSS without Kubernetes features", "≤ 48 MiB", mmm(e["rss_max_mib"]) + " MiB", versus("rss_max_mib", " MiB"),
         ratios("rss_max_mib"), cmd, load(r)],
        ["wake-ups (context switches of live threads)", "–", mmm(e["context_switches_per_s"], ".1f") + " /s",
         versus("context_switches_per_s", " /s"), "", cmd, load(r)],
        ["startup to the first complete scrape", "≤ 1.5 s", mmm(spread) + " s", "", "", cmd, load(r)],
    ]


def parse_rows(r: dict) -> list[list[str]]:
    rows = []
    for page in ("vllm-40kB", "vllm-400kB"):
        p = r["pages"][page]

        def spread(values):
            return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"

        rows.append([f"engine /metrics parse, {page} ({p['bytes'] / 1000:.0f} kB), selective", "≤ 0.2x the full parse",
                     spread(p["selective_ms"]) + " ms", f"full parse: {spread(p['full_ms'])} ms",
                     f"{p['ratio_median']:.3f}x (medians)", "`bench/engine_parse.py`", load(r)])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", type=pathlib.Path, default=RESULTS)
    args = p.parse_args(argv)
    rows, dates = [], set()
    for name, build in (("scrape_latency", scrape_rows), ("overhead", overhead_rows), ("engine_parse", parse_rows)):
        path = args.results_dir / f"{name}.json"
        if not path.exists():
            print(f"{path}: missing, run bench/run-all.sh", file=sys.stderr)
            continue
        result = json.loads(path.read_text())
        dates.add(result["machine"]["date"][:10] + " " + result["machine"]["commit"])
        rows += build(result)
    print("| figure | target | min / median / max | baseline, same run | ratio | command | load average |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(runs of {', '.join(sorted(dates))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
