"""One consistent view of everything the exporter knows, taken under the state lock.

/metrics, the landing page and the demo's terminal summary all render from this, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter import costmodel
from exporter.accounting import SpendSnapshot
from exporter.engines.source import ModelSnapshot
from exporter.gpu.source import GpuReading
from exporter.health import HealthSnapshot


@dataclass(frozen=True)
class ModelFigures:
    model: ModelSnapshot
    tokens_per_second: float | None  # over the live window
    cost_per_million: float | None  # allocation basis, over the live window


@dataclass(frozen=True)
class Snapshot:
    time: float
    window_s: float
    gpus: list[GpuReading]
    models: list[ModelFigures]
    spend: SpendSnapshot | None
    health: list[HealthSnapshot]
    engine_resets: dict[str, int]

    @staticmethod
    def empty() -> "Snapshot":
        return Snapshot(0.0, 0.0, [], [], None, [], {})


def take(clock, window_s, gpu_source, engines, accountant) -> Snapshot:
    """Call with the state lock held."""
    models = []
    for engine in engines:
        engine_models = engine.snapshot()
        for m in engine_models:
            models.append(_figures(m, engine_models, accountant))
    health = ([gpu_source.health.snapshot()] if gpu_source else []) + [e.health.snapshot() for e in engines]
    return Snapshot(
        time=clock.now(),
        window_s=window_s,
        gpus=gpu_source.readings() if gpu_source else [],
        models=models,
        spend=accountant.snapshot(),
        health=health,
        engine_resets={e.name: e.resets for e in engines},
    )


def _figures(model: ModelSnapshot, engine_models: list[ModelSnapshot], accountant) -> ModelFigures:
    if model.window is None:
        return ModelFigures(model, None, None)
    t0, tokens0, t1, tokens1 = model.window
    tokens = tokens1 - tokens0
    rate = tokens / (t1 - t0)
    # An engine's spend buys all of its models' tokens: price them all at the engine's rate.
    engine_tokens = sum(m.window[3] - m.window[1] for m in engine_models
                        if m.window is not None and m.window[0] == t0 and m.window[2] == t1)
    spend = accountant.spend_between(model.engine, t0, t1)
    cost = costmodel.cost_per_million(spend, engine_tokens) if spend is not None else None
    return ModelFigures(model, rate, cost)
