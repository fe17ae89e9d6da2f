#!/usr/bin/env python3
"""Steady-state overhead of the exporter process at the default cadences: CPU, RSS, startup.

    .venv/bin/python bench/overhead.py                  # 10 minutes
    .venv/bin/python bench/overhead.py --quick          # smoke test size (15 s)

Processes, all measured in the same run through /proc/<pid>/stat and /proc/<pid>/status:

- `exporter`: `python -m exporter run`, the benchmark node (bench/_node.py: 8 simulated GPUs,
  4 vLLM endpoints, 3 models, 2 APIs), default cadences: NVML 1 s, engines 5 s, window 5 m.
- `exporter + kubernetes`: the same node with the Kubernetes features on: the instance priced from
  the Node's labels (refresh 5 m), the 4 engines discovered from annotated pods (list every 30 s),
  against a local API server answering in the v1 wire format (bench/_node.py kube_api_server).
- `baseline`: a bare prometheus_client process (bench/_node.py baseline) serving the same samples
  as the exporter from plain Gauge/Counter objects: what any Python exporter of this size costs at
  rest, with no sampling at all.

Python bytecode: the image byte-compiles at install (Dockerfile) and its root filesystem is
read-only, so the exporter runs from .pyc files that never change. Here the two exporters and the
baseline run the same way: from a bytecode cache (PYTHONPYCACHEPREFIX) filled by a priming run of
the Kubernetes exporter before anything is measured. The two exporters are also run without any
.pyc (PYTHONDONTWRITEBYTECODE=1, compiled from source at every start: how a venv installed with
--no-compile, or an image installed so, runs), because that changes RSS and startup, not CPU.

This script scrapes each process every 15 s (Prometheus 2.42's Accept header). The
simulated vLLM endpoints run in a separate process, so their CPU is not counted; the simulated
NVML runs inside the exporter (as the real pynvml would), so its cost is. CPU is counted from the
end of a warm-up (--warmup) to the end; RSS is sampled every 5 s (max of VmRSS, and VmHWM).
Startup: from process start to the first scrape that has every GPU, every engine's tokens and the
hourly cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

import _common
from _common import PROMETHEUS_ACCEPT

NAME = "overhead"
GPUS, ENGINES = 8, 4


def scrape(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def complete(text: str) -> bool:
    engines = {line.split('engine="', 1)[1].split('"', 1)[0] for line in text.splitlines()
               if line.startswith("llmcost_tokens_total{")}
    power = sum(1 for line in text.splitlines() if line.startswith("llmcost_gpu_power_watts{"))
    return power == GPUS and len(engines) == ENGINES and "\nllmcost_hourly_cost{" in text


def python_env(pycache: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def start_timed(args: list[str], port: int, env: dict, timeout: float = 60.0) -> tuple[subprocess.Popen, dict]:
    """Spawn and poll /metrics every 10 ms: seconds to the first answer and to the first complete one."""
    t0 = time.monotonic()
    proc = _common.spawn(args, cwd=_common.ROOT, env=env)
    first = None
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{args} exited with {proc.returncode}")
        try:
            text = scrape(port)
        except OSError:
            time.sleep(0.01)
            continue
        first = first or time.monotonic() - t0
        if complete(text):
            return proc, {"first_answer_s": first, "first_complete_scrape_s": time.monotonic() - t0}
        time.sleep(0.01)
    _common.stop(proc)
    raise TimeoutError(f"{args}: no complete scrape after {timeout:g}s")


class Watch:
    """CPU and RSS of one process over the measurement window."""

    def __init__(self, name: str, pid: int, port: int):
        self.name, self.pid, self.port = name, pid, port
        self.rss_max = 0
        self.scrapes = 0
        self.scrape_errors = 0

    def begin(self):
        self.cpu0, self.t0 = _common.cpu_seconds(self.pid), time.monotonic()

    def sample_rss(self):
        self.rss_max = max(self.rss_max, _common.status_bytes(self.pid, "VmRSS"))

    def end(self) -> dict:
        cpu, wall = _common.cpu_seconds(self.pid) - self.cpu0, time.monotonic() - self.t0
        return {"cpu_seconds": cpu, "wall_seconds": wall, "cpu_percent_of_one_core": 100.0 * cpu / wall,
                "millicores": 1000.0 * cpu / wall, "rss_max_mib": _common.mib(self.rss_max),
                "rss_end_mib": _common.mib(_common.status_bytes(self.pid, "VmRSS")),
                "vm_hwm_mib": _common.mib(_common.status_bytes(self.pid, "VmHWM")),
                "scrapes": self.scrapes, "scrape_errors": self.scrape_errors}


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of measurement after the warm-up")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds after startup before CPU is counted")
    p.add_argument("--scrape-interval", type=float, default=15.0)
    p.add_argument("--gpu-interval", type=float, default=1.0, help="the exporters' gpu.interval (NVML sampling + accounting)")
    p.add_argument("--name", default=NAME, help="results file name (bench/results/<name>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.scrape_interval = 3.0, 2.0, 1.0
    py = sys.executable
    node = str(_common.ROOT / "bench" / "_node.py")
    load_before = _common.loadavg()
    procs = []
    tmp = tempfile.TemporaryDirectory(prefix="bench-overhead-")
    api = None
    try:
        engines = _common.spawn([py, node, "engines", "--count", str(ENGINES)], stdout=subprocess.PIPE, text=True)
        procs.append(engines)
        urls = json.loads(engines.stdout.readline())
        from _node import kube_api_server, kube_node_config, node_config

        api, api_url = kube_api_server(urls)
        pycache = f"{tmp.name}/pycache"
        configs = {}
        for name, config in (("plain", node_config(urls, GPUS)), ("kubernetes", kube_node_config(api_url, GPUS))):
            config["gpu"]["interval"] = f"{args.gpu_interval * 1000:g}ms"
            configs[name] = f"{tmp.name}/{name}.yml"
            with open(configs[name], "w") as f:
                yaml.safe_dump(config, f)

        def run_args(config: str, port: int) -> list[str]:
            return [py, "-m", "exporter", "run", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn"]

        port = _common.free_port()  # priming run: fills the bytecode cache, measures nothing
        prime, _ = start_timed(run_args(configs["kubernetes"], port), port, python_env(pycache))
        _common.stop(prime)
        watches, startup = [], {}
        for name, config, cache in (("exporter", "plain", pycache), ("exporter + kubernetes", "kubernetes", pycache),
                                    ("exporter, no .pyc", "plain", None),
                                    ("exporter + kubernetes, no .pyc", "kubernetes", None)):
            port = _common.free_port()
            proc, startup[name] = start_timed(run_args(configs[config], port), port, python_env(cache))
            procs.append(proc)
            watches.append(Watch(name, proc.pid, port))
        stop = threading.Event()

        def scraper():
            while not stop.wait(args.scrape_interval):
                for w in list(watches):
                    try:
                        scrape(w.port)
                        w.scrapes += 1
                    except OSError:
                        w.scrape_errors += 1

        thread = threading.Thread(target=scraper, daemon=True)
        thread.start()
        time.sleep(args.warmup)
        # The baseline holds the exporter's samples as they are after the warm-up (all series present).
        with open(f"{tmp.name}/exposition.txt", "w") as f:
            f.write(scrape(watches[0].port))
        bport = _common.free_port()
        t0 = time.monotonic()
        baseline = _common.spawn([py, node, "baseline", f"--exposition={tmp.name}/exposition.txt", f"--port={bport}"],
                                 stdout=subprocess.PIPE, text=True, env=python_env(pycache))
        procs.append(baseline)
        assert baseline.stdout.readline().strip() == "ready"
        startup["baseline"] = {"first_answer_s": time.monotonic() - t0}
        watches.append(Watch("baseline", baseline.pid, bport))
        for w in watches:
            w.begin()
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            for w in watches:
                w.sample_rss()
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        for w in watches:
            w.sample_rss()
        measured = {w.name: w.end() for w in watches}
        stop.set()
        samples = {w.name: sum(1 for l in scrape(w.port).splitlines() if l and not l.startswith("#")) for w in watches}
    finally:
        for proc in reversed(procs):
            _common.stop(proc)
        if api is not None:
            api.shutdown()
        tmp.cleanup()
    base = measured["baseline"]
    result = {"name": args.name, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick,
              "setup": {"gpus": GPUS, "engines": ENGINES, "models": 3, "apis": 2, "gpu_interval_s": args.gpu_interval,
                        "engine_interval_s": 5, "scrape_interval_s": args.scrape_interval, "duration_s": args.duration,
                        "warmup_s": args.warmup},
              "startup": startup, "measured": measured, "samples": samples,
              "reference": {"dcgm_exporter_chart_requests": {"millicores": 100, "memory_mib": 128}},
              "ratio_to_baseline": {k: {"cpu": v["cpu_seconds"] / base["cpu_seconds"] if base["cpu_seconds"] else None,
                                        "rss": v["rss_max_mib"] / base["rss_max_mib"]}
                                    for k, v in measured.items() if k != "baseline"}}
    e, k = measured["exporter"], measured["exporter + kubernetes"]
    result["targets"] = {"cpu_le_0.5pct": e["cpu_percent_of_one_core"] <= 0.5,
                         "cpu_k8s_le_0.5pct": k["cpu_percent_of_one_core"] <= 0.5,
                         "rss_le_64MiB": e["rss_max_mib"] <= 64, "rss_k8s_le_96MiB": k["rss_max_mib"] <= 96,
                         "startup_le_1.5s": startup["exporter"]["first_complete_scrape_s"] <= 1.5}
    path = _common.write_results(args.results_dir, args.name, result)
    rows = [[n, samples[n], m["cpu_seconds"], m["cpu_percent_of_one_core"], m["millicores"], m["rss_max_mib"],
             m["vm_hwm_mib"], startup[n].get("first_complete_scrape_s", startup[n]["first_answer_s"])]
            for n, m in measured.items()]
    print(_common.table(["process", "samples", "CPU s", "% of one core", "millicores", "RSS max MiB", "VmHWM MiB",
                         "startup s"], rows))
    print(f"\n{args.duration:g} s measured after {args.warmup:g} s warm-up; load average {load_before} -> "
          f"{result['loadavg_after']}")
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


if __name__ == "__main__":
    sys.exit(main())
