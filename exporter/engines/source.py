"""Engine source: scrapes one inference engine's /metrics and keeps per-model totals.

The network read happens outside the shared state lock; only the parsed result is applied under
it, all at once, so a scrape either counts completely or not at all.

Cardinality is capped per engine, so an engine that explodes its label values cannot grow our
memory or our exposition without bound: at most `max_models` models are tracked over the
exporter's life (a model absent for RETIRE_AFTER_S may make room for a new one), at most
MAX_REASONS finished_reason values per model (the rest fold into "other"), and model names longer
than MAX_LABEL_LENGTH are dropped. Each cap counts an error reason and logs once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from exporter import costmodel
from exporter.config import EngineConfig
from exporter.engines import schemas
from exporter.engines.fetch import FetchError, fetch, redact
from exporter.engines.parse import (
    ModelReading,
    ParseError,
    UnknownEngineError,
    describe_families,
    parse_exposition,
    sample_names,
)
from exporter.health import SourceHealth
from exporter.modelsplit import Work
from exporter.series import SeriesTotals, SlidingWindow, countable

log = logging.getLogger("exporter.engines")

TOKEN_DIRECTIONS = ("input", "output")
MAX_REASONS = 16  # finished_reason values kept per model; more fold into OTHER_REASON
OTHER_REASON = "other"
MAX_LABEL_LENGTH = 256  # longer model names or reasons are not label values we pass on
RETIRE_AFTER_S = 3600.0  # a model absent from the engine this long may be evicted to admit a new one


@dataclass(frozen=True)
class ModelTotals:
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
    input_window: tuple[float, float, float, float] | None = None  # (t0, input0, t1, input1), the window's times
    api_tiers: dict[str, str] = field(default_factory=dict)  # API name -> the tier its prices are


class EngineSource:
    def __init__(self, config: EngineConfig, clock, lock: threading.RLock, window_s: float, apis=(), maps=None):
        self.config = config
        self.apis = list(apis)  # catalog.ApiRates (an API in a tier) to price this engine's tokens with
        self.name = config.name
        self._maps = schemas.all_maps() if maps is None else maps  # kind -> EngineSchema
        self._schema = self._maps.get(config.kind)  # None: auto, detected from the first good scrape
        self.cached_input_source = "none"  # counter | prefix_cache_hits (an estimate) | none
        self._clock = clock
        self._lock = lock
        self.generation = 0  # counts samples, failed ones included: the exposition may change with each
        self._window_s = window_s
        self.health = SourceHealth("engine", config.name)
        self._totals = SeriesTotals()
        self._gauges: dict[str, dict[str, float]] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self._input_windows: dict[str, SlidingWindow] = {}  # input tokens alone, sampled with _windows
        self._capped_logged: set[str] = set()  # cap reasons already logged (once each per engine)
        self._last_seen: dict[str, float] = {}  # model -> clock time of the last scrape that had it
        self._api_spend: dict[tuple[str, str], float] = {}  # (model, api) -> API-equivalent since start
        self.api_windows = {api.name: SlidingWindow(window_s) for api in self.apis}  # engine-level, cumulative
        self._engine_window = SlidingWindow(window_s)
        self._observed_peak = 0.0
        self.tokens_flowing = False  # did the last successful scrape see new tokens?
        self._provisional = False  # restored after an unclean stop, awaiting the first scrape

    @property
    def resets(self) -> int:
        return self._totals.resets

    @property
    def kind(self) -> str:
        """The engine's kind: configured, or detected (auto until the first good scrape)."""
        return self._schema.kind if self._schema else schemas.AUTO

    def reconfigure(self, config: EngineConfig, apis=(), restart: str | None = None, maps=None) -> None:
        """Apply a changed configuration (config reload, re-discovered pod), keeping every total.
        restart: None for the same process; "baseline" when another process may now answer (its
        next scrape is a new baseline); "from_zero" for one that started counting at 0 since."""
        with self._lock:
            if maps is not None and maps != self._maps:
                self._maps = maps
                self._totals.read_more()  # series a new map reads existed before: not all new
            if config.kind != schemas.AUTO:
                self._schema = self._maps.get(config.kind)
            elif self.config.kind != schemas.AUTO:
                self._schema = None  # now auto: detected again from the next scrape
            elif self._schema is not None:
                self._schema = self._maps.get(self._schema.kind)  # the detected kind's map, perhaps replaced
            self.config = config
            self._forget_repriced(apis)
            self.apis = list(apis)
            self.api_windows = {api.name: self.api_windows.get(api.name) or SlidingWindow(self._window_s)
                                for api in self.apis}
            if restart is not None:
                self._totals.restart(from_zero=restart == "from_zero")

    def _forget_repriced(self, apis, tiers: dict[str, str] | None = None) -> None:
        """An API now compared at another tier than `tiers` (default: the current ones) is another
        comparison: its API-equivalent spend starts again at 0 (a new series, with the new tier)."""
        tiers = {api.name: api.tier for api in self.apis} if tiers is None else tiers
        changed = {api.name for api in apis if api.name in tiers and tiers[api.name] != api.tier}
        if changed:
            self._api_spend = {k: v for k, v in self._api_spend.items() if k[1] not in changed}
            self.api_windows = {name: SlidingWindow(self._window_s) if name in changed else w
                                for name, w in self.api_windows.items()}

    def sample(self) -> None:
        """One GET of the engine's /metrics, applied at once. Never raises."""
        started = time.monotonic()
        try:
            content_type, body = fetch(self.config.url, self.config.timeout, self.config.max_body_bytes)
        except FetchError as err:
            self._failed(err.reason, str(err), started)
            self.generation += 1
            return
        except Exception as err:  # a bug must not kill the job or flood the log: counted, logged on change
            self._failed("internal", f"{type(err).__name__}: {err}"[:300], started)
            self.generation += 1
            return
        self.ingest(content_type, body, started)

    def ingest(self, content_type: str, body: str, started: float | None = None) -> None:
        """Parse one exposition and apply it (sample() after the fetch; the fuzz tests directly)."""
        try:
            self._ingest(content_type, body, started)
        finally:
            self.generation += 1  # what the exposition shows may have changed (exporter.web.prerender)

    def _ingest(self, content_type: str, body: str, started: float | None) -> None:
        started = time.monotonic() if started is None else started
        try:
            schema = self._schema or self._detect(content_type, body)
            models = parse_exposition(content_type, body, schema)
        except ParseError as err:
            self._failed(err.reason, str(err), started)
            return
        except Exception as err:  # the parser is third-party code fed by the network
            self._failed("parse", f"{type(err).__name__}: {err}"[:300], started)
            return
        now = self._clock.now()
        rejected = sum(r.rejected for r in models.values())
        with self._lock:
            models = self._cap_series(models, now)
            raw, created = _flatten(models)
            if self._provisional:
                self._confirm_restored(raw)
            resets_before, overflows_before = self._totals.resets, self._totals.overflows
            deltas = self._totals.update(raw, created, now)
            self._gauges = {name: dict(r.gauges) for name, r in models.items()}
            self.cached_input_source = _cached_source(models)
            for name in models:
                self._last_seen[name] = now
                window = self._windows.setdefault(name, SlidingWindow(self._window_s))
                window.add(now, self._model_tokens(name))
                inputs = self._input_windows.setdefault(name, SlidingWindow(self._window_s))
                inputs.add(now, self._totals.totals.get((name, "counter", "input_tokens"), 0.0))
            self.tokens_flowing = any(delta > 0 for (_, kind, quantity), delta in deltas.items()
                                      if kind == "counter" and quantity in ("input_tokens", "output_tokens"))
            self._price_with_apis(now, deltas)
            self._track_capacity(now)
        if self._totals.resets != resets_before:
            log.warning("engine counters went backwards (restart?) engine=%s series_groups=%d; those series count "
                        "from their new values", self.name, self._totals.resets - resets_before)
        for reason, count, why in (("bad_value", rejected, "not a finite count"),
                                   ("overflow", self._totals.overflows - overflows_before, "its sum would overflow")):
            if count:
                self._cap_hit(reason, f"{count} series left out of one scrape ({why})")
        self.health.success(now, time.monotonic() - started)

    def _detect(self, content_type: str, body: str):
        """The first engine map whose token counters the exposition serves (engines[].kind auto)."""
        schema = schemas.detect(sample_names(content_type, body), self._maps)
        if schema is None:
            raise UnknownEngineError(f"no engine map matches the exposition (kinds tried: {', '.join(self._maps)}); "
                                     f"it serves {describe_families(content_type, body)}: set engines[].kind or "
                                     "add its names under engine_maps")
        with self._lock:
            self._schema = schema
        log.info("engine kind detected engine=%s kind=%s", self.name, schema.kind)
        return schema

    def _failed(self, reason: str, detail: str, started: float) -> None:
        with self._lock:
            self._gauges = {}  # running/waiting are unknown now; totals stay
            self.tokens_flowing = False
        self.health.failure(reason, detail, time.monotonic() - started)

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
                spent = self._api_spend.get((model, api.name), 0.0) + cost
                if countable(spent):  # counts near 1e308 priced: refused like an overflowing sum
                    self._api_spend[(model, api.name)] = spent
                else:
                    self._totals.overflows += 1
            self.api_windows[api.name].add(now, sum(v for (m, a), v in self._api_spend.items() if a == api.name))

    def _track_capacity(self, now: float) -> None:
        self._engine_window.add(now, sum(self._model_tokens(m) for m in self._model_names()))
        span = self._engine_window.span(now)
        if span:
            t0, v0, t1, v1 = span
            rate = (v1 - v0) / (t1 - t0)
            if countable(rate):  # a rate of counts near 1e308 is no peak worth keeping (or saving)
                self._observed_peak = max(self._observed_peak, rate)

    def capacity(self) -> tuple[float | None, str]:
        if self.config.capacity_tokens_per_s:
            return self.config.capacity_tokens_per_s, "configured"
        return (self._observed_peak or None), "observed"

    def windows(self) -> list:
        """The sliding windows its figures are read from at snapshot time (call with the state lock held)."""
        return [*self._windows.values(), *self._input_windows.values(), *self.api_windows.values()]

    def model_totals(self) -> list[ModelTotals]:
        """Call with the state lock held."""
        if self._provisional:
            return []  # restored after a crash: not shown until a scrape confirms the totals
        now = self._clock.now()
        capacity, capacity_source = self.capacity()
        out = []
        for model in sorted(self._model_names()):
            totals = self._totals.totals
            window, inputs = self._windows.get(model), self._input_windows.get(model)
            out.append(ModelTotals(
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
                input_window=inputs.span(now) if inputs else None,
                api_tiers={api.name: api.tier for api in self.apis},
            ))
        return out

    def work_totals(self) -> dict[str, Work]:
        """Each model's counts since start, as exporter.modelsplit weighs them (call with the state
        lock held); the phase seconds are None where the engine serves no such counter."""
        if self._provisional:
            return {}
        totals = self._totals.totals
        return {model: Work(*(totals.get((model, "counter", q), 0.0) for q in (
                    "input_tokens", "output_tokens", "cached_input_tokens")),
                    *(totals.get((model, "counter", q)) for q in ("prefill_seconds", "decode_seconds")))
                for model in self._model_names()}

    def requests_total(self) -> float:
        """Finished requests over all models (call with the state lock held)."""
        return sum(v for k, v in self._totals.totals.items() if k[1] == "requests")

    def _model_names(self) -> set[str]:
        return {key[0] for key in self._totals.totals}

    def _model_tokens(self, model: str) -> float:
        totals = self._totals.totals
        return sum(totals.get((model, "counter", f"{d}_tokens"), 0.0) for d in TOKEN_DIRECTIONS)

    def _cap_series(self, models: dict[str, ModelReading], now: float) -> dict[str, ModelReading]:
        """Bound cardinality (call with the state lock held). Known models are always kept; new
        ones are admitted while fewer than max_models are tracked, after evicting models that have
        been absent for RETIRE_AFTER_S; the rest are dropped and counted."""
        long_names = [m for m in models if len(m) > MAX_LABEL_LENGTH]
        if long_names:
            models = {m: r for m, r in models.items() if len(m) <= MAX_LABEL_LENGTH}
            self._cap_hit("label_too_long", f"dropped {len(long_names)} model name(s) over {MAX_LABEL_LENGTH} characters")
        limit = self.config.max_models
        known = self._model_names()
        new = sorted(m for m in models if m not in known)
        if len(known) + len(new) > limit:
            self._evict_retired(known, models, now, len(known) + len(new) - limit)
            room = max(limit - len(self._model_names()), 0)
            kept = {m: r for m, r in models.items() if m in known}
            kept.update((m, models[m]) for m in new[:room])
            if len(kept) < len(models):
                self._cap_hit("too_many_models", f"exposes {len(models)} models ({len(known | set(new))} counting those "
                              f"tracked before), over max_models={limit}; dropping {len(models) - len(kept)}")
            models = kept
        for reading in models.values():
            if len(reading.requests) > MAX_REASONS or any(len(r) > MAX_LABEL_LENGTH for r in reading.requests):
                self._fold_reasons(reading)
        return models

    def _fold_reasons(self, reading: ModelReading) -> None:
        """At most MAX_REASONS finished reasons: the largest counts keep their label, the rest are
        summed into OTHER_REASON (series by series), so the total number of requests stays exact."""
        requests = reading.requests
        valid = {r: v for r, v in requests.items() if len(r) <= MAX_LABEL_LENGTH and r != OTHER_REASON}
        keep = set(sorted(valid, key=lambda r: (-valid[r], r))[:MAX_REASONS - 1])
        folded: dict[tuple, float] = {}
        for (kind, quantity, labels), value in reading.series.items():
            key = (kind, quantity if kind != "requests" or quantity in keep else OTHER_REASON, labels)
            folded[key] = folded.get(key, 0.0) + value
        reading.series = folded
        reading.created = {}  # a folded series has no one birth time
        self._cap_hit("too_many_series", f"{len(requests)} finished_reason values for one model, over {MAX_REASONS}; "
                      f"the rest are summed as {OTHER_REASON!r}")

    def _evict_retired(self, known: set[str], present: dict, now: float, wanted: int) -> None:
        retired = sorted((self._last_seen.get(m, now), m) for m in known if m not in present)
        for seen, model in retired[:wanted]:
            if now - seen < RETIRE_AFTER_S:
                break
            self._totals.forget(lambda key, model=model: key[0] == model)
            self._windows.pop(model, None)
            self._input_windows.pop(model, None)
            self._last_seen.pop(model, None)
            for key in [k for k in self._api_spend if k[0] == model]:
                del self._api_spend[key]
            log.info("engine=%s model=%s absent for %.0fs: its series end to make room for a new model",
                     self.name, model, now - seen)

    def _cap_hit(self, reason: str, detail: str) -> None:
        self.health.count(reason)
        if reason not in self._capped_logged:
            log.warning("engine=%s %s (reason=%s; logged once)", self.name, detail, reason)
            self._capped_logged.add(reason)

    # -- persisted state (exporter.storage) ---------------------------------------------------

    def export_state(self) -> dict:
        """Everything cumulative, JSON-ready (call with the state lock held)."""
        return {"url": redact(self.config.url), "totals": self._totals.state(),
                "api_spend": [[m, a, v] for (m, a), v in self._api_spend.items()],
                "api_tiers": {api.name: api.tier for api in self.apis},
                "last_seen": self._last_seen, "observed_peak": self._observed_peak}

    def restore_state(self, state: dict, now: float, provisional: bool = False) -> bool:
        """Continue from a saved state: totals go on from where they were and the next scrape
        counts what the engine served meanwhile (or, if it restarted, since its restart). A state
        saved for another URL is not ours. Call before the first sample.

        provisional: the previous run stopped without a final save (a crash), so it may have
        exposed more than was saved. Then the models stay out of the snapshot until the first
        scrape, and if the engine restarted meanwhile the saved totals are dropped: the
        tokens counted after the last save are lost with its counters, and totals continued below
        a value Prometheus already scraped would read as a reset and count everything again."""
        if state.get("url") != redact(self.config.url):
            return False
        self._totals.restore(state["totals"])
        self._api_spend = {(m, a): float(v) for m, a, v in state["api_spend"]}
        tiers = {a: "standard" for _, a, _ in state["api_spend"]}  # files before tiers: all standard
        self._forget_repriced(self.apis, {**tiers, **state.get("api_tiers", {})})
        self._last_seen = {str(m): min(float(t), now) for m, t in state["last_seen"].items()}
        self._observed_peak = float(state["observed_peak"])
        self._provisional = provisional
        return True

    def _confirm_restored(self, raw: dict[tuple, float]) -> None:
        self._provisional = False
        if self._totals.would_reset(raw):
            self._totals, self._api_spend = SeriesTotals(), {}
            self._totals.restart(from_zero=True)  # what it counted since its restart is all new
            log.info("engine=%s restarted while the exporter was down after an unclean stop: its saved totals "
                     "are dropped and it counts from its restart", self.name)


def _flatten(models: dict[str, ModelReading]) -> tuple[dict[tuple, float], dict[tuple, float]]:
    """Every series of every model, (model, kind, quantity, labels) -> value, and their _created."""
    raw, created = {}, {}
    for name, reading in models.items():
        for (kind, quantity, labels), value in reading.series.items():
            raw[(name, kind, quantity, labels)] = value
        for (kind, quantity, labels), born in reading.created.items():
            created[(name, kind, quantity, labels)] = born
    return raw, created


def _cached_source(models: dict[str, ModelReading]) -> str:
    """How this engine's cached input tokens are known: counter, prefix_cache_hits or none."""
    readings = [r for r in models.values() if "cached_input_tokens" in r.counters]
    if not readings:
        return "none"
    return "prefix_cache_hits" if any(r.cached_estimated for r in readings) else "counter"
