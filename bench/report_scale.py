"""`report` over 30 days of 1,000 nodes, from the rules' hourly recorded series: how long it answers.

A real VictoriaMetrics (Debian's 1.79; or `--backend=prometheus`: a real Prometheus 2.42 on
blocks written by `promtool tsdb create-blocks-from openmetrics`) is loaded with what the project's
rules would have recorded from a 1,000-node fleet in 30 days (bench/_history.py: per node 2
engines x 3 models x 3 APIs, 38 recorded series, one sample an hour: 27.4M samples). Then the
report is run as a user runs it (`python -m exporter.report --start=... --end=...`, a subprocess,
startup included) `--runs` times; the figures it computes are checked against the history's closed
form. Targets: median under 10 s, every figure within 1e-6 of the closed form.

    .venv/bin/python bench/report_scale.py                 # 1,000 nodes x 30 days, VictoriaMetrics
    .venv/bin/python bench/report_scale.py --backend=prometheus --nodes=100
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common
import _history as history

sys.path.insert(0, str(_common.ROOT / "tests"))
from prometheus import Prometheus  # noqa: E402 (tests/ holds the real-server helpers)
from vmsingle import VictoriaMetrics  # noqa: E402

from exporter import report  # noqa: E402
from exporter.promapi import PrometheusAPI  # noqa: E402

NAME = "report_scale"
TARGET_SECONDS = 10.0


def load_vm(fleet: history.Fleet):
    vm = VictoriaMetrics().start()
    vm.import_lines(history.import_lines(s for n in range(fleet.nodes) for s in history.recorded(fleet, n)))
    return vm


def load_prometheus(fleet: history.Fleet, workdir: Path, compacted: bool = True):
    source = workdir / "history.om"
    with open(source, "w") as out:
        for n in range(fleet.nodes):
            out.writelines(history.openmetrics(history.recorded(fleet, n)))
        out.write("# EOF\n")

    def backfill(data: Path) -> None:
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                       check=True, capture_output=True)
        source.unlink()

    prom = Prometheus(flags=["--storage.tsdb.retention.time=10y"], prepare=backfill).start(timeout=600)
    if compacted:  # the --quick run's 24 small blocks are read as they are
        wait_for_compaction(prom.url)
    return prom


def blocks_loaded(url: str) -> int:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    return int(float(re.search(r"^prometheus_tsdb_blocks_loaded (\S+)$", text, re.M).group(1)))


def wait_for_compaction(url: str, settle: float = 90.0, limit: float = 1800.0) -> None:
    """promtool writes 2-hour blocks (360 for 30 days); a long-running Prometheus holds them
    compacted into a few long ones, so measure once the count has stopped falling."""
    deadline, last, since = time.monotonic() + limit, blocks_loaded(url), time.monotonic()
    print(f"blocks loaded: {last}", file=sys.stderr)
    while time.monotonic() < deadline and time.monotonic() - since < settle:
        time.sleep(10)
        now = blocks_loaded(url)
        if now != last:
            print(f"blocks loaded: {now}", file=sys.stderr)
            last, since = now, time.monotonic()


def run_cli(url: str, fleet: history.Fleet) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "exporter.report", f"--prometheus.url={url}", "--timeout=120",
                             f"--start={fleet.start}", f"--end={fleet.end}"],
                            capture_output=True, text=True, cwd=_common.ROOT, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"report failed: {result.stderr}")
    return elapsed, result.stdout


def check(url: str, fleet: history.Fleet, expected: dict) -> tuple[float, dict[str, float]]:
    """The largest relative error of the report's figures against the closed form, and each query's time."""
    api = PrometheusAPI(url, 120)
    timings: dict[str, float] = {}
    query = api.query

    def timed(expr, at):
        started = time.perf_counter()
        try:
            return query(expr, at)
        finally:
            name = re.search(r"[a-z_]+:llmcost_[a-z_]+:[a-z_0-9]+|llmcost_[a-z_]+", expr)
            timings[(name.group(0) if name else expr) + (" (probe)" if expr == report.RECORDED_PROBE else "")] = \
                time.perf_counter() - started
    api.query = timed  # type: ignore[method-assign]
    got = report.collect(api, fleet.start, fleet.end, "auto")
    assert got.basis == report.RECORDED.name, got.reason
    worst = 0.0
    for line in got.models:
        want = expected[(line.engine, line.model)]
        pairs = [(line.tokens, want.tokens), (line.self_hosted, want.self_hosted), (line.utilization, want.utilization),
                 (line.full_per_million, want.full_per_million), (line.actual_per_million, want.actual_per_million)]
        pairs += [(a.equivalent, want.equivalent[a.api]) for a in line.apis]
        worst = max([worst] + [abs(g - w) / abs(w) for g, w in pairs])
    return worst, timings


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--backend", choices=("vm", "prometheus"), default="vm")
    args = p.parse_args(argv)
    nodes, days, runs = (10, 2, 2) if args.quick else (args.nodes, args.days, args.runs)
    fleet = history.Fleet(nodes=nodes, hours=24 * days, end=int(time.time()) // 3600 * 3600 - 3600)
    samples = sum(len(s[1]) for s in history.recorded(history.Fleet(1, fleet.hours, fleet.end), 0)) * nodes
    load_before = _common.loadavg()
    with tempfile.TemporaryDirectory(prefix="report-scale-") as workdir:
        started = time.perf_counter()
        server = load_vm(fleet) if args.backend == "vm" else load_prometheus(fleet, Path(workdir), compacted=not args.quick)
        load_seconds = time.perf_counter() - started
        try:
            worst, timings = check(server.url, fleet, history.expected(fleet))
            times, stdout = zip(*(run_cli(server.url, fleet) for _ in range(runs)), strict=True)
        finally:
            server.stop()
    median = statistics.median(times)
    result = {"name": NAME, "machine": _common.machine(), "quick": args.quick, "backend": args.backend,
              "nodes": nodes, "days": days, "recorded_samples": samples, "load_seconds": round(load_seconds, 1),
              "report_seconds": [round(t, 3) for t in times], "report_seconds_median": round(median, 3),
              "query_seconds": {k: round(v, 3) for k, v in timings.items()},
              "max_relative_error": worst, "loadavg_before": load_before, "loadavg_after": _common.loadavg(),
              "output_head": stdout[0].splitlines()[:2],
              "targets": {"median_under_10s": median < TARGET_SECONDS, "figures_match_closed_form": worst < 1e-6}}
    path = _common.write_results(args.results_dir, NAME if args.backend == "vm" else f"{NAME}_{args.backend}", result)
    print(_common.table(["backend", "nodes", "days", "recorded samples", "load (s)", "report median (s)",
                         "report runs (s)", "max rel. error vs closed form"],
                        [[args.backend, nodes, days, f"{samples:,}", f"{load_seconds:.0f}", f"{median:.2f}",
                          " ".join(f"{t:.2f}" for t in times), f"{worst:.1e}"]]))
    print("\nper query (in-process): " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


if __name__ == "__main__":
    sys.exit(main())
