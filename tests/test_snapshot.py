"""exporter.snapshot.take_snapshot and engine_savings on their own: a manual clock, a real config, and
fakes for the engines and the accountant (constant spend and joules per second), so each derived
figure (docs/cost-model.md) can be worked out by hand.
"""

import threading

import pytest
from fakes import FakeGpus, model_totals, spend_totals

from exporter.catalog import ApiRates
from exporter.accounting import Accountant
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.health import SourceHealth
from exporter.series import SlidingWindow
from exporter.snapshot import ApiComparison, ExporterInfo, ModelFigures, Snapshot, engine_savings, take_snapshot

REL = 1e-9
WINDOW_S = 600.0
CLOUD = {"mode": "cloud", "cloud": {"hourly": 3.6}}


def config(**pricing):
    return from_dict({"pricing": pricing or CLOUD, "gpu": {"backend": "none"}, "window": "10m"}, environ={})


def window(*samples):
    """A SlidingWindow of the live window's length holding (time, cumulative value) samples."""
    w = SlidingWindow(WINDOW_S)
    for t, v in samples:
        w.add(t, v)
    return w


class FakeEngine:
    def __init__(self, name, *models, resets=0, api_windows=None, kind="vllm", cached_input_source="counter", apis=()):
        self.name = name
        self.apis = list(apis)  # catalog.ApiRates: the tier of each API in api_windows (absent: standard)
        self.kind = kind
        self.cached_input_source = cached_input_source
        self.models = list(models)
        self.resets = resets
        self.api_windows = api_windows or {}
        self.health = SourceHealth("engine", name)

    def model_totals(self):
        return list(self.models)


class FakeAccountant:
    """Each engine spends and draws at a constant rate per second from `since` on (before it: no ledger)."""

    def __init__(self, since, spend_per_s=None, joules_per_s=None, totals=None):
        self.since = since
        self.spend_per_s = spend_per_s or {}
        self.joules_per_s = joules_per_s or {}
        self.opex_window = window()
        self._totals = totals or spend_totals()

    @staticmethod
    def _between(rates, engine, t0, t1, since):
        return rates[engine] * (t1 - t0) if engine in rates and t0 >= since else None

    def spend_between(self, engine, t0, t1):
        return self._between(self.spend_per_s, engine, t0, t1, self.since)

    def energy_between(self, engine, t0, t1):
        return self._between(self.joules_per_s, engine, t0, t1, self.since)

    def totals(self):
        return self._totals


@pytest.fixture
def clock():
    return ManualClock()


def snapshot(clock, engines, accountant, cfg=None, gpus=None, **kwargs):
    return take_snapshot(clock, cfg or config(), gpus, engines, accountant, **kwargs)


def figures(snap):
    """(engine, model) -> ModelFigures."""
    return {(f.model.engine, f.model.model): f for f in snap.models}


# --- the live figures ------------------------------------------------------------------------------------------


def test_cost_per_million_is_the_engines_window_spend_over_all_its_models_tokens(clock):
    t = clock.now()
    e = FakeEngine("e", model_totals("e", "m1", window=(t - 300, 0.0, t, 30_000.0)),
                   model_totals("e", "m2", window=(t - 300, 5_000.0, t, 15_000.0)))
    f = FakeEngine("f", model_totals("f", "m3", window=(t - 300, 0.0, t, 60_000.0)))
    accountant = FakeAccountant(t - 600, spend_per_s={"e": 0.001, "f": 0.002}, joules_per_s={"e": 400.0, "f": 0.0})
    got = figures(snapshot(clock, [e, f], accountant))
    # e: 0.3 over 300 s for 30 000 + 10 000 tokens = 7.5 per 1M, for both of its models
    assert got["e", "m1"].cost_per_million == pytest.approx(7.5, rel=REL)
    assert got["e", "m2"].cost_per_million == pytest.approx(7.5, rel=REL)
    # f: 0.6 for 60 000 tokens = 10 per 1M (its own spend, not the node's)
    assert got["f", "m3"].cost_per_million == pytest.approx(10.0, rel=REL)
    assert got["e", "m1"].tokens_per_second == pytest.approx(100.0, rel=REL)
    assert got["e", "m2"].tokens_per_second == pytest.approx(10_000 / 300, rel=REL)
    # 400 J/s x 300 s = 120 000 J for 40 000 tokens
    assert got["e", "m1"].energy_per_token_joules == pytest.approx(3.0, rel=REL)
    assert got["f", "m3"].energy_per_token_joules == 0.0


def test_cost_at_full_utilization_utilization_and_breakeven(clock):
    t = clock.now()
    model = model_totals("e", "m", window=(t - 300, 0.0, t, 30_000.0), capacity=400.0,
                         tokens={"input": 600_000.0, "output": 400_000.0},
                         api_equivalent={"b-api": 1.25, "a-api": 5.0})
    accountant = FakeAccountant(t - 600, spend_per_s={"e": 0.001}, joules_per_s={"e": 0.0})
    got = figures(snapshot(clock, [FakeEngine("e", model)], accountant))["e", "m"]
    # window spend 0.3 in 300 s = 3.6/h; at 400 tokens/s: 3.6 / (400 x 3600) x 1e6 = 2.5 per 1M
    assert got.cost_per_million_full == pytest.approx(2.5, rel=REL)
    assert got.utilization == pytest.approx(100.0 / 400.0, rel=REL)
    # blended: API spend since start / all tokens since start (1M); break-even = 2.5 / price
    assert [c.api for c in got.apis] == ["a-api", "b-api"]
    a, b = got.apis
    assert (a.equivalent_spend, a.price_per_million, a.breakeven_utilization) == pytest.approx((5.0, 5.0, 0.5), rel=REL)
    assert (b.equivalent_spend, b.price_per_million, b.breakeven_utilization) == pytest.approx((1.25, 1.25, 2.0), rel=REL)


def test_without_a_window_only_the_api_totals_remain(clock):
    model = model_totals("e", "m", capacity=400.0, tokens={"input": 2e6}, api_equivalent={"x": 1.0})
    got = figures(snapshot(clock, [FakeEngine("e", model)], FakeAccountant(0.0, {"e": 1.0}, {"e": 1.0})))["e", "m"]
    assert (got.tokens_per_second, got.cost_per_million, got.cost_per_million_full, got.utilization,
            got.energy_per_token_joules) == (None, None, None, None, None)
    assert got.apis == [ApiComparison("x", 1.0, pytest.approx(0.5, rel=REL), None)]


def test_a_window_without_tokens_has_no_cost_per_token_but_a_full_utilization_cost(clock):
    t = clock.now()
    model = model_totals("e", "m", window=(t - 300, 7.0, t, 7.0), capacity=400.0)
    accountant = FakeAccountant(t - 600, spend_per_s={"e": 0.001}, joules_per_s={"e": 400.0})
    got = figures(snapshot(clock, [FakeEngine("e", model)], accountant))["e", "m"]
    assert got.tokens_per_second == 0.0 and got.utilization == 0.0
    assert got.cost_per_million is None and got.energy_per_token_joules is None
    assert got.cost_per_million_full == pytest.approx(2.5, rel=REL)


def test_a_window_the_ledger_does_not_cover_has_no_spend_figures(clock):
    t = clock.now()
    model = model_totals("e", "m", window=(t - 300, 0.0, t, 30_000.0), capacity=400.0, api_equivalent={"x": 1.0},
                         tokens={"output": 1e6})
    accountant = FakeAccountant(t - 100, spend_per_s={"e": 0.001}, joules_per_s={"e": 400.0})  # opened 100 s ago
    got = figures(snapshot(clock, [FakeEngine("e", model)], accountant))["e", "m"]
    assert (got.cost_per_million, got.cost_per_million_full, got.energy_per_token_joules) == (None, None, None)
    assert got.utilization == pytest.approx(0.25, rel=REL)
    assert got.apis[0].breakeven_utilization is None


def test_the_real_accountants_ledger_gives_the_same_cost_per_million(clock):
    """The fake's interface is the real one's: a real Accountant at 3.6/h ticked every 10 s."""
    accountant = Accountant(config().pricing, FakeGpus(1), {"e": None}, clock, threading.RLock(), WINDOW_S)
    accountant.tick(0)
    for _ in range(60):
        clock.advance(10.0)
        accountant.tick(0)
    t = clock.now()
    model = model_totals("e", "m", window=(t - 295, 0.0, t - 5, 29_000.0), capacity=400.0)  # t0, t1 between ticks
    got = figures(snapshot(clock, [FakeEngine("e", model)], accountant))["e", "m"]
    assert got.cost_per_million == pytest.approx(0.29 / 29_000 * 1e6, rel=REL)
    assert got.cost_per_million_full == pytest.approx(2.5, rel=REL)


# --- what the snapshot holds ------------------------------------------------------------------------------------


def test_the_snapshot_holds_the_time_window_gpus_totals_resets_health_and_info(clock):
    gpus = FakeGpus(2)
    gpus.draw(10.0, 20.0)
    totals = spend_totals(engines={"e": 1.0})
    info = ExporterInfo({"mode": "cloud", "currency": "USD", "price_source": "configured"}, None, {}, True, 1.0, [])
    kube = SourceHealth("kubernetes", "node")
    snap = snapshot(clock, [FakeEngine("e", resets=3), FakeEngine("f", kind="auto", cached_input_source="none")],
                    FakeAccountant(0.0, totals=totals), gpus=gpus, extra_health=[kube], info=info)
    assert snap.time == clock.now() and snap.window_s == WINDOW_S
    assert [(g.index, g.energy_joules) for g in snap.gpus] == [(0, 10.0), (1, 20.0)]
    assert snap.spend is totals and snap.info is info
    assert snap.engine_resets == {"e": 3, "f": 0}
    assert [(e.name, e.kind, e.cached_input_source) for e in snap.engines] == [("e", "vllm", "counter"),
                                                                               ("f", "auto", "none")]
    assert [(h.source, h.name) for h in snap.health] == [("gpu", "nvml"), ("engine", "e"), ("engine", "f"),
                                                         ("kubernetes", "node")]
    assert snap.payback_months == {}  # cloud mode


def test_without_a_gpu_source_there_are_no_gpus_and_no_gpu_health(clock):
    snap = snapshot(clock, [FakeEngine("e")], FakeAccountant(0.0))
    assert snap.gpus == [] and [h.source for h in snap.health] == ["engine"]


def test_a_retired_engine_keeps_its_totals_but_loses_gauges_and_health(clock):
    gauges = {"requests_running": 3.0, "kv_cache_usage_ratio": 0.5}
    live = FakeEngine("live", model_totals("live", "m", tokens={"input": 5.0}, gauges=gauges))
    gone = FakeEngine("gone", model_totals("gone", "m", tokens={"input": 7.0}, requests={"stop": 2.0}, gauges=gauges),
                      resets=1)
    snap = snapshot(clock, [live, gone], FakeAccountant(0.0), retired=frozenset({"gone"}))
    got = figures(snap)
    assert got["live", "m"].model.gauges == gauges
    assert got["gone", "m"].model.gauges == {}
    assert got["gone", "m"].model.tokens == {"input": 7.0} and got["gone", "m"].model.requests == {"stop": 2.0}
    assert [h.name for h in snap.health] == ["live"]
    assert snap.engine_resets == {"live": 0, "gone": 1}


# --- payback (owned) ------------------------------------------------------------------------------------------------


def owned_config(capex):
    return config(mode="owned", owned={"capex": capex}, energy={"electricity_per_kwh": 0.25})


def test_payback_is_capex_over_the_monthly_api_equivalent_minus_opex(clock):
    t = clock.now()
    month_s = 730 * 3600
    e = FakeEngine("e", api_windows={"x": window((t - 600, 10.0), (t, 16.0)), "y": window((t - 600, 0.0), (t, 0.3))})
    f = FakeEngine("f", api_windows={"x": window((t - 300, 0.0), (t, 3.0)), "z": window((t, 1.0))})
    accountant = FakeAccountant(0.0)
    accountant.opex_window = window((t - 600, 0.0), (t, 0.6))  # 0.001 a second
    snap = snapshot(clock, [e, f], accountant, cfg=owned_config(99_864))
    # x: e and f each 0.01 a second; opex 0.001 a second. y: 0.0005 a second, less than opex: never.
    # z: one sample, no rate yet.
    x_monthly, opex_monthly = (0.01 + 0.01) * month_s, 0.001 * month_s
    assert snap.payback_months == {("x", "standard"): pytest.approx(99_864 / (x_monthly - opex_monthly), rel=REL),
                                   ("y", "standard"): None}
    assert snap.payback_months[("x", "standard")] == pytest.approx(2.0, rel=REL)


def test_payback_is_per_api_and_tier(clock):
    """Two engines compared with the same API at different tiers pay back against two API bills."""
    t = clock.now()
    month_s = 730 * 3600
    e = FakeEngine("e", api_windows={"x": window((t - 600, 10.0), (t, 16.0))})
    f = FakeEngine("f", api_windows={"x": window((t - 300, 0.0), (t, 3.0))}, apis=[ApiRates("x", "batch", 1.0, 2.0)])
    accountant = FakeAccountant(0.0)
    accountant.opex_window = window((t - 600, 0.0), (t, 0.6))  # 0.001 a second
    snap = snapshot(clock, [e, f], accountant, cfg=owned_config(99_864))
    assert snap.payback_months == {("x", "standard"): pytest.approx(99_864 / ((0.01 - 0.001) * month_s), rel=REL),
                                   ("x", "batch"): pytest.approx(99_864 / ((0.01 - 0.001) * month_s), rel=REL)}


def test_no_payback_before_the_opex_window_has_two_samples(clock):
    t = clock.now()
    e = FakeEngine("e", api_windows={"x": window((t - 600, 0.0), (t, 6.0))})
    accountant = FakeAccountant(0.0)
    accountant.opex_window = window((t, 0.6))
    assert snapshot(clock, [e], accountant, cfg=owned_config(1000)).payback_months == {}


# --- engine_savings ---------------------------------------------------------------------------------------------------


def snap_with(models, spend):
    return Snapshot(0.0, WINDOW_S, [], models, spend, [], {})


def test_savings_are_the_engines_api_equivalent_minus_its_spend_counted_once_per_api():
    def model(engine, name, **apis):
        return ModelFigures(model_totals(engine, name), apis=[ApiComparison(a, v, None, None) for a, v in apis.items()])

    models = [model("e", "m1", x=1.0, y=0.2), model("e", "m2", x=0.5), model("f", "m3", x=0.3)]
    S = "standard"
    assert engine_savings(snap_with(models, spend_totals(engines={"e": 0.4}))) == pytest.approx(
        {("e", "x", S): 1.5 - 0.4, ("e", "y", S): 0.2 - 0.4, ("f", "x", S): 0.3}, rel=REL)
    assert engine_savings(snap_with(models, None)) == pytest.approx({("e", "x", S): 1.5, ("e", "y", S): 0.2,
                                                                     ("f", "x", S): 0.3})
    assert engine_savings(snap_with([model("e", "m")], spend_totals(engines={"e": 0.4}))) == {}


# -- the split within an engine (exporter.modelsplit) ------------------------------------------------------


def test_models_of_one_engine_are_priced_by_their_own_share_and_by_direction(clock):
    from exporter.modelsplit import ModelSpend, Work

    spend = ModelSpend(WINDOW_S, 0.25)
    for t in range(1, 601):  # $1/s; chat generates 100 tokens/s, embed reads 500 of which 100 cached: equal work
        spend.accrue(float(t), 1.0, {"e": 1.0}, {"e": {"chat": Work(0.0, 100.0 * t, 0.0),
                                                       "embed": Work(500.0 * t, 0.0, 100.0 * t)}})
    chat = model_totals("e", "chat", tokens={"input": 0.0, "output": 60000.0},
                        window=(300.0, 30000.0, 600.0, 60000.0), input_window=(300.0, 0.0, 600.0, 0.0))
    embed = model_totals("e", "embed", tokens={"input": 300000.0, "output": 0.0}, cached_input_tokens=60000.0,
                         window=(300.0, 150000.0, 600.0, 300000.0), input_window=(300.0, 150000.0, 600.0, 300000.0))
    clock.advance(600.0 - clock.now())
    snap = snapshot(clock, [FakeEngine("e", chat, embed)], FakeAccountant(0.0, {"e": 1.0}), model_spend=spend)
    by_model = {f.model.model: f for f in snap.models}
    # Not the engine's $300 / 150,000 tokens for both: $150 each over its own tokens.
    assert by_model["chat"].cost_per_million == pytest.approx(150.0 / 30000 * 1e6, rel=REL)
    assert by_model["embed"].cost_per_million == pytest.approx(150.0 / 150000 * 1e6, rel=REL)
    assert by_model["chat"].cost_per_million_by_direction == {"output": pytest.approx(5000.0, rel=REL)}
    assert by_model["embed"].cost_per_million_by_direction == {"input": pytest.approx(1000.0, rel=REL)}
    assert by_model["chat"].phase_spend == {"prefill": 0.0, "decode": pytest.approx(300.0, rel=REL)}
    assert sum(by_model["embed"].phase_spend.values()) + sum(by_model["chat"].phase_spend.values()) == \
        pytest.approx(600.0, rel=REL)
    assert by_model["embed"].phase_method == "ratio"
    # Cached at embed's prefill cost per computed token: 100 cached per 400 computed tokens, $0.5 a second.
    assert by_model["embed"].cache_savings == pytest.approx(600 * 100 * 0.5 / 400, rel=1e-6)
    assert by_model["chat"].cache_savings == 0.0
