"""Price catalogs: cloud GPU instance prices and API model prices, shipped as dated YAML files.

`instances.yaml` holds on-demand list prices (USD per hour) keyed by instance type and region, and
for some entries a dated spot price (`spot_hourly`);
`apis.yaml` holds API prices (USD per 1M tokens) keyed by the API's model name. Every bundled
entry names its source and the date it was checked. Both files are validated as a whole at load:
one bad entry raises CatalogError naming the file, the entry and the field. Users override or add
entries in the config file (`catalog.instances`, `catalog.apis`); see docs/catalog.md.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

_HERE = Path(__file__).parent
INSTANCES_FILE = _HERE / "instances.yaml"
APIS_FILE = _HERE / "apis.yaml"


@dataclass(frozen=True)
class InstancePrice:
    provider: str  # aws, gcp, azure, custom
    instance_type: str  # g5.12xlarge, a2-highgpu-1g, Standard_NC24ads_A100_v4
    region: str
    gpus: int
    gpu: str  # the GPU product, e.g. NVIDIA A10G
    hourly: float  # on-demand list price, USD per hour
    source: str
    checked: str  # ISO date the price was last checked against the source
    spot_hourly: float | None = None  # a dated spot (preemptible) price, where the catalog has one


@dataclass(frozen=True)
class ApiPrice:
    name: str  # the model name as the provider's API spells it
    provider: str
    input_per_million: float  # USD per 1M tokens
    output_per_million: float
    cached_input_per_million: float | None  # None where the API has no cached-input price
    source: str
    checked: str


class CatalogError(Exception):
    """An invalid catalog entry: the message names the file, the entry, the field and the problem."""

    def __init__(self, problem: str, file: str | None = None, entry: str | None = None, field: str | None = None):
        self.file, self.entry, self.field = file, entry, field
        super().__init__(": ".join(part for part in (file, entry, field, problem) if part))


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # the C parser where available
    """SafeLoader that refuses duplicate mapping keys (plain PyYAML keeps the last one silently)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
        if duplicate:
            raise CatalogError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


# -- loading -----------------------------------------------------------------------------------

_INSTANCE_FIELDS = {"provider", "instance_type", "region", "gpus", "gpu", "hourly", "spot_hourly", "source", "checked",
                    "note"}
_API_FIELDS = {"provider", "input_per_million", "output_per_million", "cached_input_per_million",
               "source", "checked", "note"}


def load_instances(path: str | Path | None = None) -> list[InstancePrice]:
    """Every instance price in `path` (default: the bundled instances.yaml), in file order."""
    path = Path(path) if path else INSTANCES_FILE
    entries = _read(path, "instances", list)
    prices, seen = [], {}
    for i, raw in enumerate(entries):
        where = f"instances[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("instance_type"), str):
            where += f" ({raw['instance_type']})"
        if not isinstance(raw, dict):
            raise CatalogError(f"got {raw!r}, allowed: a mapping", str(path), where)
        check = _Checker(str(path), where, raw, _INSTANCE_FIELDS)
        price = InstancePrice(
            provider=check.text("provider"), instance_type=check.text("instance_type"),
            region=check.text("region", default="default"), gpus=check.count("gpus"), gpu=check.text("gpu"),
            hourly=check.number("hourly"), source=check.text("source"), checked=check.date("checked"),
            spot_hourly=check.number("spot_hourly", default=None))
        check.text("note", default="")
        key = (price.instance_type, price.region)
        if key in seen:
            raise CatalogError(f"duplicate of {seen[key]} (same instance_type and region)", str(path), where, "region")
        seen[key] = where
        prices.append(price)
    return prices


def load_apis(path: str | Path | None = None) -> dict[str, ApiPrice]:
    """Every API price in `path` (default: the bundled apis.yaml), keyed by model name."""
    path = Path(path) if path else APIS_FILE
    entries = _read(path, "apis", dict)
    prices = {}
    for name, raw in entries.items():
        if not isinstance(name, str) or not name:
            raise CatalogError(f"got {name!r}, allowed: a model name", str(path), "apis")
        prices[name] = _api(name, raw, str(path), f"apis[{name!r}]", provenance_required=True)
    return prices


def api_from_dict(name: str, d: dict) -> ApiPrice:
    """An API price given inline (config overrides, estimate scenarios); provider, source and
    checked are optional. Raises CatalogError naming the entry and the key."""
    return _api(name, d, None, name, provenance_required=False)


def find_instance(instances, instance_type: str, region: str | None = None) -> InstancePrice | None:
    """The entry for `instance_type` in `region`; without a region, or where that region is not
    listed, the type's default region, which is its first entry. None if the type is unknown."""
    candidates = [p for p in instances if p.instance_type == instance_type]
    if region is not None:
        for price in candidates:
            if price.region == region:
                return price
    return candidates[0] if candidates else None


def _api(name: str, raw, file: str | None, where: str, provenance_required: bool) -> ApiPrice:
    if not isinstance(raw, dict):
        raise CatalogError(f"got {raw!r}, allowed: a mapping with input_per_million and output_per_million",
                           file, where)
    check = _Checker(file, where, raw, _API_FIELDS)
    cached = check.number("cached_input_per_million", default=None)
    if provenance_required:
        source, checked = check.text("source"), check.date("checked")
    else:
        source, checked = check.text("source", default="config"), check.date("checked", default="")
    price = ApiPrice(name=name, provider=check.text("provider", default=_REQUIRED if provenance_required else "custom"),
                     input_per_million=check.number("input_per_million"),
                     output_per_million=check.number("output_per_million"),
                     cached_input_per_million=cached, source=source, checked=checked)
    check.text("note", default="")
    return price


def _read(path: Path, top_key: str, kind: type):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CatalogError(f"cannot read: {err.strerror}", str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except CatalogError as err:
        raise CatalogError(str(err), str(path)) from None
    except yaml.YAMLError as err:
        raise CatalogError("not valid YAML: " + " ".join(str(err).split()), str(path)) from None
    if not isinstance(data, dict) or set(data) != {top_key}:
        raise CatalogError(f"the top level must be a mapping with the single key {top_key!r}", str(path))
    entries = data[top_key]
    if entries is None:
        return kind()
    if not isinstance(entries, kind):
        raise CatalogError(f"allowed: a {'list' if kind is list else 'mapping'}", str(path), top_key)
    return entries


_REQUIRED = object()


class _Checker:
    """Reads one entry's fields, raising CatalogError that names the file, the entry and the field."""

    def __init__(self, file: str | None, where: str, raw: dict, allowed: set[str]):
        self.file, self.where, self.raw = file, where, raw
        for key in raw:
            if key not in allowed:
                raise CatalogError(f"unknown key, allowed: {', '.join(sorted(allowed))}", file, where, str(key))

    def _get(self, key, default):
        if key in self.raw:
            return self.raw[key]
        if default is _REQUIRED:
            raise self.error(key, "missing (required)")
        return default

    def error(self, key: str, problem: str) -> CatalogError:
        return CatalogError(problem, self.file, self.where, key)

    def text(self, key: str, default=_REQUIRED):
        value = self._get(key, default)
        if key not in self.raw:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"got {value!r}, allowed: a non-empty string")
        return value

    def number(self, key: str, default=_REQUIRED):
        value = self._get(key, default)
        if key not in self.raw or (value is None and default is None):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise self.error(key, f"got {value!r}, allowed: a number >= 0")
        return float(value)

    def count(self, key: str):
        value = self._get(key, _REQUIRED)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, f"got {value!r}, allowed: a whole number >= 1")
        return value

    def date(self, key: str, default=_REQUIRED) -> str:
        value = self._get(key, default)
        if key not in self.raw:
            return value
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value.isoformat()  # YAML reads an unquoted 2025-08-01 as a date
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            raise self.error(key, f"got {value!r}, allowed: an ISO date such as 2025-08-01") from None
