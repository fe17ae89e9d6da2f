"""Engine source: scrapes one inference engine's /metrics and keeps per-model totals.

The network read happens outside the shared state lock; only the parsed result is applied under
it, all at once, so a scrape either counts completely or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from exporter.config import EngineConfig
from exporter.engines.fetch import FetchError, fetch
from exporter.engines.parse import ModelReading, ParseError, parse_exposition
from exporter.engines.schemas import SCHEMAS
from exporter.health import SourceHealth
from exporter.series import ResetAwareTotals, SlidingWindow

log = logging.getLogger("exporter.engines")

TOKEN_DIRECTIONS = ("input", "output")


@dataclass(frozen=True)
class ModelSnapshot:
    engine: str
    model: str
    tokens: dict[str, float]  # direction -> total since the exporter started
    cached_input_tokens: float
    requests: dict[str, float]  # finished reason -> total
    gauges: dict[str, float]  # current values; empty while the engine is down
    window: tuple[float, float, float, float] | None  # (t0, tokens0, t1, tokens1)


class EngineSource:
    def __init__(self, config: EngineConfig, clock, lock: threading.RLock, window_s: float):
        self.config = config
        self.name = config.name
        self._schema = SCHEMAS[config.kind]
        self._clock = clock
        self._lock = lock
        self._window_s = window_s
        self.health = SourceHealth("engine", config.name)
        self._totals = ResetAwareTotals()
        self._gauges: dict[str, dict[str, float]] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self._capped_logged = False

    @property
    def resets(self) -> int:
        return self._totals.resets

    def sample(self) -> None:
        started = time.monotonic()
        try:
            content_type, body = fetch(self.config.url, self.config.timeout, self.config.max_body_bytes)
            models = parse_exposition(content_type, body, self._schema)
        except (FetchError, ParseError) as err:
            with self._lock:
                self._gauges = {}  # running/waiting are unknown now; totals stay
            self.health.failure(err.reason, str(err), time.monotonic() - started)
            return
        now = self._clock.now()
        with self._lock:
            models = self._cap_models(models)
            resets_before = self._totals.resets
            self._totals.update(_flatten(models))
            self._gauges = {name: dict(r.gauges) for name, r in models.items()}
            for name in models:
                window = self._windows.setdefault(name, SlidingWindow(self._window_s))
                window.add(now, self._model_tokens(name))
        if self._totals.resets != resets_before:
            log.warning("engine counters went backwards (restart?) engine=%s; counting from the new values", self.name)
        self.health.success(now, time.monotonic() - started)

    def snapshot(self) -> list[ModelSnapshot]:
        """Call with the state lock held."""
        now = self._clock.now()
        out = []
        for model in sorted(self._model_names()):
            totals = self._totals.totals
            window = self._windows.get(model)
            out.append(ModelSnapshot(
                engine=self.name,
                model=model,
                tokens={d: totals.get((model, "counter", f"{d}_tokens"), 0.0) for d in TOKEN_DIRECTIONS},
                cached_input_tokens=totals.get((model, "counter", "cached_input_tokens"), 0.0),
                requests={k[2]: v for k, v in totals.items() if k[0] == model and k[1] == "requests"},
                gauges=dict(self._gauges.get(model, {})),
                window=window.span(now) if window else None,
            ))
        return out

    def requests_total(self) -> float:
        """Finished requests over all models (call with the state lock held)."""
        return sum(v for k, v in self._totals.totals.items() if k[1] == "requests")

    def _model_names(self) -> set[str]:
        return {key[0] for key in self._totals.totals}

    def _model_tokens(self, model: str) -> float:
        totals = self._totals.totals
        return sum(totals.get((model, "counter", f"{d}_tokens"), 0.0) for d in TOKEN_DIRECTIONS)

    def _cap_models(self, models: dict[str, ModelReading]) -> dict[str, ModelReading]:
        """Bound cardinality: models already known first, then new ones up to max_models."""
        limit = self.config.max_models
        if len(models) <= limit:
            return models
        known = self._model_names()
        ordered = sorted(models, key=lambda m: (m not in known, m))
        kept = {m: models[m] for m in ordered[:limit]}
        self.health.count("too_many_models")
        if not self._capped_logged:
            log.warning("engine=%s exposes %d models, over max_models=%d; dropping the rest", self.name, len(models), limit)
            self._capped_logged = True
        return kept


def _flatten(models: dict[str, ModelReading]) -> dict[tuple, float]:
    raw = {}
    for name, reading in models.items():
        for quantity, value in reading.counters.items():
            raw[(name, "counter", quantity)] = value
        for reason, value in reading.requests.items():
            raw[(name, "requests", reason)] = value
    return raw
