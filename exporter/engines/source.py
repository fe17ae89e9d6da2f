"""Engine source: scrapes one inference engine's /metrics and keeps per-model totals.

The network read happens outside the shared state lock; only the parsed result is applied under
it, all at once, so a scrape either counts completely or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from exporter import costmodel
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
    api_equivalent: dict[str, float]  # API name -> what that API would have billed since start
    capacity: float | None  # the engine's tokens/s at saturation
    capacity_source: str  # "configured" or "observed" (peak of the windowed throughput)


class EngineSource:
    def __init__(self, config: EngineConfig, clock, lock: threading.RLock, window_s: float, apis=()):
        self.config = config
        self.apis = list(apis)  # catalog.ApiPrice to price this engine's tokens with
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
        self._api_spend: dict[tuple[str, str], float] = {}  # (model, api) -> API-equivalent since start
        self.api_windows = {api.name: SlidingWindow(window_s) for api in self.apis}  # engine-level, cumulative
        self._engine_window = SlidingWindow(window_s)
        self._observed_peak = 0.0
        self.tokens_flowing = False  # did the last successful scrape see new tokens?

    @property
    def resets(self) -> int:
        return self._totals.resets

    def reconfigure(self, config: EngineConfig, apis=(), restart: str | None = None) -> None:
        """Apply a changed configuration (config reload, re-discovered pod), keeping every total.
        restart: None for the same process; "baseline" when another process may now answer (its
        next scrape is a new baseline); "from_zero" for one that started counting at 0 since."""
        with self._lock:
            self.config = config
            self._schema = SCHEMAS[config.kind]
            self.apis = list(apis)
            self.api_windows = {api.name: self.api_windows.get(api.name) or SlidingWindow(self._window_s)
                                for api in self.apis}
            if restart is not None:
                self._totals.restart(from_zero=restart == "from_zero")

    def sample(self) -> None:
        started = time.monotonic()
        try:
            content_type, body = fetch(self.config.url, self.config.timeout, self.config.max_body_bytes)
            models = parse_exposition(content_type, body, self._schema)
        except (FetchError, ParseError) as err:
            with self._lock:
                self._gauges = {}  # running/waiting are unknown now; totals stay
                self.tokens_flowing = False
            self.health.failure(err.reason, str(err), time.monotonic() - started)
            return
        now = self._clock.now()
        with self._lock:
            models = self._cap_models(models)
            resets_before = self._totals.resets
            deltas = self._totals.update(_flatten(models))
            self._gauges = {name: dict(r.gauges) for name, r in models.items()}
            for name in models:
                window = self._windows.setdefault(name, SlidingWindow(self._window_s))
                window.add(now, self._model_tokens(name))
            self.tokens_flowing = any(delta > 0 for (_, kind, quantity), delta in deltas.items()
                                      if kind == "counter" and quantity in ("input_tokens", "output_tokens"))
            self._price_with_apis(now, deltas)
            self._track_capacity(now)
        if self._totals.resets != resets_before:
            log.warning("engine counters went backwards (restart?) engine=%s; counting from the new values", self.name)
        self.health.success(now, time.monotonic() - started)

    def _price_with_apis(self, now: float, deltas: dict[tuple, float]) -> None:
        by_model: dict[str, dict[str, float]] = {}
        for (model, kind, quantity), delta in deltas.items():
            if kind == "counter":
                by_model.setdefault(model, {})[quantity] = delta
        for api in self.apis:
            for model, d in by_model.items():
                cost = costmodel.api_equivalent(
                    d.get("input_tokens", 0.0), d.get("output_tokens", 0.0), api.input_per_million, api.output_per_million,
                    d.get("cached_input_tokens", 0.0), api.cached_input_per_million)
                self._api_spend[(model, api.name)] = self._api_spend.get((model, api.name), 0.0) + cost
            self.api_windows[api.name].add(now, sum(v for (m, a), v in self._api_spend.items() if a == api.name))

    def _track_capacity(self, now: float) -> None:
        self._engine_window.add(now, sum(self._model_tokens(m) for m in self._model_names()))
        span = self._engine_window.span(now)
        if span:
            t0, v0, t1, v1 = span
            self._observed_peak = max(self._observed_peak, (v1 - v0) / (t1 - t0))

    def capacity(self) -> tuple[float | None, str]:
        if self.config.capacity_tokens_per_s:
            return self.config.capacity_tokens_per_s, "configured"
        return (self._observed_peak or None), "observed"

    def snapshot(self) -> list[ModelSnapshot]:
        """Call with the state lock held."""
        now = self._clock.now()
        capacity, capacity_source = self.capacity()
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
                api_equivalent={api.name: self._api_spend.get((model, api.name), 0.0) for api in self.apis},
                capacity=capacity,
                capacity_source=capacity_source,
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
