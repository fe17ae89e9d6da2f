"""`run` loads only what it uses: the other commands' modules (report, estimate), the charts
(matplotlib), the dashboards (grafanalib) and the optional clients (kubernetes, grpc) stay out of
its import path, so a node's exporter starts without them and keeps their memory."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest
import yaml

from plugins.process import ExporterProcess

ROOT = pathlib.Path(__file__).resolve().parents[1]

NOT_FOR_RUN = ("exporter.report", "exporter.estimate", "exporter.demo", "matplotlib", "grafanalib", "dashboards",
               "kubernetes", "grpc", "numpy")


def _forbidden(modules) -> list[str]:
    return sorted(m for m in modules if any(m == bad or m.startswith(bad + ".") for bad in NOT_FOR_RUN))


def test_the_run_path_imports_none_of_the_others():
    code = ("import sys\nfrom exporter import cli\ncli._parser('run')\nimport exporter.app, exporter.web\n"
            "print('\\n'.join(sys.modules))")
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert "exporter.app" in modules and "prometheus_client" in modules
    assert _forbidden(modules) == []


def test_the_other_commands_still_load_their_modules():
    for command, module in (("report", "exporter.report"), ("estimate", "exporter.estimate")):
        code = f"import sys\nfrom exporter import cli\ncli._parser({command!r})\nprint({module!r} in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
        assert out == "True", command


@pytest.mark.integration
def test_a_running_exporter_never_imports_them(tmp_path):
    """The real process, sampling and scraped, with PYTHONPROFILEIMPORTTIME (every import it ever
    makes, at start and later, is logged to stderr)."""
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"pricing": {"mode": "cloud", "cloud": {"hourly": 1.0}},
                                      "gpu": {"backend": "simulated", "simulated": {"count": 2}}}))
    with ExporterProcess(config, "--log.level=warn", env={"PYTHONPROFILEIMPORTTIME": "1"}) as exporter:
        assert "llmcost_gpu_power_watts" in exporter.wait_serving()
        time.sleep(2)  # a few GPU ticks, another scrape
        exporter.get()
        exporter.terminate()
        modules = [line.split("|")[-1].strip() for line in exporter.stderr.splitlines() if line.startswith("import time:")]
    assert "exporter.app" in modules
    assert _forbidden(modules) == []
