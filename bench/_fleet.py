"""A simulated fleet: N nodes' /metrics, served by one process, for bench/scale.py and the
VictoriaMetrics agreement test (tests/test_victoriametrics.py).

The node is the real exporter's exposition, recorded once in process (8 simulated GPUs, 2 vLLM
engines of 4 GPUs each, 3 models: two on the first engine, one on the second; 3 compared APIs;
cloud pricing with an electricity price), with each counter's rate per second. Node i serves it
with every counter advancing at the recorded rate x a per-node factor (0.5-1.5) and every gauge
other than 0/1 scaled by it, so the fleet's figures differ by node but stay exactly linear in time:
any two backends that scrape it at different instants see the same rates.

One HTTP server, one port: node i is the path /node/i/metrics; the scrape configs give each its
own `instance` (`node-0007:9848`), so Prometheus and vmagent see distinct targets.

    python bench/_fleet.py serve TEMPLATE.json NODES ORIGIN [stamp]   # prints the port, serves until SIGTERM
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import _common  # also puts the checkout on sys.path

APIS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1"]
ENGINE_MODELS = [("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"),
                 ("Qwen/Qwen2.5-32B-Instruct",)]
GPUS = 8
_PATH = re.compile(r"^/node/(\d+)/metrics$")


def instance(i: int) -> str:
    return f"node-{i:04d}:9848"


def record_template() -> list[dict]:
    """The node's exposition from the real exporter, with each counter's rate per second:
    [{"family", "type", "samples": [[name, labels_text, value, rate], ...]}]."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from _node import CAPACITY, MultiModelVllm, node_config
    from exporter.app import Exporter
    from exporter.clock import ManualClock
    from exporter.config import from_dict
    from exporter.demo.workload import Workload
    from exporter.gpu.simulated import SimulatedNVML

    clock = ManualClock(time.time())
    servers = []
    for i, models in enumerate(ENGINE_MODELS):
        loads = []
        for j, model in enumerate(models):
            w = Workload(clock, CAPACITY / len(models), seed=10 * i + j + 1)
            w.set_constant_load(0.3 + 0.2 * i + 0.1 * j)
            loads.append((w, model))
        servers.append(MultiModelVllm(loads))
    try:
        config = node_config([s.url for s in servers], gpus=GPUS)
        config["compare"] = {"apis": list(APIS)}
        exporter = Exporter(from_dict(config, environ={}), clock=clock,
                            nvml_backend=SimulatedNVML(clock, count=GPUS, load_fn=lambda t: 0.45))
        exporter.sample_all()

        def run(seconds):
            for _ in range(int(seconds / 5)):
                clock.advance(5.0)
                exporter.sample_all()

        run(400)
        first = generate_latest(exporter.registry).decode()
        run(60)
        second = generate_latest(exporter.registry).decode()
    finally:
        for s in servers:
            s.stop()

    def samples(text):
        return {(s.name, _labels(s.labels)): s.value for f in text_string_to_metric_families(text) for s in f.samples}

    later = samples(second)
    families = []
    for f in text_string_to_metric_families(first):
        rows = []
        for s in f.samples:
            key = (s.name, _labels(s.labels))
            rate = (later[key] - s.value) / 60.0 if f.type == "counter" and key in later else 0.0
            rows.append([s.name, key[1], s.value, max(rate, 0.0)])
        if rows:
            families.append({"family": f.name, "type": f.type, "samples": rows})
    return families


def _labels(labels: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def node_factor(i: int, n: int) -> float:
    return 0.5 + (i + 0.5) / n


def value_at(kind: str, value: float, rate: float, factor: float, t: float, origin: float) -> float:
    if kind == "counter":
        return factor * (value + rate * (t - origin))
    return value if value in (0.0, 1.0) else factor * value


def render(template: list[dict], factor: float, t: float, origin: float, stamp: bool = False) -> bytes:
    """The node's exposition at time t; `stamp`: each sample carries t (ms), as the text format allows."""
    suffix = f" {round(t * 1000)}\n" if stamp else "\n"
    out = []
    for f in template:
        out.append(f"# TYPE {f['family']} {f['type']}\n")
        for name, labels, value, rate in f["samples"]:
            v = value_at(f["type"], value, rate, factor, t, origin)
            out.append(f"{name}{{{labels}}} {v!r}{suffix}" if labels else f"{name} {v!r}{suffix}")
    return "".join(out).encode()


def serve(template_path: str, nodes: int, origin: float, stamp: bool = False) -> int:
    template = json.loads(open(template_path).read())

    def respond(path: str):
        match = _PATH.match(path.split("?")[0])
        if not match or int(match.group(1)) >= nodes:
            return 404, "text/plain", b"no such node\n"
        t = round(time.time(), 3)
        body = render(template, node_factor(int(match.group(1)), nodes), t, origin, stamp)
        return 200, "text/plain; version=0.0.4; charset=utf-8", body

    server = _common.serve(respond)
    print(json.dumps(server.server_address[1]), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


def scrape_config(job: str, port: int, nodes: int, interval: str) -> dict:
    """One scrape job over the fleet, for Prometheus and vmagent alike."""
    return {"job_name": job, "scrape_interval": interval,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                "labels": {"__metrics_path__": f"/node/{i}/metrics", "instance": instance(i)}}
                               for i in range(nodes)]}


class Fleet:
    """The serving child process: `with Fleet(template_path, nodes, origin) as fleet: fleet.port`.

    `stamp`: samples carry the time their values were computed for, so two scrapers on a loaded
    machine store exactly linear counters (without, a late answer shifts a value against its scrape
    timestamp, and a rate over a few seconds by as much: the agreement test's short windows)."""

    def __init__(self, template_path: str, nodes: int, origin: float, stamp: bool = False):
        self.proc = _common.spawn([sys.executable, __file__, "serve", template_path, str(nodes), repr(origin),
                                   *(["stamp"] if stamp else [])], stdout=subprocess.PIPE, text=True)
        self.port = int(json.loads(self.proc.stdout.readline()))

    def stop(self) -> None:
        _common.stop(self.proc)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Victoria:
    """VictoriaMetrics single-node, vmagent scraping `scrape` (a scrape config's jobs) and remote-writing
    to it, and vmalert evaluating `rules` against it and writing the records back: Debian's
    victoria-metrics package (`apt-get install -y victoria-metrics`). Queries go to VictoriaMetrics'
    Prometheus API. `notifier` is an Alertmanager URL (vmalert needs one for alerting rules; a
    port that answers nothing does: sending fails, evaluating does not). VictoriaMetrics makes new
    samples searchable within seconds; `force_flush` > 0 calls its /internal/force_flush that often
    (VictoriaMetrics' documented hook for automated tests), so a test's records chain quickly."""

    def __init__(self, root: str, scrape_configs: list[dict], rules: list[str], interval: str, notifier: str,
                 force_flush: float = 0.0):
        import yaml

        def port() -> int:
            return _common.free_port()

        self.root, self.procs = root, []
        self.vm_port, self.agent_port, self.alert_port = port(), port(), port()
        self.url = f"http://127.0.0.1:{self.vm_port}"
        with open(f"{root}/vmagent.yml", "w") as f:
            yaml.safe_dump({"global": {"scrape_interval": interval}, "scrape_configs": scrape_configs}, f)
        self.log = open(f"{root}/victoria.log", "w")
        # latencyOffset 0: a sample is queryable at once, as in Prometheus (the default hides the last 30 s).
        self._start("victoria-metrics", f"-storageDataPath={root}/vm", f"-httpListenAddr=127.0.0.1:{self.vm_port}",
                    "-search.latencyOffset=0s", "-retentionPeriod=100y", "-loggerLevel=ERROR")
        _common.wait_http(self.url + "/health", timeout=60)
        self._start("vmagent", f"-promscrape.config={root}/vmagent.yml", f"-httpListenAddr=127.0.0.1:{self.agent_port}",
                    f"-remoteWrite.url={self.url}/api/v1/write", f"-remoteWrite.tmpDataPath={root}/vmagent",
                    "-loggerLevel=ERROR")
        self._start("vmalert", *(f"-rule={r}" for r in rules), f"-datasource.url={self.url}",
                    f"-remoteWrite.url={self.url}", f"-remoteRead.url={self.url}", f"-evaluationInterval={interval}",
                    # A record that the next rule of its group reads is visible after a flush: keep it short.
                    "-remoteWrite.flushInterval=1s",
                    f"-httpListenAddr=127.0.0.1:{self.alert_port}", f"-notifier.url={notifier}", "-loggerLevel=ERROR")
        _common.wait_http(f"http://127.0.0.1:{self.alert_port}/health", timeout=60)
        self._stopping = threading.Event()
        if force_flush:
            threading.Thread(target=self._flush, args=(force_flush,), daemon=True).start()

    def _flush(self, every: float) -> None:
        while not self._stopping.wait(every):
            try:
                _common.wait_http(self.url + "/internal/force_flush", timeout=5)
            except TimeoutError:
                pass

    def _start(self, binary: str, *args: str) -> None:
        self.procs.append(_common.spawn([binary, *args], stdout=self.log, stderr=subprocess.STDOUT))

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        import urllib.parse
        import urllib.request

        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=120) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body}")
        return body["data"]["result"]

    def metrics(self, which: str) -> str:
        """/metrics of `vm`, `vmagent` or `vmalert`."""
        import urllib.request

        port = {"vm": self.vm_port, "vmagent": self.agent_port, "vmalert": self.alert_port}[which]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            return r.read().decode()

    def stop(self) -> None:
        self._stopping.set()
        for proc in reversed(self.procs):
            _common.stop(proc, timeout=30)
        self.log.close()


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), stamp=sys.argv[5:] == ["stamp"]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
