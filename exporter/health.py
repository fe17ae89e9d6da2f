"""Health of each source (NVML, one engine, ...): up, last success, errors by reason.

A failure is logged once when the source goes down or its failure reason changes, and once when
it recovers, so a dead engine scraped every 5 s does not flood the log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger("exporter.health")


@dataclass
class HealthStatus:
    source: str
    name: str
    up: bool
    last_success: float | None
    last_duration: float
    errors: dict[str, int] = field(default_factory=dict)
    reason: str | None = None


class SourceHealth:
    def __init__(self, source: str, name: str):
        self.source = source
        self.name = name
        self._lock = threading.Lock()
        self._up = False
        self._reason: str | None = "not_sampled_yet"
        self._last_success: float | None = None
        self._last_duration = 0.0
        self._errors: dict[str, int] = {}

    def success(self, now: float, duration: float) -> None:
        with self._lock:
            recovered = not self._up and self._reason != "not_sampled_yet"
            self._up, self._reason = True, None
            self._last_success, self._last_duration = now, duration
        if recovered:
            log.info("source recovered source=%s name=%s", self.source, self.name)

    def failure(self, reason: str, detail: str, duration: float = 0.0) -> None:
        """The source failed as a whole: down, one error counted, logged on change."""
        with self._lock:
            self._errors[reason] = self._errors.get(reason, 0) + 1
            self._last_duration = duration
            changed = reason != self._reason or self._up
            self._up, self._reason = False, reason
        if changed:
            log.warning("source failing source=%s name=%s reason=%s detail=%s", self.source, self.name, reason, detail)

    def count(self, reason: str) -> None:
        """A partial fault (one GPU of several): counted, the source stays up. The caller logs."""
        with self._lock:
            self._errors[reason] = self._errors.get(reason, 0) + 1

    def status(self) -> HealthStatus:
        with self._lock:
            return HealthStatus(self.source, self.name, self._up, self._last_success,
                                  self._last_duration, dict(self._errors), self._reason)
