"""A real Alertmanager for tests, and a webhook receiver that records what reaches it.

    with Webhook() as hook, Alertmanager(config_dict) as am:
        am.alerts()                   # GET /api/v2/alerts: each alert with status.state, inhibitedBy
        hook.wait(lambda n: ...)      # the first notification (receiver path, payload) matching

The binary is Debian's `prometheus-alertmanager` (0.25), which the test command installs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus import ServerProcess, free_port


class Webhook:
    """An HTTP server taking Alertmanager's webhook POSTs: (path, payload, arrival time) in order."""

    def __init__(self):
        self.notifications: list[tuple[str, dict, float]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, json.loads(body), time.monotonic()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Webhook:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, predicate, timeout: float, since: float = 0.0) -> tuple[str, dict, float]:
        """The first notification arrived after `since` (monotonic) for which predicate(path, payload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, payload, at in list(self.notifications):
                if at >= since and predicate(path, payload):
                    return path, payload, at
            time.sleep(0.1)
        seen = [(p, [(a["labels"]["alertname"], a["status"]) for a in n["alerts"]]) for p, n, _ in self.notifications]
        raise AssertionError(f"no such notification after {timeout:g}s; received: {seen}")


class Alertmanager(ServerProcess):
    def __init__(self, config: dict):
        self.config = config
        self.url = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> Alertmanager:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("prometheus-alertmanager not on PATH: the test command installs Debian's package (0.25)")
        self._dir = tempfile.TemporaryDirectory(prefix="alertmanager-test-")
        root = Path(self._dir.name)
        (root / "alertmanager.yml").write_text(yaml.safe_dump(self.config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(root / "alertmanager.log", "w+")
        # --cluster.listen-address= : a single instance, no gossip to wait for
        self._process = subprocess.Popen(
            [binary, f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"alertmanager exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"alertmanager not ready after {timeout:g}s:\n{self.log_tail()}")

    def alerts(self) -> list[dict]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as response:
            return json.load(response)

    def post(self, alerts: list[dict]) -> None:
        """POST /api/v2/alerts, as Prometheus sends them: each {labels, annotations}."""
        request = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
