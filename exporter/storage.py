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

A missing file is a first start. A file that cannot be used (not a regular file, unreadable, not
JSON, not ours, or any key of the wrong shape or a number that is not finite, negative or over
2^53: exporter.state_schema) is set aside as `<file>.bad-<UTC time>` with one log line, and the
exporter starts from 0: it never fails, and never restores part of a file. A file written for
another mode or currency is not restored either (one line). Writes go through a regular
temporary file only (a FIFO or symlink there is a failed write, never a blocked one), and the one
at shutdown gets FINAL_WRITE_S at most. Write failures (a full or read-only disk) are counted and
logged once until a write succeeds.
Metrics (tell docs/metrics.md): llmcost_state_last_write_timestamp_seconds,
llmcost_state_write_errors_total, llmcost_state_restored_gap_seconds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter import state_schema
from exporter.clock import SystemClock
from exporter.state_schema import VERSION, StateError
from exporter.validation import read_file, show

log = logging.getLogger("exporter.storage")

FILE_NAME = "llm-cost-exporter-state.json"
MAX_STATE_BYTES = 16 * 1024 * 1024  # bounded by the series caps; anything larger is not ours
FINAL_WRITE_S = 1.0  # SIGTERM must end the process within 2 s, the web server's stop included


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
        if (accountant["mode"], accountant["currency"]) != (mode, currency):
            log.warning("saved state path=%s is for mode=%s currency=%s, not this configuration; starting from 0",
                        self.path, show(accountant["mode"]), show(accountant["currency"]))  # shortened: from a file
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
            os.lstat(self.path)
        except FileNotFoundError:
            log.info("no saved state at %s: counting from 0", self.path)
            return None
        except OSError as err:  # the directory itself is unreadable: nothing to set aside
            log.warning("saved state path=%s unreadable (%s); counting from 0", self.path, err.strerror)
            return None
        try:  # a regular file only, size-capped: a FIFO or /dev/zero in its place must not hang the start
            return state_schema.parse(read_file(self.path, "", StateError, MAX_STATE_BYTES))
        except StateError as err:
            self._set_aside(err)
            return None

    def _set_aside(self, err: StateError) -> None:
        """Keep an unusable file for a human under another name, so that it neither blocks every
        start nor gets overwritten by the next write."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock.now()))
        aside = f"{self.path}.bad-{stamp}"
        for n in range(1, 100):
            if not os.path.lexists(aside):
                break
            aside = f"{self.path}.bad-{stamp}-{n}"
        try:
            os.rename(self.path, aside)
            where = f"set aside as {aside}"
        except OSError as rename_err:
            where = f"could not be set aside ({rename_err.strerror})"
        log.warning("saved state path=%s is not usable (%s); %s; counting from 0", self.path, err, where)

    # -- saving -----------------------------------------------------------------------------

    def save(self, final: bool = False) -> bool:
        """Write the totals atomically (final: the last write, at shutdown). Never raises."""
        if self._dump is None:
            return False
        with self._write_lock:
            if not final and self._stop.is_set():
                return False  # the final write is done or under way: a periodic one must not follow it
            try:
                # clean: written at shutdown, after the web server stopped, so nothing was exposed after it.
                document = {"version": VERSION, "clean": final, "saved_at": self._clock.now(), **self._dump()}
                data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
                os.makedirs(self.directory, exist_ok=True)
                self._replace(data)
                _fsync_dir(self.directory)
            except (OSError, ValueError) as err:  # ValueError: a NaN somewhere; never write one
                self._failed(getattr(err, "strerror", None) or str(err))
                return False
            if self._failing:
                log.info("state written again path=%s", self.path)
                self._failing = False
            self.last_write = self._clock.now()
            return True

    def _replace(self, data: bytes) -> None:
        """data into the temporary file, fsync, rename over the state file. Only a regular file
        is written: a FIFO would block the open (and so SIGTERM), a symlink would write elsewhere."""
        tmp = f"{self.path}.tmp"
        try:
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                raise OSError(errno.EEXIST, f"{tmp} is not a regular file")
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in since the lstat
                raise OSError(errno.EEXIST, f"{tmp} is not a regular file")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)  # never opens what is at the state path, whatever it is

    def _failed(self, why: str) -> None:
        self.write_errors += 1
        if not self._failing:
            log.error("cannot write state path=%s: %s; retrying every %gs", self.path, why, self.interval)
            self._failing = True

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
        """Stop the periodic writes and write one last time: call after the web server stopped.
        The write gets FINAL_WRITE_S: a hung filesystem (NFS) must not keep SIGTERM from ending
        the process; it then counts as a failed write."""
        self._stop.set()
        done: list[bool] = []
        writer = threading.Thread(target=lambda: done.append(self.save(final=True)), name="storage-final",
                                  daemon=True)
        writer.start()
        writer.join(FINAL_WRITE_S)
        if not done:
            self._failed(f"the final write did not finish within {FINAL_WRITE_S:g}s (a hung filesystem?)")
            return False
        return done[0]


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
