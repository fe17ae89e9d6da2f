"""A deterministic simulated inference workload: quiet periods, a daily cycle, bursts.

Load is constant within each one-minute segment (seeded per segment), so token counts are exact
integrals and tests can compare the exporter's totals with this ground truth to the token.
"""

from __future__ import annotations

import math
import random
import threading
import time

SEGMENT_S = 60.0


class Workload:
    def __init__(self, clock, capacity_tokens_per_s: float, seed: int = 1, input_share: float = 0.75,
                 cached_share: float = 0.3, output_tokens_per_request: float = 250.0, start: float | None = None,
                 constant_load: float | None = None):
        self._clock = clock
        self.capacity = capacity_tokens_per_s
        self.seed = seed
        self.input_share = input_share
        self.cached_share = cached_share
        self.output_per_request = output_tokens_per_request
        self.start = clock.now() if start is None else start
        self.process_started = time.time()  # wall time the serving process started: its counters' _created
        self._lock = threading.Lock()
        self._t = self.start
        self._input = 0.0  # exact cumulative tokens (floats); served values are floored
        self._output = 0.0
        self._constant: float | None = constant_load  # pinned from the start: no sliver of the pattern first

    # -- load -----------------------------------------------------------------------------

    def set_constant_load(self, load: float | None) -> None:
        """Pin the load (tests); None returns to the simulated pattern."""
        with self._lock:
            self._advance(self._clock.now())
            self._constant = load

    def load(self, t: float) -> float:
        if self._constant is not None:
            return self._constant
        segment = math.floor((t - self.start) / SEGMENT_S)
        rng = random.Random(self.seed * 1_000_003 + segment)
        hour = ((t - self.start) / 3600.0 + 9.0) % 24.0  # the demo starts at 09:00
        daily = 0.22 + 0.16 * math.sin((hour - 8.0) / 24.0 * 2 * math.pi)
        roll = rng.random()
        if roll < 0.15:
            return 0.0  # quiet: nobody is asking
        if roll > 0.93:
            return 0.85 + 0.15 * rng.random()  # burst
        return min(1.0, daily * (0.5 + rng.random()))

    # -- counters -------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        while self._t < t:
            segment_end = self.start + (math.floor((self._t - self.start) / SEGMENT_S) + 1) * SEGMENT_S
            step_end = min(t, segment_end)
            tokens = self.load(self._t) * self.capacity * (step_end - self._t)
            self._input += tokens * self.input_share
            self._output += tokens * (1.0 - self.input_share)
            self._t = step_end

    def counters(self) -> dict[str, int]:
        """Cumulative integer counters at the clock's now."""
        with self._lock:
            self._advance(self._clock.now())
            inputs, outputs = math.floor(self._input), math.floor(self._output)
            return {
                "input_tokens": inputs,
                "output_tokens": outputs,
                "cached_input_tokens": math.floor(self._input * self.cached_share),
                "requests": math.floor(self._output / self.output_per_request),
            }

    def gauges(self) -> dict[str, float]:
        load = self.load(self._clock.now())
        return {"running": round(load * 64), "waiting": max(0, round((load - 0.85) * 200)), "kv_cache": round(load * 0.92, 4)}
