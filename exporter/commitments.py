"""Committed prices (`pricing.commitments[]`): reserved instances, savings plans, committed-use
discounts, capacity blocks. Pure functions over the configured list.

A commitment applies to a node when every `match` key it gives equals the node's (instance type,
region, node pool, capacity type; without a `capacity_type` it covers on-demand and reserved nodes,
never spot ones) and the time is in [start, end). The first in the list that applies prices the
node, at

    hourly (or the on-demand price x (1 - discount)) + upfront / (term_months x hours_per_month)

Dates are 00:00 UTC; without `end`, a commitment with a term ends `term_months` x `hours_per_month`
hours after its start, one without is open-ended.
"""

from __future__ import annotations

import datetime
import typing
from dataclasses import dataclass

if typing.TYPE_CHECKING:
    from exporter.config import Commitment

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Target:
    """What a commitment is matched against: the node's labels, or the config's own keys."""
    instance_type: str = ""
    region: str = ""
    node_pool: str = ""
    capacity_type: str = "on-demand"


def start_time(commitment: Commitment) -> float:
    return _midnight(commitment.start)


def end_time(commitment: Commitment, hours_per_month: float) -> float | None:
    if commitment.end is not None:
        return _midnight(commitment.end)
    if commitment.term_months is not None:
        return start_time(commitment) + commitment.term_months * hours_per_month * SECONDS_PER_HOUR
    return None


def applies(commitment: Commitment, target: Target, now: float, hours_per_month: float) -> bool:
    match = commitment.match
    wanted = {"instance_type": match.instance_type, "region": match.region, "node_pool": match.node_pool}
    if any(value is not None and getattr(target, key) != value for key, value in wanted.items()):
        return False
    if match.capacity_type is None and target.capacity_type == "spot":
        return False  # no commitment discounts a spot node unless it says so
    if match.capacity_type is not None and target.capacity_type != match.capacity_type:
        return False
    end = end_time(commitment, hours_per_month)
    return start_time(commitment) <= now and (end is None or now < end)


def select(commitments, target: Target, now: float, hours_per_month: float) -> Commitment | None:
    """The first commitment that applies, or None."""
    return next((c for c in commitments if applies(c, target, now, hours_per_month)), None)


def hourly(commitment: Commitment, on_demand: float | None, hours_per_month: float) -> float | None:
    """The commitment's hourly price, the upfront amortized over its term; None for a discount
    when no on-demand price is known."""
    if commitment.hourly is not None:
        base = commitment.hourly
    elif on_demand is None or commitment.discount is None:
        return None
    else:
        base = on_demand * (1.0 - commitment.discount)
    upfront = commitment.upfront / (commitment.term_months * hours_per_month) if commitment.term_months else 0.0
    return base + upfront


def next_change(commitments, now: float, hours_per_month: float) -> float | None:
    """The first start or end after `now`: the price may change then."""
    times = [t for c in commitments for t in (start_time(c), end_time(c, hours_per_month)) if t is not None and t > now]
    return min(times, default=None)


def _midnight(day: str) -> float:
    return datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc).timestamp()
