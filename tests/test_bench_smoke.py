"""The benchmarks (bench/) run, at a tiny size, and say what they should; and the scrape-path fix
they led to renders the same bytes as prometheus_client.

The benchmarks' figures are not checked against their targets here (this machine is shared and
noisy): only that each script runs with one command, writes its JSON and prints a table, with
figures of the right shape and plausible size.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.exposition import choose_encoder

from conftest import make_config, run_for
from exporter.web import WebServer, _fast

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def test_fast_encoder_renders_what_prometheus_client_renders(clock, vllm, exporter_for):
    server = vllm()
    exporter = exporter_for(make_config([("vllm", server.url, {})], apis=["gpt-4o-mini", "gpt-4o"],
                                        energy={"electricity_per_kwh": 0.1}))
    exporter.sample_all()
    run_for(clock, exporter, 120)
    for accept in (PROMETHEUS_ACCEPT, "application/openmetrics-text; version=1.0.0", "text/plain", "",
                   "application/openmetrics-text;version=1.0.0;escaping=dots"):
        library, library_type = choose_encoder(accept)
        fast, fast_type = _fast(library, library_type)
        assert fast_type == library_type
        assert fast(exporter.registry) == library(exporter.registry), accept
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{web.port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
        with urllib.request.urlopen(request, timeout=5) as response:
            body, content_type = response.read(), response.headers["Content-Type"]
    finally:
        web.stop()
    library, library_type = choose_encoder(PROMETHEUS_ACCEPT)
    assert content_type == library_type
    assert body == library(exporter.registry)  # the manual clock stands still: same values too
