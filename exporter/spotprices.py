"""The spot price file (`pricing.cloud.spot_file`): dated spot prices per instance type and region,
refreshed outside the exporter (the chart's CronJob, `catalog fetch-spot`) and re-read when its
content changes. Format (docs/catalog.md#spot-price-file):

    generated: "2026-12-01T06:00:00Z"      # optional: when the file was written
    prices:
      - provider: azure
        instance_type: Standard_NC24ads_A100_v4
        region: eastus
        spot_hourly: 0.9784
        source: https://prices.azure.com/api/retail/prices
        checked: "2026-12-01"

An entry prices a node labelled spot of that type in that region (no other region's price is
used: spot prices differ by region). A missing file prices from the catalog's spot snapshot; an
invalid one at start is a configuration error, while running it leaves the last good prices.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field

from exporter.validation import InputError, build, date, load_mapping, number, read_file

log = logging.getLogger("exporter")


class SpotFileError(InputError):
    """An invalid spot price file: `FILE: KEY: PROBLEM`."""


@dataclass(frozen=True)
class SpotPrice:
    instance_type: str
    region: str
    spot_hourly: float = number(exclusive=True)
    checked: str = date()  # ISO date the price was read from its source
    provider: str = "custom"
    source: str = "spot_file"


@dataclass(frozen=True)
class _SpotFile:
    prices: list[SpotPrice] = field(default_factory=list)
    generated: str | None = None


def load(path: str, missing_ok: bool = False) -> tuple[SpotPrice, ...]:
    """Every entry of the file; () for a missing file with missing_ok. Raises SpotFileError."""
    if missing_ok and not os.path.exists(path):
        return ()
    error = _error(path)
    parsed = build(_SpotFile, load_mapping(path, "file", error), "", error)
    seen: dict[tuple[str, str], int] = {}
    for i, price in enumerate(parsed.prices):
        key = (price.instance_type, price.region)
        if key in seen:
            raise error(f"prices[{i}].region", f"duplicate of prices[{seen[key]}] (same instance_type and region)")
        seen[key] = i
    return tuple(parsed.prices)


def find(prices, instance_type: str, region: str | None) -> SpotPrice | None:
    return next((p for p in prices if p.instance_type == instance_type and p.region == region), None)


def _error(path: str):
    def error(key: str, message: str) -> SpotFileError:
        return SpotFileError(key, message, source=path)
    return error


class SpotPrices:
    """The file's prices now: poll() re-reads it when its content changed, keeping the last good
    prices when the new content is invalid (one log line)."""

    def __init__(self, path: str | None):
        self.path = path
        self._lock = threading.Lock()
        self._digest: str | None = None
        self.prices: tuple[SpotPrice, ...] = ()
        self.poll()

    def poll(self) -> bool:
        """Re-read the file if it changed; True when the prices did."""
        if not self.path:
            return False
        with self._lock:
            digest = _digest(self.path)
            if digest == self._digest:
                return False
            self._digest = digest
            try:
                prices = load(self.path, missing_ok=True)
            except SpotFileError as err:
                log.warning("spot price file not applied, keeping the last good prices: %s", err)
                return False
            changed, self.prices = prices != self.prices, prices
        if changed:
            log.info("spot price file read path=%s entries=%d", self.path, len(prices))
        return changed


def _digest(path: str) -> str:
    try:  # read_file refuses what is not a regular file (a FIFO would hang the poll)
        return hashlib.sha256(read_file(path, "file", SpotFileError)).hexdigest()
    except SpotFileError as err:
        return f"error:{err}"
