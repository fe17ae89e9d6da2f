#!/usr/bin/env python3
"""Steady-state overhead of the exporter process on a realistic node: CPU, RSS, startup.

    .venv/bin/python bench/overhead.py                  # 3 runs of 5 minutes (about 17 minutes)
    .venv/bin/python bench/overhead.py --kubernetes     # also with the Kubernetes features, and without .pyc
    .venv/bin/python bench/overhead.py --quick          # smoke test size (one run, 3 s)

The node: 8 simulated GPUs sampled every second (NVML + accounting), 2 vLLM endpoints of real size
(bench/_node.py: each a real vLLM 0.33.0 page's every family and bucket, about 52 kB, one model
each) polled every 5 s, 2 compared APIs, each process scraped every 15 s (Prometheus 2.42's
Accept header). Processes, all measured side by side in each run through /proc/<pid>/stat and
/proc/<pid>/status:

- `exporter`: `python -m exporter run` on that node, without Kubernetes features.
- `node_exporter`: Debian's prometheus-node-exporter (Go) with its default collectors, scraped
  at the same interval: what the exporter every node already runs costs.
- `baseline`: a bare prometheus_client process (bench/_node.py baseline) serving the same samples
  as the exporter from plain Gauge/Counter objects: what any Python exporter of this size costs at
  rest, with no sampling at all.
- with --kubernetes, `exporter + kubernetes`: the instance priced from the Node's labels
  (refresh 5 m), the engines discovered from annotated pods (list every 30 s), against a local API
  server answering in the v1 wire format (bench/_node.py kube_api_server); and both exporters
  without any .pyc file.

Python bytecode: the image byte-compiles at install (Dockerfile) and its root filesystem is
read-only, so the exporter runs from .pyc files that never change. Here the exporters and the
baseline run the same way: from a bytecode cache (PYTHONPYCACHEPREFIX) filled by a priming run
before anything is measured. Without .pyc (PYTHONDONTWRITEBYTECODE=1: how a venv installed with
--no-compile runs) RSS and startup change, not CPU.

The simulated vLLM endpoints run in a separate process, so their CPU is not counted; the simulated
NVML runs inside the exporter (as the real pynvml would), so its cost is. CPU is counted from the
end of a warm-up (--warmup) to the end; RSS is sampled every 5 s (max of VmRSS, and VmHWM);
wake-ups are the context switches of the process's threads over the same time (those of a
connection's thread, gone when it ends, are not counted).
Startup: from process start to the first scrape that has every GPU, every engine's tokens and the
hourly cost. Each run starts every process afresh; figures are min / median / max over the runs,
ratios are taken within a run. Targets (exit 1 when the median misses): exporter <= 5 millicores,
<= 48 MiB RSS, startup <= 1.5 s; with --kubernetes also <= 5 millicores and <= 96 MiB with them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import _common
import yaml
from _common import PROMETHEUS_ACCEPT

NAME = "overhead"
GPUS = 8
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"  # Debian's prometheus-node-exporter
CPU_TARGET_MILLICORES, RSS_TARGET_MIB = 5.0, 48.0


def scrape(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def complete(text: str, engines_expected: int) -> bool:
    engines = {line.split('engine="', 1)[1].split('"', 1)[0] for line in text.splitlines()
               if line.startswith("llmcost_tokens_total{")}
    power = sum(1 for line in text.splitlines() if line.startswith("llmcost_gpu_power_watts{"))
    return power == GPUS and len(engines) == engines_expected and "\nllmcost_hourly_cost{" in text


def python_env(pycache: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def start_timed(args: list[str], port: int, env: dict, engines: int,
                timeout: float = 60.0) -> tuple[subprocess.Popen, dict]:
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
        if complete(text, engines):
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
        self.switches0 = _common.context_switches(self.pid)

    def sample_rss(self):
        self.rss_max = max(self.rss_max, _common.status_bytes(self.pid, "VmRSS"))

    def end(self) -> dict:
        cpu, wall = _common.cpu_seconds(self.pid) - self.cpu0, time.monotonic() - self.t0
        switches = _common.context_switches(self.pid) - self.switches0
        return {"cpu_seconds": cpu, "wall_seconds": wall, "context_switches_per_s": switches / wall, "cpu_percent_of_one_core": 100.0 * cpu / wall,
                "millicores": 1000.0 * cpu / wall, "rss_max_mib": _common.mib(self.rss_max),
                "rss_end_mib": _common.mib(_common.status_bytes(self.pid, "VmRSS")),
                "vm_hwm_mib": _common.mib(_common.status_bytes(self.pid, "VmHWM")),
                "scrapes": self.scrapes, "scrape_errors": self.scrape_errors}


def variants(args, configs: dict, pycache: str) -> list[tuple[str, str, str | None]]:
    """(process name, config, bytecode cache) of the exporters this run measures."""
    plain = [("exporter", "plain", pycache)]
    if not args.kubernetes:
        return plain
    return plain + [("exporter + kubernetes", "kubernetes", pycache), ("exporter, no .pyc", "plain", None),
                    ("exporter + kubernetes, no .pyc", "kubernetes", None)]


def start_exporters(args, urls: list[str], api_url: str, tmp: str, procs: list) -> tuple[list, dict]:
    """The exporters this run measures, each timed to its first complete scrape, and node_exporter."""
    from _node import kube_node_config, node_config

    pycache = f"{tmp}/pycache"
    configs = {}
    for name, config in (("plain", node_config(urls, GPUS)), ("kubernetes", kube_node_config(api_url, GPUS))):
        config["gpu"]["interval"] = f"{args.gpu_interval * 1000:g}ms"
        configs[name] = f"{tmp}/{name}.yml"
        with open(configs[name], "w") as f:
            yaml.safe_dump(config, f)

    def run_args(config: str, port: int) -> list[str]:
        return [sys.executable, "-m", "exporter", "run", f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]

    port = _common.free_port()  # priming run: fills the bytecode cache, measures nothing
    prime, _ = start_timed(run_args(configs["kubernetes" if args.kubernetes else "plain"], port), port,
                           python_env(pycache), len(urls))
    _common.stop(prime)
    watches, startup = [], {}
    for name, config, cache in variants(args, configs, pycache):
        port = _common.free_port()
        proc, startup[name] = start_timed(run_args(configs[config], port), port, python_env(cache), len(urls))
        procs.append(proc)
        watches.append(Watch(name, proc.pid, port))
    port = _common.free_port()
    t0 = time.monotonic()
    node_exporter = _common.spawn([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                  stderr=subprocess.DEVNULL)
    procs.append(node_exporter)
    _common.wait_http(f"http://127.0.0.1:{port}/metrics")
    startup["node_exporter"] = {"first_answer_s": time.monotonic() - t0}
    watches.append(Watch("node_exporter", node_exporter.pid, port))
    return watches, startup


def start_baseline(watches: list, tmp: str, procs: list, startup: dict) -> None:
    """The bare prometheus_client process, holding the exporter's samples as they are now."""
    with open(f"{tmp}/exposition.txt", "w") as f:
        f.write(scrape(watches[0].port))
    port = _common.free_port()
    t0 = time.monotonic()
    baseline = _common.spawn([sys.executable, str(_common.ROOT / "bench" / "_node.py"), "baseline",
                              f"--exposition={tmp}/exposition.txt", f"--port={port}"],
                             stdout=subprocess.PIPE, text=True, env=python_env(f"{tmp}/pycache"))
    procs.append(baseline)
    assert baseline.stdout.readline().strip() == "ready"
    startup["baseline"] = {"first_answer_s": time.monotonic() - t0}
    watches.append(Watch("baseline", baseline.pid, port))


def scrape_every(interval: float, watches: list, stop: threading.Event) -> None:
    while not stop.wait(interval):
        for w in list(watches):
            try:
                scrape(w.port)
                w.scrapes += 1
            except OSError:
                w.scrape_errors += 1


def one_run(args, urls: list[str], api_url: str, tmp: str) -> dict:
    """Start every process afresh, warm up, measure CPU and RSS side by side; the run's figures."""
    procs: list = []
    stop = threading.Event()
    try:
        watches, startup = start_exporters(args, urls, api_url, tmp, procs)
        threading.Thread(target=scrape_every, args=(args.scrape_interval, watches, stop), daemon=True).start()
        time.sleep(args.warmup)
        start_baseline(watches, tmp, procs, startup)  # after the warm-up: every series present
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
        samples = {w.name: sum(1 for line in scrape(w.port).splitlines() if line and not line.startswith("#"))
                   for w in watches}
    finally:
        stop.set()
        for proc in reversed(procs):
            _common.stop(proc)
    return {"measured": measured, "startup": startup, "samples": samples}


def spread(values: list[float]) -> dict:
    if not values:  # a ratio to a reference that used no measurable CPU in any run (a --quick run): none to give
        return {"min": None, "median": None, "max": None, "runs": []}
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


def summary(runs: list[dict]) -> dict:
    """Per process: min/median/max over the runs of millicores and RSS; the exporters' ratios to
    the same run's baseline and node_exporter."""
    out = {}
    for name in runs[0]["measured"]:
        out[name] = {"millicores": spread([r["measured"][name]["millicores"] for r in runs]),
                     "rss_max_mib": spread([r["measured"][name]["rss_max_mib"] for r in runs]),
                     "context_switches_per_s": spread([r["measured"][name]["context_switches_per_s"] for r in runs])}
        if name.startswith("exporter"):
            for ref in ("baseline", "node_exporter"):
                out[name][f"ratio_to_{ref}"] = {
                    figure: spread([r["measured"][name][figure] / r["measured"][ref][figure]
                                    for r in runs if r["measured"][ref][figure]])
                    for figure in ("millicores", "rss_max_mib")}
    return out


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="fresh processes and a full measurement each")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of measurement after the warm-up, per run")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds after startup before CPU is counted")
    p.add_argument("--engines", type=int, default=2, help="simulated vLLM endpoints (one model each, real size)")
    p.add_argument("--scrape-interval", type=float, default=15.0)
    p.add_argument("--gpu-interval", type=float, default=1.0, help="the exporters' gpu.interval (NVML sampling + accounting)")
    p.add_argument("--kubernetes", action="store_true",
                   help="also the exporter with its Kubernetes features, and both without .pyc files")
    p.add_argument("--name", default=NAME, help="results file name (bench/results/<name>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.scrape_interval, args.runs = 3.0, 2.0, 1.0, 1
    load_before = _common.loadavg()
    tmp = tempfile.TemporaryDirectory(prefix="bench-overhead-")
    engines = api = None
    runs = []
    try:
        engines = _common.spawn([sys.executable, str(_common.ROOT / "bench" / "_node.py"), "engines",
                                 "--count", str(args.engines)], stdout=subprocess.PIPE, text=True)
        urls = json.loads(engines.stdout.readline())
        from _node import kube_api_server

        api, api_url = kube_api_server(urls)
        page_bytes = [len(_common.wait_http(u)) for u in urls]
        for _ in range(args.runs):
            runs.append(one_run(args, urls, api_url, tmp.name))
            runs[-1]["loadavg_after"] = _common.loadavg()
    finally:
        _common.stop(engines)
        if api is not None:
            api.shutdown()
        tmp.cleanup()
    figures = summary(runs)
    result = {"name": args.name, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick,
              "setup": {"gpus": GPUS, "engines": args.engines, "engine_page_bytes": page_bytes, "apis": 2,
                        "gpu_interval_s": args.gpu_interval, "engine_interval_s": 5,
                        "scrape_interval_s": args.scrape_interval, "duration_s": args.duration,
                        "warmup_s": args.warmup, "runs": args.runs, "node_exporter": NODE_EXPORTER},
              "runs": runs, "summary": figures,
              "reference": {"dcgm_exporter_chart_requests": {"millicores": 100, "memory_mib": 128}}}
    result["targets"] = targets(figures, runs)
    path = _common.write_results(args.results_dir, args.name, result)
    print_table(figures, runs, args, load_before, result["loadavg_after"])
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


def targets(figures: dict, runs: list[dict]) -> dict:
    """Judged on the median of the runs (one run on a shared machine decides nothing)."""
    e = figures["exporter"]
    out = {f"cpu_le_{CPU_TARGET_MILLICORES:g}_millicores": e["millicores"]["median"] <= CPU_TARGET_MILLICORES,
           f"rss_le_{RSS_TARGET_MIB:g}MiB": e["rss_max_mib"]["median"] <= RSS_TARGET_MIB,
           "startup_le_1.5s": statistics.median(r["startup"]["exporter"]["first_complete_scrape_s"] for r in runs) <= 1.5}
    if "exporter + kubernetes" in figures:
        k = figures["exporter + kubernetes"]
        out["cpu_k8s_le_5_millicores"] = k["millicores"]["median"] <= CPU_TARGET_MILLICORES
        out["rss_k8s_le_96MiB"] = k["rss_max_mib"]["median"] <= 96
    return out


def print_table(figures: dict, runs: list[dict], args, load_before, load_after) -> None:
    def mmm(s: dict) -> str:
        return "–" if s["median"] is None else f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}"

    rows = []
    for name, f in figures.items():
        ratios = [mmm(f[f"ratio_to_{ref}"][fig]) if f"ratio_to_{ref}" in f else ""
                  for ref in ("baseline", "node_exporter") for fig in ("millicores", "rss_max_mib")]
        startup = statistics.median(r["startup"][name].get("first_complete_scrape_s", r["startup"][name]["first_answer_s"])
                                    for r in runs)
        rows.append([name, runs[-1]["samples"][name], mmm(f["millicores"]), mmm(f["rss_max_mib"]),
                     mmm(f["context_switches_per_s"]), *ratios, startup])
    print(_common.table(["process", "samples", "millicores min/med/max", "RSS MiB min/med/max", "wake-ups/s",
                         "CPU x bare", "RSS x bare", "CPU x node_exporter", "RSS x node_exporter", "startup s"], rows))
    print(f"\n{args.runs} runs of {args.duration:g} s after {args.warmup:g} s warm-up; load average {load_before} -> "
          f"{load_after}")


if __name__ == "__main__":
    sys.exit(main())
