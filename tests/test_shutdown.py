"""SIGTERM: a clean shutdown within 2 s, for `run` and `demo`, even with an engine read hanging
in a worker thread and a client holding a connection open (docs/reliability.md)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import MODEL
from exporter.clock import SystemClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.storage import FILE_NAME
from test_demo_and_promtool import free_port

pytestmark = pytest.mark.integration  # the run and demo commands as subprocesses

BUDGET_S = 2.0


def wait_serving(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError("not serving")


def terminate(process) -> tuple[float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    return time.monotonic() - started, stderr


@pytest.fixture
def hanging_engine():
    workload = Workload(SystemClock(), 1000.0)
    workload.set_constant_load(0.5)
    server = SimulatedVllm(workload, MODEL).start()
    yield server
    server.stop()


def test_run_stops_within_2s_with_a_hanging_engine_and_an_open_connection(hanging_engine, tmp_path):
    port = free_port()
    env = {**os.environ, "LLMCOST_INSTANCE_HOURLY": "3.6", "LLMCOST_ENGINE_URL": hanging_engine.url,
           "LLMCOST_GPU_BACKEND": "simulated"}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}",
                                f"--storage.path={tmp_path}"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    idle = None
    try:
        wait_serving(port)
        hanging_engine.fault = "hang"  # the next scrape (every 5 s, timeout 3 s) hangs in a worker thread
        deadline = time.monotonic() + 10
        while hanging_engine.requests_served < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        idle = socket.create_connection(("127.0.0.1", port))  # a scraper that connected and went quiet
        took, stderr = terminate(process)
    finally:
        if idle:
            idle.close()
        if process.poll() is None:
            process.kill()
    print(f"run: SIGTERM to exit {took:.2f}s")
    assert process.returncode == 0, stderr
    assert took < BUDGET_S, f"{took:.2f}s\n{stderr}"
    assert stderr.rstrip().endswith("msg=stopped")
    assert (tmp_path / FILE_NAME).exists()  # the last totals were written on the way out


def test_demo_stops_within_2s():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}",
                                "--demo.summary-interval=1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_serving(port)
        time.sleep(1.5)
        took, stderr = terminate(process)
    finally:
        if process.poll() is None:
            process.kill()
    print(f"demo: SIGTERM to exit {took:.2f}s")
    assert process.returncode == 0, stderr
    assert took < BUDGET_S and "demo stopped" in stderr, f"{took:.2f}s\n{stderr}"
