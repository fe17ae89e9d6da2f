"""A real Prometheus for tests: scrapes the given targets every second, answers PromQL.

    with Prometheus(["127.0.0.1:9848"]) as prom:
        prom.wait_for("llmcost_tokens_total", count=4)
        prom.query("sum(llmcost_tokens_total)")  # -> [{"metric": {...}, "value": [t, "123"]}]

The `prometheus` binary comes from PATH (Debian's 2.42 package, the oldest version we support).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """What every test server that owns a process, a temporary directory and a log file shares:
    the log's tail, stop (terminate, then kill), and `with`. Subclasses set _process, _dir and _log
    in start() and return self from it."""

    _process: subprocess.Popen | None = None
    _dir: tempfile.TemporaryDirectory | None = None

    def start(self):
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        self._log.seek(0)
        return "".join(self._log.readlines()[-lines:])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._dir is not None:
            self._log.close()
            self._dir.cleanup()
            self._dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Prometheus(ServerProcess):
    def __init__(self, targets=(), rule_files=(), scrape_interval: str = "1s", flags=(), prepare=None, scrape_configs=()):
        self.targets = list(targets)  # "host:port" of exporters serving /metrics
        self.scrape_configs = list(scrape_configs)  # or whole scrape configs (paths, labels)
        self.rule_files = [str(Path(f).resolve()) for f in rule_files]
        self.scrape_interval = scrape_interval
        self.flags = list(flags)  # extra command-line flags, e.g. --storage.tsdb.retention.time=1y
        self.prepare = prepare  # called with the (empty) data directory before start: backfill blocks there
        self.url = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Prometheus":
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not on PATH: the test command installs Debian's prometheus package (2.42)")
        self._dir = tempfile.TemporaryDirectory(prefix="prometheus-test-")
        root = Path(self._dir.name)
        (root / "prometheus.yml").write_text(yaml.safe_dump(self._config()))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(root / "prometheus.log", "w+")
        if self.prepare is not None:
            (root / "data").mkdir()
            self.prepare(root / "data")
        self._process = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", *self.flags],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _config(self) -> dict:
        config = {"global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval}}
        if self.targets:
            config["scrape_configs"] = [{"job_name": "llmcost", "static_configs": [{"targets": self.targets}]}]
        if self.scrape_configs:
            config["scrape_configs"] = config.get("scrape_configs", []) + self.scrape_configs
        if self.rule_files:
            config["rule_files"] = self.rule_files
        return config

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                pytest.fail(f"prometheus exited with {self._process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass  # not listening yet, or 503 while the TSDB opens
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        pytest.fail(f"prometheus not ready after {timeout:g}s:\n{tail}")

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """Instant query; returns the `result` list (vector samples or matrix series). Raises on errors."""
        params = {"query": expr} if time is None else {"query": expr, "time": f"{time:.3f}"}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"query {expr!r} failed: {err.code} {err.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def api(self, path: str) -> dict:
        """GET /api/v1/<path> (rules, alerts, targets, ...): the `data` of the answer."""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def wait_for(self, expr: str, count: int = 1, timeout: float = 20.0) -> list[dict]:
        """Poll until `expr` returns at least `count` series (e.g. until the first scrapes landed)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if len(result) >= count or time.monotonic() > deadline:
                assert len(result) >= count, f"{expr}: {len(result)} series after {timeout:g}s, wanted {count}"
                return result
            time.sleep(0.25)
