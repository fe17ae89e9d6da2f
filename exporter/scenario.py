"""The `estimate` scenario: one schema, checked as strictly as the run config (docs/estimate.md).

A scenario is the run config's `pricing`, `catalog` and `compare` blocks (the very dataclasses of
exporter/config.py, so a run config's blocks paste in unchanged) plus what the live exporter
measures and a scenario has to assume: the GPUs' power, the capacity, the utilization or volume,
the traffic mix, and optional per-request, batch and fine-tuning sections. Every key is checked at
any depth, and so is every combination that would leave a given key unused or a figure undefined:
each problem is one ScenarioError naming the key.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from exporter import pricing as prices
from exporter import spotprices
from exporter.catalog import BATCH, TIERS, ApiPrice
from exporter.config import CatalogOverrides, Compare, Config, Pricing
from exporter.costmodel import SECONDS_PER_HOUR
from exporter.validation import InputError, build, choices, fraction, internal, number


class ScenarioError(InputError):
    """A bad scenario: `KEY: got VALUE, allowed: WHAT`, or `KEY: PROBLEM`."""


@dataclass(frozen=True)
class Hardware:
    """What NVML measures live and a scenario assumes: the GPUs' average draw."""
    gpu_count: int = number(minimum=1)
    gpu_watts: float = number()  # average power per GPU over the month


@dataclass(frozen=True)
class Batch:
    prompts: float = number()
    input_tokens_per_prompt: float = number()
    output_tokens_per_prompt: float = number()
    tier: str = choices(*TIERS, default=BATCH)  # the API tier an offline job would use


@dataclass(frozen=True)
class Prices:
    input_per_million: float = number(exclusive=True)
    output_per_million: float = number(exclusive=True)


@dataclass(frozen=True)
class FineTuning:
    training_tokens: float = number()
    epochs: int = number(minimum=1)
    training_per_million: float = number()
    base: Prices | None = None  # with tuned: the fine-tuned model's price as a multiple of the base model's
    tuned: Prices | None = None


@dataclass(frozen=True)
class Scenario:
    """The scenario file; docs/estimate.md lists every key."""
    pricing: Pricing | None = None  # the run config's block; None: no hardware (a batch or fine-tuning bill only)
    catalog: CatalogOverrides = field(default_factory=CatalogOverrides)
    compare: Compare = field(default_factory=Compare)
    hardware: Hardware | None = None
    capacity_tokens_per_s: float | None = number(None, exclusive=True)  # at saturation, from a benchmark
    tokens_per_month_at_full_utilization: float | None = number(None, exclusive=True)  # the capacity, per month
    utilization: float | None = fraction(None, positive=True)  # None: 1, or what tokens_per_month gives
    tokens_per_month: float | None = number(None, exclusive=True)
    input_share: float = fraction(0.5)  # of the tokens, the input ones
    cached_input_share: float = fraction(0.0)  # of the input tokens, those served from the API's cache
    tokens_per_request: float | None = number(None, exclusive=True)
    requests_per_day: float | None = number(None)
    batch: Batch | None = None
    fine_tuning: FineTuning | None = None
    # Resolved at load, not settable in the file:
    hourly: float | None = internal(None)  # the instance price per hour, cloud mode
    price_source: str = internal(prices.CONFIGURED)  # configured or catalog:<provider>/<type>/<region>
    api_prices: dict[str, ApiPrice] = internal(default_factory=dict)  # compare.apis, priced, in order


# Keys of the earlier scenario format, and where each lives now (an old file fails on its first one).
RENAMED = {
    "hourly": "pricing.cloud.hourly", "instance_type": "pricing.cloud.instance_type",
    "region": "pricing.cloud.region", "hours_per_month": "pricing.hours_per_month",
    "owned": "pricing.mode: owned with pricing.owned, pricing.energy and hardware",
    "throughput_tokens_per_s": "capacity_tokens_per_s", "apis": "compare.apis (prices under catalog.apis)",
    "per_request_fees_per_million": "pricing.cloud.per_million_requests",
}

# The run config keys estimate reads. A key the run config gains later is refused here until
# estimate uses it, rather than accepted and ignored.
USED_CONFIG_KEYS: dict[str, dict[str, set[str] | None]] = {
    "pricing": {"mode": None, "currency": None, "hours_per_month": None,
                "cloud": {"hourly", "instance_type", "region", "price_multiplier", "per_million_requests",
                          "capacity_type", "spot_file"},
                # Committed prices apply as run applies them today; interruptions are not modelled (a
                # scenario's month has none), accepted so that a run config's block pastes unchanged.
                "commitments": None, "interruptions": None,
                "owned": {"capex", "amortization_months", "fixed_monthly"},
                "energy": {"electricity_per_kwh", "pue", "overhead_watts", "grid_co2e_grams_per_kwh"}},
    "catalog": {"apis": None, "instances": None},
    "compare": {"apis": None, "tier": None},
}


def load(raw: dict) -> Scenario:
    """The checked scenario, prices resolved. Raises ScenarioError."""
    for key in raw:
        if key in RENAMED:
            raise ScenarioError(str(key), f"unknown key: the scenario takes the run config's names now, use "
                                f"{RENAMED[key]} (docs/estimate.md)")
    scenario = build(Scenario, raw, "", ScenarioError)
    _refuse_unused_config_keys(raw)
    scenario = _resolve(scenario)
    _check_hardware(scenario)
    _check_volume(scenario)
    _check_sections(scenario)
    return scenario


def _refuse_unused_config_keys(raw: dict) -> None:
    for block, used in USED_CONFIG_KEYS.items():
        for key, value in (raw.get(block) or {}).items():
            if key not in used:
                raise ScenarioError(f"{block}.{key}", "a run config key that estimate does not use")
            nested = used[key]
            if nested is not None and isinstance(value, dict):
                extra = sorted(str(k) for k in set(value) - nested)
                if extra:
                    raise ScenarioError(f"{block}.{key}.{extra[0]}", "a run config key that estimate does not use")


def _resolve(scenario: Scenario) -> Scenario:
    """The instance price and the API prices, looked up as the run config's are (exporter/pricing.py)."""
    config = Config(pricing=scenario.pricing or Pricing(), catalog=scenario.catalog, compare=scenario.compare)
    try:
        config = prices.resolve(config)
    except prices.PricingError as err:
        raise ScenarioError(err.key, err.problem) from None
    api_prices = {name: config.api_prices[name] for name in scenario.compare.apis}
    # The price run would apply today on a node without labels: spot from the spot file where the
    # config says capacity_type: spot, then the first commitment in force (exporter/pricing.py).
    try:
        spot = spotprices.load(config.pricing.cloud.spot_file, missing_ok=True) if config.pricing.cloud.spot_file else ()
    except spotprices.SpotFileError as err:
        raise ScenarioError("pricing.cloud.spot_file", str(err)) from None
    effective, source, _ = prices.effective(config, None, time.time(), spot)
    hourly = effective.cloud.hourly if scenario.pricing and scenario.pricing.mode == "cloud" else None
    return dataclasses.replace(scenario, hourly=hourly, price_source=source, api_prices=api_prices)


def _check_hardware(s: Scenario) -> None:
    if s.pricing is None:
        return
    if s.pricing.mode == "cloud" and s.hourly is None:
        raise ScenarioError("pricing.cloud.hourly", "required when pricing.mode is cloud, unless "
                            "pricing.cloud.instance_type is in the catalog")
    if s.pricing.mode == "owned" and s.pricing.energy.electricity_per_kwh is None:
        raise ScenarioError("pricing.energy.electricity_per_kwh", "required when pricing.mode is owned")
    if s.pricing.mode == "owned" and s.hardware is None:
        raise ScenarioError("hardware", "required when pricing.mode is owned: gpu_count and gpu_watts, the GPUs' "
                            "average draw that the exporter would measure")
    volume = (s.capacity_tokens_per_s, s.tokens_per_month_at_full_utilization, s.tokens_per_month)
    if s.pricing.cloud.per_million_requests > 0 and (s.tokens_per_request is None or any(v is not None for v in volume)):
        # Fees per request would make $/1M part fixed, part per token: only the per-request figures weigh them.
        raise ScenarioError("pricing.cloud.per_million_requests", "used by the per-request figures only: give "
                            "tokens_per_request and no capacity or tokens_per_month, or set 0")


def capacity_tokens_per_s(s: Scenario) -> float | None:
    """The capacity in tokens/s, however the scenario gives it."""
    if s.tokens_per_month_at_full_utilization is not None and s.pricing is not None:
        return s.tokens_per_month_at_full_utilization / (s.pricing.hours_per_month * SECONDS_PER_HOUR)
    return s.capacity_tokens_per_s


def _check_volume(s: Scenario) -> None:
    """Capacity, utilization and volume: each given key is used, none contradicts another."""
    if s.capacity_tokens_per_s is not None and s.tokens_per_month_at_full_utilization is not None:
        raise ScenarioError("tokens_per_month_at_full_utilization", "not with capacity_tokens_per_s: one gives the other")
    given = s.capacity_tokens_per_s or s.tokens_per_month_at_full_utilization or s.tokens_per_month
    if given is not None and s.pricing is None:
        raise ScenarioError("pricing", "required with a capacity or tokens_per_month: what the hardware costs "
                            "(the run config's pricing block)")
    capacity = capacity_tokens_per_s(s)
    if s.utilization is not None and capacity is None:
        raise ScenarioError("utilization", "needs capacity_tokens_per_s (or tokens_per_month_at_full_utilization)")
    if s.utilization is not None and s.tokens_per_month is not None:
        raise ScenarioError("utilization", "not with tokens_per_month: with a capacity, one gives the other")
    if s.pricing is not None and given is None and s.tokens_per_request is None:
        raise ScenarioError("capacity_tokens_per_s", "required to compare with the APIs: the tokens/s at saturation "
                            "(or tokens_per_month, or tokens_per_request for per-request figures)")
    if capacity is not None and s.tokens_per_month is not None and s.pricing is not None:
        most = capacity * s.pricing.hours_per_month * SECONDS_PER_HOUR
        if s.tokens_per_month > most * (1 + 1e-12):  # float rounding of a volume given at exactly 100%
            raise ScenarioError("tokens_per_month", f"got {s.tokens_per_month:g}, allowed: at most the capacity's "
                                f"{most:g} a month (at saturation for pricing.hours_per_month)")


def _check_sections(s: Scenario) -> None:
    if not s.compare.apis:
        raise ScenarioError("compare.apis", "got [], allowed: at least one API name (the comparison is the point)")
    for i, name in enumerate(s.compare.apis):
        if name in s.compare.apis[:i]:
            raise ScenarioError(f"compare.apis[{i}]", f"got {name!r} again, allowed: each API once")
    if s.tokens_per_request is not None and s.hourly is None:
        raise ScenarioError("tokens_per_request", "needs a cloud instance price (pricing.cloud.hourly or "
                            "instance_type): per-request figures weigh a fixed hourly cost against per-token API bills")
    if s.requests_per_day is not None and s.tokens_per_request is None:
        raise ScenarioError("requests_per_day", "needs tokens_per_request")
    ft = s.fine_tuning
    if ft is not None and (ft.base is None) != (ft.tuned is None):
        missing = "base" if ft.base is None else "tuned"
        raise ScenarioError(f"fine_tuning.{missing}", "required with fine_tuning."
                            f"{'tuned' if missing == 'base' else 'base'}: the price multiple needs both")
    if s.pricing is None and s.batch is None and s.fine_tuning is None:
        raise ScenarioError("pricing", "required: nothing to estimate without hardware (pricing), a batch job "
                            "(batch) or a fine-tuning job (fine_tuning)")
