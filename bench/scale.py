#!/usr/bin/env python3
"""Scale: one real Prometheus (2.42, loopback) scraping 10, 25 and 50 simulated nodes with the
project's recording rules; rule-group evaluation time, and the latency of every dashboard query.

    .venv/bin/python bench/scale.py                  # 10, 25, 50 nodes; writes docs/img/bench-scale.png
    .venv/bin/python bench/scale.py --nodes 50       # one size
    .venv/bin/python bench/scale.py --quick          # 2 nodes, short history (smoke test)

No 50 exporter processes: a node is a /metrics endpoint (its own port, so Prometheus sees a
distinct `instance`) serving the exposition the real exporter produces for the benchmark node
(bench/_node.py: 8 GPUs, 4 vLLM endpoints, 3 models, 2 APIs: 203 series), recorded once from the
exporter in this process. Every node's counters advance with time at the recorded rates, scaled by
a per-node factor (0.5-1.5), gauges are scaled by the same factor; all endpoints are served by one
child process (`scale.py --serve`).

History: rules over [1h] and [1d] and dashboards over the last hour are only as expensive as the
samples they read, so before Prometheus starts, the series the rules read get one day of history
and every other series one hour, at the scrape interval (15 s), written as OpenMetrics and loaded
with `promtool tsdb create-blocks-from openmetrics`, continuous with what the endpoints serve.

Prometheus: scrape and evaluation interval 15 s, job `llmcost` (the rules' selector), the rule
file rules/llm-cost-exporter.rules.yml as committed, and beside it, as the baseline, two groups of
the simplest recording rule there is (`sum by (job, instance) (rate(x[5m]))`, and over [1d]) for
the 6 raw counters the rules read. Measured after the targets are up:
`evaluationTime` of each rule group from /api/v1/rules over several evaluations, Prometheus's RSS
and head series; then every panel query of both dashboards (dashboards.generate, variables = All,
Grafana's built-ins for a 1 h range) run as the panel runs it: instant queries at now, range
queries over the last hour at a 15 s step, each 3 times (median and max of the client-side time),
and two baseline range queries over the same data (a 1m rate by instance; a 1d increase).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import yaml

import _common
import _fleet

NAME = "scale"
JOB = "llmcost"
RULES = _common.ROOT / "rules" / "llm-cost-exporter.rules.yml"
PNG = _common.ROOT / "docs" / "img" / "bench-scale.png"


# -- history -------------------------------------------------------------------------------------------

def rule_metrics(rules_path) -> set[str]:
    """Exporter sample names the rules read from the raw series."""
    text = open(rules_path).read()
    return set(re.findall(r"\b(llmcost_[a-z_]+)\{", text))


def _times(end: float, span: float, step: float, before: float | None = None) -> list[float]:
    first = end - math.floor(span / step) * step
    times = [first + k * step for k in range(int(round((end - first) / step)) + 1)]
    return [t for t in times if before is None or t < before]


def write_history(path: str, template, nodes: int, origin: float, end: float, args, rule_names: set[str]) -> int:
    """OpenMetrics for promtool: each family's samples together, each series in time order. The last
    `recent_s` at the scrape interval for the series the rules read (at --other-step-s for the rest),
    the `history_s` before that at --old-step-s (coarser: see the module docstring)."""
    lines = 0
    recent_start = end - args.recent_s
    with open(path, "w", buffering=1 << 22) as out:
        for f in template:
            kind = f["type"] if f["type"] in ("counter", "gauge") else "unknown"
            out.write(f"# TYPE {f['family']} {kind}\n")
            for name, labels, value, rate in f["samples"]:
                step = args.interval_s if name in rule_names else args.other_step_s
                times = _times(recent_start, args.history_s - args.recent_s, args.old_step_s, before=recent_start) \
                    + _times(end, args.recent_s, step)
                for i in range(nodes):
                    factor = _fleet.node_factor(i, nodes)
                    series = f'{name}{{{labels + "," if labels else ""}instance="{_fleet.instance(i)}",job="{JOB}"}} '
                    out.write("".join(f"{series}{_fleet.value_at(f['type'], value, rate, factor, t, origin)!r} {t:.3f}\n"
                                      for t in times))
                    lines += len(times)
        lines += write_increases(out, template, nodes, end, args)
        out.write("# EOF\n")
    return lines


def write_increases(out, template, nodes: int, end: float, args) -> int:
    """The hourly increases (group llm-cost-exporter.increase.1h) as the rules would have recorded them
    over the history: the fleet's counters grow linearly, so an hour's increase is factor x rate x 3600,
    summed to each record's level. Without them the 1d group would read nothing and cost nothing."""
    sys.path.insert(0, str(_common.ROOT / "rules"))
    from generate import CAPACITY, COUNTERS, Q, increase_rules, load_config

    q = Q(load_config())
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    raw = {counter: name for name, (counter, _) in COUNTERS.items()}
    per_node: dict[str, dict[tuple, float]] = {}  # record -> label set -> value
    for f in template:
        for name, labels, value, rate in f["samples"]:
            metric = raw.get(name)
            if not metric and name != CAPACITY:
                continue
            for i in range(nodes):
                own = dict(label.findall(labels)) | {"instance": _fleet.instance(i), "job": JOB}
                factor = _fleet.node_factor(i, nodes)
                if name == CAPACITY:
                    key = tuple((k, own[k]) for k in q.labels("engine"))
                    record = f"engine:{CAPACITY}:max1h"
                    per_node.setdefault(record, {})[key] = max(per_node.get(record, {}).get(key, 0.0), factor * value)
                    continue
                level = COUNTERS[metric][1]
                kept = q.labels(level) + (["currency"] if "currency" in own else [])
                key = tuple((k, own[k]) for k in kept)
                record = f"{level}:{metric}:increase1h"
                per_node.setdefault(record, {})[key] = per_node.get(record, {}).get(key, 0.0) + factor * rate * 3600
    wider = {}
    for rule in increase_rules(q, "1h"):
        match = re.fullmatch(r"sum(?: by \(([^)]*)\))? \((\S+)\)", rule["expr"])
        if match and match.group(2) in {**per_node, **wider}:
            kept = match.group(1).split(", ") if match.group(1) else []
            sums: dict[tuple, float] = {}
            for key, v in {**per_node, **wider}[match.group(2)].items():
                k = tuple((n, val) for n, val in key if n in kept)
                sums[k] = sums.get(k, 0.0) + v
            wider[rule["record"]] = sums
    times = _times(end, args.history_s, 3600.0)[1:]
    lines = 0
    for record, values in {**per_node, **wider}.items():
        for key, v in values.items():
            series = record + "{" + ",".join(f'{k}="{val}"' for k, val in key) + "} "
            out.write("".join(f"{series}{v!r} {t:.3f}\n" for t in times))
            lines += len(times)
    return lines


# -- Prometheus --------------------------------------------------------------------------------------

BASELINE_COUNTERS = ("llmcost_tokens_total", "llmcost_engine_spend_total", "llmcost_spend_total",
                     "llmcost_api_equivalent_spend_total", "llmcost_idle_spend_total", "llmcost_engine_energy_joules_total")


def baseline_rules(path: str) -> str:
    """The floor to compare the project's groups with: per raw counter the rules read, the simplest
    recording rule there is, `sum by (job, instance) (rate(x[w]))`, over 5m and over 1d."""
    groups = [{"name": f"baseline.{w}", "rules": [{"record": f"instance:{m}:rate{w}",
                                                   "expr": f'sum by (job, instance) (rate({m}{{job="{JOB}"}}[{w}]))'}
                                                  for m in BASELINE_COUNTERS]} for w in ("5m", "1d")]
    with open(path, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    return path


BASELINE_QUERIES = [  # the simplest panel queries over the same data: the floor for a range query
    {"uid": "baseline", "title": "rate over 1m, by instance", "ref": "A", "instant": False,
     "expr": f'sum by (instance) (rate(llmcost_tokens_total{{job="{JOB}"}}[1m]))'},
    {"uid": "baseline", "title": "increase over 1d, total", "ref": "A", "instant": False,
     "expr": f'sum(increase(llmcost_engine_spend_total{{job="{JOB}"}}[1d]))'},
]


class Prometheus:
    def __init__(self, root: str, ports, interval: str, rules):
        self.root, self.port = root, _common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": "10s"
                             if interval.endswith("s") and float(interval[:-1]) > 10 else interval},
                  "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}],
                  "rule_files": [str(rules), baseline_rules(f"{root}/baseline.rules.yml")]}
        with open(f"{root}/prometheus.yml", "w") as f:
            yaml.safe_dump(config, f)
        self.log = open(f"{root}/prometheus.log", "w")
        self.proc = _common.spawn([shutil.which("prometheus"), f"--config.file={root}/prometheus.yml",
                                   f"--storage.tsdb.path={root}/data", f"--web.listen-address=127.0.0.1:{self.port}",
                                   "--storage.tsdb.retention.time=30d"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited:\n" + open(f"{root}/prometheus.log").read()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("prometheus not ready:\n" + open(f"{root}/prometheus.log").read()[-3000:])

    def get(self, path: str, **params) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}" if params else self.url + path
        with urllib.request.urlopen(url, timeout=120) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def scalar(self, expr: str) -> float | None:
        result = self.get("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def own_metric(self, name: str) -> float | None:
        """A sample of Prometheus's own /metrics (it does not scrape itself here)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self):
        _common.stop(self.proc, timeout=30)
        self.log.close()


def dashboard_targets() -> list[dict]:
    from dashboards.generate import ALL, dashboards_json, panels, substitute

    out = []
    for board in dashboards_json():
        for panel in panels(board):
            for target in panel.get("targets", []):
                out.append({"uid": board["uid"], "title": panel["title"], "ref": target.get("refId"),
                            "instant": bool(target.get("instant")),
                            "expr": substitute(target["expr"], {**ALL, "__rate_interval": "1m", "__interval": "15s"})})
    return out


def measure(nodes: int, template, template_path: str, args, tmp: str) -> dict:
    py = sys.executable
    origin = time.time() - 3 * 86400
    server = _common.spawn([py, __file__, "--serve", template_path, str(nodes), repr(origin)],
                           stdout=subprocess.PIPE, text=True)
    root = tempfile.mkdtemp(prefix=f"n{nodes}-", dir=tmp)
    prom = None
    try:
        ports = json.loads(server.stdout.readline())
        step = args.interval_s
        end = math.floor(time.time() / step) * step
        t = time.monotonic()
        lines = write_history(f"{root}/history.om", template, ports, origin, end, args.history_rules,
                              args.history_other, step, rule_metrics(args.rules))
        generated_s = time.monotonic() - t
        t = time.monotonic()
        subprocess.run([shutil.which("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                        f"--max-block-duration={args.block}", f"{root}/history.om", f"{root}/data"],
                       check=True, capture_output=True, text=True)
        backfill_s = time.monotonic() - t
        os.unlink(f"{root}/history.om")
        prom = Prometheus(root, ports, f"{args.interval_s:g}s", args.rules)
        deadline = time.monotonic() + 10 * args.interval_s + 60
        while (prom.scalar(f'count(up{{job="{JOB}"}} == 1)') or 0) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all {nodes} targets up")
            time.sleep(1)
        started = time.time()
        cpu0, wall0 = _common.cpu_seconds(prom.proc.pid), time.monotonic()
        evaluations: dict[str, dict[str, float]] = {}
        rules_per_group = {}
        while True:
            for group in prom.get("/api/v1/rules")["groups"]:
                last = group.get("lastEvaluation", "")
                if last and not last.startswith("0001") and _iso(last) > started:
                    evaluations.setdefault(group["name"], {})[last] = group["evaluationTime"]
                rules_per_group[group["name"]] = len(group["rules"])
            if evaluations and len(evaluations) == len(rules_per_group) and \
                    min(len(v) for v in evaluations.values()) >= args.rounds:
                break
            time.sleep(max(1.0, args.interval_s / 5))
        prom_cpu = (_common.cpu_seconds(prom.proc.pid) - cpu0) / (time.monotonic() - wall0)
        groups = {}
        for name, evals in evaluations.items():
            ms = sorted(1000 * v for v in evals.values())
            groups[name] = {"rules": rules_per_group[name], "evaluations": len(ms), "median_ms": _median(ms),
                            "max_ms": ms[-1]}
        head_series = prom.own_metric("prometheus_tsdb_head_series")
        rss = _common.mib(_common.status_bytes(prom.proc.pid, "VmRSS"))
        queries = []
        now = time.time()
        for target in dashboard_targets() + BASELINE_QUERIES:
            times, series = [], 0
            for _ in range(args.repeats):
                t = time.perf_counter()
                if target["instant"]:
                    data = prom.get("/api/v1/query", query=target["expr"], time=f"{now:.3f}")
                else:
                    data = prom.get("/api/v1/query_range", query=target["expr"], start=f"{now - args.range_s:.3f}",
                                    end=f"{now:.3f}", step=f"{args.interval_s:g}")
                times.append(1000 * (time.perf_counter() - t))
                series = len(data["result"])
            queries.append({"uid": target["uid"], "title": target["title"], "ref": target["ref"],
                            "kind": "instant" if target["instant"] else "range", "series": series,
                            "median_ms": _median(sorted(times)), "max_ms": max(times)})
    finally:
        if prom is not None:
            prom.stop()
        _common.stop(server)
        shutil.rmtree(root, ignore_errors=True)
    overview = [q for q in queries if q["uid"] == "llmcost-overview"]
    baseline = {q["title"]: q["median_ms"] for q in queries if q["uid"] == "baseline"}
    return {"nodes": nodes, "history_lines": lines, "history_generate_s": generated_s, "backfill_s": backfill_s,
            "head_series": head_series, "prometheus_rss_mib": rss, "prometheus_cpu_cores": prom_cpu, "rule_groups": groups,
            "rule_groups_total_median_ms": sum(g["median_ms"] for n, g in groups.items() if not n.startswith("baseline.")),
            "baseline_groups_total_median_ms": sum(g["median_ms"] for n, g in groups.items() if n.startswith("baseline.")),
            "baseline_queries_ms": baseline,
            "queries": queries, "empty_queries": [f"{q['uid']}: {q['title']} ({q['ref']})" for q in queries if not q["series"]],
            "overview": {"queries": len(overview), "median_ms": _median(sorted(q["median_ms"] for q in overview)),
                         "p90_ms": _common.percentile([q["median_ms"] for q in overview], 90),
                         "max_ms": max(q["median_ms"] for q in overview),
                         "slowest": max(overview, key=lambda q: q["median_ms"])["title"]}}


def _iso(text: str) -> float:
    import datetime
    text = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
    return datetime.datetime.fromisoformat(text).timestamp()


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def plot(points: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [p["nodes"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in sorted(points[0]["rule_groups"], key=lambda g: (g.startswith("baseline."), g)):
        if name.startswith("baseline."):
            left.plot(nodes, [p["rule_groups"][name]["median_ms"] for p in points], linestyle="--", marker=".",
                      color="grey" if name.endswith("5m") else "black", label=f"{name} (6 plain rate rules)")
            continue
        left.plot(nodes, [p["rule_groups"][name]["median_ms"] for p in points], marker="o",
                  label=name.replace("llm-cost-exporter.", ""))
    left.set_title("Rule group evaluation time (median)")
    left.set_xlabel("nodes (8 GPUs, 4 engines, 203 series each)")
    left.set_ylabel("ms")
    left.legend(fontsize=7, loc="upper left")
    left.grid(alpha=0.3)
    for key, label in (("median_ms", "median"), ("p90_ms", "p90"), ("max_ms", "slowest")):
        right.plot(nodes, [p["overview"][key] for p in points], marker="o", label=label)
    for title, style in (("increase over 1d, total", ":"), ("rate over 1m, by instance", "--")):
        right.plot(nodes, [p["baseline_queries_ms"][title] for p in points], linestyle=style, color="grey",
                   label=f"baseline: {title}")
    right.set_title("Cost-overview dashboard queries (1 h range)")
    right.set_xlabel("nodes")
    right.set_ylabel("ms per query")
    right.legend(fontsize=7, loc="upper left")
    right.grid(alpha=0.3)
    fig.suptitle("One Prometheus 2.42 on 2 cores, scrape and rules every 15 s, 1 day of history", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--interval-s", type=float, default=15.0, help="scrape and rule evaluation interval")
    p.add_argument("--history-rules", type=float, default=86400.0, help="seconds of history of the series rules read")
    p.add_argument("--history-other", type=float, default=3600.0, help="seconds of history of the other series")
    p.add_argument("--block", default="24h", help="promtool --max-block-duration")
    p.add_argument("--rounds", type=int, default=6, help="evaluations of each rule group to wait for")
    p.add_argument("--repeats", type=int, default=3, help="runs of each dashboard query")
    p.add_argument("--range-s", type=float, default=3600.0, help="range of the range queries")
    p.add_argument("--rules", default=str(RULES))
    p.add_argument("--png", default=str(PNG), help="the curve ('' for none)")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.interval_s, args.history_rules, args.history_other = [2], 1.0, 1800.0, 600.0
        args.rounds, args.repeats, args.range_s, args.block, args.png = 2, 1, 600.0, "2h", ""
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        print("prometheus and promtool must be on PATH (apt-get install -y prometheus)", file=sys.stderr)
        return 2
    load_before = _common.loadavg()
    template = record_template()
    samples = sum(len(f["samples"]) for f in template)
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    try:
        template_path = f"{tmp}/template.json"
        with open(template_path, "w") as f:
            json.dump(template, f)
        points = []
        for n in args.nodes:
            points.append(measure(n, template, template_path, args, tmp))
            print(f"{n} nodes: rule groups {points[-1]['rule_groups_total_median_ms']:.1f} ms in all, overview queries "
                  f"median {points[-1]['overview']['median_ms']:.1f} ms, slowest {points[-1]['overview']['max_ms']:.1f} ms",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick, "series_per_node": samples,
              "setup": {"interval_s": args.interval_s, "history_rules_s": args.history_rules,
                        "history_other_s": args.history_other, "rounds": args.rounds, "repeats": args.repeats,
                        "range_s": args.range_s, "rules": os.path.relpath(args.rules, _common.ROOT)},
              "points": points}
    path = _common.write_results(args.results_dir, NAME, result)
    if args.png and len(points) > 1:
        plot(points, args.png)
    groups = list(points[0]["rule_groups"])
    rows = [[pt["nodes"], pt["nodes"] * samples, int(pt["head_series"] or 0), f"{pt['prometheus_rss_mib']:.0f}",
             f"{100 * pt['prometheus_cpu_cores']:.1f}"]
            + [f"{pt['rule_groups'][g]['median_ms']:.1f} / {pt['rule_groups'][g]['max_ms']:.1f}" for g in groups]
            + [f"{pt['overview']['median_ms']:.1f}", f"{pt['overview']['p90_ms']:.1f}", f"{pt['overview']['max_ms']:.1f}"]
            for pt in points]
    print(_common.table(["nodes", "exporter series", "head series", "Prometheus RSS MiB", "Prometheus CPU % of a core"]
                        + [f"{g.replace('llm-cost-exporter.', '')} ms median / max" for g in groups]
                        + ["overview query median ms", "p90 ms", "slowest ms"], rows))
    print(f"\nload average {load_before} -> {result['loadavg_after']}; empty queries at the largest size: "
          f"{points[-1]['empty_queries'] or 'none'}")
    print(f"wrote {path}" + (f" and {args.png}" if args.png and len(points) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
