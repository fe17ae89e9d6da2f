"""One consistent view of everything the exporter knows, taken under the state lock.

/metrics, the landing page and the demo's terminal summary all render from this, so they agree.
The derived economics (docs/cost-model.md) are computed here, from the windows and totals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from exporter import costmodel
from exporter.accounting import SpendTotals
from exporter.engines.source import ModelTotals
from exporter.gpu.source import GpuReading
from exporter.health import HealthStatus
from exporter.modelsplit import PHASES


@dataclass(frozen=True)
class ApiComparison:
    api: str
    equivalent_spend: float  # what the API would have billed for this model's tokens since start
    price_per_million: float | None  # this traffic's blended API price (cached input included)
    breakeven_utilization: float | None  # above 1: the hardware never beats this API
    tier: str = "standard"  # the API's tier these prices are (catalog.TIERS)


@dataclass(frozen=True)
class ModelFigures:
    model: ModelTotals
    tokens_per_second: float | None = None  # over the live window
    cost_per_million: float | None = None  # allocation basis, over the live window
    cost_per_million_full: float | None = None  # the published figure: at 100% utilization
    utilization: float | None = None  # tokens_per_second / capacity
    energy_per_token_joules: float | None = None
    apis: list[ApiComparison] = field(default_factory=list)
    phase_spend: dict[str, float] = field(default_factory=dict)  # prefill, decode -> spend since start
    cost_per_million_by_direction: dict[str, float] = field(default_factory=dict)  # input, output; live window
    phase_method: str | None = None  # engine_time | ratio: how the phases were weighed
    cache_savings: float | None = None  # cached input tokens at the prefill cost per computed token


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is, as llmcost_engine_info says: its kind (configured, or detected: `auto`
    until the first good scrape) and where its cached input tokens come from."""
    name: str
    kind: str
    cached_input_source: str  # counter | prefix_cache_hits (an estimate) | none


@dataclass(frozen=True)
class ExporterInfo:
    """What the exporter itself knows besides samples: pricing, node, discovered pods, reloads."""
    pricing: dict[str, str]  # llmcost_pricing_info labels: mode, currency, price_source
    node: dict[str, str] | None  # llmcost_node_info labels; None without Kubernetes or before the first read
    engine_pods: dict[str, tuple[str, str]]  # discovered engine -> (namespace, pod)
    reload_successful: bool
    reload_success_time: float | None
    api_prices: list  # catalog.ApiRates of every API and tier some engine is compared with
    # Engines with pods on other nodes: their cost per token and what follows from it needs the
    # spend of every node, which only the recording rules have (cluster_engine_model:...).
    spanning_other_nodes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Snapshot:
    time: float
    window_s: float
    gpus: list[GpuReading]
    models: list[ModelFigures]
    spend: SpendTotals | None
    health: list[HealthStatus]
    engine_resets: dict[str, int]
    payback_months: dict[tuple[str, str], float | None] = field(default_factory=dict)  # owned mode, per (API, tier)
    info: ExporterInfo | None = None
    engines: list[EngineInfo] = field(default_factory=list)  # every engine with totals, retired ones included

    @staticmethod
    def empty() -> Snapshot:
        return Snapshot(0.0, 0.0, [], [], None, [], {})


def take_snapshot(clock, config, gpu_source, engines, accountant, retired=frozenset(), extra_health=(), info=None,
                  model_spend=None) -> Snapshot:
    """Call with the state lock held. `retired`: engines that are gone but keep their (frozen)
    totals for a while: no gauges, no health; `extra_health`: other sources (Kubernetes);
    `model_spend`: exporter.modelsplit.ModelSpend, the split within each engine."""
    models = []
    for engine in engines:
        engine_models = engine.model_totals()
        if engine.name in retired:
            engine_models = [dataclasses.replace(m, gauges={}) for m in engine_models]
        for m in engine_models:
            split = _split_figures(m, model_spend) if model_spend is not None else {}
            figures = _figures(m, engine_models, accountant, model_spend, split)
            models.append(_this_node_only(figures) if info and engine.name in info.spanning_other_nodes else figures)
    health = ([gpu_source.health.status()] if gpu_source else []) + \
        [e.health.status() for e in engines if e.name not in retired] + [h.status() for h in extra_health]
    now = clock.now()
    return Snapshot(
        time=now,
        window_s=config.window,
        gpus=gpu_source.readings() if gpu_source else [],
        models=models,
        spend=accountant.totals(),
        health=health,
        engine_resets={e.name: e.resets for e in engines},
        payback_months=_payback(now, config, engines, accountant) if config.pricing.mode == "owned" else {},
        info=info,
        engines=[EngineInfo(e.name, e.kind, e.cached_input_source) for e in engines],
    )


def _this_node_only(figures: ModelFigures) -> ModelFigures:
    """The figures of an engine that also runs on other nodes, without those this node cannot know:
    per token it costs every node's spend (absent rather than low: the rules give it)."""
    return dataclasses.replace(figures, cost_per_million=None, cost_per_million_full=None,
                               cost_per_million_by_direction={},
                               apis=[dataclasses.replace(a, breakeven_utilization=None) for a in figures.apis])


def _figures(model: ModelTotals, engine_models: list[ModelTotals], accountant, model_spend=None,
             split: dict | None = None) -> ModelFigures:
    """`split`: the ModelFigures fields of the split within the engine (_split_figures)."""
    split = split or {}
    if model.window is None:
        return ModelFigures(model, apis=_apis(model, None), **split)
    t0, tokens0, t1, tokens1 = model.window
    rate = (tokens1 - tokens0) / (t1 - t0)
    engine_tokens = sum(m.window[3] - m.window[1] for m in engine_models
                        if m.window is not None and m.window[0] == t0 and m.window[2] == t1)
    spend = accountant.spend_between(model.engine, t0, t1)
    energy = accountant.energy_between(model.engine, t0, t1)
    cost = costmodel.cost_per_million(spend, engine_tokens) if spend is not None else None
    if len(engine_models) > 1 and model_spend is not None:  # the model's own share of the engine's spend
        own = _phase_between(model_spend, model, t0, t1)
        cost = costmodel.cost_per_million(sum(own.values()), tokens1 - tokens0) if len(own) == 2 else None
    full = None
    if spend is not None and model.capacity:
        hourly = spend / (t1 - t0) * costmodel.SECONDS_PER_HOUR
        full = costmodel.cost_per_million_at_full_utilization(hourly, model.capacity)
    return ModelFigures(
        model, rate, cost, full,
        utilization=costmodel.utilization(rate, model.capacity) if model.capacity else None,
        energy_per_token_joules=energy / engine_tokens if energy is not None and engine_tokens > 0 else None,
        apis=_apis(model, full), **split)


def _phase_between(model_spend, model: ModelTotals, t0: float, t1: float) -> dict[str, float]:
    """phase -> the model's spend on it in [t0, t1], for the phases whose ledger covers t0."""
    spent = {phase: model_spend.between(model.engine, model.model, phase, t0, t1) for phase in PHASES}
    return {phase: value for phase, value in spent.items() if value is not None}


def _split_figures(m: ModelTotals, model_spend) -> dict:
    """The model's spend by phase, its cost per 1M input and output tokens, its cache savings: the
    ModelFigures fields, given to its constructor (dataclasses.replace was a fifth of a snapshot)."""
    phase_spend = model_spend.phase_totals(m.engine, m.model)
    by_direction: dict[str, float] = {}
    if m.window is not None and m.input_window is not None and m.input_window[0::2] == m.window[0::2]:
        t0, tokens0, t1, tokens1 = m.window
        inputs = m.input_window[3] - m.input_window[1]
        spent = _phase_between(model_spend, m, t0, t1)
        for direction, phase, tokens in (("input", "prefill", inputs), ("output", "decode", tokens1 - tokens0 - inputs)):
            if phase in spent and tokens > 0:
                by_direction[direction] = spent[phase] / tokens * costmodel.PER_MILLION
    return {"phase_spend": phase_spend, "cost_per_million_by_direction": by_direction,
            "phase_method": model_spend.methods.get(m.engine) if phase_spend else None,
            "cache_savings": model_spend.savings.get((m.engine, m.model), 0.0) if phase_spend else None}


def _apis(model: ModelTotals, cost_full: float | None) -> list[ApiComparison]:
    tokens = sum(model.tokens.values())
    out = []
    for api, spend in sorted(model.api_equivalent.items()):
        price = costmodel.cost_per_million(spend, tokens)
        breakeven = costmodel.breakeven_utilization(cost_full, price) if cost_full is not None and price else None
        out.append(ApiComparison(api, spend, price, breakeven, model.api_tiers.get(api, "standard")))
    return out


def _payback(now: float, config, engines, accountant) -> dict[tuple[str, str], float | None]:
    """Owned hardware: capex / (API-equivalent monthly - opex monthly), both at the window's rate."""
    opex = accountant.opex_window.span(now)
    if opex is None:
        return {}
    month_s = config.pricing.hours_per_month * costmodel.SECONDS_PER_HOUR
    opex_monthly = (opex[3] - opex[1]) / (opex[2] - opex[0]) * month_s
    api_monthly: dict[tuple[str, str], float] = {}
    for engine in engines:
        tiers = {rates.name: rates.tier for rates in engine.apis}
        for api, window in engine.api_windows.items():
            span = window.span(now)
            if span:
                key = (api, tiers.get(api, "standard"))
                api_monthly[key] = api_monthly.get(key, 0.0) + (span[3] - span[1]) / (span[2] - span[0]) * month_s
    return {key: costmodel.payback_months(config.pricing.owned.capex, monthly, opex_monthly)
            for key, monthly in sorted(api_monthly.items())}


def engine_savings(snap) -> dict[tuple[str, str, str], float]:
    """(engine, api, tier) -> API-equivalent minus self-hosted spend since start, as llmcost_api_savings."""
    partial = snap.info.spanning_other_nodes if snap.info else frozenset()  # the rules have theirs
    engine_spend = snap.spend.engines if snap.spend else {}
    savings: dict[tuple[str, str, str], float] = {}
    for f in snap.models:
        if f.model.engine in partial:
            continue
        for c in f.apis:
            key = (f.model.engine, c.api, c.tier)
            savings[key] = savings.get(key, -engine_spend.get(f.model.engine, 0.0)) + c.equivalent_spend
    return savings


def engine_gpu_utilization(snap) -> dict[str, float]:
    """engine -> the busy share of the GPUs it holds, each weighted by the fraction it holds of it.
    GPUs down or without a utilization reading (a MIG-enabled GPU) are left out; a GPU shared by
    time-slicing or MIG reports the whole GPU's utilization, so for those it is the GPU's, not the
    engine's own (an estimate, docs/cost-model.md)."""
    if snap.spend is None:
        return {}
    utilization = {g.index: g.utilization_ratio for g in snap.gpus if g.up and g.utilization_ratio is not None}
    out = {}
    for engine, held in snap.spend.held.items():
        weights = {index: fraction for index, fraction in held.items() if index in utilization and fraction > 0}
        if weights:
            out[engine] = sum(utilization[i] * f for i, f in weights.items()) / sum(weights.values())
    return out
