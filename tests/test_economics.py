"""Live economics against analytical values, and the cost model's invariants (hypothesis)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import MODEL, make_config, run_for, value
from exporter import costmodel as cm
from plugins.profiles import examples

GPT_4O_MINI = (0.15, 0.60, 0.075)  # input, output, cached input per 1M, as in the bundled catalog



def test_live_economics_match_the_analytical_values(clock, vllm, nvml, exporter_for):
    server = vllm(capacity=1000.0, load=0.5)
    config = make_config([("vllm", server.url, {"capacity_tokens_per_s": 1000.0})], hourly=3.6,
                         energy={"electricity_per_kwh": 0.2, "overhead_watts": 100.0, "grid_co2e_grams_per_kwh": 400.0},
                         )
    exporter = exporter_for(config)
    exporter.sample_all()
    base = server.served_counters()
    run_for(clock, exporter, 1200)
    now = server.served_counters()
    d_in, d_out, d_cached = (now[k] - base[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens"))
    ids = dict(engine="vllm", model=MODEL)

    api = value(exporter, "llmcost_api_equivalent_spend_total", api="gpt-4o-mini", tier="standard", currency="USD", **ids)
    i, o, c = GPT_4O_MINI
    assert api == pytest.approx(((d_in - d_cached) * i + d_cached * c + d_out * o) / 1e6, rel=1e-9)
    spend = value(exporter, "llmcost_engine_spend_total", engine="vllm", currency="USD")
    assert value(exporter, "llmcost_api_savings", engine="vllm", api="gpt-4o-mini", tier="standard", currency="USD") == pytest.approx(api - spend)

    # $3.6/h at 1000 tokens/s capacity: $1.00 per 1M at 100%; the load is 50%, so $2.00 actual.
    assert value(exporter, "llmcost_capacity_tokens_per_second", engine="vllm", source="configured") == 1000.0
    assert value(exporter, "llmcost_cost_per_million_tokens_at_full_utilization", currency="USD", **ids) == pytest.approx(1.0, rel=0.01)
    assert value(exporter, "llmcost_cost_per_million_tokens", currency="USD", **ids) == pytest.approx(2.0, rel=0.01)
    assert value(exporter, "llmcost_utilization_ratio", **ids) == pytest.approx(0.5, rel=0.01)
    blended = ((d_in - d_cached) * i + d_cached * c + d_out * o) / (d_in + d_out)
    assert value(exporter, "llmcost_api_blended_price_per_million_tokens", api="gpt-4o-mini", tier="standard", currency="USD", **ids) == \
        pytest.approx(blended, rel=1e-6)
    assert value(exporter, "llmcost_breakeven_utilization_ratio", api="gpt-4o-mini", tier="standard", **ids) == pytest.approx(1.0 / blended, rel=0.01)

    # Two GPUs at 150 W plus 100 W overhead for 500 tokens/s: 0.8 J per token.
    assert value(exporter, "llmcost_energy_per_token_joules", **ids) == pytest.approx(0.8, rel=0.01)
    joules = value(exporter, "llmcost_engine_energy_joules_total", engine="vllm")
    assert joules == pytest.approx(400.0 * 1200, rel=0.005)
    assert value(exporter, "llmcost_co2e_grams_total") == pytest.approx(joules / 3.6e6 * 400.0, rel=0.005)
    assert value(exporter, "llmcost_api_price_per_million_tokens", api="gpt-4o-mini", tier="standard", direction="cached_input", currency="USD") == c


@pytest.mark.slow  # a long simulated run over real HTTP
def test_idle_spend_is_what_accrued_while_no_tokens_flowed(clock, vllm, exporter_for):
    server = vllm(load=0.5)
    exporter = exporter_for(make_config([("vllm", server.url, {})], hourly=3.6))
    exporter.sample_all()
    run_for(clock, exporter, 600)
    assert value(exporter, "llmcost_idle_spend_total", engine="vllm", currency="USD") == 0
    server.workload.set_constant_load(0.0)
    run_for(clock, exporter, 5)  # the scrape that first sees no new tokens
    run_for(clock, exporter, 1800)
    assert value(exporter, "llmcost_idle_spend_total", engine="vllm", currency="USD") == pytest.approx(3.6 * 0.5, rel=0.01)


@pytest.mark.slow  # a long simulated run over real HTTP
def test_observed_capacity_is_the_peak_of_the_windowed_throughput(clock, vllm, exporter_for):
    server = vllm(capacity=1000.0, load=0.3)
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    exporter.sample_all()
    run_for(clock, exporter, 900)
    server.workload.set_constant_load(0.8)
    run_for(clock, exporter, 900)
    server.workload.set_constant_load(0.2)
    run_for(clock, exporter, 900)
    assert value(exporter, "llmcost_capacity_tokens_per_second", engine="vllm", source="observed") == pytest.approx(800.0, rel=0.01)
    assert value(exporter, "llmcost_utilization_ratio", engine="vllm", model=MODEL) == pytest.approx(0.25, rel=0.01)


def test_owned_payback_months(clock, vllm, nvml, exporter_for):
    server = vllm(capacity=1000.0, load=0.5)
    config = make_config([("vllm", server.url, {})], mode="owned", owned={"capex": 10000.0, "fixed_monthly": 73.0},
                         energy={"electricity_per_kwh": 0.25}, apis=["gpt-4o"])
    exporter = exporter_for(config)
    exporter.sample_all()
    base = server.served_counters()
    run_for(clock, exporter, 600)
    now = server.served_counters()
    d = {k: now[k] - base[k] for k in now}
    api_per_s = ((d["input_tokens"] - d["cached_input_tokens"]) * 2.5 + d["cached_input_tokens"] * 1.25
                 + d["output_tokens"] * 10.0) / 1e6 / 600
    opex_per_s = 73.0 / (730 * 3600) + 300.0 / 3.6e6 * 0.25  # fixed + 2 GPUs x 150 W
    expected = 10000.0 / ((api_per_s - opex_per_s) * 730 * 3600)
    assert value(exporter, "llmcost_payback_months", api="gpt-4o", tier="standard") == pytest.approx(expected, rel=0.01)


hourly = st.floats(min_value=0.01, max_value=500)
capacity = st.floats(min_value=0.1, max_value=1e6)


@given(hourly, capacity, st.floats(min_value=1e-3, max_value=1.0), st.floats(min_value=1, max_value=1e6))
def test_actual_cost_is_never_below_the_full_utilization_figure(h, cap, util, seconds):
    tps = cap * util
    actual = cm.cost_per_million(h * seconds / 3600, tps * seconds)
    assert actual >= cm.cost_per_million_at_full_utilization(h, cap) * (1 - 1e-9)


@given(hourly, capacity, st.floats(min_value=0.01, max_value=100))
def test_breakeven_times_capacity_times_price_is_the_hourly_cost(h, cap, price):
    b = cm.breakeven_utilization(cm.cost_per_million_at_full_utilization(h, cap), price)
    assert b * cap * 3600 * price / 1e6 == pytest.approx(h, rel=1e-9)


@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=0, max_value=10**12))
def test_zero_tokens_or_capacity_never_divide_by_zero(spend, x):  # token counts are whole numbers
    assert cm.cost_per_million(spend, 0) is None
    assert cm.cost_per_million_at_full_utilization(spend, 0) is None
    assert cm.breakeven_utilization(x, 0) is None
    result = cm.cost_per_million(spend, x)
    assert result is None or math.isfinite(result)


@pytest.mark.slow  # 60 hypothesis cases over real HTTP
@settings(max_examples=examples(60))  # each case samples a real HTTP engine
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 3600)), min_size=1, max_size=12))
def test_spend_and_api_equivalent_never_decrease(mutable_engine, sequence):
    """Whatever an engine reports (restarts, jumps, stalls), the money counters only go up."""
    url, set_counters, clock, exporter_for = mutable_engine
    exporter = exporter_for(make_config([("vllm", url, {})]))
    last = (0.0, 0.0)
    for prompt, generated, dt in sequence:
        set_counters(prompt, generated)
        clock.advance(dt)
        exporter.sample_all()
        now = (value(exporter, "llmcost_engine_spend_total", engine="vllm", currency="USD") or 0.0,
               value(exporter, "llmcost_api_equivalent_spend_total", engine="vllm", model="m", api="gpt-4o-mini", tier="standard",
                     currency="USD") or 0.0)
        assert now[0] >= last[0] and now[1] >= last[1]
        last = now
