"""Pricing resolution: the one place that turns the configuration, the price catalogs and the
node's labels into the prices the cost model runs on. Used by `run`, `estimate` and `report`.

- The instance price: `pricing.cloud.hourly` as configured; else `pricing.cloud.instance_type`
  looked up at load (the config's `catalog.instances` first, then the bundled catalog); else,
  with Kubernetes on, the node's instance-type, region and capacity-type labels, looked up at
  run time (`effective()`), spot priced from the catalog's spot price where it has one.
- API prices: the bundled catalog with the config's `catalog.apis` over it, in the tier each
  engine is compared at (`compare.tier`, `engines[].tier`, the pod annotation `llmcost.io/tier`):
  `auto` is batch for an engine pod run by a Kubernetes Job, else standard; a tier an API does
  not offer falls back to its standard prices (`catalog.ApiPrice.for_tier`).

- Spot: a node labelled spot (or `pricing.cloud.capacity_type: spot`) at the spot file's price for
  its type and region (exporter.spotprices), else the catalog's dated snapshot, else on-demand.
- Commitments: the first of `pricing.commitments` that applies to the node now
  (exporter.commitments) replaces the list price.

Every resolved price carries its source (`price_source`): configured,
catalog:<provider>/<type>/<region>[/<basis>], node_labels:<provider>/<type>/<region>/<basis>
(basis: on-demand, spot, spot_file), commitment:<name>, or unknown.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

from exporter import catalog, commitments, spotprices
from exporter.validation import InputError, show

if typing.TYPE_CHECKING:
    from exporter.config import Config, Pricing
    from exporter.kube.node import NodeInfo

AUTO_TIER = "auto"
COMPARE_TIERS = (*catalog.TIERS, AUTO_TIER)  # what compare.tier, engines[].tier and llmcost.io/tier accept
CONFIGURED = "configured"
NODE_LABELS = "node_labels"
COMMITMENT = "commitment"
SPOT_FILE = "spot_file"
UNKNOWN = "unknown"


class PricingError(InputError):
    """A configured name that no catalog knows: names the key and what is allowed."""


@functools.lru_cache(maxsize=1)
def bundled_instances() -> tuple[catalog.InstancePrice, ...]:
    return tuple(catalog.load_instances())


@functools.lru_cache(maxsize=1)
def bundled_apis() -> dict[str, catalog.ApiPrice]:
    return catalog.load_apis()


def find_instance(instance_type: str, region: str | None, overrides=()) -> catalog.InstancePrice | None:
    """The price of `instance_type` (in `region` where listed): the overrides first, then the
    bundled catalog."""
    return catalog.find_instance(overrides, instance_type, region) or \
        catalog.find_instance(bundled_instances(), instance_type, region)


def api_prices(overrides: dict[str, catalog.ApiPrice]) -> dict[str, catalog.ApiPrice]:
    """Every known API price: the bundled catalog with `overrides` over it."""
    return {**bundled_apis(), **overrides}


def engine_tier(requested: str, batch_workload: bool) -> str:
    """The tier an engine is compared at: as asked, and for `auto` batch when its workload is a
    batch job (an engine pod run by a Kubernetes Job, which a CronJob's runs are too), else standard:
    an online service pays the standard price, an offline job could have used the Batch API."""
    if requested != AUTO_TIER:
        return requested
    return catalog.BATCH if batch_workload else catalog.STANDARD


def compared_rates(prices: dict[str, catalog.ApiPrice], names, tier: str) -> list[catalog.ApiRates]:
    """The rates of each named API in `tier` (standard where an API does not offer it: rates.tier says)."""
    return [prices[name].for_tier(tier) for name in names]


def check_api_names(prices: dict, key: str, names) -> None:
    for j, name in enumerate(names):
        if name not in prices:
            raise PricingError(f"{key}[{j}]", f"got {show(name)}, allowed: an API in the catalog, e.g. "
                               f"{', '.join(sorted(prices)[:6])} ... (or add it under catalog.apis)")


def resolve(config: Config) -> Config:
    """The config with the instance price looked up, its source, and every API price. Raises
    PricingError for an unknown instance type or API name."""
    cloud = config.pricing.cloud
    source = CONFIGURED
    kube = config.kubernetes
    if cloud.hourly is None and cloud.instance_type:
        found = find_instance(cloud.instance_type, cloud.region, config.catalog.instances)
        if found is None:
            raise PricingError("pricing.cloud.instance_type", f"got {show(cloud.instance_type)}, not in the price "
                               "catalog: set pricing.cloud.hourly or add it under catalog.instances")
        cloud = dataclasses.replace(cloud, hourly=found.hourly * cloud.price_multiplier)
        source = f"catalog:{found.provider}/{found.instance_type}/{found.region}"
    elif cloud.hourly is None and config.pricing.mode == "cloud" and kube.enabled and kube.node_labels_pricing:
        source = NODE_LABELS  # looked up by effective() once the node's labels have been read
    apis = api_prices(config.catalog.apis)
    check_api_names(apis, "compare.apis", config.compare.apis)
    for i, engine in enumerate(config.engines):
        check_api_names(apis, f"engines[{i}].apis", engine.apis or ())
    pricing = dataclasses.replace(config.pricing, cloud=cloud)
    return dataclasses.replace(config, pricing=pricing, api_prices=apis, hourly_source=source)


def from_node_labels(config: Config) -> bool:
    """Is the instance price taken from the node's labels at run time?"""
    return config.hourly_source == NODE_LABELS


def effective(config: Config, node: NodeInfo | None, now: float = 0.0, spot=()) -> tuple[Pricing, str, str]:
    """(pricing, price_source, note) in force at `now`: the list price (configured, or looked up
    from the config's instance type or the node's labels; spot priced from the spot file `spot`,
    else the catalog's snapshot), then the first of `pricing.commitments` that applies. The note
    says why a price is unknown or only approximate (no spot price, another region's)."""
    if config.pricing.mode != "cloud":
        return config.pricing, config.hourly_source, ""
    listed = _list_price(config, node, spot)
    hourly, source, note = listed.hourly, listed.source, listed.note
    commitment = commitments.select(config.pricing.commitments, _target(config, node, listed.region), now,
                                    config.pricing.hours_per_month)
    if commitment is not None:
        committed = commitments.hourly(commitment, listed.on_demand, config.pricing.hours_per_month)
        if committed is None:
            note = (note + "; " if note else "") + \
                f"commitment {commitment.name} is a discount and no on-demand price is known: not applied"
        else:
            hourly, source = committed, f"{COMMITMENT}:{commitment.name}"
    cloud = dataclasses.replace(config.pricing.cloud, hourly=hourly)
    return dataclasses.replace(config.pricing, cloud=cloud), source, note


@dataclasses.dataclass(frozen=True)
class _Listed:
    hourly: float | None  # the price the node pays without a commitment
    on_demand: float | None  # its on-demand price, which a commitment's discount applies to
    source: str
    note: str = ""
    region: str = ""  # the catalog entry's region, where the config names none


def _list_price(config: Config, node: NodeInfo | None, spot) -> _Listed:
    cloud = config.pricing.cloud
    if not from_node_labels(config):
        found = None if config.hourly_source == CONFIGURED else \
            find_instance(cloud.instance_type or "", cloud.region, config.catalog.instances)
        listed = _Listed(cloud.hourly, cloud.hourly, config.hourly_source, region=found.region if found else "")
        if found is None or cloud.capacity_type != "spot":
            return listed
        return _spot(found, cloud.region or found.region, spot, cloud.price_multiplier, listed, "catalog")
    if node is None:
        return _Listed(None, None, UNKNOWN, "the node's labels have not been read yet")
    if not node.instance_type:
        return _Listed(None, None, UNKNOWN, f"node {node.name} has no instance-type label")
    found = find_instance(node.instance_type, node.region or None, config.catalog.instances)
    if found is None:
        return _Listed(None, None, UNKNOWN, f"instance type {node.instance_type!r} of node {node.name} is not in "
                       "the price catalog: add it under catalog.instances or set pricing.cloud.hourly")
    on_demand = found.hourly * cloud.price_multiplier
    note = f"no {node.region} price for {found.instance_type}: priced as in {found.region}" \
        if node.region and found.region not in (node.region, "default") else ""
    listed = _Listed(on_demand, on_demand, f"{NODE_LABELS}:{_entry(found)}/on-demand", note)
    if node.capacity_type != "spot":
        return listed
    return _spot(found, node.region or found.region, spot, cloud.price_multiplier, listed, NODE_LABELS)


def _spot(found: catalog.InstancePrice, region: str, spot, multiplier: float, listed: _Listed, origin: str) -> _Listed:
    """A spot node's price: the spot file's for its region, else the catalog's snapshot, else
    on-demand (an upper bound, said in the note)."""
    dated = spotprices.find(spot, found.instance_type, region)
    if dated is not None:
        note = f"spot price of {dated.checked} from the spot file ({dated.source})"  # how fresh it is, in the log
        return dataclasses.replace(listed, hourly=dated.spot_hourly * multiplier, note="; ".join(
            n for n in (note, listed.note) if n), source=f"{origin}:{found.provider}/{found.instance_type}/{region}/{SPOT_FILE}")
    if found.spot_hourly is not None:
        return dataclasses.replace(listed, hourly=found.spot_hourly * multiplier,
                                   source=f"{origin}:{_entry(found)}/spot")
    note = f"no spot price for {found.instance_type} in the spot file or the catalog: priced on-demand (an upper bound)"
    source = listed.source if origin == NODE_LABELS else f"{listed.source}/on-demand"
    return dataclasses.replace(listed, source=source, note="; ".join(n for n in (note, listed.note) if n))


def _entry(found: catalog.InstancePrice) -> str:
    return f"{found.provider}/{found.instance_type}/{found.region}"


def _target(config: Config, node: NodeInfo | None, catalog_region: str) -> commitments.Target:
    """What the commitments are matched against: the node's labels where read, else the config's keys."""
    if node is not None:
        return commitments.Target(node.instance_type, node.region, node.node_pool, node.capacity_type)
    cloud = config.pricing.cloud
    return commitments.Target(cloud.instance_type or "", cloud.region or catalog_region, "", cloud.capacity_type)


def next_change(config: Config, now: float) -> float | None:
    """When a commitment starts or ends next: effective() may then give another price."""
    return commitments.next_change(config.pricing.commitments, now, config.pricing.hours_per_month)
