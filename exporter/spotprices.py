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
used: spot prices differ by region). A file missing at start prices from the catalog's spot
snapshot; an invalid one at start is a configuration error; while running, a missing or invalid
file leaves the last good prices, and the `spot_file` source is down.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from exporter.health import SourceHealth
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
    prices when the new content is invalid (one log line). Its health is a source of its own,
    `llmcost_source_up{source="spot_file"}`: down while the file is missing or invalid."""

    def __init__(self, path: str | None, clock=None):
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._problem: tuple[str, str] | None = None  # (reason, detail) of the file as last read
        self.prices: tuple[SpotPrice, ...] = ()
        self.health = SourceHealth("spot_file", "spot_file")
        self.poll()

    @property
    def healths(self) -> tuple[SourceHealth, ...]:
        return (self.health,) if self.path else ()

    def poll(self) -> bool:
        """Re-read the file if it changed; True when the prices did."""
        if not self.path:
            return False
        started = time.monotonic()
        with self._lock:
            changed = self._read_if_changed()
            problem = self._problem
        if problem is not None:
            self.health.failure(*problem, duration=time.monotonic() - started)
        elif self._clock is not None:
            self.health.success(self._clock.now(), time.monotonic() - started)
        if changed:
            log.info("spot price file read path=%s entries=%d", self.path, len(self.prices))
        return changed

    def _read_if_changed(self) -> bool:
        digest = _digest(self.path or "")
        if digest == self._digest:
            return False
        self._digest = digest
        if not os.path.exists(self.path or ""):
            self._problem = ("missing", f"{self.path} does not exist (yet): spot nodes priced from the catalog")
            return False
        try:
            prices = load(self.path or "")
        except SpotFileError as err:
            self._problem = ("invalid", f"{err}; the last good prices stay")
            return False
        self._problem = None
        changed, self.prices = prices != self.prices, prices
        return changed


def _digest(path: str) -> str:
    try:  # read_file refuses what is not a regular file (a FIFO would hang the poll)
        return hashlib.sha256(read_file(path, "file", SpotFileError)).hexdigest()
    except SpotFileError as err:
        return f"error:{err}"
