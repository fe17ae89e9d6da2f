#!/usr/bin/env python3
"""Scrape latency of GET /metrics: the exporter against the floor of its own server and a bare
prometheus_client registry, in the same run; and the render, with and without its line cache.

    .venv/bin/python bench/scrape_latency.py            # 3 runs of 1000 scrapes of each, interleaved
    .venv/bin/python bench/scrape_latency.py --quick    # smoke test size

Processes besides this one (the client), started afresh for each run: the simulated vLLM endpoints
(bench/_node.py engines: 4 of real size, every family and bucket of a real vLLM 0.33.0 page), the
real exporter (`python -m exporter run`, 8 simulated GPUs, 4 endpoints, 3 models, 2 compared APIs,
sampling running at the default cadences: GPUs 1 s, engines 5 s), and, built from the exporter's
own answer after the warm-up (same samples, names, labels, values, HELP):

- the floor (bench/_node.py floor): the exporter's own web server (exporter.web.WebServer, its
  connection limits, content negotiation, headers) answering /metrics with those bytes, rendered
  beforehand: what a scrape costs here with no collection and no encoding. The exporter's target
  is to be within 1.5x of it at the median and at p99.
- the baseline (bench/_node.py baseline): a CollectorRegistry of plain Gauge/Counter objects
  holding the samples, served by prometheus_client's own start_http_server: what the same
  exposition costs from the library alone.

Each request opens a new connection and sends Prometheus 2.42's Accept header but no
Accept-Encoding (all answer OpenMetrics, uncompressed); the order in each round is random, and
rounds are paced (--gap) so the servers are not saturated. A GET of the exporter's /healthz
(3 bytes) is interleaved too: an HTTP round trip with no body. Also timed in this process, on the
same node: the render of /metrics (snapshot + families + OpenMetrics) through the server's line
cache and through prometheus_client's own WSGI app (the render before the cache), interleaved,
same bytes; target: the cached render at most half the library's at the median. And the cached
render just after a GPU tick (sampled and accrued, engines every 5 ticks: every moving value is new),
which is what each job run pays now that the body is rendered ahead (exporter/web/prerender.py);
the interleaved pair above sees the state of the last tick again. The exporter's GETs are mostly
answered with the body its jobs rendered after the last change, as a scrape at any interval is.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time

import _common
import yaml
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


def render_times(urls: list[str], repeats: int) -> dict:
    """In-process, interleaved: /metrics as the exporter's server renders it (through its line
    cache) and as prometheus_client's WSGI app renders it (no cache), on the same registry; the
    bodies must be equal."""
    from exporter.app import Exporter
    from exporter.clock import ManualClock
    from exporter.config import from_dict
    from exporter.gpu.simulated import SimulatedNVML
    from exporter.web import metrics
    from exporter.web.linecache import LineCache

    clock = ManualClock(time.time())
    config = from_dict(node_config(urls), environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=SimulatedNVML(clock, count=8, load_fn=lambda t: 0.4))
    for _ in range(80):  # 80 s of state: every window and ledger has samples
        clock.advance(1.0)
        exporter.sample_gpus_and_account()
        if int(clock.now()) % 5 == 0:
            for engine in exporter.engines:
                engine.sample()
    cache = LineCache()
    ways = {"cached": lambda: metrics.render(exporter.registry, "/metrics", "", PROMETHEUS_ACCEPT, None, cache)[2],
            "library": lambda: metrics.render(exporter.registry, "/metrics", "", PROMETHEUS_ACCEPT, None)[2]}
    bodies = {name: way() for name, way in ways.items()}
    assert bodies["cached"] == bodies["library"], "the cached render must be the library's bytes"
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            t = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - t)
    times["cached, after a tick"] = ticked = []
    for i in range(repeats // 4):  # as at a 15 s interval: every moving value new since the last render
        clock.advance(1.0)
        exporter.sample_gpus_and_account()
        if i % 5 == 0:
            for engine in exporter.engines:
                engine.sample()
        t = time.perf_counter()
        bodies["cached, after a tick"] = ways["cached"]()
        ticked.append(time.perf_counter() - t)
    assert bodies["cached, after a tick"] == ways["library"](), "the cached render must be the library's bytes"
    out = {name: stats(t) for name, t in times.items()}
    for name in out:
        out[name]["samples"] = samples_in(bodies[name])
    return out


def start_beside(kind: str, exposition_path: str) -> tuple[subprocess.Popen, int]:
    port = _common.free_port()
    proc = _common.spawn([sys.executable, str(_common.ROOT / "bench" / "_node.py"), kind,
                          f"--exposition={exposition_path}", f"--port={port}"], stdout=subprocess.PIPE, text=True,
                         cwd=_common.ROOT)
    assert proc.stdout.readline().strip() == "ready"
    return proc, port


def one_run(args, tmp: str) -> dict:
    """Fresh processes, a warm-up, then the interleaved scrapes and the in-process renders."""
    procs: list = []
    try:
        engines = _common.spawn([sys.executable, str(_common.ROOT / "bench" / "_node.py"), "engines", "--count", "4"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(engines)
        urls = json.loads(engines.stdout.readline())
        config_path = f"{tmp}/config.yml"
        with open(config_path, "w") as f:
            yaml.safe_dump(node_config(urls), f)
        port = _common.free_port()
        procs.append(_common.spawn([sys.executable, "-m", "exporter", "run", f"--config.file={config_path}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], cwd=_common.ROOT))
        _common.wait_http(f"http://127.0.0.1:{port}/metrics")
        time.sleep(args.warmup)
        body = _common.wait_http(f"http://127.0.0.1:{port}/metrics", accept=PROMETHEUS_ACCEPT)
        with open(f"{tmp}/exposition.txt", "wb") as f:
            f.write(body)
        servers = {"exporter": (port, "/metrics"), "exporter /healthz": (port, "/healthz")}
        for kind in ("floor", "baseline"):
            proc, kport = start_beside(kind, f"{tmp}/exposition.txt")
            procs.append(proc)
            servers[kind] = (kport, "/metrics")
        counts = {name: samples_in(_common.wait_http(f"http://127.0.0.1:{prt}{path}", accept=PROMETHEUS_ACCEPT))
                  for name, (prt, path) in servers.items()}
        for _ in range(20):  # warm every server
            for prt, path in servers.values():
                get(prt, path)
        times: dict[str, list[float]] = {name: [] for name in servers}
        sizes = {}
        rng = random.Random(1)
        order = list(servers.items())
        for _ in range(args.requests):
            rng.shuffle(order)
            for name, (prt, path) in order:
                elapsed, sizes[name] = get(prt, path)
                times[name].append(elapsed)
            time.sleep(args.gap)
        render = render_times(urls, repeats=50 if args.quick else 1000)
    finally:
        for proc in reversed(procs):
            _common.stop(proc)
    http = {k: stats(v) for k, v in times.items()}
    return {"samples": counts, "bytes": sizes, "http": http, "render": render, "loadavg_after": _common.loadavg(),
            "ratio": {"p50_to_floor": http["exporter"]["p50_ms"] / http["floor"]["p50_ms"],
                      "p99_to_floor": http["exporter"]["p99_ms"] / http["floor"]["p99_ms"],
                      "p50_to_baseline": http["exporter"]["p50_ms"] / http["baseline"]["p50_ms"],
                      "p99_to_baseline": http["exporter"]["p99_ms"] / http["baseline"]["p99_ms"],
                      "render_p50_cached_to_library": render["cached"]["p50_ms"] / render["library"]["p50_ms"]}}


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="fresh processes and a full measurement each")
    p.add_argument("--requests", type=int, default=1000, help="scrapes of each server per run")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between rounds of scrapes")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of sampling before measuring")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.runs = 30, 6.0, 1
    load_before = _common.loadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        for _ in range(args.runs):
            runs.append(one_run(args, tmp))
    summary = {"http": {name: {q: spread([r["http"][name][q] for r in runs]) for q in ("p50_ms", "p99_ms")}
                        for name in runs[0]["http"]},
               "render": {name: spread([r["render"][name]["p50_ms"] for r in runs]) for name in runs[0]["render"]},
               "ratio": {k: spread([r["ratio"][k] for r in runs]) for k in runs[0]["ratio"]}}
    ratio = summary["ratio"]
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick,
              "setup": {"gpus": 8, "engines": 4, "models": 3, "apis": 2, "gpu_interval_s": 1, "engine_interval_s": 5,
                        "runs": args.runs, "requests": args.requests, "gap_s": args.gap, "accept": PROMETHEUS_ACCEPT},
              "runs": runs, "summary": summary,
              # Judged on the median of the runs.
              "targets": {"p50_le_1.5x_floor": ratio["p50_to_floor"]["median"] <= 1.5,
                          "p99_le_1.5x_floor": ratio["p99_to_floor"]["median"] <= 1.5,
                          "render_le_0.5x_library": ratio["render_p50_cached_to_library"]["median"] <= 0.5,
                          "p99_le_5ms": summary["http"]["exporter"]["p99_ms"]["median"] <= 5.0}}
    path = _common.write_results(args.results_dir, NAME, result)
    print_table(result, runs)
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


def print_table(result: dict, runs: list[dict]) -> None:
    def mmm(s: dict) -> str:
        return f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}"

    summary, last = result["summary"], runs[-1]
    rows = [[f"GET {name}", last["samples"][name], last["bytes"][name], mmm(h["p50_ms"]), mmm(h["p99_ms"])]
            for name, h in summary["http"].items()]
    rows += [[f"render, {name} (in-process)", last["render"][name]["samples"], "", mmm(r), ""]
             for name, r in summary["render"].items()]
    print(_common.table(["what", "samples", "bytes", "p50 ms min/med/max", "p99 ms min/med/max"], rows))
    print("\nratios (min / median / max over the runs): " + "; ".join(
        f"{k} {mmm(v)}" for k, v in summary["ratio"].items()))
    print(f"{len(runs)} runs; load average {result['loadavg_before']} -> {result['loadavg_after']}")


if __name__ == "__main__":
    sys.exit(main())
