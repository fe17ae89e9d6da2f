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
import subprocess
import sys
import tempfile
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
    recording rule there is, `sum by (job, instance) (rate(x[5m]))`, every scrape interval."""
    groups = [{"name": "baseline.5m", "rules": [{"record": f"instance:{m}:rate5m",
                                                 "expr": f'sum by (job, instance) (rate({m}{{job="{JOB}"}}[5m]))'}
                                                for m in BASELINE_COUNTERS]}]
    with open(path, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    return path


BASELINE_QUERIES = [  # the simplest panel query over the same data: the floor for a range query
    {"uid": "baseline", "title": "rate by instance", "ref": "A", "instant": False, "min_step": None,
     "expr": f'sum by (instance) (rate(llmcost_tokens_total{{job="{JOB}"}}[$__rate_interval]))'},
]

# A panel about 1000 px wide, as Grafana sets its variables: step = range / ~1000 rounded to Grafana's
# intervals, at least the scrape interval; $__rate_interval = max(step + scrape, 4 x scrape).
RANGES = {"1h": {"range_s": 3600, "step_s": 15, "vars": {"__interval": "15s", "__rate_interval": "1m",
                                                        "__range": "1h", "__range_s": "3600"}},
          "24h": {"range_s": 86400, "step_s": 60, "vars": {"__interval": "1m", "__rate_interval": "75s",
                                                          "__range": "1d", "__range_s": "86400"}}}


class Prometheus:
    def __init__(self, root: str, port: int, nodes: int, interval: str, rules):
        self.root, self.port = root, _common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": "10s"
                             if interval.endswith("s") and float(interval[:-1]) > 10 else interval},
                  "scrape_configs": [_fleet.scrape_config(JOB, port, nodes, interval)],
                  "rule_files": [str(rules), baseline_rules(f"{root}/baseline.rules.yml")]}
        with open(f"{root}/prometheus.yml", "w") as f:
            yaml.safe_dump(config, f)
        self.log = open(f"{root}/prometheus.log", "w")
        self.proc = _common.spawn([shutil.which("prometheus"), f"--config.file={root}/prometheus.yml",
                                   f"--storage.tsdb.path={root}/data", f"--web.listen-address=127.0.0.1:{self.port}",
                                   "--storage.tsdb.retention.time=30d"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited:\n" + open(f"{root}/prometheus.log").read()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError("prometheus not ready:\n" + open(f"{root}/prometheus.log").read()[-3000:])

    def get(self, path: str, **params) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}" if params else self.url + path
        with urllib.request.urlopen(url, timeout=300) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def scalar(self, expr: str) -> float | None:
        result = self.get("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def own_metrics(self, name: str) -> dict[str, float]:
        """Samples of one family of Prometheus's own /metrics (it does not scrape itself here): labels -> value."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            return {line.split(" ")[0][len(name):]: float(line.rsplit(" ", 1)[1])
                    for line in r.read().decode().splitlines() if line.startswith(name + "{") or line.startswith(name + " ")}

    def stop(self):
        _common.stop(self.proc, timeout=60)
        self.log.close()


def dashboard_targets(window: str) -> list[dict]:
    """Every panel query of the overview and utilization dashboards as the panel runs it over `window`
    (variables = All). Not the chargeback board's: it reads gateways' per-team counters, which this
    fleet does not simulate (tests/test_chargeback.py times it against a LiteLLM exposition)."""
    from dashboards.generate import ALL, dashboards_json, panels, substitute

    out = []
    for board in dashboards_json():
        if board["uid"] == "llmcost-chargeback":
            continue
        for panel in panels(board):
            for target in panel.get("targets", []):
                out.append({"uid": board["uid"], "title": panel["title"], "ref": target.get("refId"),
                            "instant": bool(target.get("instant")), "min_step": panel.get("interval"),
                            "expr": substitute(target["expr"], {**ALL, **RANGES[window]["vars"]})})
    return out


def _seconds(text: str | None) -> float:
    return {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]] * float(text[:-1]) if text else 0.0


def time_queries(prom: Prometheus, window: str, repeats: int, now: float, once_over_s: float) -> list[dict]:
    """Each query `repeats` times (median), or once where its first run took over `once_over_s`."""
    from dashboards.generate import substitute

    spec, out = RANGES[window], []
    for target in dashboard_targets(window) + BASELINE_QUERIES:
        expr = substitute(target["expr"], spec["vars"]) if "$" in target["expr"] else target["expr"]
        step = max(spec["step_s"], _seconds(target["min_step"]))
        times, series, samples = [], 0, None
        for _ in range(repeats):
            if times and times[0] > 1000 * once_over_s:
                break
            t = time.perf_counter()
            if target["instant"]:
                data = prom.get("/api/v1/query", query=expr, time=f"{now:.3f}", stats="all")
            else:
                data = prom.get("/api/v1/query_range", query=expr, start=f"{now - spec['range_s']:.3f}",
                                end=f"{now:.3f}", step=f"{step:g}", stats="all")
            times.append(1000 * (time.perf_counter() - t))
            series = len(data["result"])
            samples = (data.get("stats") or {}).get("samples", {}).get("totalQueryableSamples")
        out.append({"uid": target["uid"], "title": target["title"], "ref": target["ref"], "window": window,
                    "kind": "instant" if target["instant"] else "range", "step_s": None if target["instant"] else step,
                    "series": series, "samples": samples, "runs": len(times), "median_ms": _median(sorted(times)),
                    "max_ms": max(times)})
    return out


def hourly_group_ms(prom: Prometheus, rules_path: str) -> float:
    """The hourly group (interval 1h) does not evaluate within a run: its rules' expressions, timed as
    instant queries now (the same work its evaluation does), summed."""
    total = 0.0
    with open(rules_path) as f:
        groups = yaml.safe_load(f)["groups"]
    for group in groups:
        if ".increase." in group["name"]:
            for rule in group["rules"]:
                t = time.perf_counter()
                prom.get("/api/v1/query", query=rule["expr"])
                total += 1000 * (time.perf_counter() - t)
    return total


def wait_for_rounds(prom: Prometheus, rounds: int, started: float, timeout: float) -> tuple[dict, dict]:
    evaluations: dict[str, dict[str, float]] = {}
    info = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for group in prom.get("/api/v1/rules")["groups"]:
            info[group["name"]] = {"rules": len(group["rules"]), "interval_s": group["interval"]}
            last = group.get("lastEvaluation", "")
            if group["interval"] < 3600 and last and not last.startswith("0001") and _iso(last) > started:
                evaluations.setdefault(group["name"], {})[last] = group["evaluationTime"]
        measured = [n for n, g in info.items() if g["interval_s"] < 3600]
        if measured and all(len(evaluations.get(n, {})) >= rounds for n in measured):
            break
        time.sleep(2)
    return evaluations, info


def measure(nodes: int, template, template_path: str, args, tmp: str) -> dict:
    origin = time.time() - 3 * 86400
    root = tempfile.mkdtemp(prefix=f"n{nodes}-", dir=tmp)
    prom = fleet = None
    load = {"before": _common.loadavg()}
    try:
        fleet = _fleet.Fleet(template_path, nodes, origin)
        end = math.floor(time.time() / args.interval_s) * args.interval_s
        t = time.monotonic()
        lines = write_history(f"{root}/history.om", template, nodes, origin, end, args, rule_metrics(args.rules))
        generated_s = time.monotonic() - t
        t = time.monotonic()
        subprocess.run([shutil.which("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                        f"--max-block-duration={args.block}", f"{root}/history.om", f"{root}/data"],
                       check=True, capture_output=True, text=True)
        backfill_s = time.monotonic() - t
        os.unlink(f"{root}/history.om")
        prom = Prometheus(root, fleet.port, nodes, f"{args.interval_s:g}s", args.rules)
        deadline = time.monotonic() + 10 * args.interval_s + 120
        while (prom.scalar(f'count(up{{job="{JOB}"}} == 1)') or 0) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all {nodes} targets up")
            time.sleep(2)
        started = time.time()
        cpu0, wall0 = _common.cpu_seconds(prom.proc.pid), time.monotonic()
        evaluations, info = wait_for_rounds(prom, args.rounds, started, timeout=args.rounds * 60 + 600)
        prom_cpu = (_common.cpu_seconds(prom.proc.pid) - cpu0) / (time.monotonic() - wall0)
        load["rules"] = _common.loadavg()
        groups = {}
        for name, evals in evaluations.items():
            ms = sorted(1000 * v for v in evals.values())
            groups[name] = {**info[name], "evaluations": len(ms), "median_ms": _median(ms), "max_ms": ms[-1],
                            "share_of_interval": ms[len(ms) // 2] / 1000 / info[name]["interval_s"]}
        hourly = [n for n, g in info.items() if g["interval_s"] >= 3600]
        for name in hourly:
            ms = hourly_group_ms(prom, args.rules)
            groups[name] = {**info[name], "evaluations": 0, "median_ms": ms, "max_ms": ms,
                            "share_of_interval": ms / 1000 / info[name]["interval_s"], "timed_as": "instant queries"}
        missed = prom.own_metrics("prometheus_rule_group_iterations_missed_total")
        head_series = sum(prom.own_metrics("prometheus_tsdb_head_series").values())
        rss = _common.mib(_common.status_bytes(prom.proc.pid, "VmRSS"))
        now = time.time()
        queries = [q for window in args.windows for q in time_queries(prom, window, args.repeats, now, args.once_over_s)]
        load["after"] = _common.loadavg()
    finally:
        if prom is not None:
            prom.stop()
        if fleet is not None:
            fleet.stop()
        shutil.rmtree(root, ignore_errors=True)
    overview = {}
    for window in args.windows:
        ours = [q for q in queries if q["uid"] == "llmcost-overview" and q["window"] == window]
        slowest = max(ours, key=lambda q: q["median_ms"])
        overview[window] = {"queries": len(ours), "median_ms": _median(sorted(q["median_ms"] for q in ours)),
                            "p90_ms": _common.percentile([q["median_ms"] for q in ours], 90),
                            "max_ms": slowest["median_ms"], "slowest": slowest["title"],
                            "over_1s": [q["title"] for q in ours if q["median_ms"] > 1000]}
    return {"nodes": nodes, "history_lines": lines, "history_generate_s": generated_s, "backfill_s": backfill_s,
            "head_series": head_series, "prometheus_rss_mib": rss, "prometheus_cpu_cores": prom_cpu, "loadavg": load,
            "rule_groups": groups, "iterations_missed": {k: v for k, v in missed.items() if v},
            "rule_seconds_per_second": sum(g["median_ms"] / 1000 / g["interval_s"] for n, g in groups.items()
                                           if not n.startswith("baseline.")),
            "queries": queries, "overview": overview,
            "empty_queries": [f"{q['uid']}: {q['title']} ({q['ref']}, {q['window']})" for q in queries if not q["series"]]}


def _iso(text: str) -> float:
    import datetime
    text = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
    return datetime.datetime.fromisoformat(text).timestamp()


def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def plot(points: list[dict], path, series_per_node: int) -> None:
    points = sorted(points, key=lambda p: p["nodes"])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [p["nodes"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in sorted(points[0]["rule_groups"]):
        share = [100 * p["rule_groups"][name]["share_of_interval"] for p in points if name in p["rule_groups"]]
        style = {"linestyle": "--", "color": "grey"} if name.startswith("baseline.") else {"marker": "o"}
        label = name.replace("llm-cost-exporter.", "") + f" (every {points[0]['rule_groups'][name]['interval_s']:g} s)"
        left.plot(nodes[:len(share)], share, label=label, **style)
    left.axhline(25, color="red", linewidth=0.8, linestyle=":", label="target: 25% of the interval")
    left.set_title("Rule group evaluation, % of its interval (median)")
    left.set_xlabel(f"nodes ({series_per_node} series each)")
    left.set_ylabel("% of interval")
    left.legend(fontsize=7, loc="upper left")
    left.grid(alpha=0.3)
    for window, style in (("1h", "-"), ("24h", "--")):
        if window not in points[0]["overview"]:
            continue
        for key, label in (("median_ms", "median"), ("max_ms", "slowest")):
            right.plot(nodes, [p["overview"][window][key] for p in points], marker="o", linestyle=style,
                       label=f"{window} range: {label}")
    right.axhline(1000, color="red", linewidth=0.8, linestyle=":", label="1 s")
    right.set_yscale("log")
    right.set_title("Cost-overview dashboard queries")
    right.set_xlabel("nodes")
    right.set_ylabel("ms per query (log)")
    right.legend(fontsize=7, loc="upper left")
    right.grid(alpha=0.3)
    fig.suptitle("One Prometheus 2.42 on a shared 2-core machine, scrape every 15 s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(args, load_before, samples: int, points: list[dict]):
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick, "series_per_node": samples,
              "setup": {k: getattr(args, k) for k in ("interval_s", "history_s", "recent_s", "old_step_s",
                                                      "other_step_s", "rounds", "repeats", "once_over_s", "windows")}
              | {"rules": os.path.relpath(args.rules, _common.ROOT) if not args.quick else "quick variant"},
              "points": points}
    return result, _common.write_results(args.results_dir, NAME, result)


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[50, 200, 500, 1000])
    p.add_argument("--interval-s", type=float, default=15.0, help="scrape interval")
    p.add_argument("--history-s", type=float, default=86400.0, help="seconds of history before the run")
    p.add_argument("--recent-s", type=float, default=3600.0, help="the last part of it at the scrape interval")
    p.add_argument("--old-step-s", type=float, default=900.0, help="sample spacing of the history before that")
    p.add_argument("--other-step-s", type=float, default=60.0,
                   help="sample spacing of the recent history of the series the rules do not read")
    p.add_argument("--block", default="2h", help="promtool --max-block-duration")
    p.add_argument("--rounds", type=int, default=3, help="evaluations of each rule group to wait for")
    p.add_argument("--repeats", type=int, default=3, help="runs of each dashboard query")
    p.add_argument("--once-over-s", type=float, default=5.0, help="run a query once only when its first run is slower")
    p.add_argument("--windows", nargs="+", default=["1h", "24h"], choices=sorted(RANGES))
    p.add_argument("--rules", default=str(RULES))
    p.add_argument("--png", default=str(PNG), help="the curve ('' for none)")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    if args.quick:
        args.nodes, args.interval_s, args.history_s, args.recent_s = [2], 1.0, 7200.0, 600.0
        args.old_step_s, args.other_step_s = 60.0, 5.0
        args.rounds, args.repeats, args.png = 2, 1, ""
        # The committed groups run every 30 s and 1 m: a variant every second, so two rounds take seconds.
        args.rules = f"{tmp}/quick.rules.yml"
        subprocess.run([sys.executable, str(_common.ROOT / "rules" / "generate.py"), "--set", "fast_interval=1s",
                        "--set", "slow_interval=2s", "--output", args.rules], check=True)
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        print("prometheus and promtool must be on PATH (apt-get install -y prometheus)", file=sys.stderr)
        return 2
    load_before = _common.loadavg()
    template = _fleet.record_template()
    samples = sum(len(f["samples"]) for f in template)
    try:
        template_path = f"{tmp}/template.json"
        with open(template_path, "w") as f:
            json.dump(template, f)
        points = []
        for n in args.nodes:
            points.append(measure(n, template, template_path, args, tmp))
            pt = points[-1]
            print(f"{n} nodes: rules {100 * pt['rule_seconds_per_second']:.1f}% of a core, overview "
                  + ", ".join(f"{w} median {o['median_ms']:.0f} ms slowest {o['max_ms']:.0f} ms ({o['slowest']})"
                              for w, o in pt["overview"].items()), file=sys.stderr, flush=True)
            save(args, load_before, samples, points)  # after every size: a long run keeps what it measured
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result, path = save(args, load_before, samples, points)
    if args.png and len(points) > 1:
        plot(points, args.png, samples)
    groups = sorted(points[0]["rule_groups"])
    rows = [[pt["nodes"], int(pt["head_series"] or 0), f"{pt['prometheus_rss_mib']:.0f}",
             f"{100 * pt['prometheus_cpu_cores']:.0f}"]
            + [f"{pt['rule_groups'][g]['median_ms']:.0f} ({100 * pt['rule_groups'][g]['share_of_interval']:.1f}%)"
               if g in pt["rule_groups"] else "-" for g in groups]
            + [f"{pt['overview'][w]['median_ms']:.0f} / {pt['overview'][w]['max_ms']:.0f}" for w in args.windows]
            + [int(sum(pt["iterations_missed"].values()))]
            for pt in points]
    print(_common.table(["nodes", "head series", "RSS MiB", "CPU % of a core"]
                        + [f"{g.replace('llm-cost-exporter.', '')} ms (% of interval)" for g in groups]
                        + [f"overview {w} median / slowest ms" for w in args.windows] + ["missed iterations"], rows))
    print(f"\nload average {load_before} -> {result['loadavg_after']}; empty queries at the largest size: "
          f"{points[-1]['empty_queries'] or 'none'}")
    print(f"wrote {path}" + (f" and {args.png}" if args.png and len(points) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
