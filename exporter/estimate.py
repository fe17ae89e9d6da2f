"""`llm-cost-exporter estimate`: a what-if calculator over the same cost model as the live exporter.

A scenario file describes hardware (a cloud instance or owned hardware), throughput or tokens,
utilization and the APIs to compare with; the command prints the figures, a sweep of cost per 1M
tokens against utilization with the break-even points marked, and optionally a PNG chart.
Every figure has a stable name (`--format json`), the names the published analyses use, so
tests/data/seeds.yaml is reproduced figure by figure. Scenario format: docs/estimate.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from exporter import catalog, pricing
from exporter import costmodel as cm
from exporter.validation import InputError, load_mapping, show

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_SCENARIO_KEYS = {
    "instance_type", "region", "hourly", "hours_per_month", "throughput_tokens_per_s",
    "tokens_per_month_at_full_utilization", "tokens_per_month", "utilization", "input_share", "cached_input_share",
    "apis", "owned", "requests_per_day", "tokens_per_request", "per_request_fees_per_million", "batch", "fine_tuning",
}


class ScenarioError(InputError):
    """A bad scenario: `KEY: got VALUE, allowed: WHAT`."""


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


def _number(scenario: dict, key: str, default=None):
    value = scenario.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScenarioError(key, f"got {show(value)}, allowed: a number >= 0")
    return float(value)


def compute(scenario: dict) -> dict:
    """All figures the scenario determines, by name."""
    unknown = sorted(set(scenario) - _SCENARIO_KEYS)
    if unknown:
        raise ScenarioError(unknown[0], f"unknown key, allowed keys: {', '.join(sorted(_SCENARIO_KEYS))}")
    hpm = _number(scenario, "hours_per_month", 730.0)
    out: dict = {"hours_per_month": hpm}
    apis = _api_prices(scenario.get("apis"))
    input_share = _number(scenario, "input_share", 0.5)
    cached_share = _number(scenario, "cached_input_share", 0.0)

    monthly, opex, capex = _monthly_costs(scenario, hpm, out)
    capacity, tokens = _volume(scenario, hpm)
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

    _compare_apis(out, apis, tokens, input_share, cached_share, opex, capex)
    _per_request(out, scenario, apis, input_share, cached_share)
    _batch(out, scenario, apis)
    _fine_tuning(out, scenario)
    if capacity and monthly is not None:
        out["sweep"] = [{"utilization": u, "cost_per_million": cm.cost_per_million(monthly, cm.tokens_in_period(capacity, hpm, u))}
                        for u in SWEEP]
    return out


def _volume(scenario, hpm):
    """(capacity in tokens/s, tokens per month), each None where the scenario does not say."""
    capacity = _number(scenario, "throughput_tokens_per_s")
    full_tokens = _number(scenario, "tokens_per_month_at_full_utilization")
    if capacity is None and full_tokens is not None:
        capacity = full_tokens / (hpm * cm.SECONDS_PER_HOUR)
    tokens = _number(scenario, "tokens_per_month")
    if tokens is None and capacity is not None:
        tokens = cm.tokens_in_period(capacity, hpm, _number(scenario, "utilization", 1.0))
    return capacity, tokens


def _monthly_costs(scenario, hpm, out):
    """(monthly cost, monthly opex, capex): cloud instance or owned hardware."""
    owned = scenario.get("owned")
    hourly = _number(scenario, "hourly")
    if hourly is None and scenario.get("instance_type"):
        found = pricing.find_instance(scenario["instance_type"], scenario.get("region"))
        if found is None:
            raise ScenarioError("instance_type", f"got {show(scenario['instance_type'])}, not in the price catalog; "
                                "set hourly")
        hourly = found.hourly
    if hourly is not None:
        out["hourly"] = hourly
        return cm.monthly_cost(hourly, hpm), None, None
    if owned is None:
        return None, None, None
    if not isinstance(owned, dict):
        raise ScenarioError("owned", f"got {show(owned)}, allowed: a mapping (capex, gpu_count, gpu_power_w, ...)")
    watts = _number(owned, "gpu_count", 1) * _number(owned, "gpu_power_w", 0) + _number(owned, "overhead_power_w", 0)
    kwh = cm.energy_kwh_for(watts, hpm)
    energy = cm.energy_cost(kwh * cm.JOULES_PER_KWH, _number(owned, "electricity_per_kwh", 0), _number(owned, "pue", 1))
    opex = energy + _number(owned, "other_monthly", 0)
    capex = _number(owned, "capex", 0)
    out.update(energy_kwh_per_month=kwh, energy_cost_per_month=energy, opex_per_month=opex)
    months = _number(owned, "amortization_months")
    monthly = opex + (capex / months if months else 0.0)
    if months:
        out["amortization_per_month"] = capex / months
    return monthly, opex, capex


def _blended(api, input_share: float, cached_share: float) -> float:
    return cm.blended_price_per_million(api.input_per_million, api.output_per_million, input_share,
                                        api.cached_input_per_million, cached_share)


def _compare_apis(out, apis, tokens, input_share, cached_share, opex, capex):
    comparisons = {}
    for api in apis:
        blended = _blended(api, input_share, cached_share)
        row = {"api_blended_per_million": blended}
        if "cost_per_million_at_full_utilization" in out:
            row["breakeven_utilization"] = cm.breakeven_utilization(out["cost_per_million_at_full_utilization"], blended)
        if tokens:
            row["api_equivalent_per_month"] = tokens * blended / cm.PER_MILLION
            if opex is not None:
                row["monthly_saving"] = row["api_equivalent_per_month"] - opex
                row["payback_months"] = cm.payback_months(capex, row["api_equivalent_per_month"], opex)
            elif "monthly_cost" in out:
                row["monthly_saving"] = row["api_equivalent_per_month"] - out["monthly_cost"]
        comparisons[api.name] = row
    if comparisons:
        out["apis"] = comparisons
        if len(comparisons) == 1:  # the single-API figures under the names the analyses use
            out.update(next(iter(comparisons.values())))


def _per_request(out, scenario, apis, input_share, cached_share):
    """Per-request economics: an API billed per token against a fixed instance plus per-request fees."""
    tokens_per_request = _number(scenario, "tokens_per_request")
    if tokens_per_request is None or "hourly" not in out:
        return
    api = apis[0] if apis else None
    if api is None:
        raise ScenarioError("tokens_per_request", "needs one entry in apis to price requests with")
    api_per_request = tokens_per_request * _blended(api, input_share, cached_share) / cm.PER_MILLION
    fee = _number(scenario, "per_request_fees_per_million", 0) / cm.PER_MILLION
    daily_fixed = out["hourly"] * 24
    out["breakeven_requests_per_day"] = cm.breakeven_requests_per_day(daily_fixed, api_per_request, fee)
    requests = _number(scenario, "requests_per_day")
    if requests is not None:
        out["api_cost_per_day"] = requests * api_per_request
        out["self_hosted_cost_per_day"] = daily_fixed + requests * fee


def _batch(out, scenario, apis):
    batch = scenario.get("batch")
    if not batch:
        return
    inputs = _number(batch, "prompts") * _number(batch, "input_tokens_per_prompt")
    outputs = _number(batch, "prompts") * _number(batch, "output_tokens_per_prompt")
    out["total_tokens"] = inputs + outputs
    out["api_bill"] = {a.name: cm.api_equivalent(inputs, outputs, a.input_per_million, a.output_per_million) for a in apis}


def _fine_tuning(out, scenario):
    ft = scenario.get("fine_tuning")
    if not ft:
        return
    out["training_cost"] = cm.training_cost(_number(ft, "training_tokens"), int(_number(ft, "epochs")),
                                            _number(ft, "training_per_million"))
    base, tuned = ft.get("base"), ft.get("tuned")
    if base and tuned:
        multiples = {tuned[k] / base[k] for k in ("input_per_million", "output_per_million")}
        out["usage_price_multiple_of_base"] = max(multiples)


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
