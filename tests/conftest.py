import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.gpu.simulated import SimulatedNVML

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def clock():
    return ManualClock()


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
def nvml(clock):
    return SimulatedNVML(clock, count=2, idle_watts=50.0, max_watts=250.0, load_fn=lambda t: 0.5)


def make_config(engines=(), mode="cloud", apis=None, **pricing):
    raw = {"pricing": {"mode": mode}, "gpu": {"backend": "simulated"}, "window": "10m",
           "engines": [{"name": name, "url": url, "interval": "5s", "timeout": "1s", **extra}
                       for name, url, extra in engines]}
    if apis is not None:
        raw["compare"] = {"apis": apis}
    if mode == "cloud":
        raw["pricing"]["cloud"] = {"hourly": pricing.pop("hourly", 3.6)}
    raw["pricing"].update(pricing)
    return from_dict(raw, environ={})


@pytest.fixture
def exporter_for(clock, nvml):
    def make(config, backend=None):
        return Exporter(config, clock=clock, nvml_backend=backend or nvml)
    return make


def run_for(clock, exporter, seconds, step=5.0):
    """Advance the manual clock in steps, sampling everything at each (the scheduler's job, done exactly)."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        exporter.sample_all()


def assert_matches(expect: dict, got: dict, where: str, tolerance: float):
    """Every expected figure (nested dicts too) is present and within the relative tolerance."""
    for key, want in expect.items():
        assert key in got, f"{where}: {key!r} is not computed"
        if isinstance(want, dict):
            assert_matches(want, got[key], f"{where}.{key}", tolerance)
        else:
            assert got[key] == pytest.approx(want, rel=tolerance), f"{where}.{key}"


def value(exporter, metric, **labels):
    """A sample value through the real registry (None if absent)."""
    return exporter.registry.get_sample_value(metric, labels)


@pytest.fixture
def dynamic_server():
    """A real HTTP engine whose body is computed on every GET: body_fn(n) for the n-th request."""
    servers = []

    def make(body_fn, content_type="text/plain; version=0.0.4"):
        calls = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                calls[0] += 1
                data = body_fn(calls[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
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


@pytest.fixture(scope="module")
def mutable_engine(tmp_path_factory):
    """One real HTTP engine whose counters a test sets directly (for hypothesis, module-scoped)."""
    state = {"prompt": 0, "generated": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("# TYPE vllm:prompt_tokens_total counter\n"
                    f'vllm:prompt_tokens_total{{model_name="m"}} {state["prompt"]}\n'
                    "# TYPE vllm:generation_tokens_total counter\n"
                    f'vllm:generation_tokens_total{{model_name="m"}} {state["generated"]}\n').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    clock = ManualClock()
    nvml = SimulatedNVML(clock, count=1)

    def set_counters(prompt, generated):
        state.update(prompt=prompt, generated=generated)

    def exporter_factory(config):
        return Exporter(config, clock=clock, nvml_backend=nvml)

    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", set_counters, clock, exporter_factory
    server.shutdown()
    server.server_close()


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.prom from the current /metrics instead of comparing (tests/test_golden.py)")
