"""The `run` command as deployed: a real subprocess on a real port, for the fault campaign's
tests that must hold for the process itself (it listens, it answers, SIGTERM ends it quickly).

    with ExporterProcess(config_path) as p:
        p.wait_serving()
        p.value("llmcost_config_last_reload_successful")
        took = p.terminate()          # seconds from SIGTERM to exit; p.stderr holds its log
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, every: float = 0.05) -> bool:
    """True once predicate() is true (OSError counts as not yet), False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(every)
    return False


class ExporterProcess:
    def __init__(self, config: Path | None = None, *args: str, env: dict | None = None):
        self.port = free_port()
        command = [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{self.port}", *args]
        if config is not None:
            command.append(f"--config.file={config}")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LLMCOST_")}
        # the log goes to a file, not a pipe: a pipe nobody reads would block a chatty process
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, env={**clean, **(env or {})}, stdout=subprocess.DEVNULL,
                                        stderr=self._log, text=True)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()

    @property
    def stderr(self) -> str:
        """Everything the process has logged so far."""
        self._log.seek(0)
        return self._log.read()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.read().decode()

    def wait_serving(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.stderr}")
            try:
                return self.get(timeout=1)
            except OSError:
                time.sleep(0.05)
        raise AssertionError("not serving")

    def samples(self) -> dict[tuple, float]:
        """(name, sorted label items) -> value, from one scrape."""
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(self.get()) for s in f.samples}

    def value(self, name: str, **labels) -> float | None:
        """The sum of the samples of `name` whose labels include `labels`; None if there are none."""
        found = [v for (n, items), v in self.samples().items() if n == name and set(labels.items()) <= set(items)]
        return sum(found) if found else None

    def threads(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def signal(self, sig: int = signal.SIGHUP) -> None:
        self.process.send_signal(sig)

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; the seconds until the process exited. Its log is then in self.stderr."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout=timeout)

    def log_lines(self, containing: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if containing in line]
