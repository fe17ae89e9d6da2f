"""Price catalogs: cloud GPU instance prices and API model prices, shipped as dated YAML files.

`instances.yaml` holds on-demand list prices (USD per hour) keyed by instance type and region, and
for some entries a dated spot price (`spot_hourly`);
`apis.yaml` holds API prices (USD per 1M tokens) keyed by the API's model name: the standard prices,
and where the provider offers them its other tiers (batch, flex, priority, long context) and the
cache-write price. Every bundled entry, and every tier in it, names its source and the date it
was checked. `ApiPrice.for_tier(tier)` is the one way to read the prices of a tier. Both files are validated as a whole at load:
one bad entry raises CatalogError naming the file, the entry and the field. Users override or add
entries in the config file (`catalog.instances`, `catalog.apis`); see docs/catalog.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from exporter.validation import InputError, build, date, from_key, load_mapping, number

_HERE = Path(__file__).parent
INSTANCES_FILE = _HERE / "instances.yaml"
APIS_FILE = _HERE / "apis.yaml"


@dataclass(frozen=True)
class InstancePrice:
    """A cloud GPU instance's price: one entry of instances.yaml, or of the config's catalog.instances."""
    instance_type: str  # g5.12xlarge, a2-highgpu-1g, Standard_NC24ads_A100_v4
    hourly: float = number()  # on-demand list price, USD per hour
    spot_hourly: float | None = number(None)  # a dated spot (preemptible) price; used for nodes labelled spot
    provider: str = "custom"  # aws, gcp, azure, custom
    region: str = "default"
    gpus: int = number(1, minimum=1)
    gpu: str = "unknown"  # the GPU product, e.g. NVIDIA A10G
    source: str = "config"
    checked: str = date("")  # ISO date the price was last checked against the source
    note: str | None = field(default=None, compare=False)  # free text, for people


STANDARD, BATCH, FLEX, PRIORITY, LONG_CONTEXT = "standard", "batch", "flex", "priority", "long_context"
TIERS = (STANDARD, BATCH, FLEX, PRIORITY, LONG_CONTEXT)


@dataclass(frozen=True)
class TierPrice:
    """An API's prices per 1M tokens in a tier other than standard: Batch (asynchronous, within 24 h),
    flex (synchronous, slower, may be refused), priority (faster, dearer)."""
    input_per_million: float = number()
    output_per_million: float = number()
    cached_input_per_million: float | None = number(None)  # None: cached input is billed as this tier's input
    cache_write_per_million: float | None = number(None)  # None: the provider bills no cache writes
    source: str = "config"
    checked: str = date("")
    note: str | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class LongContextPrice(TierPrice):
    """The prices of a request whose prompt is longer than threshold_tokens (the whole request is
    billed at them, as Google and Anthropic do)."""
    threshold_tokens: int = number(minimum=1)


@dataclass(frozen=True)
class ApiRates:
    """The prices one comparison uses: an API in one tier, per 1M tokens."""
    name: str  # the API
    tier: str  # the tier these prices are: the one asked for, or standard where the API does not offer it
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None  # None: cached input is billed as input
    cache_write_per_million: float | None = None


@dataclass(frozen=True)
class ApiPrice:
    """An API model's price per 1M tokens: one entry of apis.yaml, of the config's catalog.apis, or
    inline in an estimate scenario."""
    name: str = from_key()  # the model name as the provider's API spells it
    input_per_million: float = number()
    output_per_million: float = number()
    cached_input_per_million: float | None = number(None)  # None where the API has no cached-input price
    cache_write_per_million: float | None = number(None)  # prompt-cache write (Anthropic: the 5-minute write)
    batch: TierPrice | None = None  # None: the provider offers no such tier for this model
    flex: TierPrice | None = None
    priority: TierPrice | None = None
    long_context: LongContextPrice | None = None
    provider: str = "custom"
    source: str = "config"
    checked: str = date("")
    note: str | None = field(default=None, compare=False)  # free text, for people

    def for_tier(self, tier: str) -> ApiRates:
        """The prices of `tier` (one of TIERS). A tier this API does not offer falls back to the
        standard prices, and the result's `tier` says `standard`: the caller labels and logs that."""
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}, allowed: {', '.join(TIERS)}")
        offered: TierPrice | None = None if tier == STANDARD else getattr(self, tier)
        prices = offered or self
        return ApiRates(self.name, tier if offered else STANDARD, prices.input_per_million, prices.output_per_million,
                        prices.cached_input_per_million, prices.cache_write_per_million)

    def tiers(self) -> tuple[str, ...]:
        """The tiers this API offers, standard first."""
        return tuple(t for t in TIERS if t == STANDARD or getattr(self, t) is not None)


class CatalogError(InputError):
    """An invalid catalog entry: `FILE: ENTRY.FIELD: got VALUE, allowed: WHAT`."""


@dataclass(frozen=True)
class _InstancesFile:
    instances: list[InstancePrice]


@dataclass(frozen=True)
class _ApisFile:
    apis: dict[str, ApiPrice]


# A bundled entry must say where its price comes from and when it was checked.
_PROVENANCE = ("provider", "source", "checked")
_BUNDLED_INSTANCE_KEYS = ("gpus", "gpu") + _PROVENANCE


def load_instances(path: str | Path | None = None) -> list[InstancePrice]:
    """Every instance price in `path` (default: the bundled instances.yaml), in file order."""
    raw, source = _read(path or INSTANCES_FILE)
    prices = build(_InstancesFile, raw, "", _error(source)).instances
    seen: dict[tuple[str, str], int] = {}
    for i, price in enumerate(prices):
        _require(raw["instances"][i], f"instances[{i}]", _BUNDLED_INSTANCE_KEYS, source)
        key = (price.instance_type, price.region)
        if key in seen:
            raise CatalogError(f"instances[{i}].region", f"duplicate of instances[{seen[key]}] (same instance_type "
                               "and region)", source)
        seen[key] = i
    return prices


def load_apis(path: str | Path | None = None) -> dict[str, ApiPrice]:
    """Every API price in `path` (default: the bundled apis.yaml), keyed by model name."""
    raw, source = _read(path or APIS_FILE)
    prices = build(_ApisFile, raw, "", _error(source)).apis
    for name, price in prices.items():
        _require(raw["apis"][name], f"apis.{name}", _PROVENANCE, source)
        for tier in price.tiers()[1:]:  # every tier's price is dated and sourced on its own
            _require(raw["apis"][name][tier], f"apis.{name}.{tier}", ("source", "checked"), source)
    return prices


def api_from_dict(name: str, d: dict, key: str | None = None) -> ApiPrice:
    """An API price given inline (estimate scenarios); provider, source and checked are optional.
    Raises CatalogError naming the key."""
    return build(ApiPrice, d, key or name, CatalogError, key_value=name)


def find_instance(instances, instance_type: str, region: str | None = None) -> InstancePrice | None:
    """The entry for `instance_type` in `region`; without a region, or where that region is not
    listed, the type's default region, which is its first entry. None if the type is unknown."""
    candidates = [p for p in instances if p.instance_type == instance_type]
    if region is not None:
        for price in candidates:
            if price.region == region:
                return price
    return candidates[0] if candidates else None


def _read(path: str | Path) -> tuple[dict, str]:
    return load_mapping(str(path), "file", _error(str(path))), str(path)


def _error(source: str):
    """CatalogError with the file named first."""
    return functools.partial(CatalogError, source=source)


def _require(raw: dict, where: str, keys, source: str) -> None:
    for key in keys:
        if key not in raw:
            raise CatalogError(f"{where}.{key}", "required key is missing (a bundled price names its provenance)",
                               source)

