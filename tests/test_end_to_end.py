"""Simulated vLLM -> exporter -> HTTP scrape, all over real sockets, against ground truth."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL, make_config, run_for
from exporter.web import WebServer


def scrape(exporter) -> dict[tuple, float]:
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{web.port}/metrics", timeout=5).read().decode()
    finally:
        web.stop()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def get(samples, metric, **labels):
    return samples[(metric, tuple(sorted(labels.items())))]



@pytest.mark.slow  # a long simulated run over real HTTP
def test_cloud_tokens_exact_spend_and_energy_within_half_percent(clock, vllm, nvml, exporter_for):
    server = vllm(capacity=1000.0, load=0.5)
    clock.advance(600)  # the engine ran for 10 minutes before the exporter started
    config = make_config([("vllm", server.url, {})], hourly=3.6,
                         energy={"electricity_per_kwh": 0.20, "pue": 1.25, "overhead_watts": 100.0})
    exporter = exporter_for(config)
    exporter.sample_all()
    base = server.served_counters()
    base_energy = [nvml.true_energy_joules(i) for i in range(2)]
    run_for(clock, exporter, 1800)
    server.workload.set_constant_load(0.9)  # busier second half
    for i in range(2):
        nvml.set_load(i, lambda t: 0.9)
    run_for(clock, exporter, 1800)

    samples = scrape(exporter)
    now = server.served_counters()
    for direction, key in (("input", "input_tokens"), ("output", "output_tokens")):
        assert get(samples, "llmcost_tokens_total", engine="vllm", model=MODEL, direction=direction) == now[key] - base[key]
    assert get(samples, "llmcost_cached_input_tokens_total", engine="vllm", model=MODEL) == \
        now["cached_input_tokens"] - base["cached_input_tokens"]

    hours = 3600 / 3600
    assert get(samples, "llmcost_spend_total", component="instance", currency="USD") == pytest.approx(3.6 * hours, rel=0.005)
    assert get(samples, "llmcost_engine_spend_total", engine="vllm", currency="USD") == pytest.approx(3.6 * hours, rel=0.005)
    gpu_energy = [nvml.true_energy_joules(i) - base_energy[i] for i in range(2)]
    for i, uuid in enumerate(g.uuid for g in nvml.gpus):
        assert get(samples, "llmcost_gpu_energy_joules_total", gpu=str(i), uuid=uuid) == pytest.approx(gpu_energy[i], rel=0.005)
    energy_cost = (sum(gpu_energy) + 100.0 * 3600) / 3.6e6 * 1.25 * 0.20
    assert get(samples, "llmcost_energy_cost_total", currency="USD") == pytest.approx(energy_cost, rel=0.005)

    # Live figures over the 10-minute window, at 90% of 1000 tokens/s and $3.6/h:
    assert get(samples, "llmcost_tokens_per_second", engine="vllm", model=MODEL) == pytest.approx(900.0, rel=0.01)
    expected_cpm = 3.6 / 3600 / 900.0 * 1e6  # $1.111 per 1M tokens
    assert get(samples, "llmcost_cost_per_million_tokens", engine="vllm", model=MODEL, currency="USD") == \
        pytest.approx(expected_cpm, rel=0.01)
    assert get(samples, "llmcost_hourly_cost", currency="USD") == pytest.approx(3.6)


@pytest.mark.slow  # a long simulated run over real HTTP
def test_owned_mode_spend_by_component(clock, vllm, nvml, exporter_for):
    server = vllm(capacity=1000.0, load=0.5)
    config = make_config([("vllm", server.url, {})], mode="owned",
                         owned={"capex": 7300.0, "amortization_months": 10, "fixed_monthly": 73.0},
                         energy={"electricity_per_kwh": 0.30, "pue": 1.5, "overhead_watts": 50.0})
    exporter = exporter_for(config)
    exporter.sample_all()
    base_energy = sum(nvml.true_energy_joules(i) for i in range(2))
    run_for(clock, exporter, 7200)
    samples = scrape(exporter)
    spend = {c: get(samples, "llmcost_spend_total", component=c, currency="USD") for c in ("amortization", "fixed", "energy")}
    assert spend["amortization"] == pytest.approx(7300.0 / (10 * 730) * 2, rel=0.005)  # $1/h for 2 h
    assert spend["fixed"] == pytest.approx(73.0 / 730 * 2, rel=0.005)
    joules = sum(nvml.true_energy_joules(i) for i in range(2)) - base_energy + 50.0 * 7200
    assert spend["energy"] == pytest.approx(joules / 3.6e6 * 1.5 * 0.30, rel=0.005)
    assert get(samples, "llmcost_energy_cost_total", currency="USD") == pytest.approx(spend["energy"], rel=1e-9)


@pytest.mark.slow  # a long simulated run over real HTTP
def test_spend_is_split_by_the_gpus_each_engine_holds(clock, vllm, nvml, exporter_for):
    a, b = vllm(model="a"), vllm(model="b")
    config = make_config([("a", a.url, {"gpus": [0]}), ("b", b.url, {"gpus": [0, 1]})], hourly=4.0)
    exporter = exporter_for(config)
    exporter.sample_all()
    run_for(clock, exporter, 3600)
    samples = scrape(exporter)
    # GPU 0 is shared (half each), GPU 1 is b's: a gets 1/4 of the node, b 3/4.
    assert get(samples, "llmcost_engine_spend_total", engine="a", currency="USD") == pytest.approx(1.0, rel=0.005)
    assert get(samples, "llmcost_engine_spend_total", engine="b", currency="USD") == pytest.approx(3.0, rel=0.005)


def test_idle_engine_has_spend_but_no_cost_per_million(clock, vllm, exporter_for):
    server = vllm(load=0.0)
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    exporter.sample_all()
    run_for(clock, exporter, 600)
    samples = scrape(exporter)
    assert get(samples, "llmcost_engine_spend_total", engine="vllm", currency="USD") > 0
    assert get(samples, "llmcost_tokens_per_second", engine="vllm", model=MODEL) == 0
    assert not any(k[0] == "llmcost_cost_per_million_tokens" for k in samples)


def test_gpu_faults_degrade_only_gpu_metrics(clock, vllm, nvml, exporter_for):
    server = vllm()
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    exporter.sample_all()
    run_for(clock, exporter, 60)
    lost_uuid = nvml.gpus[1].uuid
    energy_before = get(scrape(exporter), "llmcost_gpu_energy_joules_total", gpu="1", uuid=lost_uuid)

    nvml.lose_gpu(1)
    run_for(clock, exporter, 60)
    samples = scrape(exporter)
    assert get(samples, "llmcost_gpu_up", gpu="1", uuid=lost_uuid) == 0
    assert get(samples, "llmcost_gpu_up", gpu="0", uuid=nvml.gpus[0].uuid) == 1
    assert ("llmcost_gpu_power_watts", (("gpu", "1"), ("uuid", lost_uuid))) not in samples
    assert get(samples, "llmcost_gpu_energy_joules_total", gpu="1", uuid=lost_uuid) == energy_before
    assert get(samples, "llmcost_source_up", source="nvml", name="nvml") == 1
    assert get(samples, "llmcost_source_errors_total", source="nvml", name="nvml", reason="gpu_lost") == 12

    tokens = get(samples, "llmcost_tokens_total", engine="vllm", model=MODEL, direction="input")
    spend = get(samples, "llmcost_spend_total", component="instance", currency="USD")
    energy_total = sum(v for k, v in samples.items() if k[0] == "llmcost_gpu_energy_joules_total")
    nvml.library_missing = True  # the driver went away under us
    run_for(clock, exporter, 60)
    samples = scrape(exporter)
    assert get(samples, "llmcost_source_up", source="nvml", name="nvml") == 0
    assert get(samples, "llmcost_source_errors_total", source="nvml", name="nvml", reason="library_not_found") >= 1
    assert sum(v for k, v in samples.items() if k[0] == "llmcost_gpu_energy_joules_total") == energy_total
    assert get(samples, "llmcost_tokens_total", engine="vllm", model=MODEL, direction="input") > tokens
    assert get(samples, "llmcost_spend_total", component="instance", currency="USD") > spend
    assert get(samples, "llmcost_source_up", source="engine", name="vllm") == 1
