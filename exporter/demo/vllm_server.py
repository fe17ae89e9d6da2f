"""A simulated vLLM server: a real HTTP /metrics in vLLM's V1 exposition format.

Served with prometheus_client, as vLLM does, so the bytes are what a real server sends: `vllm:`
names, `model_name` and `engine` labels (data-parallel ranks split the counts), `_created`
samples, the `vllm:iteration_tokens_total` histogram that must not be mistaken for a counter.
Faults for tests: restart (counters reset), HTTP 500, garbage, a huge body, a hang, a slow drip,
not HTTP at all, OpenMetrics, the V0 metric names, a renamed model.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics


class SimulatedVllm:
    def __init__(self, workload, model: str, host: str = "127.0.0.1", port: int = 0, data_parallel: int = 1):
        self.workload = workload
        self.model = model
        self.data_parallel = data_parallel
        self.fault = "none"
        self.format = "text"  # "text", "openmetrics", or "negotiate" (honour Accept)
        self.v0_names = False
        self.huge_bytes = 50 * 1024 * 1024
        self.requests_served = 0
        self._offset = {k: 0 for k in workload.counters()}  # counters at the last restart
        self._started_at = time.time()
        self._registry = CollectorRegistry()
        self._registry.register(_VllmCollector(self))
        handler = type("Handler", (_Handler,), {"sim": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/metrics"

    def start(self) -> SimulatedVllm:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sim-vllm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def restart(self) -> None:
        """What a process restart does: every counter starts again from zero."""
        self._offset = self.workload.counters()
        self._started_at = time.time()

    def served_counters(self) -> dict[str, int]:
        """What /metrics reports now (summed over data-parallel ranks)."""
        now = self.workload.counters()
        return {k: now[k] - self._offset[k] for k in now}

    def exposition(self, accept: str = "") -> tuple[str, bytes]:
        openmetrics = self.format == "openmetrics" or (
            self.format == "negotiate" and "application/openmetrics-text" in accept)
        if openmetrics:
            return OPENMETRICS_TYPE, generate_openmetrics(self._registry)
        return CONTENT_TYPE_LATEST, generate_latest(self._registry)


def _split(total: int, parts: int) -> list[int]:
    """Integer counts per data-parallel rank that add up exactly to total."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _VllmCollector:
    def __init__(self, sim: SimulatedVllm):
        self.sim = sim

    def describe(self):
        return []

    def collect(self):
        sim = self.sim
        counters = sim.served_counters()
        gauges = sim.workload.gauges()
        labels = ["model_name", "engine"]
        ranks = [str(i) for i in range(sim.data_parallel)]
        created = sim._started_at

        def counter(name, doc, value):
            family = CounterMetricFamily(name, doc, labels=labels)
            for rank, part in zip(ranks, _split(value, sim.data_parallel), strict=True):
                family.add_metric([sim.model, rank], part, created=created)
            return family

        def gauge(name, doc, value):
            family = GaugeMetricFamily(name, doc, labels=labels)
            for rank in ranks:
                family.add_metric([sim.model, rank], value)
            return family

        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", gauges["running"])
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gauges["waiting"])
        kv_name = "vllm:gpu_cache_usage_perc" if sim.v0_names else "vllm:kv_cache_usage_perc"
        yield gauge(kv_name, "KV-cache usage. 1 means 100 percent usage.", gauges["kv_cache"])
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", counters["input_tokens"])
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", counters["output_tokens"])
        if not sim.v0_names:
            yield counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).",
                          counters["cached_input_tokens"])
        success = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=labels + ["finished_reason"])
        stops = _split(counters["requests"], 10)  # 90% stop, 10% hit the length limit
        for reason, value in (("stop", sum(stops[1:])), ("length", stops[0]), ("abort", 0)):
            for rank, part in zip(ranks, _split(value, sim.data_parallel), strict=True):
                success.add_metric([sim.model, rank, reason], part, created=created)
        yield success
        # A histogram whose name ends in _total: matching counters by suffix would count it.
        total = counters["input_tokens"] + counters["output_tokens"]
        iterations = max(total // 512, 0)
        histogram = HistogramMetricFamily("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                                          labels=labels)
        for rank in ranks:
            histogram.add_metric([sim.model, rank], [("1", 0), ("256", iterations // 3), ("512", iterations),
                                                     ("+Inf", iterations)], sum_value=total)
        yield histogram


class _Handler(BaseHTTPRequestHandler):
    sim: SimulatedVllm | None = None  # set on the per-server subclass

    def do_GET(self):  # noqa: N802
        sim = self.sim
        sim.requests_served += 1
        if self.path.split("?")[0] != "/metrics":
            return self._send(404, "text/plain", b"not found\n")
        fault = sim.fault
        if fault == "http_500":
            return self._send(500, "text/plain", b"Internal Server Error\n")
        if fault == "garbage":
            return self._send(200, "text/plain; version=0.0.4", b"<html>\x00\x01 vllm:prompt_tokens_total{{{ 12 oops\n")
        if fault == "hang":
            time.sleep(30)
            return
        if fault == "not_http":  # something else listens on the port (an SSH banner, say)
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            return
        content_type, body = sim.exposition(self.headers.get("Accept", ""))
        if fault == "huge":
            return self._send_huge(content_type, body)
        if fault == "drip":
            return self._send_drip(content_type, body)
        return self._send(200, content_type, body)

    def _send(self, status, content_type, body):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the exporter gave up on us, as it should

    def _send_huge(self, content_type, body):
        """A valid exposition padded with comments to huge_bytes, without Content-Length."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            pad = b"# " + b"x" * 1022 + b"\n"
            for _ in range(self.sim.huge_bytes // len(pad)):
                self.wfile.write(pad)
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_drip(self, content_type, body):
        """A byte every 0.2 s: each read succeeds, the whole never arrives in time."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            for byte in body[:100]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, fmt, *args):
        pass
