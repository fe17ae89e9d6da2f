"""A real single-node VictoriaMetrics for tests and benchmarks: loaded through its import API,
queried through its Prometheus-compatible API.

    with VictoriaMetrics() as vm:
        vm.import_lines(lines)          # /api/v1/import JSON lines, then a flush
        # vm.url answers /api/v1/query and /api/v1/query_range

The `victoria-metrics` binary comes from PATH (Debian's package, 1.79).
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from prometheus import ServerProcess, free_port


class VictoriaMetrics(ServerProcess):
    def __init__(self, flags=()):
        self.flags = list(flags)
        self.url = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics not on PATH: the test command installs Debian's victoria-metrics package")
        self._dir = tempfile.TemporaryDirectory(prefix="victoria-metrics-test-")
        root = Path(self._dir.name)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(root / "vm.log", "w+")  # noqa: SIM115 - open for the server's lifetime, closed in stop()
        self._process = subprocess.Popen(
            [binary, f"-storageDataPath={root / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
             "-retentionPeriod=100y",  # backfilled history of any age is kept
             "-search.latencyOffset=0s",  # by default the last 30 s are hidden from queries
             "-search.disableCache", "-loggerLevel=ERROR", *self.flags],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"victoria-metrics not ready after {timeout:g}s")

    def import_lines(self, lines: Iterable[bytes]) -> None:
        """POST /api/v1/import, streamed (chunked), then flush so that queries see it at once."""
        parts = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        connection.request("POST", "/api/v1/import", body=iter(lines), encode_chunked=True,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status != 204:
            raise RuntimeError(f"import: HTTP {response.status}: {body[:300]!r}")
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=60):
            pass
