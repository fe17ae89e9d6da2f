#!/usr/bin/env python3
"""Scrape latency of GET /metrics, exporter vs a bare prometheus_client registry, in the same run.

    .venv/bin/python bench/scrape_latency.py            # 1000 scrapes of each, interleaved
    .venv/bin/python bench/scrape_latency.py --quick    # smoke test size

Three processes besides this one (the client): the simulated vLLM endpoints (bench/_node.py
engines), the real exporter (`python -m exporter run`, 8 simulated GPUs, 4 endpoints, 3 models,
2 compared APIs, sampling running at the default cadences: GPUs 1 s, engines 5 s), and the
baseline (bench/_node.py baseline): a CollectorRegistry of plain Gauge/Counter objects holding the
same samples (names, labels, values, HELP) as the exporter's output, served by prometheus_client's
own start_http_server. Each request opens a new connection and sends Prometheus 2.42's Accept
header but no Accept-Encoding (both answer OpenMetrics, uncompressed; Prometheus itself asks for
gzip, which both would then apply); the order of the two in each pair is random, and
requests are paced (--gap) so the servers are not saturated. A GET of the exporter's /healthz
(3 bytes, same server) is interleaved too: the floor of an HTTP round trip here. Also timed in this process: rendering
the exporter's registry (snapshot + families + OpenMetrics text) against rendering the baseline
registry, which separates the collector's cost from the HTTP server's.
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import sys
import tempfile
import time

import yaml

import _common
from _common import PROMETHEUS_ACCEPT, percentile
from _node import node_config

NAME = "scrape_latency"


def get(port: int, path: str = "/metrics") -> tuple[float, int]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Accept": PROMETHEUS_ACCEPT})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    elapsed = time.perf_counter() - started
    assert response.status == 200, response.status
    return elapsed, len(body)


def samples_in(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def stats(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms), "mean_ms": sum(ms) / len(ms)}


def render_times(urls: list[str], exposition: str, repeats: int) -> dict:
    """In-process: the exporter's registry (snapshot + families + OpenMetrics text, rendered by
    prometheus_client's WSGI app as its web server does) vs the baseline registry (as
    start_http_server renders it)."""
    from prometheus_client.exposition import choose_encoder

    from _node import baseline_registry
    from exporter.app import Exporter
    from exporter.clock import ManualClock
    from exporter.config import from_dict
    from exporter.gpu.simulated import SimulatedNVML
    from exporter.web import metrics

    clock = ManualClock(time.time())
    config = from_dict(node_config(urls), environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=SimulatedNVML(clock, count=8, load_fn=lambda t: 0.4))
    for _ in range(80):  # 80 s of state: every window and ledger has samples
        clock.advance(1.0)
        exporter.sample_gpus_and_account()
        if int(clock.now()) % 5 == 0:
            for engine in exporter.engines:
                engine.sample()
    library, _ = choose_encoder(PROMETHEUS_ACCEPT)

    def served(registry):  # the body of this script's GET /metrics (Prometheus's Accept, no gzip)
        return metrics.render(registry, "/metrics", "", PROMETHEUS_ACCEPT, None)[2]

    out = {}
    for name, registry, encoder in (("exporter", exporter.registry, served),
                                    ("baseline", baseline_registry(exposition), library)):
        encoder(registry)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            encoder(registry)
            times.append(time.perf_counter() - t)
        out[name] = stats(times)
        out[name]["samples"] = samples_in(encoder(registry))
    return out


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="scrapes of each server")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between scrape pairs")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of sampling before measuring")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 30, 6.0
    py = sys.executable
    load_before = _common.loadavg()
    engines = exporter = baseline = None
    tmp = tempfile.TemporaryDirectory(prefix="bench-scrape-")
    try:
        engines = _common.spawn([py, str(_common.ROOT / "bench" / "_node.py"), "engines", "--count", "4"],
                                stdout=subprocess.PIPE, text=True)
        urls = json.loads(engines.stdout.readline())
        config_path = f"{tmp.name}/config.yml"
        with open(config_path, "w") as f:
            yaml.safe_dump(node_config(urls), f)
        port = _common.free_port()
        exporter = _common.spawn([py, "-m", "exporter", "run", f"--config.file={config_path}",
                                  f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], cwd=_common.ROOT)
        _common.wait_http(f"http://127.0.0.1:{port}/metrics")
        time.sleep(args.warmup)
        body = _common.wait_http(f"http://127.0.0.1:{port}/metrics", accept=PROMETHEUS_ACCEPT)
        exposition = body.decode()
        with open(f"{tmp.name}/exposition.txt", "w") as f:
            f.write(exposition)
        bport = _common.free_port()
        baseline = _common.spawn([py, str(_common.ROOT / "bench" / "_node.py"), "baseline",
                                  f"--exposition={tmp.name}/exposition.txt", f"--port={bport}"],
                                 stdout=subprocess.PIPE, text=True)
        assert baseline.stdout.readline().strip() == "ready"
        counts = {"exporter": samples_in(body), "baseline": samples_in(_common.wait_http(
            f"http://127.0.0.1:{bport}/metrics", accept=PROMETHEUS_ACCEPT))}
        for _ in range(20):  # warm both
            get(port), get(bport)
        times = {"exporter": [], "baseline": [], "exporter /healthz": []}
        sizes = {}
        rng = random.Random(1)
        for _ in range(args.requests):
            triple = [("exporter", port, "/metrics"), ("baseline", bport, "/metrics"), ("exporter /healthz", port, "/healthz")]
            rng.shuffle(triple)
            for name, prt, path in triple:
                elapsed, size = get(prt, path)
                times[name].append(elapsed)
                sizes[name] = size
            time.sleep(args.gap)
        render = render_times(urls, exposition, repeats=50 if args.quick else 1000)
    finally:
        for proc in (baseline, exporter, engines):
            _common.stop(proc)
        tmp.cleanup()
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick,
              "setup": {"gpus": 8, "engines": 4, "models": 3, "apis": 2, "gpu_interval_s": 1, "engine_interval_s": 5,
                        "requests": args.requests, "gap_s": args.gap, "accept": PROMETHEUS_ACCEPT},
              "samples": counts, "bytes": sizes, "http": {k: stats(v) for k, v in times.items()}, "render": render}
    h = result["http"]
    result["ratio"] = {"p50": h["exporter"]["p50_ms"] / h["baseline"]["p50_ms"],
                       "p99": h["exporter"]["p99_ms"] / h["baseline"]["p99_ms"],
                       "render_p50": render["exporter"]["p50_ms"] / render["baseline"]["p50_ms"]}
    result["targets"] = {"ratio_le_1.5": max(result["ratio"]["p50"], result["ratio"]["p99"]) <= 1.5,
                         "p99_le_5ms": h["exporter"]["p99_ms"] <= 5.0}
    path = _common.write_results(args.results_dir, NAME, result)
    counts["exporter /healthz"] = 0
    rows = [[k, counts[k], sizes[k], h[k]["p50_ms"], h[k]["p90_ms"], h[k]["p99_ms"], h[k]["max_ms"]] for k in h]
    rows += [[f"render {k} (in-process)", render[k]["samples"], "", render[k]["p50_ms"], render[k]["p90_ms"],
              render[k]["p99_ms"], render[k]["max_ms"]] for k in render]
    print(_common.table(["GET /metrics", "samples", "bytes", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    print(f"\nratio exporter/baseline: p50 {result['ratio']['p50']:.2f}, p99 {result['ratio']['p99']:.2f}, "
          f"render p50 {result['ratio']['render_p50']:.2f}; load average {load_before} -> {result['loadavg_after']}")
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


if __name__ == "__main__":
    sys.exit(main())
