"""Bodies rendered ahead (exporter/web/prerender.py): over real HTTP, through a sequence of engine
polls, accrual ticks, polls made outside a job, and time passing alone, every scrape in every
negotiated format (gzip decompressed) equals an on-demand render at that moment, and the kept
bodies are served where they are current."""

from __future__ import annotations

import gzip
import threading
import urllib.request

from conftest import make_config
from prometheus_client.exposition import choose_encoder

from exporter.jobs import ACCRUAL, Jobs
from exporter.web import WebServer, metrics
from exporter.web.linecache import LineCache
from exporter.web.prerender import PreRender, Variant

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"  # Prometheus 2.x
VARIANTS = [(OPENMETRICS, "gzip"), (OPENMETRICS, None), ("text/plain;version=0.0.4", "gzip"), (None, None)]


def get(port: int, accept: str | None, encoding: str | None, query: str = "") -> bytes:
    headers = {k: v for k, v in (("Accept", accept), ("Accept-Encoding", encoding)) if v is not None}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics{query}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        return gzip.decompress(body) if response.headers.get("Content-Encoding") == "gzip" else body


def on_demand(exporter, accept, encoding, query: str = "") -> bytes:
    """What the library's own app renders now (a fresh cache would give the same: test_linecache)."""
    _, headers, body = metrics.render(exporter.registry, "/metrics", query, accept, encoding)
    return gzip.decompress(body) if ("Content-Encoding", "gzip") in headers else body


def check_all(web, exporter) -> list[bytes]:
    bodies = []
    for accept, encoding in VARIANTS:
        served = get(web.port, accept, encoding)
        assert served == on_demand(exporter, accept, encoding), (accept, encoding)
        bodies.append(served)
    return bodies


def test_served_bytes_equal_an_on_demand_render_through_polls_ticks_and_time(clock, vllm, exporter_for):
    server = vllm(load=0.5)
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    ahead = web.httpd.ahead
    try:
        exporter.sample_all()
        check_all(web, exporter)  # asks for each variant: the jobs now render them ahead
        engine = exporter.engines[0]
        for step in range(12):
            clock.advance(5)
            if step % 3 == 2:
                engine.sample()  # a poll outside any job: nothing rendered ahead, the key moved on
            else:
                exporter.sample_all()
                ahead.refresh()  # what the job's after-run does (exporter.jobs)
            served_before = ahead.served
            check_all(web, exporter)
            if step % 3 != 2:  # rendered ahead for this state: every variant came from it
                assert ahead.served == served_before + len(VARIANTS)
            else:
                assert ahead.served == served_before
        # Time alone: the window (10 m) loses its samples, so the live gauges go; a body kept from
        # before must not be served.
        ahead.refresh()
        kept = check_all(web, exporter)
        clock.advance(900)
        served_before = ahead.served
        now = check_all(web, exporter)
        assert now != kept and ahead.served == served_before
        # name[]: never kept, rendered on demand
        query = "name[]=llmcost_tokens_total"
        filtered = get(web.port, OPENMETRICS, None, "?" + query)
        assert filtered == on_demand(exporter, OPENMETRICS, None, query) and b"llmcost_tokens_total" in filtered
        assert ahead.served == served_before
    finally:
        web.stop()
    assert ahead.refresh not in exporter._listeners


def test_at_most_kept_variants_least_recently_asked_evicted(clock, exporter_for):
    exporter = exporter_for(make_config())
    exporter.sample_all()
    ahead = PreRender(exporter.registry, exporter.exposition_key, exporter.exposition_steady_until, clock.now,
                      LineCache(), kept=2)
    om_encoder, om = choose_encoder(OPENMETRICS)
    text_encoder, text = choose_encoder("")
    first, second, third = Variant(om, False), Variant(text, False), Variant(om, True)
    assert ahead.get(first, om_encoder) is None and ahead.get(second, text_encoder) is None
    ahead.refresh()
    assert ahead.get(first, om_encoder) is not None  # first is now the most recently asked
    assert ahead.get(third, om_encoder) is None  # evicts second
    ahead.refresh()
    assert gzip.decompress(ahead.get(third, om_encoder) or b"") == ahead.get(first, om_encoder)
    assert ahead.get(second, text_encoder) is None  # evicted: not rendered ahead (and now evicts third)
    ahead.refresh()
    assert ahead.get(third, om_encoder) is None and ahead.get(second, text_encoder) is not None


def test_a_job_run_is_followed_by_the_after_run_hook_in_its_thread():
    ran, after = threading.Event(), []
    jobs = Jobs(after_run=lambda: after.append(threading.current_thread().name))

    def job():
        ran.set()
        raise RuntimeError("a failing job still counts as a change")

    jobs.add(job, 3600, "gpu", ACCRUAL)
    jobs.start()
    try:
        assert ran.wait(5)
        for _ in range(100):
            if after:
                break
            threading.Event().wait(0.02)
    finally:
        jobs.stop()
    assert after and after[0].startswith(ACCRUAL)


def test_a_steadily_scraped_variant_is_rendered_only_shortly_before_its_next_scrape(clock, exporter_for):
    exporter = exporter_for(make_config())
    exporter.sample_all()
    wall = [0.0]
    ahead = PreRender(exporter.registry, exporter.exposition_key, exporter.exposition_steady_until, clock.now,
                      LineCache(), monotonic=lambda: wall[0])
    encoder, content_type = choose_encoder(OPENMETRICS)
    variant = Variant(content_type, False)
    for wall[0] in (0.0, 15.0, 30.0):  # scraped every 15 s
        ahead.get(variant, encoder)
    for wall[0] in (31.0, 40.0, 42.0):  # changes long before the next scrape (45 s): not rendered
        exporter.sample_all()
        ahead.refresh()
        assert variant not in ahead._bodies
    wall[0] = 43.0  # within prerender.LEAD_S of it
    exporter.sample_all()
    ahead.refresh()
    wall[0] = 45.0
    assert ahead.get(variant, encoder) == on_demand(exporter, OPENMETRICS, None)
