"""The README's demo, run as a user runs it: a subprocess, scraped over HTTP, linted by promtool."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.integration  # the demo as a subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}", "--demo.summary-interval=2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    costs = {}
    while time.monotonic() - started < 30:
        try:
            _, _, text = get(base + "/metrics")
            costs = {s.labels["model"]: s.value for f in text_string_to_metric_families(text)
                     for s in f.samples if s.name == "llmcost_cost_per_million_tokens"}
            if len(costs) == 2:
                break
        except OSError:
            pass
        time.sleep(0.5)
    yield base, time.monotonic() - started, costs, process
    process.terminate()
    process.wait(10)


def test_demo_shows_cost_figures_within_30_seconds(demo):
    _, elapsed, costs, _ = demo
    assert elapsed < 30 and len(costs) == 2, costs
    assert all(c > 0 for c in costs.values())


def test_metrics_have_gpu_token_and_cost_series(demo):
    base, _, _, _ = demo
    _, content_type, text = get(base + "/metrics")
    assert content_type.startswith("text/plain")
    for name in ("llmcost_gpu_power_watts", "llmcost_gpu_energy_joules_total", "llmcost_tokens_total",
                 "llmcost_spend_total", "llmcost_hourly_cost", "llmcost_tokens_per_second", "llmcost_source_up"):
        assert f"\n{name}{{" in text, name
    kinds = {s.labels["engine"]: s.labels["engine_kind"] for f in text_string_to_metric_families(text)
             for s in f.samples if s.name == "llmcost_engine_info"}
    assert kinds == {"llama-8b": "vllm", "qwen-32b": "sglang"}  # a vLLM and an SGLang server, both detected


def test_promtool_check_metrics_is_clean(demo):
    assert PROMTOOL, "promtool missing: the test command installs Debian's prometheus package"
    base, _, _, _ = demo
    _, _, text = get(base + "/metrics")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics_is_served_on_request(demo):
    base, _, _, _ = demo
    request = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().rstrip().endswith("# EOF")


def test_landing_page_and_healthz(demo):
    base, _, _, _ = demo
    status, content_type, page = get(base + "/")
    assert status == 200 and content_type.startswith("text/html")
    assert "Llama-3.1-8B-Instruct" in page and "Qwen2.5-32B-Instruct" in page and 'href="/metrics"' in page
    assert '<td class=kind data-kind="vllm" data-engine="llama-8b">vllm</td>' in page
    assert '<td class=kind data-kind="sglang" data-engine="qwen-32b">sglang</td>' in page
    # Who pays for the GPUs: Llama holds GPUs 0 and 1, Qwen one 3g.40gb MIG device of GPU 2 (pinned by
    # its UUID: 3/7 of that GPU), and the rest of GPU 2 and all of GPU 3 are unallocated, a row of its own.
    assert '<td>0, 1</td><td class=num data-metric="llmcost_engine_gpu_share_ratio" data-engine="llama-8b" ' \
        'data-method="config">50.0</td>' in page
    assert '<td>3/7 of 2</td><td class=num data-metric="llmcost_engine_gpu_share_ratio" data-engine="qwen-32b" ' \
        'data-method="config">10.7</td>' in page
    assert '<td>unallocated</td><td></td><td>4/7 of 2, 3</td>' in page
    assert 'data-metric="llmcost_unallocated_gpu_share_ratio">39.3</td>' in page
    assert "NVIDIA A100 80GB PCIe (MIG: 2 devices)" in page
    assert "<p id=simulated><b>Simulated</b>" in page  # the demo's figures are not a real node's
    assert get(base + "/healthz")[2] == "ok\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        get(base + "/nope")
    assert err.value.code == 404


def test_terminal_summary_prints_live_costs(demo):
    _, _, _, process = demo
    time.sleep(2.5)  # at least one summary interval
    process.terminate()
    out, _ = process.communicate(timeout=10)
    assert "http://localhost:" in out
    assert "a simulated vLLM server and a simulated SGLang server" in out
    assert "llama-8b (vLLM) http://127.0.0.1:" in out and "qwen-32b (SGLang) http://127.0.0.1:" in out
    summary = [line for line in out.splitlines() if line.startswith("sim ")]
    assert summary and "/1M" in summary[-1] and "util" in summary[-1] and "at 100%" in summary[-1]
    assert "Llama-3.1-8B-Instruct [vllm]: $" in summary[-1] and "Qwen2.5-32B-Instruct [sglang]: $" in summary[-1]


def test_demo_stops_cleanly_on_sigterm():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    started = time.monotonic()
    process.terminate()
    assert process.wait(10) == 0
    assert time.monotonic() - started < 7  # the summary loop wakes on the signal
