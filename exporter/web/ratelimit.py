"""exporter-toolkit's rate_limit: one token bucket over all requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Holds up to `burst` tokens, refilled one per `interval` seconds; each request takes one.
    interval and burst are given with each request, so a reloaded web config applies at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._state: tuple[float, float] | None = None  # (tokens, time of the last refill)

    def take(self, interval: float, burst: int) -> bool:
        with self._lock:
            now = self._clock()
            tokens, last = self._state or (float(burst), now)
            tokens = min(float(burst), tokens + (now - last) / interval)
            allowed = tokens >= 1.0
            self._state = (tokens - 1.0 if allowed else tokens, now)
        return allowed
