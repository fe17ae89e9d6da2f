"""Clocks. Everything that accrues cost asks a clock, so the demo can run faster than real time
and tests can step time exactly.

A clock has now() (wall seconds, what cost accrues against) and monotonic() (seconds for
timeouts and retry backoff, never going backwards; only differences mean anything)."""

import threading
import time


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class AcceleratedClock:
    """Wall time sped up `speed` times from the moment it is created (the demo's clock)."""

    def __init__(self, speed: float, start: float | None = None):
        self.speed = speed
        self._start_wall = time.time() if start is None else start
        self._start_mono = time.monotonic()

    def now(self) -> float:
        return self._start_wall + (time.monotonic() - self._start_mono) * self.speed

    def monotonic(self) -> float:
        """Real time: retry backoff is about the real library and network, not the demo's speed."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests). monotonic() moves with it (from 0), so a
    retry backoff elapses when the test advances the clock, not while it sleeps."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += max(seconds, 0.0)  # wall time may be stepped back; monotonic time never is
