"""Small time-series helpers: per-series reset-aware monotonic totals and a sliding window."""

from __future__ import annotations

import bisect
import math
from collections import deque

# Beyond 2^53 a float can no longer add 1: no total this exporter counts gets there honestly (a
# year at 1e5 tokens/s is 3e12). A total, rate or spend past it is refused like an overflow, so
# whatever is counted can be saved and restored (exporter/state_schema.py holds files to it too).
MAX_COUNT = float(2**53)


def countable(value: float) -> bool:
    """A finite figure from 0 to MAX_COUNT: one that a total may hold."""
    return math.isfinite(value) and 0.0 <= value <= MAX_COUNT


class SeriesTotals:
    """Turns the raw counters of a process that may restart into monotonic totals, series by series,
    with Prometheus' own semantics, and sums only after.

    A series is one counter as served, with its full label set (rank, model, reason, source...):
    key = (model, kind, quantity, labels); totals are kept per (model, kind, quantity).
    - The first reading of an endpoint is a baseline: what it counted before we watched is not
      ours to count.
    - A series whose value decreased, or whose `_created` time moved forward (a restart the value
      alone would hide), has reset: it alone restarts, from its new value.
    - A series that vanishes keeps its last value; when it comes back only its growth since then
      counts (or its whole value, if it reset meanwhile).
    - A series first seen after the baseline counts in full: it was born since we started
      watching, so none of it was counted. Unless its `_created` time is older than the baseline:
      then it is a baseline of its own (what it counted before we watched is not ours).
    - Values that are not finite counts never get here (the parser leaves them out); an addition
      that would overflow to inf is refused and counted in `overflows`.
    """

    def __init__(self):
        self._last_raw: dict[tuple, float] = {}
        self._last_created: dict[tuple, float] = {}
        self.totals: dict[tuple, float] = {}
        self.baselined = False
        self.resets = 0  # series groups (model + labels but internal "__" ones, all their counters) reset, per reading
        self.overflows = 0
        self._watch_start: float | None = None  # when the baseline was read; None: unknown, count new series
        self._new_series_are_baselines = False  # for the next reading only: see read_more()

    def update(self, raw: dict[tuple, float], created: dict[tuple, float] | None = None,
               now: float | None = None) -> dict[tuple, float]:
        """Apply one complete reading; returns the increase per (model, kind, quantity)."""
        created = created or {}
        deltas: dict[tuple, float] = {}
        if not self.baselined:
            for key in raw:
                self.totals.setdefault(key[:3], 0.0)
                deltas[key[:3]] = 0.0
            self._last_raw.update(raw)
            self._last_created.update(created)
            self.baselined, self._watch_start = True, now
            return deltas
        reset_groups = set()
        for key, value in raw.items():
            unseen = key not in self._last_raw
            delta = 0.0 if unseen and self._new_series_are_baselines else self._increase(key, value, created.get(key))
            if delta is None:
                reset_groups.add((key[0], tuple(p for p in key[3] if not p[0].startswith("__"))))
                delta = value
            self._add(key[:3], delta, deltas)
            self._last_raw[key] = value
            if key in created:
                self._last_created[key] = created[key]
        self.resets += len(reset_groups)
        self._new_series_are_baselines = False
        return deltas

    def read_more(self) -> None:
        """The same process, read with more names (a changed engine map): series first seen in
        the next reading existed before and are baselines of their own; known ones go on."""
        self._new_series_are_baselines = True

    def _increase(self, key: tuple, value: float, created: float | None) -> float | None:
        """The series' increase since it was last seen; None if it reset."""
        last = self._last_raw.get(key)
        if last is not None:
            recreated = created is not None and created > self._last_created.get(key, created)
            return None if value < last or recreated else value - last
        if created is None or self._watch_start is None or created >= self._watch_start:
            return value  # born since we started watching: none of it was counted
        return 0.0  # older than our baseline: a baseline of its own

    def _add(self, total_key: tuple, delta: float, deltas: dict) -> None:
        total = self.totals.get(total_key, 0.0) + delta
        if not countable(total):
            self.overflows += 1
            delta, total = 0.0, self.totals.get(total_key, 0.0)
        self.totals[total_key] = total
        deltas[total_key] = deltas.get(total_key, 0.0) + delta

    def would_reset(self, raw: dict[tuple, float]) -> bool:
        """Whether update(raw) would read any series as reset by its value."""
        return self.baselined and any(value < self._last_raw.get(key, 0.0) for key, value in raw.items())

    def forget(self, predicate) -> None:
        """Drop every key for which predicate(key) is true (a retired model's series)."""
        for table in (self._last_raw, self._last_created, self.totals):
            for key in [k for k in table if predicate(k)]:
                del table[key]

    def state(self) -> dict:
        """A JSON-ready copy, for exporter.storage."""
        return {"baselined": self.baselined, "resets": self.resets, "watch_start": self._watch_start,
                "totals": [[*k, v] for k, v in self.totals.items()],
                "last_raw": [[k[0], k[1], k[2], [list(pair) for pair in k[3]], v] for k, v in self._last_raw.items()]}

    def restore(self, state: dict) -> None:
        """The inverse of state(): the next update() compares with the raw values saved."""
        self.baselined = bool(state["baselined"])
        self.resets = int(state["resets"])
        watch_start = state.get("watch_start")
        self._watch_start = None if watch_start is None else float(watch_start)
        self.totals = {(str(m), str(k), str(q)): float(v) for m, k, q, v in state["totals"]}
        self._last_raw = {(str(m), str(k), str(q), tuple((str(a), str(b)) for a, b in labels)): float(v)
                          for m, k, q, labels, v in state["last_raw"]}

    def restart(self, from_zero: bool) -> None:
        """Another process now stands behind these totals (a new URL, a re-created pod); the
        totals stay. from_zero: it started counting at 0 after we last looked, so all of its next
        reading is new; otherwise its next reading is a new baseline, as the very first one was."""
        self._last_raw, self._last_created = {}, {}
        self.baselined = from_zero
        self._watch_start = None


class SlidingWindow:
    """(time, cumulative value) samples over the last `length` seconds."""

    def __init__(self, length: float):
        self.length = length
        self._times: deque[float] = deque()
        self._values: deque[float] = deque()

    def add(self, t: float, value: float) -> None:
        if self._times and t <= self._times[-1]:
            self._values[-1] = value  # same instant (or a clock step back): keep the latest
            return
        self._times.append(t)
        self._values.append(value)
        # Keep one sample older than the window so value_at() can interpolate its start.
        while len(self._times) > 2 and self._times[1] <= t - self.length:
            self._times.popleft()
            self._values.popleft()

    def steady_until(self, now: float) -> float:
        """The time until which span() answers what it answers at `now`, if no sample is added:
        when its first sample leaves the window (never, while it holds under two)."""
        i = bisect.bisect_left(self._times, now - self.length)
        return self._times[i] + self.length if len(self._times) - i >= 2 else math.inf

    def span(self, now: float) -> tuple[float, float, float, float] | None:
        """(t0, v0, t1, v1): first and last sample inside the window; None if under two."""
        start = now - self.length
        i = bisect.bisect_left(self._times, start)
        if len(self._times) - i < 2:
            return None
        return self._times[i], self._values[i], self._times[-1], self._values[-1]

    def value_at(self, t: float) -> float | None:
        """Linear interpolation between samples; None outside the recorded range."""
        if not self._times or t < self._times[0] or t > self._times[-1]:
            return None
        i = bisect.bisect_left(self._times, t)
        if self._times[i] == t:
            return self._values[i]
        t0, t1 = self._times[i - 1], self._times[i]
        v0, v1 = self._values[i - 1], self._values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

