"""The proof on a real Prometheus: it scrapes the demo exporter and answers every dashboard
panel's query, with the template variables substituted as Grafana would.

The demo runs in real time (`--demo.speed=1`, so rate() over counters means what it says) at a
constant 50% load. The recording rules and alerts (rules/, not written yet) will be evaluated by
this same Prometheus.
"""

import pathlib
import subprocess
import sys
import time

import pytest

from prometheus import Prometheus, free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboards.generate import panel_queries, substitute  # noqa: E402

VARIABLES = {"node": ".*", "model": ".*", "api": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


@pytest.fixture(scope="module")
def stack():
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}",
                             "--demo.speed=1", "--demo.constant-load=0.5", "--demo.summary-interval=60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Prometheus([f"127.0.0.1:{port}"]) as prom:
            prom.wait_for("llmcost_cost_per_million_tokens", count=2, timeout=30)
            time.sleep(15)  # enough samples for the rate() and increase() windows
            yield prom
    finally:
        demo.terminate()
        demo.wait(10)


def test_every_dashboard_query_parses_and_returns_data(stack):
    queries = panel_queries()
    assert len(queries) >= 20
    empty = []
    for uid, title, expr in queries:
        result = stack.query(substitute(expr, VARIABLES))  # raises on a PromQL error
        if not result:
            empty.append(f"{uid} / {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
