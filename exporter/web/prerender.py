"""The metrics body rendered ahead: after a job changes what the exposition shows (the accrual
tick, an engine poll, a Kubernetes refresh, a reload), the job's own thread renders the body for
each variant scrapers asked for lately (content type and gzip), so that a scrape serves bytes
already made instead of rendering while it waits.

A body is served only while it is what an on-demand render would give at that moment: it is kept
with the state key read before its render (exporter.app.Exporter.exposition_key: a version that
every change bumps, each engine's count of samples, and the job and storage counters the exposition
shows) and the time until which the live windows keep their samples (exposition_steady_until); a scrape whose key differs, or that comes later, renders
as before. The key is read before the render, so a change that races the render leaves the body
under the older key, which no later scrape matches. `name[]`-filtered scrapes are never kept.
There are no per-scrape series in the exposition (no scrape counter or duration), so nothing in a
kept body goes stale between changes.

At most KEPT variants, the least recently asked one evicted first. A variant scraped on a steady
interval (Prometheus') is rendered only by the job runs of the last LEAD_S seconds before its next
scrape is due (the shorter of its last two intervals after the last scrape): a render for a state
that changes again before anyone reads it is wasted. A scrape that comes earlier than that finds
no current body and renders as before.
"""

from __future__ import annotations

import gzip
import math
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from exporter.web.linecache import LineCache

KEPT = 4
LEAD_S = 2.5  # more than two GPU ticks (1 s by default) and a scheduler's jitter before a scrape is due


class Variant(NamedTuple):
    content_type: str
    gzipped: bool


class _Body(NamedTuple):
    key: object
    until: float
    body: bytes


class PreRender:
    """key(): changes with what the exposition shows; steady_until(): the time (of now(), the
    state's clock) until which it shows the same."""

    def __init__(self, registry, key, steady_until, now, cache: LineCache, kept: int = KEPT,
                 monotonic=time.monotonic):
        self._registry, self._key, self._until, self._now = registry, key, steady_until, now
        self._cache, self._kept, self._monotonic = cache, kept, monotonic
        self._due: dict[Variant, tuple[float, float, float]] = {}  # variant -> (last ask, last two intervals)
        self._encoders: OrderedDict[Variant, object] = OrderedDict()  # asked lately, most recent last
        self._bodies: dict[Variant, _Body] = {}
        self._lock = threading.Lock()
        self.served = 0  # scrapes answered with a kept body (tests, bench)

    def get(self, variant: Variant, encoder) -> bytes | None:
        """The kept body of `variant` if it is current, else None; marks it asked for."""
        asked = self._monotonic()
        with self._lock:
            self._encoders[variant] = encoder
            self._encoders.move_to_end(variant)
            last, previous, _ = self._due.get(variant, (None, 0.0, 0.0))
            self._due[variant] = (asked, asked - last if last is not None else 0.0, previous)
            while len(self._encoders) > self._kept:
                gone, _ = self._encoders.popitem(last=False)
                self._bodies.pop(gone, None)
                self._due.pop(gone, None)
            kept = self._bodies.get(variant)
        if kept is None:
            return None
        if kept.key != self._key() or self._now() > kept.until:
            return None
        self.served += 1
        return kept.body

    def refresh(self) -> None:
        """Render every variant asked for lately (call after a change, in the thread that made it)."""
        now = self._monotonic()
        with self._lock:
            asked = [(v, e) for v, e in self._encoders.items() if now >= self._next_due(v) - LEAD_S]
        if not asked:
            return
        key, until = self._key(), self._until()  # before the render: a racing change leaves the body stale-keyed
        for variant, encoder in asked:
            body = self._cache.encode(self._registry, encoder, variant.content_type)
            if variant.gzipped:
                body = gzip.compress(body)
            with self._lock:
                if variant in self._encoders:
                    self._bodies[variant] = _Body(key, until, body)

    def _next_due(self, variant: Variant) -> float:
        """When its next scrape is expected (monotonic; call with the lock held); -inf: unknown."""
        last, interval, previous = self._due.get(variant, (None, 0.0, 0.0))
        if last is None or not interval or not previous:
            return -math.inf
        return last + min(interval, previous)
