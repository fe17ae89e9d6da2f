"""The cost model: pure functions over numbers, no I/O.

Formulas are documented in docs/cost-model.md. Money is in the configured currency; energy in
joules unless a name says kWh; throughput in tokens per second; a month is `hours_per_month`
hours (730 by default, the published analyses use 720).
"""

from __future__ import annotations

JOULES_PER_KWH = 3.6e6
SECONDS_PER_HOUR = 3600.0
PER_MILLION = 1e6


def amortization_hourly(capex: float, amortization_months: float, hours_per_month: float) -> float:
    """Owned hardware: purchase price spread evenly over its amortization period."""
    return capex / (amortization_months * hours_per_month)


def fixed_hourly(fixed_monthly: float, hours_per_month: float) -> float:
    return fixed_monthly / hours_per_month


def energy_kwh(joules: float) -> float:
    return joules / JOULES_PER_KWH


def energy_cost(joules: float, price_per_kwh: float, pue: float = 1.0) -> float:
    """What the wall socket bills for `joules` drawn by the IT load, cooling included via PUE."""
    return energy_kwh(joules) * pue * price_per_kwh


def cost_per_million(spend: float, tokens: float) -> float | None:
    """Actual cost per 1M tokens over a period. None when no tokens flowed (cost is unbounded)."""
    if tokens <= 0:
        return None
    return spend / tokens * PER_MILLION


def cost_per_million_at_full_utilization(hourly_cost: float, capacity_tokens_per_s: float) -> float | None:
    """The published figure: hourly price / peak throughput, i.e. 100% utilization."""
    if capacity_tokens_per_s <= 0:
        return None
    return hourly_cost / (capacity_tokens_per_s * SECONDS_PER_HOUR) * PER_MILLION


def utilization(tokens_per_s: float, capacity_tokens_per_s: float) -> float | None:
    if capacity_tokens_per_s <= 0:
        return None
    return tokens_per_s / capacity_tokens_per_s


def api_equivalent(input_tokens: float, output_tokens: float, input_per_million: float,
                   output_per_million: float, cached_input_tokens: float = 0.0,
                   cached_input_per_million: float | None = None) -> float:
    """What an API would have billed for the same tokens. Cached input tokens are a subset of
    input tokens, billed at the cached price where the API has one."""
    cached_price = input_per_million if cached_input_per_million is None else cached_input_per_million
    uncached = max(input_tokens - cached_input_tokens, 0.0)
    return (uncached * input_per_million + cached_input_tokens * cached_price
            + output_tokens * output_per_million) / PER_MILLION


def blended_price_per_million(input_per_million: float, output_per_million: float, input_share: float,
                              cached_input_per_million: float | None = None, cached_share: float = 0.0) -> float:
    """One price per 1M tokens for a traffic mix: `input_share` of the tokens are input, and
    `cached_share` of those are cached input (billed at the cached price where the API has one)."""
    cached_price = input_per_million if cached_input_per_million is None else cached_input_per_million
    input_price = (1.0 - cached_share) * input_per_million + cached_share * cached_price
    return input_share * input_price + (1.0 - input_share) * output_per_million


def breakeven_utilization(cost_per_million_full: float, api_blended_per_million: float) -> float | None:
    """Utilization at which self-hosting costs what the API costs; above 1 it never does."""
    if api_blended_per_million <= 0:
        return None
    return cost_per_million_full / api_blended_per_million


def payback_months(capex: float, api_equivalent_monthly: float, opex_monthly: float) -> float | None:
    """Months until owned hardware has paid for itself against the API. None if it never does."""
    saving = api_equivalent_monthly - opex_monthly
    if saving <= 0:
        return None
    return capex / saving


def monthly_cost(hourly: float, hours_per_month: float) -> float:
    return hourly * hours_per_month


def tokens_in_period(capacity_tokens_per_s: float, hours: float, utilization_ratio: float = 1.0) -> float:
    return capacity_tokens_per_s * utilization_ratio * hours * SECONDS_PER_HOUR


def energy_kwh_for(watts: float, hours: float) -> float:
    return watts * hours / 1000.0


def breakeven_requests_per_day(fixed_daily: float, api_cost_per_request: float, fee_per_request: float) -> float | None:
    """Daily requests above which a fixed-cost deployment beats paying the API per request."""
    margin = api_cost_per_request - fee_per_request
    if margin <= 0:
        return None
    return fixed_daily / margin


def training_cost(training_tokens: float, epochs: int, training_per_million: float) -> float:
    """Fine-tuning bill: every token of the file is billed once per epoch."""
    return training_tokens * epochs * training_per_million / PER_MILLION
