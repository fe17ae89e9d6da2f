"""What the demo's simulated engine servers share: a real HTTP /metrics rendered by
prometheus_client (as the Python engines serve it), restarts, and faults for tests.

A server simulates one engine kind through its collector (vllm_server, sglang_server): the
collector reads the server's counters (the workload's, less those at the last restart) and
gauges, and yields that engine's metric families. Faults: restart (counters reset), HTTP 500,
garbage, a huge body, a hang, a slow drip, not HTTP at all; `format` serves OpenMetrics.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

S = TypeVar("S", bound="SimulatedServer")


class SimulatedServer:
    thread_name = "sim-engine"

    def __init__(self, workload, model: str, collector, host: str = "127.0.0.1", port: int = 0,
                 process_metrics: bool = False):
        """collector: an EngineCollector subclass, called with this server. process_metrics: also
        serve prometheus_client's process, platform and GC metrics, as an engine using its default
        registry does."""
        self.workload = workload
        self.model = model
        self.fault = "none"
        self.format = "text"  # "text", "openmetrics", or "negotiate" (honour Accept)
        self.huge_bytes = 50 * 1024 * 1024
        self.requests_served = 0
        self._offset = {k: 0 for k in workload.counters()}  # counters at the last restart
        # The process whose counters these are: another server object on the same workload is the
        # same process reachable again, with the same _created.
        self._started_at = workload.process_started
        self._registry = CollectorRegistry()
        self._registry.register(collector(self))
        if process_metrics:
            for default in (ProcessCollector, PlatformCollector, GCCollector):
                default(registry=self._registry)
        handler = type("Handler", (_Handler,), {"sim": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/metrics"

    def start(self: S) -> S:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.thread_name, daemon=True)
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
        """What /metrics reports now (summed over ranks and other labels)."""
        now = self.workload.counters()
        return {k: now[k] - self._offset[k] for k in now}

    def exposition(self, accept: str = "") -> tuple[str, bytes]:
        openmetrics = self.format == "openmetrics" or (
            self.format == "negotiate" and "application/openmetrics-text" in accept)
        if openmetrics:
            return OPENMETRICS_TYPE, generate_openmetrics(self._registry)
        return CONTENT_TYPE_LATEST, generate_latest(self._registry)


class EngineCollector:
    """A prometheus_client collector of one simulated server: the families its engine serves,
    from the server's counters and the workload's gauges now."""

    def __init__(self, sim):
        self.sim = sim

    def describe(self):
        return []

    def collect(self):
        return self.families(self.sim, self.sim.served_counters(), self.sim.workload.gauges())

    def families(self, sim, counters: dict[str, int], gauges: dict[str, float]):
        raise NotImplementedError


def split(total: int, parts: int) -> list[int]:
    """Integer counts per part (rank, label value) that add up exactly to total; each part only
    grows as total grows, so every part is a valid counter."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Handler(BaseHTTPRequestHandler):
    sim: SimulatedServer | None = None  # set on the per-server subclass

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
