"""The simulated node the benchmarks measure, and the processes around the exporter.

NODE: 8 simulated GPUs, 4 vLLM endpoints (2 GPUs each), 3 distinct models (two endpoints are
replicas of the same model), compared with 2 APIs, cloud pricing with an electricity price so the
energy-cost series exist. Default cadences (GPU 1 s, engines 5 s, window 5 m).

    python bench/_node.py engines --count 4          # serve the simulated vLLM endpoints; prints their URLs
    python bench/_node.py baseline --exposition F --port P
        # a bare prometheus_client registry (Gauge/Counter objects) holding the same samples as the
        # exposition in F, served by prometheus_client.start_http_server
    python bench/_node.py floor --exposition F --port P
        # the exporter's own web server (exporter.web.WebServer) answering /metrics with the bytes
        # of F, rendered beforehand: the floor of a scrape on the exporter's server
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer

import _common  # also puts the checkout on sys.path

MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
          "Qwen/Qwen2.5-32B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3")
CAPACITY = 2400.0  # tokens/s at saturation, per endpoint
HOURLY = 16.288  # g5.48xlarge (8x A10G), AWS us-east-1 on-demand
APIS = ["gpt-4o-mini", "gpt-4o"]


def node_config(urls: list[str], gpus: int = 8, models_per_engine: int = 1) -> dict:
    """The exporter's configuration (a `run` config file's content) for the benchmark node."""
    per = max(1, gpus // max(1, len(urls)))
    return {
        "pricing": {"mode": "cloud", "cloud": {"hourly": HOURLY},
                    "energy": {"electricity_per_kwh": 0.12, "pue": 1.3}},
        "gpu": {"backend": "simulated", "simulated": {"count": gpus}},
        "compare": {"apis": list(APIS)},
        "engines": [{"name": f"vllm-{i}", "url": url, "gpus": [g for g in range(i * per, (i + 1) * per) if g < gpus],
                     "capacity_tokens_per_s": CAPACITY} for i, url in enumerate(urls)],
    }


# -- simulated vLLM endpoints serving one or more models ----------------------------------------

class _ModelSim:
    """What exporter.demo.vllm_server._VllmCollector reads from a SimulatedVllm, for one model."""

    def __init__(self, workload, model: str):
        self.workload, self.model = workload, model
        self.data_parallel, self.v0_names, self._started_at = 1, False, time.time()

    def served_counters(self):
        return self.workload.counters()


class _Merged:
    """vLLM's exposition for several models: one family per name, the models' samples in it."""

    def __init__(self, sims):
        self.sims = sims

    def describe(self):
        return []

    def collect(self):
        from exporter.demo.vllm_server import _VllmCollector

        families = {}
        for sim in self.sims:
            for family in _VllmCollector(sim).collect():
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        return list(families.values())


class MultiModelVllm:
    """A real HTTP /metrics in vLLM's V1 format (prometheus_client text, as vLLM serves it) for
    one or more models, each driven by a demo Workload."""

    def __init__(self, workloads_and_models, host="127.0.0.1", port=0):
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        registry = CollectorRegistry()
        registry.register(_Merged([_ModelSim(w, m) for w, m in workloads_and_models]))

        self._httpd = _common.serve(lambda _path: (200, CONTENT_TYPE_LATEST, generate_latest(registry)), host, port)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


# -- a local API server for the Kubernetes features (no cluster here) ----------------------------

KUBE_NODE = "bench-node"


def kube_api_server(engine_urls: list[str]) -> tuple[ThreadingHTTPServer, str]:
    """Answers GET /api/v1/nodes/<name> with the EKS g5.12xlarge spot Node fixture of the tests and
    the pod lists with one Running, annotated pod per engine URL (podIP 127.0.0.1, llmcost.io/port
    the engine's port), in the v1 wire format. Selectors are not applied: every pod is on this node."""
    import copy
    import urllib.parse

    data = _common.ROOT / "tests" / "data" / "kube"
    node = json.loads((data / "node-eks-karpenter-spot-g5.12xlarge.json").read_text())
    node["metadata"]["name"] = KUBE_NODE
    template = json.loads((data / "podlist-llm-node.json").read_text())["items"][0]
    pods = []
    for i, url in enumerate(engine_urls):
        pod = copy.deepcopy(template)
        pod["metadata"]["name"] = f"vllm-{i}"
        pod["metadata"]["uid"] = f"00000000-0000-4000-8000-{i:012d}"
        pod["metadata"]["annotations"] = {"llmcost.io/port": str(urllib.parse.urlsplit(url).port),
                                          "llmcost.io/capacity-tokens-per-second": str(int(CAPACITY)),
                                          "llmcost.io/gpus": f"{2 * i},{2 * i + 1}"}
        pod["spec"]["nodeName"] = KUBE_NODE
        pod["status"]["podIP"], pod["status"]["podIPs"] = "127.0.0.1", [{"ip": "127.0.0.1"}]
        pods.append(pod)
    pod_list = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": pods}

    def respond(path: str):
        path = path.split("?", 1)[0]
        obj = node if path == f"/api/v1/nodes/{KUBE_NODE}" else pod_list if path.endswith("/pods") else None
        body = json.dumps(obj if obj is not None else {"kind": "Status", "code": 404}).encode()
        return 200 if obj is not None else 404, "application/json", body

    server = _common.serve(respond)
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def kube_node_config(api_url: str, gpus: int = 8) -> dict:
    """The node with the Kubernetes features on: price from the Node's labels, engines from the pods."""
    return {
        "pricing": {"mode": "cloud", "energy": {"electricity_per_kwh": 0.12, "pue": 1.3}},
        "gpu": {"backend": "simulated", "simulated": {"count": gpus}},
        "compare": {"apis": list(APIS)},
        "kubernetes": {"enabled": True, "node_name": KUBE_NODE, "api_url": api_url, "discovery": {"enabled": True}},
    }


def _engines_main(args) -> int:
    from exporter.clock import SystemClock
    from exporter.demo.workload import Workload

    clock = SystemClock()
    servers = []
    for i in range(args.count):
        models = [MODELS[i % len(MODELS)]] if args.models_per_engine == 1 else \
            [f"model-{i}-{j}" for j in range(args.models_per_engine)]
        servers.append(MultiModelVllm([(Workload(clock, CAPACITY, seed=11 + 7 * i + j), m) for j, m in enumerate(models)]))
    print(json.dumps([s.url for s in servers]), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


# -- the baseline: a bare prometheus_client registry with the same samples -----------------------

def baseline_registry(exposition: str):
    """Direct-instrumentation Gauge/Counter objects with the exporter's names, labels and values."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    disable_created_metrics()  # the exporter serves no _created samples
    registry = CollectorRegistry()
    for family in text_string_to_metric_families(exposition):
        if not family.samples:
            continue
        labelnames = sorted({k for s in family.samples for k in s.labels})
        if family.type == "counter":
            metric = Counter(family.name, family.documentation or family.name, labelnames, registry=registry)
            for s in family.samples:
                (metric.labels(**s.labels) if labelnames else metric).inc(s.value)
        else:
            metric = Gauge(family.name, family.documentation or family.name, labelnames, registry=registry)
            for s in family.samples:
                (metric.labels(**s.labels) if labelnames else metric).set(s.value)
    return registry


def _baseline_main(args) -> int:
    from prometheus_client import start_http_server

    registry = baseline_registry(open(args.exposition).read())
    start_http_server(args.port, addr="127.0.0.1", registry=registry)
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


# -- the floor: the exporter's own server and negotiation, the body rendered beforehand ----------

class PreRendered:
    """In place of the server's LineCache: the same bytes every time, rendered by the exporter
    before (what a scrape costs with no collection and no encoding at all)."""

    def __init__(self, body: bytes):
        self.body = body

    def encode(self, registry, encoder, content_type: str) -> bytes:
        return self.body


def _floor_main(args) -> int:
    from exporter.web import WebServer

    import types

    web = WebServer(types.SimpleNamespace(registry=None), f"127.0.0.1:{args.port}")  # the body needs no registry
    web.httpd.line_cache = PreRendered(pathlib.Path(args.exposition).read_bytes())
    web.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    web.stop()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("engines")
    e.add_argument("--count", type=int, default=4)
    e.add_argument("--models-per-engine", type=int, default=1)
    for cmd in ("baseline", "floor"):
        b = sub.add_parser(cmd)
        b.add_argument("--exposition", required=True)
        b.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    return {"engines": _engines_main, "baseline": _baseline_main, "floor": _floor_main}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
