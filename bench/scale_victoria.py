#!/usr/bin/env python3
"""The scale benchmark's fleet through VictoriaMetrics: vmagent scrapes it and remote-writes to
VictoriaMetrics, vmalert evaluates the unchanged rules/llm-cost-exporter.rules.yml against it, while
a Prometheus 2.42 scrapes the same fleet with the same file; then every recorded series of both is
compared (within 1%), with vmalert's evaluation time per group and each process's RSS.

    .venv/bin/python bench/scale_victoria.py --nodes 200      # one size, ~8 min
    .venv/bin/python bench/scale_victoria.py --quick          # 2 nodes (smoke test)

No history is backfilled: both start together, and the records of the windows the run has filled
(5m in the default 7-minute run) are compared; in a series' first window the two differ by design
(VictoriaMetrics counts a new counter from 0, Prometheus extrapolates). The 1h and 1d windows and
the hourly group need an hour or more of data, so are left out here; tests/test_victoriametrics.py
compares every group, on short windows. Needs
`prometheus` and Debian's victoria-metrics package (`victoria-metrics`, `vmagent`, `vmalert`).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
import time

import _common
import _fleet
from scale import JOB, RULES, Prometheus

NAME = "scale_victoria"
RECORDS = '{__name__=~"[a-z_]+:llmcost_[a-z_]+:[a-z_0-9]+"}'
WINDOW = re.compile(r":(?:rate|ratio_rate|max_over_time)(\d+[smh])$")


def compared(name: str, duration_s: float) -> bool:
    """Records of a window the run has filled: in a series' first window VictoriaMetrics counts the
    counter from 0 and Prometheus extrapolates from the first samples, so they differ there."""
    m = WINDOW.search(name)
    return bool(m) and {"s": 1, "m": 60, "h": 3600}[m.group(1)[-1]] * int(m.group(1)[:-1]) <= duration_s - 60


def values(result: list[dict]) -> dict[tuple, float]:
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}


def vmalert_groups(text: str) -> dict[str, float]:
    """Median iteration time per group, ms, from vmalert's /metrics."""
    found = {}
    for line in text.splitlines():
        m = re.match(r'vmalert_iteration_duration_seconds\{group="([^"]+)",.*quantile="0.5"\} (\S+)', line)
        if m:
            found[m.group(1)] = 1000 * float(m.group(2))
    return found


def measure(nodes: int, template_path: str, args, tmp: str) -> dict:
    root = tempfile.mkdtemp(prefix=f"vm{nodes}-", dir=tmp)
    load = {"before": _common.loadavg()}
    with _fleet.Fleet(template_path, nodes, time.time() - 86400) as fleet:
        prom = Prometheus(root, fleet.port, nodes, f"{args.interval_s:g}s", args.rules)
        vm = None
        try:
            vm_root = f"{root}/vm"
            import os
            os.makedirs(vm_root)
            vm = _fleet.Victoria(vm_root, [_fleet.scrape_config(JOB, fleet.port, nodes, f"{args.interval_s:g}s")],
                                 [args.rules], f"{args.interval_s:g}s", notifier=prom.url,
                                 force_flush=1.0 if args.quick else 0.0)
            time.sleep(args.duration_s)
            at = time.time() - 2 * args.interval_s  # both have written what they evaluated before this
            ours = {k: v for k, v in values(prom.get("/api/v1/query", query=RECORDS, time=f"{at:.3f}")["result"]).items()
                    if compared(dict(k)["__name__"], args.duration_s)}
            theirs = values(vm.query(RECORDS, at))
            groups = vmalert_groups(vm.metrics("vmalert"))
            rss = {"prometheus": _common.mib(_common.status_bytes(prom.proc.pid, "VmRSS"))}
            for name, proc in zip(("victoria-metrics", "vmagent", "vmalert"), vm.procs):
                rss[name] = _common.mib(_common.status_bytes(proc.pid, "VmRSS"))
            prom_groups = {g["name"]: 1000 * g["evaluationTime"] for g in prom.get("/api/v1/rules")["groups"]}
        finally:
            if vm is not None:
                vm.stop()
            prom.stop()
            shutil.rmtree(root, ignore_errors=True)
    load["after"] = _common.loadavg()
    both = set(ours) & set(theirs)
    off = sorted((abs(theirs[k] - ours[k]) / abs(ours[k]) if ours[k] else abs(theirs[k]), dict(k)["__name__"])
                 for k in both if not math.isclose(ours[k], theirs[k], rel_tol=0.01, abs_tol=1e-9))
    return {"nodes": nodes, "loadavg": load, "compared_series": len(ours), "in_both": len(both),
            "only_prometheus": len(set(ours) - set(theirs)), "differ_over_1pct": len(off), "worst": off[-5:],
            "vmalert_iteration_ms": groups, "prometheus_evaluation_ms": prom_groups, "rss_mib": rss}


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[200])
    p.add_argument("--interval-s", type=float, default=15.0)
    p.add_argument("--duration-s", type=float, default=420.0,
                   help="run both this long before comparing (the 5m records need 360 s: a filled window + 60 s)")
    p.add_argument("--rules", default=str(RULES))
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-scale-vm-")
    if args.quick:
        args.nodes, args.interval_s, args.duration_s = [2], 1.0, 75.0
        args.rules = f"{tmp}/quick.rules.yml"
        import subprocess
        subprocess.run([sys.executable, str(_common.ROOT / "rules" / "generate.py"), "--set", "fast_interval=1s",
                        "--set", "slow_interval=1s", "--set", "windows=[10s,1h,1d]", "--output", args.rules], check=True)
    for binary in ("prometheus", "victoria-metrics", "vmagent", "vmalert"):
        if not shutil.which(binary):
            print(f"{binary} must be on PATH (apt-get install -y prometheus victoria-metrics)", file=sys.stderr)
            return 2
    load_before = _common.loadavg()
    try:
        template_path = f"{tmp}/template.json"
        with open(template_path, "w") as f:
            json.dump(_fleet.record_template(), f)
        points = [measure(n, template_path, args, tmp) for n in args.nodes]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick,
              "setup": {"interval_s": args.interval_s, "duration_s": args.duration_s}, "points": points}
    path = _common.write_results(args.results_dir, NAME, result)
    groups = sorted({g for pt in points for g in pt["vmalert_iteration_ms"]})
    print(_common.table(["nodes", "records compared", "differ > 1%", "Prometheus only"]
                        + [f"vmalert {g.replace('llm-cost-exporter.', '')} ms" for g in groups]
                        + [f"{k} RSS MiB" for k in points[0]["rss_mib"]],
                        [[pt["nodes"], pt["compared_series"], pt["differ_over_1pct"], pt["only_prometheus"]]
                         + [f"{pt['vmalert_iteration_ms'].get(g, float('nan')):.0f}" for g in groups]
                         + [f"{v:.0f}" for v in pt["rss_mib"].values()] for pt in points]))
    print(f"wrote {path}")
    return 0 if all(pt["differ_over_1pct"] == 0 and pt["only_prometheus"] == 0 for pt in points) else 1


if __name__ == "__main__":
    sys.exit(main())
