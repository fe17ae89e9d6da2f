"""An engine that restarts, dies, hangs or talks garbage degrades only its own metrics."""

import threading
import time
import urllib.request

import pytest

from conftest import MODEL, make_config, value
from exporter.web import WebServer


def tokens(exporter, direction="input", engine="vllm", model=MODEL):
    return value(exporter, "llmcost_tokens_total", engine=engine, model=model, direction=direction)


def up(exporter, name="vllm"):
    return value(exporter, "llmcost_source_up", source="engine", name=name)


def errors(exporter, reason, name="vllm"):
    return value(exporter, "llmcost_source_errors_total", source="engine", name=name, reason=reason) or 0


@pytest.fixture
def setup(clock, vllm, exporter_for):
    def make(timeout="1s", **engine):
        server = vllm()
        clock.advance(60)  # the engine has been serving before the exporter came
        exporter = exporter_for(make_config([("vllm", server.url, {"timeout": timeout, **engine})]))
        exporter.sample_all()
        return server, exporter
    return make


def step(clock, exporter, seconds=5):
    clock.advance(seconds)
    exporter.sample_all()


def truth(server, baseline, key="input_tokens"):
    return server.served_counters()[key] - baseline[key]


def test_counter_reset_keeps_totals_exact_and_monotonic(clock, setup):
    server, exporter = setup()
    start = server.workload.counters()["input_tokens"]
    step(clock, exporter)
    server.restart()  # right after a scrape, so no tokens fall between scrape and restart
    seen = [tokens(exporter)]
    for _ in range(3):
        step(clock, exporter)
        seen.append(tokens(exporter))
    assert seen == sorted(seen) and seen[-1] > seen[0]
    # Every token the workload produced since the exporter's baseline, none invented.
    assert seen[-1] == server.workload.counters()["input_tokens"] - start
    assert server.served_counters()["input_tokens"] < seen[-1]  # the engine itself restarted from 0
    assert value(exporter, "llmcost_engine_restarts_total", engine="vllm") == 1


def test_engine_down_keeps_serving_and_totals(clock, setup):
    server, exporter = setup()
    step(clock, exporter)
    counted = tokens(exporter)
    spend = value(exporter, "llmcost_spend_total", component="instance", currency="USD")
    server.stop()
    step(clock, exporter)
    assert up(exporter) == 0 and errors(exporter, "connection") == 1
    assert tokens(exporter) == counted  # totals kept, not dropped
    assert value(exporter, "llmcost_requests_running", engine="vllm", model=MODEL) is None  # unknown now
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") > spend  # GPUs still billed
    assert value(exporter, "llmcost_source_up", source="nvml", name="nvml") == 1


@pytest.mark.parametrize("fault,reason", [("http_500", "http_status"), ("garbage", "parse"), ("huge", "too_large")])
def test_bad_answers_are_counted_and_recovered_from(clock, setup, fault, reason):
    server, exporter = setup()
    baseline = server.served_counters()
    step(clock, exporter)
    counted = tokens(exporter)
    server.fault = fault
    step(clock, exporter)
    step(clock, exporter)
    assert up(exporter) == 0 and errors(exporter, reason) == 2
    assert tokens(exporter) == counted
    server.fault = "none"
    step(clock, exporter)
    assert up(exporter) == 1
    assert tokens(exporter) == truth(server, baseline)  # nothing lost, nothing invented


def test_huge_body_is_cut_at_the_cap_quickly(setup):
    server, exporter = setup(max_body_bytes="1MiB")
    server.fault = "huge"  # 50 MB
    started = time.monotonic()
    exporter.engines[0].sample()
    assert time.monotonic() - started < 2.0
    assert errors(exporter, "too_large") == 1


@pytest.mark.parametrize("fault", ["hang", "drip"])
def test_slow_engine_times_out_and_scrapes_stay_fast(setup, fault):
    server, exporter = setup(timeout="1s")
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    try:
        server.fault = fault
        sampler = threading.Thread(target=exporter.engines[0].sample)
        started = time.monotonic()
        sampler.start()
        time.sleep(0.2)
        scrape_started = time.monotonic()
        body = urllib.request.urlopen(f"http://127.0.0.1:{web.port}/metrics", timeout=5).read()
        scrape_s = time.monotonic() - scrape_started
        sampler.join(5)
        assert scrape_s < 0.5 and b"llmcost_tokens_total" in body
        assert time.monotonic() - started < 2.5  # the 1 s deadline held, drip included
        assert errors(exporter, "timeout") == 1 and up(exporter) == 0
    finally:
        web.stop()


def test_openmetrics_and_text_give_the_same_totals(clock, setup):
    server, exporter = setup()
    baseline = server.served_counters()
    server.format = "openmetrics"
    step(clock, exporter)
    server.format = "negotiate"  # honours our Accept header, which prefers OpenMetrics
    step(clock, exporter)
    server.format = "text"
    step(clock, exporter)
    assert up(exporter) == 1
    assert tokens(exporter) == truth(server, baseline)
    assert tokens(exporter, "output") == truth(server, baseline, "output_tokens")


def test_data_parallel_ranks_are_summed(clock, vllm, exporter_for):
    server = vllm(data_parallel=3)
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    exporter.sample_all()
    baseline = server.served_counters()
    step(clock, exporter, 60)
    assert tokens(exporter) == truth(server, baseline)


def test_renamed_model_starts_its_own_series(clock, setup):
    server, exporter = setup()
    step(clock, exporter)
    old = tokens(exporter)
    server.restart()
    server.model = "meta-llama/Llama-3.1-70B-Instruct"
    step(clock, exporter)
    assert tokens(exporter) == old  # the old model's total stays
    assert tokens(exporter, model=server.model) == server.served_counters()["input_tokens"]


def test_model_cap_bounds_cardinality(static_server, exporter_for):
    body = "# TYPE vllm:prompt_tokens_total counter\n" + "".join(
        f'vllm:prompt_tokens_total{{model_name="m{i}"}} {i}\n' for i in range(20))
    exporter = exporter_for(make_config([("vllm", static_server(body), {"max_models": 5})]))
    exporter.sample_all()
    exporter.sample_all()
    models = {f.model.model for f in exporter.snapshot().models}
    assert models == {"m0", "m1", "m10", "m11", "m12"}  # a stable choice: the first five by name
    assert errors(exporter, "too_many_models") == 2
    assert up(exporter) == 1
