"""The landing page as a person sees it: rendered by headless Chromium, values checked against /metrics."""

import html.parser
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_config
from exporter.gpu.simulated import SimulatedNVML
from exporter.web import WebServer

pytestmark = pytest.mark.integration  # headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium missing: the test command installs Debian's chromium package"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90)


class Cells(html.parser.HTMLParser):
    """Collects <td data-metric=...> cells: (metric, labels) -> text, and the engine kinds shown
    (<td data-kind=... data-engine=...>): (engine, kind attribute, text)."""

    def __init__(self):
        super().__init__()
        self.cells, self.kinds, self._current = {}, set(), None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-kind" in attrs:
            self.kinds.add((attrs["data-engine"], attrs["data-kind"]))
        if tag == "td" and "data-metric" in attrs:
            labels = tuple(sorted((k[5:], v) for k, v in attrs.items() if k.startswith("data-") and k != "data-metric"))
            self._current = (attrs["data-metric"], labels)
            self.cells[self._current] = ""

    def handle_data(self, data):
        if self._current:
            self.cells[self._current] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._current = None


@pytest.fixture
def page(clock, vllm, exporter_for, tmp_path):
    llama, qwen = vllm(capacity=2000.0, load=0.6, model="llama"), vllm(capacity=500.0, load=0.1, model="qwen")
    config = make_config([("a", llama.url, {"gpus": [0], "capacity_tokens_per_s": 2000.0}),
                          ("b", qwen.url, {"gpus": [1], "capacity_tokens_per_s": 500.0, "tier": "batch"})],
                         hourly=4.0, apis=["gpt-4o-mini", "gpt-4o"])
    # A third GPU no engine holds: its spend is the page's unallocated row.
    exporter = exporter_for(config, SimulatedNVML(clock, count=3, idle_watts=50.0, max_watts=250.0, load_fn=lambda t: 0.5))
    exporter.sample_all()
    for _ in range(120):
        clock.advance(5)
        exporter.sample_all()
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    yield f"http://127.0.0.1:{web.port}", tmp_path
    web.stop()


def test_landing_page_values_match_metrics_and_screenshot(page):
    base, tmp_path = page
    dom = chromium("--dump-dom", base + "/")
    assert dom.returncode == 0, dom.stderr
    parser = Cells()
    parser.feed(dom.stdout)
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    metrics = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "currency"))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    checked = 0
    for (metric, labels), shown in parser.cells.items():
        expected = metrics[(metric, labels)]
        if metric.endswith("_ratio"):
            expected *= 100  # shown as percent
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        # The page rounds to what a person reads; it must agree to its last printed digit.
        assert abs(float(shown.replace(",", "")) - expected) <= 0.5 * 10**-decimals + 1e-9, (metric, labels, shown)
        checked += 1
    assert checked >= 2 * 4 + 4 * 3 + 2 * 2 + 2  # per model 4 figures, per model and API 3, per engine and unallocated 2
    assert metrics[("llmcost_unallocated_spend_total", ())] > 0
    assert "<td>unallocated</td><td></td><td>2</td>" in dom.stdout and dom.stdout.count('data-method="config"') == 2
    # Each engine's kind, in the model rows and the sources table, is llmcost_engine_info's engine_kind.
    served = {s.labels["engine"]: s.labels["engine_kind"] for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "llmcost_engine_info"}
    assert served == {"a": "vllm", "b": "vllm"}
    assert parser.kinds == set(served.items())
    assert dom.stdout.count('data-kind="vllm"') == 2 + 2 + 2  # one model, one share and one source row per engine
    assert "self-hosting saved" in dom.stdout or "would have cost" in dom.stdout
    # Engine b is compared at the Batch tier: its API column and verdicts say so, engine a's (standard) do not.
    for api in ("gpt-4o-mini", "gpt-4o"):
        label = f'<span class="api" data-tier="batch">{api} (batch)</span>'
        assert dom.stdout.count(label) == 2, api  # the API cell and the verdict of b's row
        assert re.search(r'<span class="(good|bad)">[^<]*' + re.escape(label), dom.stdout), api
        assert dom.stdout.count(f'<span class="api" data-tier="standard">{api}</span>') == 2, api

    shot = tmp_path / "landing.png"
    result = chromium("--window-size=1280,900", f"--screenshot={shot}", base + "/")
    assert result.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
