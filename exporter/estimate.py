"""`llm-cost-exporter estimate`: a what-if calculator over the same cost model as the live exporter.

A scenario file (exporter/scenario.py, docs/estimate.md) describes the hardware with the run
config's own `pricing` block, a capacity and utilization or a monthly volume, and the APIs to
compare with; the command prints the figures, a sweep of cost per 1M tokens against utilization
with the break-even points marked, and optionally a PNG chart (exporter/estimate_chart.py).
Every figure has a stable name (`--format json`), so tests/data/seeds.yaml is reproduced figure
by figure, and the identities between figures are those of docs/cost-model.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from exporter import costmodel as cm
from exporter.catalog import STANDARD, ApiPrice, ApiRates
from exporter.estimate_chart import ChartError, breakeven_text
from exporter.estimate_chart import write as write_chart
from exporter.scenario import Batch, FineTuning, Scenario, ScenarioError, capacity_tokens_per_s, load
from exporter.validation import load_mapping

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def compute(raw: dict) -> dict:
    """All figures the scenario determines, by name. Raises ScenarioError."""
    s = load(raw)
    out: dict = {}
    if s.pricing is not None:
        _hardware(out, s)
        _volume(out, s)
        out["apis"] = {name: _compare(out, s, api) for name, api in s.api_prices.items()}
        _per_request(out, s)
    if s.batch is not None:
        out["batch"] = _batch(out, s.batch, s.api_prices)
    if s.fine_tuning is not None:
        out["fine_tuning"] = _fine_tuning(s.fine_tuning)
    return out


def _hardware(out: dict, s: Scenario) -> None:
    """Monthly cost: the instance price, or owned hardware's amortization + energy + fixed costs."""
    p = s.pricing
    assert p is not None
    hpm = out["hours_per_month"] = p.hours_per_month
    out["currency"] = p.currency
    if s.hardware is not None:  # in the cloud, information: the instance price includes power
        watts = s.hardware.gpu_count * s.hardware.gpu_watts + p.energy.overhead_watts
        kwh = out["energy_kwh_per_month"] = cm.energy_kwh_for(watts, hpm)
        if p.energy.electricity_per_kwh is not None:
            out["energy_cost_per_month"] = cm.energy_cost(kwh * cm.JOULES_PER_KWH, p.energy.electricity_per_kwh,
                                                          p.energy.pue)
        if p.energy.grid_co2e_grams_per_kwh is not None:
            out["co2e_kg_per_month"] = kwh * p.energy.pue * p.energy.grid_co2e_grams_per_kwh / 1000
    if p.mode == "cloud":
        assert s.hourly is not None
        out.update(hourly=s.hourly, price_source=s.price_source)
        if s.tokens_per_request is not None:
            out["request_fees_per_million_requests"] = p.cloud.per_million_requests
        out["monthly_cost"] = cm.monthly_cost(s.hourly, hpm)
        return
    out["fixed_per_month"] = p.owned.fixed_monthly
    out["opex_per_month"] = out["energy_cost_per_month"] + p.owned.fixed_monthly
    out.update(capex=p.owned.capex, amortization_months=p.owned.amortization_months)
    out["amortization_per_month"] = p.owned.capex / p.owned.amortization_months
    out["monthly_cost"] = out["opex_per_month"] + out["amortization_per_month"]


def _volume(out: dict, s: Scenario) -> None:
    """Capacity, tokens and utilization, and the cost per 1M tokens they give."""
    hpm = out["hours_per_month"]
    capacity = capacity_tokens_per_s(s)
    tokens = s.tokens_per_month
    if capacity is not None:
        full_month = cm.tokens_in_period(capacity, hpm)
        utilization = s.utilization if s.utilization is not None else (tokens / full_month if tokens else 1.0)
        tokens = tokens if tokens is not None else full_month * utilization
        out.update(capacity_tokens_per_s=capacity, utilization=utilization)
        out["cost_per_million_at_full_utilization"] = cm.cost_per_million_at_full_utilization(out["monthly_cost"] / hpm,
                                                                                              capacity)
        out["sweep"] = [{"utilization": u, "cost_per_million": cm.cost_per_million(out["monthly_cost"], full_month * u)}
                        for u in SWEEP]
    if tokens is None:
        return
    out["tokens_per_month"] = tokens
    out["cost_per_million"] = cm.cost_per_million(out["monthly_cost"], tokens)
    if "amortization_per_month" in out:
        out["cost_per_million_excluding_capex"] = cm.cost_per_million(out["opex_per_month"], tokens)


def _blended(api: ApiRates, s: Scenario) -> float:
    return cm.blended_price_per_million(api.input_per_million, api.output_per_million, s.input_share,
                                        api.cached_input_per_million, s.cached_input_share)


def _compare(out: dict, s: Scenario, api: ApiPrice) -> dict:
    """One API against the hardware: its bill for the same tokens, the saving, break-even, payback."""
    rates, row = tier_rates(api, compare_tier(s))
    blended = row["api_blended_per_million"] = _blended(rates, s)
    if "cost_per_million_at_full_utilization" in out:
        row["breakeven_utilization"] = cm.breakeven_utilization(out["cost_per_million_at_full_utilization"], blended)
    if "tokens_per_month" in out:
        api_monthly = row["api_equivalent_per_month"] = out["tokens_per_month"] * blended / cm.PER_MILLION
        # cash, before capex: what pays owned hardware back (in the cloud, the monthly cost is all opex)
        row["monthly_saving"] = api_monthly - out.get("opex_per_month", out["monthly_cost"])
        if "amortization_per_month" in out:
            row["monthly_saving_including_capex"] = api_monthly - out["monthly_cost"]
            row["payback_months"] = cm.payback_months(out["capex"], api_monthly, out["opex_per_month"])
    return row


def _per_request(out: dict, s: Scenario) -> None:
    """Per-request economics: each API billed per token against the instance plus per-request fees."""
    if s.tokens_per_request is None:
        return
    fee = out["request_fees_per_million_requests"] / cm.PER_MILLION
    daily_fixed = out["hourly"] * 24
    if s.requests_per_day is not None:
        out["self_hosted_cost_per_day"] = daily_fixed + s.requests_per_day * fee
    for name, api in s.api_prices.items():
        per_request = s.tokens_per_request * _blended(tier_rates(api, compare_tier(s))[0], s) / cm.PER_MILLION
        row = out["apis"][name]
        row["api_cost_per_request"] = per_request
        row["breakeven_requests_per_day"] = cm.breakeven_requests_per_day(daily_fixed, per_request, fee)
        if s.requests_per_day is not None:
            row["api_cost_per_day"] = s.requests_per_day * per_request


def tier_rates(api: ApiPrice, tier: str) -> tuple[ApiRates, dict]:
    """(the API's rates in `tier`, the figures that say which tier they are): an API without that
    tier is priced at its standard prices, and a tier_note says so."""
    rates = api.for_tier(tier)
    return rates, {"tier": rates.tier, **({"tier_note": f"no {tier} price"} if rates.tier != tier else {})}


def tier_text(row: dict) -> str:
    return f"{row['tier']} tier" + (f": {row['tier_note']}" if "tier_note" in row else "")


def compare_tier(s: Scenario) -> str:
    """The tier of the scenario's own (online) workload: compare.tier where the run config has it;
    `auto` is standard, as for an engine that is not a batch Job."""
    tier = getattr(s.compare, "tier", STANDARD)
    return STANDARD if tier == "auto" else tier


def _batch(out: dict, batch: Batch, apis: dict[str, ApiPrice]) -> dict:
    """An offline job's API bill at its own input/output mix and the API's batch tier, and what the
    hardware would spend on it running at saturation."""
    inputs = batch.prompts * batch.input_tokens_per_prompt
    outputs = batch.prompts * batch.output_tokens_per_prompt
    total = inputs + outputs
    figures: dict = {"total_tokens": total, "input_share": inputs / total if total else None}
    full = out.get("cost_per_million_at_full_utilization")
    if full is not None:
        figures["hours_at_capacity"] = total / out["capacity_tokens_per_s"] / cm.SECONDS_PER_HOUR
        figures["self_hosted_cost"] = total * full / cm.PER_MILLION
    rows = {}
    for name, api in apis.items():
        price, row = tier_rates(api, batch.tier)
        bill = row["api_bill"] = cm.api_equivalent(inputs, outputs, price.input_per_million, price.output_per_million)
        row["api_blended_per_million"] = bill / total * cm.PER_MILLION if total else None
        rows[name] = row
        if full is not None:
            row["saving"] = bill - figures["self_hosted_cost"]
    figures["apis"] = rows
    return figures


def _fine_tuning(ft: FineTuning) -> dict:
    figures = {"training_cost": cm.training_cost(ft.training_tokens, ft.epochs, ft.training_per_million)}
    if ft.base and ft.tuned:
        figures["usage_price_multiple_of_base"] = max(ft.tuned.input_per_million / ft.base.input_per_million,
                                                      ft.tuned.output_per_million / ft.base.output_per_million)
    return figures


# -- output -----------------------------------------------------------------------------------

_LABELS = [
    ("price_source", "instance price from", "{}"),
    ("capex", "purchase price", "{:,.2f}"),
    ("amortization_months", "amortized over (months)", "{:,.1f}"),
    ("hourly", "instance price per hour", "{:,.4f}"),
    ("monthly_cost", "cost per month", "{:,.2f}"),
    ("amortization_per_month", "  of which amortization", "{:,.2f}"),
    ("energy_cost_per_month", "  of which energy", "{:,.2f}"),
    ("fixed_per_month", "  of which fixed costs", "{:,.2f}"),
    ("opex_per_month", "operating cost per month", "{:,.2f}"),
    ("energy_kwh_per_month", "energy per month (kWh)", "{:,.1f}"),
    ("co2e_kg_per_month", "emissions per month (kg CO2e)", "{:,.1f}"),
    ("capacity_tokens_per_s", "capacity (tokens/s at saturation)", "{:,.1f}"),
    ("utilization", "utilization", "{:.1%}"),
    ("tokens_per_month", "tokens per month", "{:,.0f}"),
    ("cost_per_million", "cost per 1M tokens, actual", "{:,.4f}"),
    ("cost_per_million_at_full_utilization", "cost per 1M tokens at 100% utilization", "{:,.4f}"),
    ("cost_per_million_excluding_capex", "cost per 1M tokens excluding capex", "{:,.4f}"),
    ("request_fees_per_million_requests", "fees per 1M requests", "{:,.4f}"),
    ("self_hosted_cost_per_day", "self-hosted cost per day", "{:,.4f}"),
]

_CLOUD_LABELS = {"energy_cost_per_month": "energy cost per month (in instance price)"}

_API_LABELS = (("api_blended_per_million", "API price per 1M tokens (this mix)", "{:,.4f}"),
               ("api_equivalent_per_month", "API bill per month", "{:,.2f}"),
               ("monthly_saving", "saving per month by self-hosting", "{:,.2f}"),
               ("monthly_saving_including_capex", "  after amortization", "{:,.2f}"),
               ("breakeven_utilization", "break-even utilization", "{:.1%}"),
               ("payback_months", "payback (months)", "{:,.1f}"),
               ("api_cost_per_request", "API cost per request", "{:,.6f}"),
               ("breakeven_requests_per_day", "break-even requests per day", "{:,.0f}"),
               ("api_cost_per_day", "API cost per day", "{:,.4f}"))


def render_table(figures: dict) -> str:
    money = f" ({figures['currency']})" if "currency" in figures else ""
    labels = [(k, _CLOUD_LABELS.get(k, label) if "hourly" in figures else label, fmt) for k, label, fmt in _LABELS]
    lines = [f"{label:<42} {fmt.format(figures[key])}" for key, label, fmt in labels if figures.get(key) is not None]
    if money:
        lines.insert(0, f"{'money in':<42} {figures['currency']}")
    for name, row in figures.get("apis", {}).items():
        lines += _api_lines(name, row)
    lines += _sweep_lines(figures)
    lines += _batch_lines(figures.get("batch"))
    ft = figures.get("fine_tuning")
    if ft:
        lines.append(f"\n{'fine-tuning training cost':<42} {ft['training_cost']:,.2f}")
        if "usage_price_multiple_of_base" in ft:
            lines.append(f"{'fine-tuned price / base price':<42} {ft['usage_price_multiple_of_base']:,.1f}x")
    return "\n".join(lines).lstrip("\n")


def _api_lines(name: str, row: dict) -> list[str]:
    lines = [f"\ncompared with {name} ({tier_text(row)}):"]
    for key, label, fmt in _API_LABELS:
        if key in row:
            value = row[key]
            text = breakeven_text(value) if key == "breakeven_utilization" else \
                "never" if value is None else fmt.format(value)  # None: never pays back
            lines.append(f"  {label:<40} {text}")
    if "breakeven_utilization" not in row and "breakeven_requests_per_day" not in row:
        lines.append(f"  {'break-even utilization':<40} needs a capacity (capacity_tokens_per_s)")
    if (row.get("breakeven_utilization") or 0) > 1:
        lines.append("  -> this hardware cannot beat the API at any utilization")
    return lines


def _sweep_lines(figures: dict) -> list[str]:
    if "sweep" not in figures:
        return []
    apis = figures.get("apis", {})
    lines = ["\nutilization   cost per 1M tokens" + "".join(f"   vs {n}" for n in apis)]
    for point in figures["sweep"]:
        marks = "".join(
            f"   {'cheaper' if point['cost_per_million'] <= row['api_blended_per_million'] else 'dearer':>{len(n) + 3}}"
            for n, row in apis.items())
        lines.append(f"{point['utilization']:>10.0%}   {point['cost_per_million']:>18,.4f}{marks}")
    for name, row in apis.items():
        lines.append(f"break-even with {name}: {breakeven_text(row['breakeven_utilization'])}")
    return lines


def _batch_lines(batch: dict | None) -> list[str]:
    if not batch:
        return []
    lines = [f"\n{'batch tokens':<42} {batch['total_tokens']:,.0f}"]
    if batch.get("input_share") is not None:
        lines.append(f"{'  of which input':<42} {batch['input_share']:.1%}")
    if "self_hosted_cost" in batch:
        lines.append(f"{'batch on this hardware at saturation':<42} {batch['self_hosted_cost']:,.2f}"
                     f" ({batch['hours_at_capacity']:,.1f} h)")
    for name, row in batch["apis"].items():
        lines.append(f"{'API bill with ' + name:<42} {row['api_bill']:,.2f} ({tier_text(row)})")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario YAML file (docs/estimate.md)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--output", default=None,
                        help="also write the utilization sweep as a PNG chart to this file (needs the charts extra)")


def run(args) -> int:
    """Every error is one line on stderr and exit 2, with nothing printed before it: the chart is
    written before the figures are printed."""
    try:
        figures = compute(load_mapping(args.scenario, "scenario", ScenarioError))
        if args.output:
            write_chart(figures, args.output)
    except ScenarioError as err:
        print(f"llm-cost-exporter estimate: {args.scenario}: {err}", file=sys.stderr)
        return 2
    except ChartError as err:
        print(f"llm-cost-exporter estimate: {err}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2) if args.format == "json" else render_table(figures))
    return 0
