"""The cost model reproduces every worked scenario of the published analyses (seeds.yaml).

Each scenario's `expect` keys are all computed; a key without a computation fails the test, so a
new seed cannot be silently skipped.
"""

import pathlib

import pytest
import yaml

from conftest import assert_matches

from exporter import costmodel as cm

SEEDS = yaml.safe_load((pathlib.Path(__file__).parent / "data" / "seeds.yaml").read_text())
TOL = SEEDS["tolerance"]
K = 1000.0  # per-thousand prices -> per-million


def cloud_naive(g):
    monthly = cm.monthly_cost(g["instance_hourly"], g["hours_per_month"])
    tokens = cm.tokens_in_period(g["throughput_tokens_per_s"], g["hours_per_month"], g["utilization"])
    return {"monthly_cost": monthly, "tokens_per_month": tokens, "cost_per_million": cm.cost_per_million(monthly, tokens)}


def cloud_vllm(g):
    capacity = g["tokens_per_month_at_full_utilization"] / (g["hours_per_month"] * cm.SECONDS_PER_HOUR)
    full = cm.cost_per_million_at_full_utilization(g["instance_hourly"], capacity)
    out = {"throughput_tokens_per_s": capacity, "cost_per_million": full, "cost_per_million_at_full_utilization": full}
    tokens = cm.tokens_in_period(capacity, g["hours_per_month"], g["utilization"])
    out["tokens_per_month"] = tokens
    out["cost_per_million"] = cm.cost_per_million(cm.monthly_cost(g["instance_hourly"], g["hours_per_month"]), tokens)
    if "api" in g:
        api = g["api"]
        blended = cm.blended_price_per_million(api["input_per_million"], api["output_per_million"], input_share=0.5)
        out["api_blended_per_million"] = blended
        out["breakeven_utilization"] = cm.breakeven_utilization(full, blended)
    return out


def owned_payback(g):
    watts = g["gpu_count"] * g["gpu_power_w"] + g["overhead_power_w"]
    kwh = cm.energy_kwh_for(watts, g["hours_per_month"])
    energy = cm.energy_cost(kwh * cm.JOULES_PER_KWH, g["electricity_per_kwh"])
    opex = energy + g["other_monthly"]
    api_monthly = g["tokens_per_month"] * g["api"]["blended_per_million"] / cm.PER_MILLION
    return {"energy_kwh_per_month": kwh, "energy_cost_per_month": energy, "opex_per_month": opex,
            "cost_per_million_excluding_capex": cm.cost_per_million(opex, g["tokens_per_month"]),
            "api_equivalent_per_month": api_monthly, "monthly_saving": api_monthly - opex,
            "payback_months": cm.payback_months(g["capex"], api_monthly, opex)}


def api_vs_requests(g, case=None):
    api_per_request = g["tokens_per_request"] * g["api_per_thousand_tokens"] / K
    fee_per_request = g["per_request_fees_per_million"] / cm.PER_MILLION
    daily_fixed = cm.monthly_cost(g["instance_hourly"], 24)
    if case is None:
        return {"breakeven_requests_per_day": cm.breakeven_requests_per_day(daily_fixed, api_per_request, fee_per_request)}
    n = case["requests_per_day"]
    return {"api_cost_per_day": n * api_per_request, "self_hosted_cost_per_day": daily_fixed + n * fee_per_request}


def batch_bill(g):
    inputs = g["prompts"] * g["input_tokens_per_prompt"]
    outputs = g["prompts"] * g["output_tokens_per_prompt"]
    bills = {a["name"]: cm.api_equivalent(inputs, outputs, a["input_per_thousand"] * K, a["output_per_thousand"] * K)
             for a in g["apis"]}
    return {"total_tokens": inputs + outputs, "api_bill": bills}


def fine_tuned(g):
    base_input, base_output = 0.0015, 0.002  # gpt-3.5-turbo 4K at the time, per 1K
    multiples = {g["input_per_thousand"] / base_input, g["output_per_thousand"] / base_output}
    assert len(multiples) == 1
    return {"training_cost": cm.training_cost(g["training_file_tokens"], g["epochs"], g["training_per_thousand"] * K),
            "usage_price_multiple_of_base": multiples.pop()}


COMPUTE = {
    "cloud-naive-hf-4xT4": cloud_naive,
    "cloud-vllm-4xT4": cloud_vllm,
    "cloud-vllm-4xT4-real-utilization": cloud_vllm,
    "owned-4xT4-payback": owned_payback,
    "api-vs-sagemaker-requests": api_vs_requests,
    "batch-job-api-bill": batch_bill,
    "fine-tuned-api-baseline": fine_tuned,
}



@pytest.mark.parametrize("scenario", SEEDS["scenarios"], ids=lambda s: s["id"])
def test_seed_scenario(scenario):
    compute = COMPUTE[scenario["id"]]
    if "expect" in scenario:
        assert_matches(scenario["expect"], compute(scenario["given"]), scenario["id"], TOL)
    for i, case in enumerate(scenario.get("cases", [])):
        assert_matches(case["expect"], compute(scenario["given"], case), f"{scenario['id']}.cases[{i}]", TOL)


def test_every_seed_has_a_computation():
    assert {s["id"] for s in SEEDS["scenarios"]} == set(COMPUTE)


def test_cached_input_is_priced_at_the_cached_rate():
    # 1M input of which 400k cached at $0.25 instead of $1.00, 100k output at $4.00
    assert cm.api_equivalent(1e6, 1e5, 1.0, 4.0, cached_input_tokens=4e5, cached_input_per_million=0.25) == \
        pytest.approx(0.6 + 0.1 + 0.4)


def test_zero_tokens_and_zero_capacity_give_none_not_errors():
    assert cm.cost_per_million(5.0, 0) is None
    assert cm.cost_per_million_at_full_utilization(5.0, 0) is None
    assert cm.utilization(10.0, 0) is None
    assert cm.breakeven_utilization(1.0, 0) is None
    assert cm.payback_months(1000, 50, 60) is None
