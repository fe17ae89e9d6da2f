"""Clocks. Everything that accrues cost asks a clock, so the demo can run faster than real time
and tests can step time exactly."""

import threading
import time


class SystemClock:
    def now(self) -> float:
        return time.time()


class AcceleratedClock:
    """Wall time sped up `speed` times from the moment it is created (the demo's clock)."""

    def __init__(self, speed: float, start: float | None = None):
        self.speed = speed
        self._start_wall = time.time() if start is None else start
        self._start_mono = time.monotonic()

    def now(self) -> float:
        return self._start_wall + (time.monotonic() - self._start_mono) * self.speed


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
