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

Every resolved price carries its source (`price_source`): configured,
catalog:<provider>/<type>/<region>, node_labels:<provider>/<type>/<region>/<basis>, or unknown.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

from exporter import catalog
from exporter.validation import InputError, show

if typing.TYPE_CHECKING:
    from exporter.config import Config, Pricing
    from exporter.kube.node import NodeInfo

AUTO_TIER = "auto"
COMPARE_TIERS = (*catalog.TIERS, AUTO_TIER)  # what compare.tier, engines[].tier and llmcost.io/tier accept
CONFIGURED = "configured"
NODE_LABELS = "node_labels"
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


def effective(config: Config, node: NodeInfo | None) -> tuple[Pricing, str, str]:
    """(pricing, price_source, note) in force now: the config's, or priced from the node's labels
    where the config names no price and no instance type. The note says why a price is unknown or
    only approximate (no spot price, another region's)."""
    if not from_node_labels(config):
        return config.pricing, config.hourly_source, ""
    cloud = config.pricing.cloud
    hourly, source, note = None, UNKNOWN, ""
    if node is None:
        note = "the node's labels have not been read yet"
    elif not node.instance_type:
        note = f"node {node.name} has no instance-type label"
    else:
        found = find_instance(node.instance_type, node.region or None, config.catalog.instances)
        if found is None:
            note = (f"instance type {node.instance_type!r} of node {node.name} is not in the price catalog: "
                    "add it under catalog.instances or set pricing.cloud.hourly")
        else:
            hourly, basis = found.hourly, "on-demand"
            if node.capacity_type == "spot" and found.spot_hourly is not None:
                hourly, basis = found.spot_hourly, "spot"
            elif node.capacity_type == "spot":
                note = f"no spot price for {found.instance_type} in the catalog: priced on-demand (an upper bound)"
            if node.region and found.region not in (node.region, "default"):
                note = (note + "; " if note else "") + \
                    f"no {node.region} price for {found.instance_type}: priced as in {found.region}"
            hourly *= cloud.price_multiplier
            source = f"{NODE_LABELS}:{found.provider}/{found.instance_type}/{found.region}/{basis}"
    pricing = dataclasses.replace(config.pricing, cloud=dataclasses.replace(cloud, hourly=hourly))
    return pricing, source, note
