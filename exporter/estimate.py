"""`llm-cost-exporter estimate`: a what-if calculator over the same cost model as the live exporter.

A scenario file describes hardware (a cloud instance or owned hardware), throughput or tokens,
utilization and the APIs to compare with; the command prints the figures, a sweep of cost per 1M
tokens against utilization with the break-even points marked, and optionally a PNG chart.
Every figure has a stable name (`--format json`), the names the published analyses use, so
tests/data/seeds.yaml is reproduced figure by figure. Scenario format: docs/estimate.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from exporter import catalog, pricing
from exporter import costmodel as cm
from exporter.validation import InputError, build, load_mapping, number, show

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SHARE = "a share: 0.25 for 25%"


class ScenarioError(InputError):
    """A bad scenario: `KEY: got VALUE, allowed: WHAT`."""


@dataclasses.dataclass(frozen=True)
class Owned:
    capex: float = number(0.0)
    gpu_count: int = number(1)
    gpu_power_w: float = number(0.0)
    overhead_power_w: float = number(0.0)
    electricity_per_kwh: float = number(0.0)
    pue: float = number(1.0, minimum=1.0)
    other_monthly: float = number(0.0)
    amortization_months: float | None = number(None, exclusive=True)  # None: "excluding capex" and payback


@dataclasses.dataclass(frozen=True)
class Batch:
    prompts: float = number()
    input_tokens_per_prompt: float = number()
    output_tokens_per_prompt: float = number()


@dataclasses.dataclass(frozen=True)
class Prices:
    input_per_million: float = number(exclusive=True)
    output_per_million: float = number(exclusive=True)


@dataclasses.dataclass(frozen=True)
class FineTuning:
    training_tokens: float = number()
    epochs: int = number(minimum=1)
    training_per_million: float = number()
    base: Prices | None = None
    tuned: Prices | None = None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """The scenario file (docs/estimate.md); every key checked, unknown ones refused."""
    hourly: float | None = number(None)
    instance_type: str | None = None
    region: str | None = None
    owned: Owned | None = None
    hours_per_month: float = number(730.0, exclusive=True)
    throughput_tokens_per_s: float | None = number(None)
    tokens_per_month_at_full_utilization: float | None = number(None)
    utilization: float = number(1.0, maximum=1.0, hint=SHARE)
    tokens_per_month: float | None = number(None)
    input_share: float = number(0.5, maximum=1.0, hint=SHARE)
    cached_input_share: float = number(0.0, maximum=1.0, hint=SHARE)
    apis: list[typing.Any] = dataclasses.field(default_factory=list)  # names or inline prices: _api_prices
    tokens_per_request: float | None = number(None)
    requests_per_day: float | None = number(None)
    per_request_fees_per_million: float = number(0.0)
    batch: Batch | None = None
    fine_tuning: FineTuning | None = None


def _api_prices(entries) -> list:
    """Catalog names or inline {name, input_per_million, output_per_million, cached_input_per_million}."""
    known = None
    prices = []
    for i, entry in enumerate(entries or []):
        if isinstance(entry, str):
            known = known or pricing.bundled_apis()
            if entry not in known:
                raise ScenarioError(f"apis[{i}]", f"got {show(entry)}, allowed: a catalog API ({', '.join(sorted(known)[:6])}, ...) "
                                    "or an inline price")
            prices.append(known[entry])
        elif isinstance(entry, dict) and "name" in entry:
            try:
                prices.append(catalog.api_from_dict(str(entry["name"]), {k: v for k, v in entry.items() if k != "name"},
                                                    key=f"apis[{i}]"))
            except catalog.CatalogError as err:
                raise ScenarioError(err.key, err.problem) from None
        else:
            raise ScenarioError(f"apis[{i}]", f"got {show(entry)}, allowed: an API name or a mapping with name and prices")
    return prices


def compute(raw: dict) -> dict:
    """All figures the scenario determines, by name."""
    scenario = build(Scenario, raw, "", ScenarioError)
    hpm = scenario.hours_per_month
    out: dict = {"hours_per_month": hpm}
    apis = _api_prices(scenario.apis)
    monthly, opex, capex = _monthly_costs(scenario, out)
    capacity, tokens = _volume(scenario)
    if capacity is not None:
        out["throughput_tokens_per_s"] = capacity
    if tokens is not None:
        out["tokens_per_month"] = tokens
    if monthly is not None:
        out["monthly_cost"] = monthly
        if tokens:
            out["cost_per_million"] = cm.cost_per_million(monthly, tokens)
        if capacity:
            out["cost_per_million_at_full_utilization"] = cm.cost_per_million_at_full_utilization(monthly / hpm, capacity)
    if opex is not None and tokens:
        out["cost_per_million_excluding_capex"] = cm.cost_per_million(opex, tokens)

    _compare_apis(out, apis, tokens, scenario, opex, capex)
    _per_request(out, scenario, apis)
    _batch(out, scenario.batch, apis)
    _fine_tuning(out, scenario.fine_tuning)
    if capacity and monthly is not None:
        out["sweep"] = [{"utilization": u, "cost_per_million": cm.cost_per_million(monthly, cm.tokens_in_period(capacity, hpm, u))}
                        for u in SWEEP]
    return out


def _volume(scenario: Scenario):
    """(capacity in tokens/s, tokens per month), each None where the scenario does not say."""
    capacity = scenario.throughput_tokens_per_s
    if capacity is None and scenario.tokens_per_month_at_full_utilization is not None:
        capacity = scenario.tokens_per_month_at_full_utilization / (scenario.hours_per_month * cm.SECONDS_PER_HOUR)
    tokens = scenario.tokens_per_month
    if tokens is None and capacity is not None:
        tokens = cm.tokens_in_period(capacity, scenario.hours_per_month, scenario.utilization)
    return capacity, tokens


def _monthly_costs(scenario: Scenario, out):
    """(monthly cost, monthly opex, capex): cloud instance or owned hardware."""
    hourly = scenario.hourly
    if hourly is None and scenario.instance_type:
        found = pricing.find_instance(scenario.instance_type, scenario.region)
        if found is None:
            raise ScenarioError("instance_type", f"got {show(scenario.instance_type)}, not in the price catalog; "
                                "set hourly")
        hourly = found.hourly
    hpm = scenario.hours_per_month
    if hourly is not None:
        out["hourly"] = hourly
        return cm.monthly_cost(hourly, hpm), None, None
    owned = scenario.owned
    if owned is None:
        return None, None, None
    watts = owned.gpu_count * owned.gpu_power_w + owned.overhead_power_w
    kwh = cm.energy_kwh_for(watts, hpm)
    energy = cm.energy_cost(kwh * cm.JOULES_PER_KWH, owned.electricity_per_kwh, owned.pue)
    opex = energy + owned.other_monthly
    out.update(energy_kwh_per_month=kwh, energy_cost_per_month=energy, opex_per_month=opex)
    months = owned.amortization_months
    monthly = opex + (owned.capex / months if months else 0.0)
    if months:
        out["amortization_per_month"] = owned.capex / months
    return monthly, opex, owned.capex


def _blended(api, input_share: float, cached_share: float) -> float:
    return cm.blended_price_per_million(api.input_per_million, api.output_per_million, input_share,
                                        api.cached_input_per_million, cached_share)


def _compare_apis(out, apis, tokens, scenario: Scenario, opex, capex):
    comparisons = {}
    for api in apis:
        blended = _blended(api, scenario.input_share, scenario.cached_input_share)
        row: dict[str, float | None] = {"api_blended_per_million": blended}
        if "cost_per_million_at_full_utilization" in out:
            row["breakeven_utilization"] = cm.breakeven_utilization(out["cost_per_million_at_full_utilization"], blended)
        if tokens:
            api_monthly = row["api_equivalent_per_month"] = tokens * blended / cm.PER_MILLION
            if opex is not None:
                row["monthly_saving"] = api_monthly - opex
                row["payback_months"] = cm.payback_months(capex, api_monthly, opex)
            elif "monthly_cost" in out:
                row["monthly_saving"] = api_monthly - out["monthly_cost"]
        comparisons[api.name] = row
    if comparisons:
        out["apis"] = comparisons
        if len(comparisons) == 1:  # the single-API figures under the names the analyses use
            out.update(next(iter(comparisons.values())))


def _per_request(out, scenario: Scenario, apis):
    """Per-request economics: an API billed per token against a fixed instance plus per-request fees."""
    if scenario.tokens_per_request is None or "hourly" not in out:
        return
    if not apis:
        raise ScenarioError("tokens_per_request", "needs one entry in apis to price requests with")
    blended = _blended(apis[0], scenario.input_share, scenario.cached_input_share)
    api_per_request = scenario.tokens_per_request * blended / cm.PER_MILLION
    fee = scenario.per_request_fees_per_million / cm.PER_MILLION
    daily_fixed = out["hourly"] * 24
    out["breakeven_requests_per_day"] = cm.breakeven_requests_per_day(daily_fixed, api_per_request, fee)
    if scenario.requests_per_day is not None:
        out["api_cost_per_day"] = scenario.requests_per_day * api_per_request
        out["self_hosted_cost_per_day"] = daily_fixed + scenario.requests_per_day * fee


def _batch(out, batch: Batch | None, apis):
    if batch is None:
        return
    inputs = batch.prompts * batch.input_tokens_per_prompt
    outputs = batch.prompts * batch.output_tokens_per_prompt
    out["total_tokens"] = inputs + outputs
    out["api_bill"] = {a.name: cm.api_equivalent(inputs, outputs, a.input_per_million, a.output_per_million) for a in apis}


def _fine_tuning(out, ft: FineTuning | None):
    if ft is None:
        return
    out["training_cost"] = cm.training_cost(ft.training_tokens, ft.epochs, ft.training_per_million)
    if ft.base and ft.tuned:
        out["usage_price_multiple_of_base"] = max(ft.tuned.input_per_million / ft.base.input_per_million,
                                                  ft.tuned.output_per_million / ft.base.output_per_million)


# -- output -----------------------------------------------------------------------------------

_LABELS = [
    ("hourly", "instance price per hour", "{:,.4f}"),
    ("monthly_cost", "cost per month", "{:,.2f}"),
    ("amortization_per_month", "  of which amortization", "{:,.2f}"),
    ("energy_kwh_per_month", "energy per month (kWh)", "{:,.1f}"),
    ("energy_cost_per_month", "energy cost per month", "{:,.2f}"),
    ("opex_per_month", "operating cost per month", "{:,.2f}"),
    ("throughput_tokens_per_s", "capacity (tokens/s at saturation)", "{:,.1f}"),
    ("tokens_per_month", "tokens per month", "{:,.0f}"),
    ("cost_per_million", "cost per 1M tokens, actual", "{:,.4f}"),
    ("cost_per_million_at_full_utilization", "cost per 1M tokens at 100% utilization", "{:,.4f}"),
    ("cost_per_million_excluding_capex", "cost per 1M tokens excluding capex", "{:,.4f}"),
    ("breakeven_requests_per_day", "break-even requests per day", "{:,.0f}"),
    ("api_cost_per_day", "API cost per day", "{:,.4f}"),
    ("self_hosted_cost_per_day", "self-hosted cost per day", "{:,.4f}"),
    ("total_tokens", "batch tokens", "{:,.0f}"),
    ("training_cost", "fine-tuning training cost", "{:,.2f}"),
    ("usage_price_multiple_of_base", "fine-tuned price / base price", "{:,.1f}x"),
]


def render_table(figures: dict) -> str:
    lines = [f"{label:<42} {fmt.format(figures[key])}" for key, label, fmt in _LABELS if figures.get(key) is not None]
    for name, row in figures.get("apis", {}).items():
        lines += _api_lines(name, row)
    for name, bill in figures.get("api_bill", {}).items():
        lines.append(f"API bill with {name:<27} {bill:,.2f}")
    lines += _sweep_lines(figures)
    return "\n".join(lines)


_API_LABELS = (("api_blended_per_million", "API price per 1M tokens (this mix)", "{:,.4f}"),
               ("api_equivalent_per_month", "API bill per month", "{:,.2f}"),
               ("monthly_saving", "saving per month by self-hosting", "{:,.2f}"),
               ("breakeven_utilization", "break-even utilization", "{:.1%}"),
               ("payback_months", "payback (months)", "{:,.1f}"))


def _api_lines(name: str, row: dict) -> list[str]:
    lines = [f"\ncompared with {name}:"]
    for key, label, fmt in _API_LABELS:
        if key in row:
            value = row[key]
            lines.append(f"  {label:<40} {'never' if value is None else fmt.format(value)}")  # None: never pays back
    if (row.get("breakeven_utilization") or 0) > 1:
        lines.append("  -> this hardware cannot beat the API at any utilization")
    return lines


def _sweep_lines(figures: dict) -> list[str]:
    lines: list[str] = []
    if "sweep" in figures:
        lines.append("\nutilization   cost per 1M tokens" + "".join(f"   vs {n}" for n in figures.get("apis", {})))
        for point in figures["sweep"]:
            marks = "".join(
                f"   {'cheaper' if point['cost_per_million'] <= row['api_blended_per_million'] else 'dearer':>{len(n) + 3}}"
                for n, row in figures.get("apis", {}).items())
            lines.append(f"{point['utilization']:>10.0%}   {point['cost_per_million']:>18,.4f}{marks}")
        for name, row in figures.get("apis", {}).items():
            b = row.get("breakeven_utilization")
            if b is not None:
                lines.append(f"break-even with {name}: {b:.1%} utilization" + (" (unreachable)" if b > 1 else ""))
    return lines


def write_chart(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = figures["sweep"]
    xs = [p["utilization"] * 100 for p in sweep]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(xs, [p["cost_per_million"] for p in sweep], marker="o", label="self-hosted cost per 1M tokens")
    for name, row in figures.get("apis", {}).items():
        ax.axhline(row["api_blended_per_million"], linestyle="--", color="tab:red", label=f"{name} price per 1M")
        b = row.get("breakeven_utilization")
        if b is not None and b <= 1:
            ax.axvline(b * 100, linestyle=":", color="tab:green", label=f"break-even {b:.0%}")
    ax.set_yscale("log")
    ax.set_xlabel("utilization (%)")
    ax.set_ylabel("cost per 1M tokens (USD)")
    ax.set_title("Cost per 1M tokens vs utilization")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario YAML file (docs/estimate.md)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--output", default=None, help="also write the utilization sweep as a PNG chart here")


def run(args) -> int:
    try:
        figures = compute(load_mapping(args.scenario, "scenario", ScenarioError))
    except ScenarioError as err:
        print(f"llm-cost-exporter estimate: {args.scenario}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2, sort_keys=True) if args.format == "json" else render_table(figures))
    if args.output:
        if "sweep" not in figures:
            print("llm-cost-exporter estimate: no chart: the scenario has no capacity to sweep", file=sys.stderr)
            return 1
        write_chart(figures, args.output)
    return 0
