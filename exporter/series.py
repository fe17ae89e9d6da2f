"""Small time-series helpers: reset-aware monotonic totals and a sliding window."""

from __future__ import annotations

import bisect
from collections import deque


class ResetAwareTotals:
    """Turns raw counters read from a process that may restart into monotonic totals.

    The first reading of a source is a baseline (what it counted before we watched is not ours
    to count). After that, a raw value below the previous one means the source restarted: the
    new raw value is what it counted since the restart, as Prometheus' increase() assumes. A
    series first seen after the baseline started at zero, so all of it is new.
    """

    def __init__(self):
        self._last_raw: dict[tuple, float] = {}
        self.totals: dict[tuple, float] = {}
        self.baselined = False
        self.resets = 0

    def update(self, raw: dict[tuple, float]) -> dict[tuple, float]:
        """Apply one complete reading; returns the increase per key."""
        if not self.baselined:
            self._last_raw = dict(raw)
            for key in raw:
                self.totals.setdefault(key, 0.0)
            self.baselined = True
            return {key: 0.0 for key in raw}
        restarted = any(value < self._last_raw.get(key, 0.0) for key, value in raw.items())
        if restarted:
            self.resets += 1
        deltas = {}
        for key, value in raw.items():
            previous = 0.0 if restarted else self._last_raw.get(key, 0.0)
            deltas[key] = value - previous
            self.totals[key] = self.totals.get(key, 0.0) + deltas[key]
        # Keys missing from this reading keep their totals; after a restart their old raw
        # values are meaningless, so forget them.
        self._last_raw = dict(raw) if restarted else {**self._last_raw, **raw}
        return deltas

    def would_reset(self, raw: dict[tuple, float]) -> bool:
        """Whether update(raw) would read as a restart of the source."""
        return self.baselined and any(value < self._last_raw.get(key, 0.0) for key, value in raw.items())

    def forget(self, predicate) -> None:
        """Drop every key for which predicate(key) is true (a retired model's series)."""
        for table in (self._last_raw, self.totals):
            for key in [k for k in table if predicate(k)]:
                del table[key]

    def state(self) -> dict:
        """A JSON-ready copy, for exporter.storage (keys are tuples of strings)."""
        return {"baselined": self.baselined, "resets": self.resets,
                "totals": [[*k, v] for k, v in self.totals.items()],
                "last_raw": [[*k, v] for k, v in self._last_raw.items()]}

    def restore(self, state: dict) -> None:
        """The inverse of state(): the next update() compares with the raw values saved."""
        self.baselined = bool(state["baselined"])
        self.resets = int(state["resets"])
        self.totals = {tuple(row[:-1]): float(row[-1]) for row in state["totals"]}
        self._last_raw = {tuple(row[:-1]): float(row[-1]) for row in state["last_raw"]}

    def restart(self, from_zero: bool) -> None:
        """Another process now stands behind these totals (a new URL, a re-created pod); the
        totals stay. from_zero: it started counting at 0 after we last looked, so all of its next
        reading is new; otherwise its next reading is a new baseline, as the very first one was."""
        if from_zero:
            self.baselined, self._last_raw = True, {}
        else:
            self.baselined = False


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

