"""Engines on real loopback HTTP sockets: the simulated vLLM, a server whose body a test computes
(or fixes), an engine that accepts and never answers, and one module-scoped engine whose counters
a test sets (for hypothesis)."""

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.gpu.simulated import SimulatedNVML
from plugins.nodes import MODEL


def serve_loopback(respond, poll_interval: float = 0.05) -> ThreadingHTTPServer:
    """A real HTTP server on 127.0.0.1 (a free port), serving in a daemon thread: respond(path)
    gives (status, content type, body bytes) for each GET. Stop it with shutdown() and server_close()."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            status, content_type, data = respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True).start()
    return server


@pytest.fixture
def vllm(clock):
    """A simulated vLLM server on a real loopback socket, at a constant 50% load."""
    servers = []

    def make(capacity=1000.0, load=0.5, model=MODEL, data_parallel=1, seed=1):
        workload = Workload(clock, capacity, seed=seed)
        workload.set_constant_load(load)
        server = SimulatedVllm(workload, model, data_parallel=data_parallel).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def dynamic_server():
    """A real HTTP engine whose body is computed on every GET: body_fn(n) for the n-th request."""
    servers = []

    def make(body_fn, content_type="text/plain; version=0.0.4"):
        calls = [0]

        def respond(_path):
            calls[0] += 1
            return 200, content_type, body_fn(calls[0]).encode()

        server = serve_loopback(respond)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/metrics"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def static_server(dynamic_server):
    """A real HTTP server answering every GET with a fixed exposition body."""

    def make(body: str, content_type="text/plain; version=0.0.4; charset=utf-8"):
        return dynamic_server(lambda _call: body, content_type)

    return make


class SilentEngine:
    """A real TCP listener that accepts every connection, reads the request and never answers: each
    scrape of it lasts its whole timeout. Counts the connections open now and the most at once."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/metrics"
        self.accepted = self.open = self.most_open = 0
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._connections.append(conn)
                self.accepted += 1
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        try:
            while conn.recv(4096):  # until the client gives up and closes
                pass
        except OSError:
            pass
        with self._lock:
            self.open -= 1

    def close(self):
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes its holder's recv
                conn.close()


@pytest.fixture
def silent_engine():
    engine = SilentEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def mutable_engine(tmp_path_factory):
    """One real HTTP engine whose counters a test sets directly (for hypothesis, module-scoped)."""
    state = {"prompt": 0, "generated": 0}

    def respond(_path):
        return 200, "text/plain; version=0.0.4", (
            "# TYPE vllm:prompt_tokens_total counter\n"
            f'vllm:prompt_tokens_total{{model_name="m"}} {state["prompt"]}\n'
            "# TYPE vllm:generation_tokens_total counter\n"
            f'vllm:generation_tokens_total{{model_name="m"}} {state["generated"]}\n').encode()

    server = serve_loopback(respond)
    clock = ManualClock()
    nvml = SimulatedNVML(clock, count=1)

    def set_counters(prompt, generated):
        state.update(prompt=prompt, generated=generated)

    def exporter_factory(config):
        return Exporter(config, clock=clock, nvml_backend=nvml)

    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", set_counters, clock, exporter_factory
    server.shutdown()
    server.server_close()
