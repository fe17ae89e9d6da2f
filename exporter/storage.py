"""Persisted totals (`--storage.path`): a restarted exporter goes on from what it had counted.

Without it, every counter starts again at 0 on a restart. Prometheus' increase() copes with that
reset, but two things are lost for good: the spend of the time the exporter was down (the node
was billed all the same), and the tokens the engines served meanwhile (the first scrape after a
start is a baseline). With it:

- every cumulative figure (spend by component and by engine, energy, API-equivalent spend,
  tokens, requests, idle spend, CO2e) is written to one JSON file every `--storage.interval` and
  at shutdown, atomically (a temporary file, fsync, rename), and read back at start;
- the first tick after the start accrues the gap since the last saved tick, if it is at most
  `--storage.max-gap` (a longer gap may have been a stopped node, which is not billed), and GPU
  energy for it comes from the hardware counter (or integrated power if it reset);
- each engine's next scrape counts what it served during the gap (if it restarted meanwhile,
  what it served since its restart), as if the exporter had never stopped.

A restored total must never resume below a value Prometheus already scraped: Prometheus reads any
decrease as a reset to 0 and would count the whole total again. The write at shutdown (after the
web server stopped) is marked clean. After a crash, the last periodic write may be up to
`--storage.interval` behind what was exposed, so: the node's totals are restored only if the gap
is billed (at most max-gap: billing it covers what was exposed), and each engine's models stay out
of /metrics until its first scrape, which drops the saved totals if the engine restarted meanwhile.

A missing file is a first start. A file that cannot be read, is not ours, or was written for
another mode or currency is ignored with one log line: the exporter starts from 0, never fails.
Write failures (a full or read-only disk) are counted and logged once until a write succeeds.
Metrics (tell docs/metrics.md): llmcost_state_last_write_timestamp_seconds,
llmcost_state_write_errors_total, llmcost_state_restored_gap_seconds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.clock import SystemClock

log = logging.getLogger("exporter.storage")

FILE_NAME = "llm-cost-exporter-state.json"
VERSION = 1
MAX_STATE_BYTES = 16 * 1024 * 1024  # bounded by the series caps; anything larger is not ours


@dataclass(frozen=True)
class SavedTotals:
    """What a previous run saved, and how to continue from it."""
    accountant: dict
    gpus: list
    engines: dict  # engine name -> its totals
    accrue_gap: bool  # bill the time since the last saved tick
    provisional: bool  # saved by a periodic write, not a final one (the last run crashed)
    models: dict = field(default_factory=dict)  # exporter.modelsplit's totals; absent from older files


class Storage:
    """The state file: read once at start (load), written every `interval` and at stop."""

    def __init__(self, directory: str, interval: float = 30.0, max_gap: float = 3600.0, clock=None):
        self.directory = directory
        self.path = os.path.join(directory, FILE_NAME)
        self.interval = interval
        self.max_gap = max_gap
        self._clock = clock or SystemClock()
        self.write_errors = 0
        self.last_write: float | None = None
        self.restored_gap: float | None = None  # seconds of downtime accrued at start; None: nothing restored
        self._failing = False
        self._dump = None  # () -> dict of the totals to write, set by bind()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- start ------------------------------------------------------------------------------

    def load(self, mode: str, currency: str) -> SavedTotals | None:
        """The totals to continue from, or None to count from 0 (each reason logged once)."""
        data = self._read()
        if data is None:
            return None
        accountant = data["accountant"]
        if (accountant.get("mode"), accountant.get("currency")) != (mode, currency):
            log.warning("saved state path=%s is for mode=%s currency=%s, not this configuration; starting from 0",
                        self.path, accountant.get("mode"), accountant.get("currency"))
            return None
        clean = data.get("clean") is True
        last_tick = accountant.get("last_time")
        gap = None if last_tick is None else self._clock.now() - float(last_tick)
        accrue = gap is not None and 0.0 <= gap <= self.max_gap
        if not clean and not accrue:
            # A crash may have exposed up to --storage.interval more than was saved, and without
            # billing the gap the totals would resume below it: Prometheus would read a reset and
            # count the whole total again. Starting from 0 is a reset it handles correctly.
            log.warning("saved state path=%s not restored: the exporter stopped without a final write and was down "
                        "%s (over --storage.max-gap=%gs); counting from 0", self.path,
                        "an unknown time" if gap is None else f"{gap:.0f}s", self.max_gap)
            return None
        self.restored_gap = gap if accrue else 0.0
        if accrue:
            log.info("state restored path=%s; the %.1fs since the last saved tick accrue", self.path, gap)
        else:
            log.warning("state restored path=%s; totals continue, but the gap of %s is not accrued (over "
                        "--storage.max-gap=%gs, or the clock went back)", self.path,
                        "unknown" if gap is None else f"{gap:.0f}s", self.max_gap)
        models = data.get("models")
        return SavedTotals(accountant, data["gpus"], dict(data["engines"]), accrue, provisional=not clean,
                           models=models if isinstance(models, dict) else {})

    def _read(self) -> dict | None:
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            log.info("no saved state at %s: counting from 0", self.path)
            return None
        except OSError as err:
            log.warning("saved state path=%s unreadable (%s); counting from 0", self.path, err.strerror)
            return None
        try:
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError("too large")
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError(f"not a version {VERSION} state file")
            for key, kind in (("accountant", dict), ("gpus", list), ("engines", dict)):
                if not isinstance(data.get(key), kind):
                    raise ValueError(f"no {key}")
            return data
        except ValueError as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            log.warning("saved state path=%s is not usable (%s); counting from 0", self.path, str(err)[:200])
            return None

    # -- saving -----------------------------------------------------------------------------

    def save(self, final: bool = False) -> bool:
        """Write the totals atomically (final: the last write, at shutdown). Never raises."""
        if self._dump is None:
            return False
        with self._write_lock:
            try:
                # clean: written at shutdown, after the web server stopped, so nothing was exposed after it.
                document = {"version": VERSION, "clean": final, "saved_at": self._clock.now(), **self._dump()}
                data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
                os.makedirs(self.directory, exist_ok=True)
                tmp = f"{self.path}.tmp"
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
                _fsync_dir(self.directory)
            except (OSError, ValueError) as err:  # ValueError: a NaN somewhere; never write one
                self.write_errors += 1
                if not self._failing:
                    log.error("cannot write state path=%s: %s; retrying every %gs", self.path,
                              getattr(err, "strerror", None) or err, self.interval)
                    self._failing = True
                return False
            if self._failing:
                log.info("state written again path=%s", self.path)
                self._failing = False
            self.last_write = self._clock.now()
            return True

    def bind(self, dump) -> None:
        """What to write: dump() returns a dict with accountant, gpus and engines (the exporter's)."""
        self._dump = dump

    def start(self) -> None:
        """Write every interval from now on."""
        self._thread = threading.Thread(target=self._loop, name="storage", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.save()

    def stop(self) -> bool:
        """Stop the periodic writes and write one last time: call after the web server stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        return self.save(final=True)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


class StorageCollector:
    """llmcost_state_last_write_timestamp_seconds 1.7e+09
    llmcost_state_write_errors_total 0.0
    llmcost_state_restored_gap_seconds 2.4"""

    def __init__(self, store: Storage):
        self.store = store

    def describe(self):
        return list(self._families())

    def collect(self):
        return self._families()

    def _families(self):
        s = self.store
        last = GaugeMetricFamily("llmcost_state_last_write_timestamp_seconds",
                                 "Unix time of the last successful write of the persisted totals (--storage.path).")
        if s.last_write is not None:
            last.add_metric([], s.last_write)
        errors = CounterMetricFamily("llmcost_state_write_errors_total", "Failed writes of the persisted totals.")
        errors.add_metric([], s.write_errors)
        gap = GaugeMetricFamily("llmcost_state_restored_gap_seconds", "Downtime before this start that was accrued "
                                "from the persisted totals (0: restored without accruing; absent: nothing restored).")
        if s.restored_gap is not None:
            gap.add_metric([], s.restored_gap)
        yield from (last, errors, gap)
