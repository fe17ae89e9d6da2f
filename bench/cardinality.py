#!/usr/bin/env python3
"""Series per node, measured, against the formula of docs/metrics.md (section Cardinality).

    .venv/bin/python bench/cardinality.py            # the grid below
    .venv/bin/python bench/cardinality.py --quick    # three small points

For each point (G GPUs, E engines, M models per engine, A compared APIs) the real exporter runs in
this process against E simulated vLLM endpoints over real HTTP (each serving M models at 50% load,
vLLM's 3 finish reasons), simulated NVML, cloud mode, an electricity price, a capacity per engine,
stepped with a manual clock (engines and a GPU tick every 5 s) past one window (5 m). Then
/metrics is rendered and its samples counted, per family too, and compared with

    N = 14 + 3·A + 8·G + E·(11 + A) + E·M·(16 + R + 3·A) + C      (R = 3, C = 3)

The exposition's size (OpenMetrics bytes) is recorded too: it is what each scrape transfers.
"""

from __future__ import annotations

import collections
import sys
import tempfile

import yaml

import _common

NAME = "cardinality"
APIS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "gemini-2.5-flash"]  # all with a cached-input price
R, C = 3, 3  # C: instance, requests, interruption_warmup


def formula(g: int, e: int, m: int, a: int) -> int:
    return 14 + 3 * a + 8 * g + e * (11 + a) + e * m * (16 + R + 3 * a) + C


def measure(g: int, e: int, m: int, a: int) -> dict:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from _node import MultiModelVllm
    from exporter.app import Exporter
    from exporter.clock import ManualClock
    from exporter.config import load_file
    from exporter.demo.workload import Workload
    from exporter.gpu.simulated import SimulatedNVML

    clock = ManualClock()
    servers = []
    try:
        for i in range(e):
            workloads = []
            for j in range(m):
                w = Workload(clock, 1000.0, seed=1 + i * 100 + j)
                w.set_constant_load(0.5)
                workloads.append((w, f"model-{j}" if m > 1 else "meta-llama/Llama-3.1-8B-Instruct"))
            servers.append(MultiModelVllm(workloads))
        raw = {"pricing": {"mode": "cloud", "cloud": {"hourly": 8.0}, "energy": {"electricity_per_kwh": 0.12}},
               "gpu": {"backend": "simulated"}, "window": "5m", "compare": {"apis": APIS[:a]},
               "engines": [{"name": f"vllm-{i}", "url": s.url, "interval": "5s", "timeout": "1s",
                            "capacity_tokens_per_s": 1000.0 * m} for i, s in enumerate(servers)]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(raw, f)  # through a file, as `run` loads it (the reload gauges need one)
        config = load_file(f.name, environ={})
        nvml = SimulatedNVML(clock, count=g, load_fn=lambda t: 0.5)
        exporter = Exporter(config, clock=clock, nvml_backend=nvml)
        exporter.sample_all()
        for _ in range(int(360 / 5)):
            clock.advance(5.0)
            exporter.sample_all()
        text = generate_latest(exporter.registry).decode()
        openmetrics = generate_openmetrics(exporter.registry)
    finally:
        for s in servers:
            s.stop()
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    families = collections.Counter(l.split("{", 1)[0].split(" ", 1)[0] for l in lines)
    return {"G": g, "E": e, "M": m, "A": a, "measured": len(lines), "formula": formula(g, e, m, a),
            "bytes_openmetrics": len(openmetrics), "families": dict(sorted(families.items()))}


GRID = [  # (G, E, M, A)
    (1, 1, 1, 1), (4, 2, 1, 2), (8, 1, 1, 1), (8, 4, 1, 2), (8, 2, 3, 2), (8, 4, 3, 2), (8, 1, 10, 1),
    (8, 2, 5, 4), (16, 8, 1, 1), (8, 1, 50, 2),
]
QUICK = [(1, 1, 1, 1), (2, 2, 2, 2), (4, 1, 1, 3)]


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    import logging
    logging.disable(logging.WARNING)  # the model cap and restarts are not what is measured here
    points = [measure(*point) for point in (QUICK if args.quick else GRID)]
    result = {"name": NAME, "machine": _common.machine(), "quick": args.quick, "R": R, "C": C,
              "formula": "N = 14 + 3*A + 8*G + E*(11 + A) + E*M*(16 + R + 3*A) + C", "points": points,
              "all_match": all(pt["measured"] == pt["formula"] for pt in points)}
    path = _common.write_results(args.results_dir, NAME, result)
    print(_common.table(["G", "E", "M", "A", "series measured", "formula", "OpenMetrics bytes"],
                        [[pt["G"], pt["E"], pt["M"], pt["A"], pt["measured"], pt["formula"], pt["bytes_openmetrics"]]
                         for pt in points]))
    print(f"\nformula {result['formula']} (R={R}, C={C}); all match: {result['all_match']}")
    print(f"wrote {path}")
    return _common.verdict({"formula_matches_every_point": result["all_match"]}, quick=False)  # exact, never noisy


if __name__ == "__main__":
    sys.exit(main())
