"""The exporter without its optional extras (`kubernetes`, `basic-auth`, `charts`, `podresources`): installed with a
plain `pip install .` into .venv-core (./scripts/test makes it), it runs, serves its metrics and
estimates, and a feature whose extra is missing is refused with one line naming the key and the
extra, never a traceback."""

import pathlib
import subprocess
import time
import urllib.request

import pytest

from prometheus import free_port

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE_PYTHON = ROOT / ".venv-core" / "bin" / "python"


@pytest.fixture(scope="module")
def core_python() -> str:
    assert CORE_PYTHON.exists(), f"{CORE_PYTHON} is missing: ./scripts/test creates it (a venv without extras)"
    return str(CORE_PYTHON)


def _run(python, *args, timeout=60):
    return subprocess.run([python, "-m", "exporter", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _scrape_until(port: int, wanted: tuple[str, ...], deadline_s: float = 30.0) -> str:
    deadline, body = time.monotonic() + deadline_s, ""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                body = response.read().decode()
            if all(w in body for w in wanted):
                return body
        except OSError:
            pass
        if time.monotonic() > deadline:
            missing = [w for w in wanted if w not in body]
            raise AssertionError(f"{missing} not on :{port}/metrics within {deadline_s}s")
        time.sleep(0.2)


def test_the_extras_really_are_absent(core_python):
    for module in ("kubernetes", "bcrypt", "matplotlib", "grpc", "google.protobuf"):
        probe = subprocess.run([core_python, "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


def test_the_demo_runs_and_serves_cost_metrics_without_extras(core_python):
    port = free_port()
    process = subprocess.Popen([core_python, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}",
                                "--demo.summary-interval=1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        _scrape_until(port, ("llmcost_tokens_total{", "llmcost_spend_total{", "llmcost_cost_per_million_tokens{"))
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr


def test_kubernetes_without_its_extra_is_one_line_exit_2(core_python, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("pricing: {cloud: {hourly: 1.0}}\nkubernetes: {enabled: true, node_name: n}\n")
    result = _run(core_python, "run", f"--config.file={config}", "--web.listen-address=127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "kubernetes.enabled" in line and "llm-cost-exporter[kubernetes]" in line, line


def test_pod_resources_without_its_extra_is_one_line_exit_2(core_python, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("pricing: {cloud: {hourly: 1.0}}\nkubernetes: {enabled: true, node_name: n, "
                      "discovery: {enabled: true}, pod_resources: {enabled: true}}\n")
    result = _run(core_python, "run", f"--config.file={config}", "--web.listen-address=127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "kubernetes.pod_resources.enabled" in line and "llm-cost-exporter[podresources]" in line, line


def test_basic_auth_without_its_extra_is_one_line_exit_2(core_python, tmp_path):
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n  prometheus: $2y$10$" + "a" * 53 + "\n")
    config = tmp_path / "config.yml"
    config.write_text("pricing: {cloud: {hourly: 1.0}}\ngpu: {backend: none}\n")
    result = _run(core_python, "run", f"--config.file={config}", f"--web.config.file={web_config}",
                  "--web.listen-address=127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "basic_auth_users" in line and "llm-cost-exporter[basic-auth]" in line and "$2y$" not in line, line


def test_estimate_runs_without_extras(core_python):
    result = _run(core_python, "estimate", "docs/examples/owned-4xT4.yaml", "--format=json")
    assert result.returncode == 0, result.stderr
    assert '"cost_per_million' in result.stdout



def test_estimate_chart_without_matplotlib_is_one_line_exit_2(core_python, tmp_path):
    chart = tmp_path / "sweep.png"
    result = _run(core_python, "estimate", "docs/examples/cloud-vllm-4xT4.yaml", f"--output={chart}")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.splitlines() == \
        ["llm-cost-exporter estimate: --output: needs matplotlib: pip install 'llm-cost-exporter[charts]'"]
    assert not chart.exists()
