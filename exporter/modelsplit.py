"""Splits each engine's spend among its models, each model's into prefill and decode, and prices
the input tokens its prefix cache saved. Formulas and where they are estimates: docs/cost-model.md,
"Per model, per phase, per cache".

On every tick an engine's spend (exporter.accounting) is divided by work, measured in tokens:

    prefill work = computed input tokens × w_prefill     (computed = input − cached)
    decode work  = output tokens × w_decode

over the live window (none in it: since start; none ever: evenly). The per-token weights are the
engine's own seconds per token where it serves its phase times (method `engine_time`:
w_prefill = Σ prefill seconds / Σ computed input tokens, w_decode = Σ decode seconds / Σ output
tokens, over all its models since start), else `attribution.prefill_token_weight` and 1 (method
`ratio`). A model gets the engine's spend times its share of the work, and each phase the model's
spend times its share of the model's work: both splits add up to what is split, on every tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.accounting import Ledger
from exporter.series import SlidingWindow

PHASES = ("prefill", "decode")
ENGINE_TIME, RATIO = "engine_time", "ratio"


@dataclass(frozen=True)
class Work:
    """A model's counts since start, as its engine source keeps them."""
    input_tokens: float
    output_tokens: float
    cached_input_tokens: float
    prefill_seconds: float | None = None  # None: the engine serves no such counter
    decode_seconds: float | None = None

    @property
    def computed_input(self) -> float:
        """Input tokens the engine computed: the prefix cache's hits cost no prefill."""
        return max(self.input_tokens - self.cached_input_tokens, 0.0)


def token_weights(works: Iterable[Work], prefill_token_weight: float) -> tuple[float, float, str]:
    """(w_prefill, w_decode, method): seconds per computed input and per output token from the
    engine's phase times where every model has both and every total is positive, else the ratio."""
    works = list(works)
    if works and all(w.prefill_seconds is not None and w.decode_seconds is not None for w in works):
        prefill = sum(w.prefill_seconds or 0.0 for w in works)
        decode = sum(w.decode_seconds or 0.0 for w in works)
        computed, output = sum(w.computed_input for w in works), sum(w.output_tokens for w in works)
        if min(prefill, decode, computed, output) > 0:
            weights = (prefill / computed, decode / output)
            if all(math.isfinite(w) and w > 0 for w in weights):
                return weights[0], weights[1], ENGINE_TIME
    return prefill_token_weight, 1.0, RATIO


def proportional(amount: float, weights: dict) -> dict:
    """`amount` split in proportion to `weights` (evenly if they add up to nothing): the parts
    add up to `amount`, to float rounding."""
    total = sum(weights.values())
    if not weights:
        return {}
    if not (total > 0 and math.isfinite(total)):
        return {key: amount / len(weights) for key in weights}
    return {key: amount * (weight / total) for key, weight in weights.items()}  # fractions first: subnormal weights


def split_engine(amount: float, work: dict[str, tuple[float, float]]) -> dict[tuple[str, str], float]:
    """One engine's spend over its models' (prefill work, decode work): (model, phase) -> spend.
    A model with no work (its share came from an even split) is split evenly between phases."""
    out: dict[tuple[str, str], float] = {}
    for model, share in proportional(amount, {m: p + d for m, (p, d) in work.items()}).items():
        for phase, value in proportional(share, dict(zip(PHASES, work[model], strict=True))).items():
            out[(model, phase)] = value
    return out


class _Counts:
    """One model's computed input, output and cached tokens, sampled on every tick."""

    def __init__(self, window_s: float):
        self.computed, self.output = SlidingWindow(window_s), SlidingWindow(window_s)
        self.cached = 0.0  # at the last tick

    def add(self, now: float, work: Work) -> None:
        self.computed.add(now, work.computed_input)
        self.output.add(now, work.output_tokens)

    def recent(self, now: float, work: Work) -> tuple[float, float, float | None]:
        """(computed input, output) over the window, or since start before it has two samples,
        and when the window starts (None: since start)."""
        computed, output = self.computed.span(now), self.output.span(now)
        if computed is None or output is None:
            return work.computed_input, work.output_tokens, None
        # Never below 0: input − cached may dip by a rounding (or a cached count ahead of input).
        return max(computed[3] - computed[1], 0.0), max(output[3] - output[1], 0.0), computed[0]


class ModelSpend:
    """Cumulative spend per (engine, model, phase) and cache savings per (engine, model), with
    their recent history, fed by accrue() on every tick. Call with the state lock held."""

    def __init__(self, window_s: float, prefill_token_weight: float):
        self.prefill_token_weight = prefill_token_weight
        self._window_s = window_s
        self._ledgers: dict[str, dict[tuple[str, str], Ledger]] = {}  # engine -> (model, phase) -> its ledger
        self._counts: dict[tuple[str, str], _Counts] = {}
        self._pending: dict[str, float] = {}  # engine -> spend before it served any model
        self.savings: dict[tuple[str, str], float] = {}  # (engine, model) -> cache savings since start
        self.methods: dict[str, str] = {}  # engine -> how its phases were weighed on the last tick
        self._last_time: float | None = None
        self._restored: set[str] = set()  # engines with saved totals the accountant has not listed yet

    def accrue(self, now: float, dt: float, amounts: dict[str, float], works: dict[str, dict[str, Work]]) -> None:
        """`amounts`: each engine's spend in this tick (every engine with a ledger: 0 for the
        inactive); `works`: each engine's models' counts since start. An engine with no model yet
        keeps its spend pending until it has one: then its models' spend adds up to the engine's."""
        if self._last_time is None:
            self._last_time = now - dt  # the ledgers open where this tick's interval starts
            for ledgers in self._ledgers.values():  # restored ones included
                for ledger in ledgers.values():
                    ledger.add(self._last_time, 0.0, 0.0)
        self._restored -= set(amounts)
        for engine in [e for e in self._ledgers if e not in amounts and e not in self._restored]:
            del self._ledgers[engine]  # an engine the accountant forgot
        tables: tuple[dict, ...] = (self._counts, self.savings)
        for table in tables:
            for key in [k for k in table if k[0] not in amounts and k[0] not in self._restored]:
                del table[key]
        for engine, amount in amounts.items():
            models = works.get(engine) or {}
            amount += self._pending.pop(engine, 0.0)
            if not models:
                self._pending[engine] = amount
                continue
            self._accrue_engine(engine, now, dt, amount, models)
        self._last_time = now

    def _accrue_engine(self, engine: str, now: float, dt: float, amount: float, models: dict[str, Work]) -> None:
        w_prefill, w_decode, self.methods[engine] = token_weights(models.values(), self.prefill_token_weight)
        for model, counts in models.items():
            self._counts.setdefault((engine, model), _Counts(self._window_s)).add(now, counts)
        recent = {m: self._counts[(engine, m)].recent(now, w) for m, w in models.items()}
        work = {m: (c * w_prefill, o * w_decode) for m, (c, o, _) in recent.items()}
        if not any(p + d > 0 for p, d in work.values()):  # idle through the window: by the mix since start
            work = {m: (w.computed_input * w_prefill, w.output_tokens * w_decode) for m, w in models.items()}
        spend = split_engine(amount, work)
        for key in self._ledgers.get(engine, {}):
            spend.setdefault(key, 0.0)  # a model gone from the engine: its ledgers stay current
        for (model, phase), value in spend.items():
            self._ledger(engine, model, phase).add(now, value, dt)
        for model, work_now in models.items():
            self._save(engine, model, now, work_now, recent[model])

    def _ledger(self, engine: str, model: str, phase: str) -> Ledger:
        ledgers = self._ledgers.setdefault(engine, {})
        ledger = ledgers.get((model, phase))
        if ledger is None:
            ledger = ledgers[(model, phase)] = Ledger(self._window_s)
            if self._last_time is not None:  # opened at the last tick, as the accountant does
                ledger.add(self._last_time, 0.0, 0.0)
        return ledger

    def _save(self, engine: str, model: str, now: float, work: Work, recent: tuple) -> None:
        """Cache savings: the cached input tokens since the last tick at the model's prefill cost
        per computed token, over the window (or since start)."""
        counts = self._counts[(engine, model)]
        new_cached, counts.cached = max(work.cached_input_tokens - counts.cached, 0.0), work.cached_input_tokens
        computed, _, since = recent
        prefill = self._ledgers[engine][(model, "prefill")]
        spent = prefill.total if since is None else prefill.between(since, now, now)
        if not new_cached or computed <= 0 or spent is None:
            return  # nothing cached, or no prefill cost per token to price it with
        self.savings[(engine, model)] = self.savings.get((engine, model), 0.0) + new_cached * spent / computed

    # -- persisted totals (exporter.storage) ---------------------------------------------------

    def export_state(self) -> dict:
        """Every cumulative figure, JSON-ready: the totals resume where Prometheus last saw them."""
        return {"spend": [[*key, ledger.total] for key, ledger in self._all()],
                "savings": [[*key, value] for key, value in self.savings.items()],
                "cached": [[*key, counts.cached] for key, counts in self._counts.items()],
                "pending": dict(self._pending)}

    def restore_state(self, state: dict, after_crash: bool = False) -> None:
        """The inverse of export_state(), before the first tick. Cached tokens counted before the
        save are not priced again: the engine sources continue their totals too. After a crash the
        spend and savings totals start again from 0 (a reset, which Prometheus handles): they may
        have been exposed above the last save, and the first tick's split need not bring each
        model back above what was exposed, which Prometheus would read as a reset of the whole."""
        if not after_crash:
            for engine, model, phase, total in state.get("spend", []):
                ledger = self._ledgers.setdefault(str(engine), {})[(str(model), str(phase))] = Ledger(self._window_s)
                ledger.total = float(total)
            self.savings = {(str(e), str(m)): float(v) for e, m, v in state.get("savings", [])}
        for engine, model, cached in state.get("cached", []):
            self._counts.setdefault((str(engine), str(model)), _Counts(self._window_s)).cached = float(cached)
        self._pending = {str(e): float(v) for e, v in state.get("pending", {}).items()}
        self._restored = set(self._ledgers) | set(self._pending)

    # -- reading --------------------------------------------------------------------------

    def totals(self) -> dict[tuple[str, str, str], float]:
        """(engine, model, phase) -> spend since start."""
        return {key: ledger.total for key, ledger in self._all()}

    def _all(self):
        """((engine, model, phase), ledger) of every ledger."""
        return (((engine, *key), ledger) for engine, ledgers in self._ledgers.items() for key, ledger in ledgers.items())

    def phase_totals(self, engine: str, model: str) -> dict[str, float]:
        """phase -> the model's spend on it since start; empty before its first tick."""
        ledgers = self._ledgers.get(engine, {})
        return {phase: ledgers[(model, phase)].total for phase in PHASES if (model, phase) in ledgers}

    def between(self, engine: str, model: str, phase: str, t0: float, t1: float) -> float | None:
        ledger = self._ledgers.get(engine, {}).get((model, phase))
        return ledger.between(t0, t1, self._last_time) if ledger else None
