"""`llm-cost-exporter run` as deployed: real NVML binding (absent here), a vLLM over HTTP."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL
from exporter.clock import SystemClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from test_demo_and_promtool import free_port

pytestmark = pytest.mark.integration  # the run command as a subprocess


def samples(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_run_with_environment_only_and_no_gpu_driver():
    workload = Workload(SystemClock(), 2000.0)
    workload.set_constant_load(0.5)
    server = SimulatedVllm(workload, MODEL).start()
    port = free_port()
    env = {**os.environ, "LLMCOST_INSTANCE_HOURLY": "3.6", "LLMCOST_ENGINE_URL": server.url}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine starts Python slowly
        got = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                got = samples(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                continue
            if got.get(("llmcost_tokens_total", (("direction", "input"), ("engine", "vllm"), ("model", MODEL))), 0) > 0:
                break
        # No NVIDIA driver on this machine: the NVML source is down, named, and nothing else suffers.
        assert got[("llmcost_source_up", (("name", "nvml"), ("source", "nvml")))] == 0
        assert got[("llmcost_source_errors_total", (("name", "nvml"), ("reason", "library_not_found"), ("source", "nvml")))] >= 1
        assert got[("llmcost_source_up", (("name", "vllm"), ("source", "engine")))] == 1
        assert got[("llmcost_tokens_total", (("direction", "input"), ("engine", "vllm"), ("model", MODEL)))] > 0
        assert got[("llmcost_spend_total", (("component", "instance"), ("currency", "USD")))] > 0
        assert not any(k[0] == "llmcost_gpu_power_watts" for k in got)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        server.stop()
    assert process.returncode == 0
    nvml_lines = [line for line in stderr.splitlines() if "source=nvml" in line]
    assert len(nvml_lines) == 1, stderr  # one log line for the fault, not one per retry
