"""Hostile clients and hostile web-config edits against the real `run` process, over real sockets
(issue 13, cases 4 and 8): a web config edit that raises anything leaks no connection slot, one
client address cannot take the connections or the header memory the scraper needs, an anonymous
client cannot spend the authenticated scraper's rate limit, and a failed login takes as long
whether or not the user exists, whatever the users' bcrypt costs.

The legitimate scraper connects from 127.0.0.2 and the attackers from other loopback addresses
(Linux routes all of 127.0.0.0/8 to lo): the connection cap is per client address. The RSS is
read from /proc/<pid>/status of the exporter process itself.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

import bcrypt
import pytest

from test_demo_and_promtool import free_port

pytestmark = pytest.mark.integration  # the run command as a subprocess, real-time waits

SCRAPER = "127.0.0.2"
RSS_TARGET_MIB = 96


class RunningExporter:
    """`python -m exporter run --web.config.file=...` on a free port; its stderr lines are
    collected as they come (a reader thread), its RSS peak sampled every 20 ms on request."""

    def __init__(self, web_config, *flags: str):
        self.port = free_port()
        env = {**os.environ, "LLMCOST_INSTANCE_HOURLY": "1", "LLMCOST_GPU_BACKEND": "none"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--web.config.file={web_config}", *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.rss_peak_mib = 0.0
        self._sampling = threading.Event()
        deadline = time.monotonic() + 30
        while not any("msg=listening" in line for line in self.lines):
            assert self.process.poll() is None and time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1)) / 1024

    def sample_rss(self) -> None:
        """Record the RSS peak in a thread until stop()."""
        def sample():
            while not self._sampling.wait(0.02):
                self.rss_peak_mib = max(self.rss_peak_mib, self.rss_mib())
        threading.Thread(target=sample, daemon=True).start()

    def stop(self) -> None:
        self._sampling.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run_exporter(tmp_path):
    """run_exporter(web_config_text, *flags) -> RunningExporter, its web config at .path."""
    running: list[RunningExporter] = []

    def start(text: str, *flags: str) -> RunningExporter:
        path = tmp_path / "web.yml"
        path.write_text(text)
        exporter = RunningExporter(path, *flags)
        exporter.path = path
        running.append(exporter)
        return exporter

    yield start
    for exporter in running:
        exporter.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def scrape(port: int, source: str = SCRAPER, headers: dict | None = None, timeout: float = 5.0) -> int | str:
    """The status of one GET /metrics from `source`, or the name of the error that stopped it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status if response.status != 200 or b"llmcost_build_info" in body else "no metrics"
    except (OSError, http.client.HTTPException) as err:
        return type(err).__name__
    finally:
        conn.close()


def scrapes(port: int, count: int, every: float, **kwargs) -> list[int | str]:
    results = []
    for _ in range(count):
        results.append(scrape(port, **kwargs))
        time.sleep(every)
    return results


class Attack:
    """`connections` threads from `source`, each connecting, sending `payload()` (never the end of
    the head) and holding the connection until the server closes it, then again, until stop()."""

    def __init__(self, port: int, source: str, connections: int, payload):
        self.port, self.source, self.payload = port, source, payload
        self.stopped = threading.Event()
        self.accepted = 0  # connections the server read from
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(connections)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1,
                                              source_address=(self.source, 0)) as sock:
                    for chunk in self.payload():
                        if self.stopped.is_set():
                            return
                        sock.sendall(chunk)
                    while not self.stopped.is_set():
                        try:
                            if sock.recv(4096) == b"":
                                break
                        except TimeoutError:
                            continue
            except OSError:
                pass
            self.stopped.wait(0.05)


def dripping_head():
    """Slowloris: a request line, then one header byte every 0.3 s."""
    yield b"GET /metrics HTTP/1.1\r\n"
    while True:
        yield b"X"
        time.sleep(0.3)


LINE = b"X-Flood: " + b"a" * (64 * 1024 - 12) + b"\r\n"  # just under http.server's 64 KiB line cap


def flooding_head():
    """99 header lines of 64 KiB (inside the caps: 100 headers, 64 KiB a line), never the blank
    line that ends the head."""
    yield b"GET /metrics HTTP/1.1\r\n"
    for _ in range(99):
        yield LINE


# -- case 4: web config edits that raise anything ---------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
# Each bad edit and what its one error line says; no two in a row say the same, so each edit is
# one line. Before, the huge numbers raised ValueError (str() of an int over 4,300 digits) on the
# connection path, and each connection that found the edit lost its slot.
BAD_EDITS = [
    ("rate_limit:\n  interval: 0x" + "f" * 5000 + "\n", "rate_limit.interval: got a 20000-bit number"),
    ("rate_limit: " + "[" * 5000 + "]" * 5000 + "\n", "web.config.file: not valid YAML"),
    (bytes(range(256)) * 4, "web.config.file: not valid UTF-8"),
    (ALIAS_BOMB, "web.config.file: not valid YAML: expands to more than"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: 0x" + "f" * 5000 + "\n",
     "http_server_config.headers.X-Frame-Options: got a 20000-bit number"),
    ('{"rate_limit": ' + '{"a": ' * 5000 + "1" + "}" * 5001 + "\n", "web.config.file: not valid YAML"),
]


def replace(path, content) -> None:
    """Write the whole file at once (rename), so no check reads half of it."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.replace(partial, path)


def test_web_config_edits_that_raise_anything_never_leak_a_connection_slot(run_exporter):
    """Four slots, a check for changes every second, two rounds of six bad edits (12 s, three
    times what four leaked slots would take to refuse every connection), then a good edit."""
    exporter = run_exporter("", "--web.max-connections=4", "--web.max-connections-per-client=4")
    results: list[int | str] = []

    def scrape_until(done, what: str) -> None:
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, f"{what}:\n" + "\n".join(exporter.lines[-10:])
            results.append(scrape(exporter.port))
            time.sleep(0.1)

    def refusals() -> list[str]:
        return [line for line in exporter.lines if "web config not reloaded" in line]

    for seen, (content, expected) in enumerate(BAD_EDITS * 2, start=1):
        replace(exporter.path, content)
        scrape_until(lambda seen=seen: len(refusals()) >= seen, f"edit {seen} ({expected}) not reported")
        assert expected in refusals()[-1], refusals()[-1]
    replace(exporter.path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    scrape_until(lambda: any("web config reloaded" in line for line in exporter.lines), "the fixed file not loaded")
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=5)
    conn.request("GET", "/metrics")
    assert conn.getresponse().getheader("X-Frame-Options") == "deny"  # the fixed config applies
    conn.close()
    errors = [line for line in exporter.lines if "level=ERROR" in line or "Traceback" in line]
    print(f"bad web config edits: {len(errors)} error lines for 12 edits, {results.count(200)}/{len(results)} "
          "scrapes ok")
    assert results.count(200) == len(results) > 20, results
    assert len(errors) == 12, "\n".join(errors)
    assert not any("Traceback" in line for line in exporter.lines)


# -- case 8: one client cannot crowd out the scraper ------------------------------------------------


def test_slowloris_from_one_address_leaves_the_scraper_served(run_exporter):
    """64 dripping connections from one address (the per-client cap takes 16 of them)."""
    exporter = run_exporter("")
    exporter.sample_rss()
    with Attack(exporter.port, "127.0.0.1", 64, dripping_head):
        time.sleep(1.0)
        results = scrapes(exporter.port, 30, every=0.2)
    print(f"slowloris: {results.count(200)}/30 scrapes ok, RSS peak {exporter.rss_peak_mib:.1f} MiB")
    assert results == [200] * 30
    assert exporter.rss_peak_mib < RSS_TARGET_MIB


def test_header_flood_stays_under_the_rss_target_and_the_scraper_is_served(run_exporter):
    """99 x 64 KiB headers on 66 connections from 3 addresses (16 each under the per-client
    cap): without a budget, 48 heads of 6.3 MiB each would be held in memory."""
    exporter = run_exporter("")
    baseline = exporter.rss_mib()
    exporter.sample_rss()
    attacks = [Attack(exporter.port, f"127.0.0.{i}", 22, flooding_head) for i in (3, 4, 5)]
    for attack in attacks:
        attack.__enter__()
    try:
        time.sleep(2.0)
        results = scrapes(exporter.port, 30, every=0.2)
    finally:
        for attack in attacks:
            attack.__exit__()
    print(f"header flood: {results.count(200)}/30 scrapes ok, RSS {baseline:.1f} MiB at start, "
          f"peak {exporter.rss_peak_mib:.1f} MiB")
    assert results == [200] * 30
    assert exporter.rss_peak_mib < RSS_TARGET_MIB


PASSWORD = "correct horse battery staple"


def test_an_anonymous_client_cannot_spend_the_scrapers_rate_limit(run_exporter):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    exporter = run_exporter(f"basic_auth_users:\n  prometheus: {hashed}\nrate_limit:\n  interval: 200ms\n  burst: 2\n")
    scraper = basic("prometheus", PASSWORD)
    anonymous = Attack(exporter.port, "127.0.0.1", 4, lambda: iter([b"GET /metrics HTTP/1.0\r\n\r\n"]))
    with anonymous:
        time.sleep(0.5)
        results = scrapes(exporter.port, 10, every=0.25, headers=scraper)
    print(f"rate limit with an anonymous flood: {results.count(200)}/10 authenticated scrapes ok")
    assert results == [200] * 10
    burst = [scrape(exporter.port, headers=scraper) for _ in range(6)]  # the limit itself still applies
    assert 429 in burst and burst[:2] == [200, 200]


def test_a_failed_login_costs_the_same_whoever_the_user_and_whatever_the_cost(run_exporter):
    cheap = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    dear = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    exporter = run_exporter(f"basic_auth_users:\n  cheap: {cheap}\n  dear: {dear}\n")
    assert scrape(exporter.port, headers=basic("cheap", PASSWORD)) == 200
    assert scrape(exporter.port, headers=basic("dear", PASSWORD)) == 200
    timings: dict[str, list[float]] = {"cheap": [], "dear": [], "nobody": []}
    for attempt in range(15):
        for user in timings:  # interleaved, so a slower moment of the machine weighs on all three
            started = time.monotonic()
            assert scrape(exporter.port, headers=basic(user, f"wrong {attempt}")) == 401
            timings[user].append(time.monotonic() - started)
    medians = {user: statistics.median(times) for user, times in timings.items()}
    print("failed login medians: " + ", ".join(f"{user} {1000 * m:.0f} ms" for user, m in medians.items()))
    assert max(medians.values()) < 1.3 * min(medians.values()), medians  # was 3 ms, 245 ms and 59 ms
