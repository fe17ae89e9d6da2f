"""exporter.accounting.Accountant on its own: a manual clock, a fake GPU source, prices from a real config.

Every expected figure is worked out by hand from docs/cost-model.md (the numbers in the comments),
not read back from the code.
"""

import dataclasses
import json
import threading
import time

import pytest
from fakes import FakeGpus
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.profiles import examples
from test_fuzz import run_cases

from exporter.accounting import Accountant
from exporter.attribution import Claim
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.gpu.source import GpuReading, MigDevice
from exporter.kube.podresources.claims import exact_claim, nvml_parts
from exporter.kube.podresources.devices import parse_device_id
from exporter.kube.shares import NodeGpus

REL = 1e-9
# owned: 87 600 capex over 12 months of 730 h = 10/h; fixed 730/month = 1/h; 0.25/kWh at PUE 1.2; 100 W overhead.
OWNED = {"mode": "owned", "owned": {"capex": 87600, "amortization_months": 12, "fixed_monthly": 730},
         "energy": {"electricity_per_kwh": 0.25, "pue": 1.2, "overhead_watts": 100, "grid_co2e_grams_per_kwh": 400}}


def pricing(**raw):
    """Validated prices, as the exporter gets them."""
    return from_dict({"pricing": raw, "gpu": {"backend": "none"}}, environ={}).pricing


def cloud(hourly=3.6, **raw):
    return pricing(mode="cloud", cloud={"hourly": hourly, **raw.pop("cloud", {})}, **raw)


class Ledger:
    """An accountant on a manual clock; run() advances the clock and ticks, as the gpu job does."""

    def __init__(self, prices, gpus=None, engines=None, window_s=600.0, clock=None):
        self.clock = clock or ManualClock()
        self.gpus = gpus
        self.acc = Accountant(prices, gpus, {"e": None} if engines is None else engines, self.clock,
                              threading.RLock(), window_s)
        self.start = self.clock.now()

    def run(self, *steps, requests=0.0, idle=frozenset(), joules=()):
        """Each step: advance that many seconds, draw `joules` per GPU, tick."""
        for seconds in steps:
            self.clock.advance(seconds)
            if joules:
                self.gpus.draw(*joules)
            self.acc.tick(requests, idle)
        return self.acc.totals()


# --- cloud mode -------------------------------------------------------------------------------------


def test_cloud_instance_spend_is_the_hourly_price_times_the_elapsed_time():
    ledger = Ledger(cloud(hourly=7.2), FakeGpus(2))
    ledger.acc.tick(0)
    totals = ledger.run(1.0, 2.5, 10.0, 3600.0)
    # 3613.5 s at 7.2/h = 7.227
    assert totals.components["instance"] == pytest.approx(7.227, rel=REL)
    assert totals.components["requests"] == 0.0
    assert totals.engines == {"e": pytest.approx(7.227, rel=REL)}
    assert totals.hourly_cost == pytest.approx(7.2, rel=REL)
    assert totals.mode == "cloud" and totals.currency == "USD"


def test_the_first_tick_opens_the_ledger_and_bills_nothing():
    ledger = Ledger(cloud(), FakeGpus(1))
    ledger.clock.advance(10_000)  # time before the first tick is nobody's spend
    ledger.acc.tick(500)
    totals = ledger.acc.totals()
    assert totals.components == {"instance": 0.0, "requests": 0.0, "interruption_warmup": 0.0}
    assert totals.engines == {"e": 0.0}
    assert totals.hourly_cost is None
    assert ledger.acc.spend_between("e", ledger.clock.now(), ledger.clock.now()) == 0.0


def test_a_tick_without_time_passing_bills_nothing_and_the_interval_continues():
    ledger = Ledger(cloud(), FakeGpus(1))
    ledger.acc.tick(0)
    ledger.run(0.0, -5.0)  # same instant, then a clock step back: both wait for the next tick
    assert ledger.acc.totals().engines["e"] == 0.0
    totals = ledger.run(10.0)  # 5 s after the opening tick: 5 s at 3.6/h = 0.005
    assert totals.engines["e"] == pytest.approx(0.005, rel=REL)


def test_request_fees_are_per_million_new_requests_and_never_negative():
    ledger = Ledger(cloud(hourly=0.0, cloud={"per_million_requests": 2.0}), FakeGpus(1))
    ledger.acc.tick(0)
    for total in (1500, 4000, 100, 600):  # 4000 -> 100: a decrease bills nothing, 100 -> 600 bills 500
        ledger.run(1.0, requests=total)
    # 1500 + 2500 + 0 + 500 = 4500 requests at 2.0 per 1M = 0.009
    assert ledger.acc.totals().components["requests"] == pytest.approx(0.009, rel=REL)
    assert ledger.acc.totals().engines["e"] == pytest.approx(0.009, rel=REL)


def test_an_unknown_cloud_price_accrues_nothing_and_has_no_hourly_rate():
    prices = cloud()
    prices = dataclasses.replace(prices, cloud=dataclasses.replace(prices.cloud, hourly=None))  # node labels unread
    ledger = Ledger(prices, FakeGpus(1))
    ledger.acc.tick(0)
    totals = ledger.run(60.0)
    assert totals.components["instance"] == 0.0
    assert totals.hourly_cost is None


# --- allocation ---------------------------------------------------------------------------------------


def test_spend_is_allocated_by_the_gpus_each_engine_holds():
    ledger = Ledger(cloud(), FakeGpus(4), {"two": [0, 1], "one": [2]})  # GPU 3: nobody's
    ledger.acc.tick(0)
    totals = ledger.run(100.0)  # 100 s at 3.6/h = 0.1 for the node, 0.025 a GPU
    assert totals.components["instance"] == pytest.approx(0.1, rel=REL)
    assert totals.engines == {"two": pytest.approx(0.05, rel=REL), "one": pytest.approx(0.025, rel=REL)}


def test_engines_sharing_a_gpu_split_it_and_gpus_none_means_every_gpu():
    ledger = Ledger(cloud(), FakeGpus(2), {"all": None, "first": [0], "also_first": [0]})
    ledger.acc.tick(0)
    totals = ledger.run(100.0)
    # GPU 0 (0.05) split three ways; GPU 1 (0.05) is all's alone.
    assert totals.engines == {"all": pytest.approx(0.05 / 3 + 0.05, rel=REL),
                              "first": pytest.approx(0.05 / 3, rel=REL), "also_first": pytest.approx(0.05 / 3, rel=REL)}


def test_without_gpu_readings_the_spend_is_split_evenly_between_engines():
    ledger = Ledger(cloud(), None, {"a": [0], "b": None})
    ledger.acc.tick(0)
    totals = ledger.run(100.0)
    assert totals.engines == {"a": pytest.approx(0.05, rel=REL), "b": pytest.approx(0.05, rel=REL)}


def test_without_gpu_readings_the_overhead_joules_are_split_like_the_spend():
    ledger = Ledger(cloud(energy={"overhead_watts": 100}), None, {"a": None, "b": None})
    ledger.acc.tick(0)
    totals = ledger.run(100.0)  # 100 W x 100 s = 10 000 J, half each like the spend
    assert totals.overhead_energy_joules == pytest.approx(10_000, rel=REL)
    assert totals.engine_energy_joules == {"a": pytest.approx(5_000, rel=REL), "b": pytest.approx(5_000, rel=REL)}


@st.composite
def nodes(draw):
    """A node: GPU count, who holds which GPU, a pricing mode, and ticks of (seconds, joules per GPU, new requests)."""
    count = draw(st.integers(1, 6))
    holding = st.one_of(st.none(), st.lists(st.integers(0, count - 1), unique=True, max_size=count))
    engines = draw(st.dictionaries(st.sampled_from("abcde"), holding, max_size=4))
    # Seconds in 1/64 steps: exact in the clock's float arithmetic at epoch times, so dt is exactly what was drawn.
    seconds = st.integers(1, 64 * 7200).map(lambda n: n / 64)
    tick = st.tuples(seconds, st.lists(st.floats(0.0, 1e6), min_size=count, max_size=count),
                     st.integers(0, 10**6))
    return count, engines, draw(st.sampled_from(["cloud", "owned"])), draw(st.lists(tick, min_size=1, max_size=6))


# 3.6/h + 1.5 per 1M requests (cloud) or OWNED; 100 W overhead at 0.25/kWh, PUE 1.2 in both. Built once.
NODE_PRICES = {"owned": pricing(**OWNED), "cloud": cloud(cloud={"per_million_requests": 1.5}, energy=OWNED["energy"])}


def gpu_costs(mode, seconds, joules, requests):
    """One tick's cost of each GPU, by the formulas: shared spend / G, plus its own energy (owned)."""
    kwh_cost = 1.2 * 0.25 / 3.6e6
    if mode == "cloud":
        shared = 3.6 * seconds / 3600 + 1.5 * requests / 1e6
        own = [0.0] * len(joules)
    else:
        shared = 11.0 * seconds / 3600 + 100 * seconds * kwh_cost
        own = [j * kwh_cost for j in joules]
    return [shared / len(joules) + o for o in own]


@settings(max_examples=100, deadline=None)  # ~0.5 s: the fast tier
@given(nodes())
def test_allocation_conserves_spend_and_joules(node):
    count, engines, mode, ticks = node
    ledger = Ledger(NODE_PRICES[mode], FakeGpus(count), engines)
    ledger.acc.tick(0)
    node_spend, requests, unheld_spend, unheld_joules, all_joules = 0.0, 0, 0.0, 0.0, 0.0
    expected = {e: 0.0 for e in engines}
    for seconds, joules, new_requests in ticks:
        requests += new_requests
        totals = ledger.run(seconds, requests=requests, joules=joules)
        costs = gpu_costs(mode, seconds, joules, new_requests)
        node_spend += sum(costs)
        all_joules += sum(joules) + 100 * seconds
        for i, cost in enumerate(costs):
            holders = [e for e, gpus in engines.items() if gpus is None or i in gpus]
            if not holders:
                unheld_spend += cost
                unheld_joules += joules[i] + 100 * seconds / count
            for e in holders:
                expected[e] += cost / len(holders)
    assert sum(totals.components.values()) == pytest.approx(node_spend, rel=REL)
    assert sum(totals.engines.values()) + unheld_spend == pytest.approx(node_spend, rel=REL)
    assert totals.engines == pytest.approx(expected, rel=REL, abs=1e-12)
    assert sum(totals.engine_energy_joules.values()) + unheld_joules == pytest.approx(all_joules, rel=REL)


# --- owned mode ------------------------------------------------------------------------------------------


def test_owned_spend_is_amortization_fixed_and_energy_with_each_gpus_energy_to_its_engines():
    ledger = Ledger(pricing(**OWNED), FakeGpus(2), {"a": [0], "b": [1]})
    ledger.acc.tick(0)
    ledger.run(360.0, joules=(720_000, 360_000))  # 0.1 h; 0.2 and 0.1 kWh; overhead 36 000 J = 0.01 kWh
    totals = ledger.run(360.0, joules=(0, 3_600_000))  # 0.1 h; 0 and 1 kWh; overhead 0.01 kWh
    # per tick: amortization 10/h x 0.1 h = 1.0, fixed 1/h x 0.1 h = 0.1; a kWh costs 0.25 x 1.2 = 0.3
    # energy: tick 1 (0.2 + 0.1 + 0.01) x 0.3 = 0.093, tick 2 (1 + 0.01) x 0.3 = 0.303
    assert totals.components == {"amortization": pytest.approx(2.0, rel=REL), "fixed": pytest.approx(0.2, rel=REL),
                                 "energy": pytest.approx(0.396, rel=REL), "interruption_warmup": 0.0}
    assert totals.energy_cost == pytest.approx(0.396, rel=REL)
    # shared per tick: 1.0 + 0.1 + 0.003 overhead energy = 1.103, half a GPU; plus each GPU's own energy
    assert totals.engines == {"a": pytest.approx(2 * 0.5515 + 0.06, rel=REL),
                              "b": pytest.approx(2 * 0.5515 + 0.03 + 0.3, rel=REL)}
    assert totals.hourly_cost == pytest.approx((1.103 + 0.3) / 0.1, rel=REL)  # the last tick's rate
    # joules: each GPU's own plus half the overhead; they add up to GPU joules + overhead
    assert totals.overhead_energy_joules == pytest.approx(72_000, rel=REL)
    assert totals.engine_energy_joules == {"a": pytest.approx(720_000 + 36_000, rel=REL),
                                           "b": pytest.approx(3_960_000 + 36_000, rel=REL)}
    assert totals.co2e_grams == pytest.approx(4_752_000 / 3.6e6 * 1.2 * 400, rel=REL)  # 633.6 g
    # opex (what payback compares with) is fixed + energy: 0.193 after tick 1, 0.596 after tick 2
    t1, opex1, t2, opex2 = ledger.acc.opex_window.span(ledger.clock.now())
    assert (t1 - ledger.start, opex1, t2 - ledger.start, opex2) == pytest.approx((360, 0.193, 720, 0.596), rel=REL)


def test_owned_hourly_rate_with_idle_gpus_is_amortization_fixed_and_overhead():
    ledger = Ledger(pricing(**OWNED), FakeGpus(1))
    ledger.acc.tick(0)
    totals = ledger.run(3600.0)
    assert totals.hourly_cost == pytest.approx(10.0 + 1.0 + 0.1 * 0.3, rel=REL)  # 100 W for 1 h = 0.1 kWh


def test_a_gpu_counter_that_goes_backwards_is_no_negative_energy():
    ledger = Ledger(pricing(**OWNED), FakeGpus(1))
    ledger.acc.tick(0)
    ledger.run(3600.0, joules=(3_600_000,))
    ledger.gpus.energy[0] = 0.0  # a counter reset
    totals = ledger.run(3600.0)
    # two hours of 0.1 kWh overhead and one 1 kWh reading, at 0.3 a kWh
    assert totals.components["energy"] == pytest.approx((0.2 + 1.0) * 0.3, rel=REL)


# --- idle, changes while running --------------------------------------------------------------------------


def test_idle_spend_accrues_only_for_the_idle_engines():
    ledger = Ledger(cloud(), FakeGpus(2), {"a": [0], "b": [1]})
    ledger.acc.tick(0)
    ledger.run(100.0, idle={"a"})  # 0.05 each per 100 s
    ledger.run(100.0, idle={"a", "b", "ghost"})  # an engine the accountant does not know: ignored
    totals = ledger.run(100.0, idle=frozenset())
    assert totals.idle_spend == {"a": pytest.approx(0.1, rel=REL), "b": pytest.approx(0.05, rel=REL)}
    assert totals.engines == {"a": pytest.approx(0.15, rel=REL), "b": pytest.approx(0.15, rel=REL)}


def test_set_pricing_after_a_tick_changes_the_rate_from_then_on_only():
    ledger = Ledger(cloud(hourly=3.6), FakeGpus(1))
    ledger.acc.tick(0)
    ledger.run(100.0)  # 0.1
    ledger.acc.set_pricing(cloud(hourly=7.2))
    totals = ledger.run(100.0)  # + 0.2
    assert totals.components["instance"] == pytest.approx(0.3, rel=REL)
    assert totals.hourly_cost == pytest.approx(7.2, rel=REL)
    assert ledger.acc.pricing.cloud.hourly == 7.2


def test_set_pricing_to_owned_keeps_the_cloud_components_frozen():
    ledger = Ledger(cloud(), FakeGpus(1))
    ledger.acc.tick(0)
    ledger.run(100.0)
    ledger.acc.set_pricing(pricing(**OWNED))
    totals = ledger.run(360.0)
    assert totals.mode == "owned"
    assert totals.components == {"instance": pytest.approx(0.1, rel=REL), "requests": 0.0,
                                 "amortization": pytest.approx(1.0, rel=REL), "fixed": pytest.approx(0.1, rel=REL),
                                 "energy": pytest.approx(0.003, rel=REL), "interruption_warmup": 0.0}


def test_set_engines_adds_at_zero_and_an_engine_left_out_keeps_its_total_until_forget():
    ledger = Ledger(cloud(), FakeGpus(1), {"a": None})
    ledger.acc.tick(0)
    ledger.run(100.0)  # a: 0.1
    ledger.acc.set_engines({"a": None, "b": None})
    assert ledger.acc.totals().engines == {"a": pytest.approx(0.1, rel=REL), "b": 0.0}
    added = ledger.clock.now()
    ledger.run(100.0)  # 0.05 each
    ledger.acc.set_engines({"b": None})
    totals = ledger.run(100.0)  # b alone: 0.1
    assert totals.engines == {"a": pytest.approx(0.15, rel=REL), "b": pytest.approx(0.15, rel=REL)}
    assert ledger.acc.spend_between("b", added, ledger.clock.now()) == pytest.approx(0.15, rel=REL)
    ledger.acc.forget("b")  # still active: forget does nothing
    ledger.acc.forget("a")
    assert ledger.acc.totals().engines == {"b": pytest.approx(0.15, rel=REL)}
    assert set(ledger.acc.totals().engine_energy_joules) == set(ledger.acc.totals().idle_spend) == {"b"}
    assert ledger.acc.spend_between("a", added, ledger.clock.now()) is None


# --- windows ----------------------------------------------------------------------------------------------------


def test_spend_between_interpolates_inside_the_window_and_extrapolates_past_the_last_tick():
    ledger = Ledger(cloud(), FakeGpus(1), window_s=600.0)  # 3.6/h = 0.001 a second
    t = ledger.start
    assert ledger.acc.spend_between("e", t, t) is None  # before the first tick
    ledger.acc.tick(0)
    ledger.run(*[10.0] * 10)
    spend = ledger.acc.spend_between
    assert spend("e", t + 15, t + 45) == pytest.approx(0.03, rel=REL)
    assert spend("e", t, t + 100) == pytest.approx(0.1, rel=REL)
    assert spend("e", t + 90, t + 105) == pytest.approx(0.015, rel=REL)  # 5 s past the last tick, at its rate
    assert spend("e", t - 1, t + 10) is None  # the ledger starts at the first tick
    assert spend("nobody", t, t + 10) is None
    assert ledger.acc.energy_between("e", t, t + 100) == 0.0  # no joules drawn, no overhead


def test_the_ledger_reaches_back_twice_the_window_and_no_further():
    ledger = Ledger(cloud(), FakeGpus(1), window_s=600.0)
    ledger.acc.tick(0)
    ledger.run(*[10.0] * 300)  # 3000 s
    now = ledger.clock.now()
    assert ledger.acc.spend_between("e", now - 600, now) == pytest.approx(0.6, rel=REL)
    assert ledger.acc.spend_between("e", now - 1200, now) == pytest.approx(1.2, rel=REL)
    assert ledger.acc.spend_between("e", ledger.start, now) is None


# --- persisted totals --------------------------------------------------------------------------------------------


def saved_run(engines):
    """A first run of 100 s at 3.6/h, 100 W overhead at 0.2/kWh, both GPUs drawing 360 000 J; its JSON state."""
    first = Ledger(cloud(energy={"overhead_watts": 100, "electricity_per_kwh": 0.2}), FakeGpus(2), engines)
    first.acc.tick(0)
    first.run(100.0, joules=(360_000, 360_000))
    return first, json.loads(json.dumps(first.acc.export_state()))


@pytest.mark.parametrize("accrue_gap, gap_spend", [(False, 0.0), (True, 1.0)])
def test_restored_totals_continue_and_accrue_gap_bills_the_downtime(accrue_gap, gap_spend):
    first, state = saved_run({"a": [0], "b": [1]})
    first.clock.advance(1000.0)  # the exporter is down for 1000 s
    second = Ledger(first.acc.pricing, FakeGpus(2), {"a": [0], "b": [1]}, clock=first.clock)  # counters restart
    second.acc.restore_state(state, accrue_gap=accrue_gap)
    second.acc.tick(0)
    totals = second.run(100.0)
    # 0.1 before, the gap (1000 s = 1.0) if billed, 0.1 after; half each
    assert totals.components["instance"] == pytest.approx(0.2 + gap_spend, rel=REL)
    assert totals.engines == {"a": pytest.approx(0.1 + gap_spend / 2, rel=REL),
                              "b": pytest.approx(0.1 + gap_spend / 2, rel=REL)}
    # joules: 720 000 GPU + 10 000 overhead before, 10 000 after, 100 000 more in the gap if billed
    joules = 740_000 + (100_000 if accrue_gap else 0)
    assert totals.overhead_energy_joules == pytest.approx(joules - 720_000, rel=REL)
    assert totals.energy_cost == pytest.approx(joules / 3.6e6 * 0.2, rel=REL)


def test_restored_totals_wait_for_their_engine_and_are_saved_again_meanwhile():
    first, state = saved_run({"a": [0], "b": [1]})
    second = Ledger(first.acc.pricing, FakeGpus(2), {"a": [0]}, clock=first.clock)
    second.acc.restore_state(state, accrue_gap=False)
    assert second.acc.totals().engines == {"a": pytest.approx(0.05, rel=REL)}
    assert second.acc.export_state()["engines"]["b"] == pytest.approx([0.05, 360_000 + 5_000, 0.0], rel=REL)
    second.acc.tick(0)
    second.acc.set_engines({"a": [0], "b": [1]})
    totals = second.run(100.0)
    assert totals.engines == {"a": pytest.approx(0.1, rel=REL), "b": pytest.approx(0.1, rel=REL)}
    assert totals.engine_energy_joules["b"] == pytest.approx(365_000 + 5_000, rel=REL)


# --- conservation under every kind of claim -------------------------------------------------------------

KUBERNETES_CLAIM = st.builds(Claim, st.sampled_from(["exclusive", "replica", "mig", "hami"]),
                             st.floats(0.0, 12.0, allow_nan=False))
CONFIG_CLAIM = st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=3)).map(Claim.from_config)
DEVICE_CLAIM = st.lists(st.tuples(st.integers(0, 9).map(lambda i: f"GPU-{i}"), st.floats(0.0, 1.0)), min_size=1,
                        max_size=3).map(lambda devices: Claim("hami", sum(f for _, f in devices), devices=tuple(devices)))

# The kubelet's devices (exporter.kube.podresources.claims) on GPUs 0-9 as NVML lists them: whole GPUs,
# MIG devices of several profiles on GPUs 6-9, any of them a time-slicing replica.
H100_MIB = 81559
MIG_LAYOUT = {6: [(3, 3, 40448)] * 2, 7: [(7, 7, 80896)], 8: [(1, 1, 9856)] * 7, 9: [(2, 2, 19968), (3, 1, 40448)]}
NVML_READINGS = [GpuReading(i, f"GPU-{i}", "NVIDIA H100 80GB HBM3", True, memory_total_bytes=H100_MIB * 1024**2,
                            mig=tuple(MigDevice(f"MIG-{i}-{s}", *m) for s, m in enumerate(MIG_LAYOUT.get(i, []))))
                 for i in range(10)]
DEVICE_IDS = [r.uuid for r in NVML_READINGS] + [m.uuid for r in NVML_READINGS for m in r.mig] + ["GPU-unknown"]
HELD = st.tuples(st.sampled_from(["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-3g.40gb"]),
                 st.sampled_from(DEVICE_IDS), st.one_of(st.none(), st.integers(0, 9)))
PODRESOURCES_CLAIM = st.builds(
    lambda held, replicas, basis: exact_claim(
        tuple((r, parse_device_id(d if n is None else f"{d}::{n}")) for r, d, n in held),
        nvml_parts(NVML_READINGS, basis), NodeGpus(replicas=replicas)) or Claim("exclusive", 1.0),  # None: the fallback
    st.lists(HELD, min_size=1, max_size=4),
    st.dictionaries(st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-3g.40gb"]), st.integers(1, 8)),
    st.sampled_from(["compute", "memory"]))


@st.composite
def claimed_nodes(draw):
    """A node (0-8 GPUs NVML reports, 0-8 by its labels), engines with claims of every method that
    change between ticks, a pricing mode, and ticks of (seconds, joules per GPU, new requests)."""
    count, labelled = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    engine_sets = st.dictionaries(st.sampled_from("abcdef"),
                                  st.one_of(KUBERNETES_CLAIM, CONFIG_CLAIM, DEVICE_CLAIM, PODRESOURCES_CLAIM),
                                  max_size=6)
    seconds = st.integers(1, 64 * 3600).map(lambda n: n / 64)
    tick = st.tuples(seconds, st.lists(st.floats(0.0, 1e6), min_size=count, max_size=count), st.integers(0, 10**6),
                     st.one_of(st.none(), engine_sets))  # new claims before this tick, or none
    return count, labelled, draw(engine_sets), draw(st.sampled_from(["cloud", "owned"])), draw(
        st.lists(tick, min_size=1, max_size=6))


def check_engines_and_unallocated_make_the_node(case):
    count, labelled, engines, mode, ticks = case
    ledger = Ledger(NODE_PRICES[mode], FakeGpus(count), {})
    ledger.acc.set_engines(engines, labelled)
    ledger.acc.tick(0)
    requests, before = 0, ledger.acc.totals()
    for seconds, joules, new_requests, claims in ticks:
        if claims is not None:
            ledger.acc.set_engines(claims, labelled)
        requests += new_requests
        after = ledger.run(seconds, requests=requests, joules=joules)
        node = sum(after.components.values()) - sum(before.components.values())
        engines_spend = sum(after.engines.values()) - sum(before.engines.values())
        assert node > 0
        assert engines_spend + after.unallocated - before.unallocated == pytest.approx(node, rel=REL)
        assert sum(s for s, _ in after.shares.values()) + after.unallocated_share == pytest.approx(1.0, rel=REL)
        assert all(0.0 <= s <= 1.0 for s, _ in after.shares.values())
        before = after


@pytest.mark.slow  # 1,000 generated nodes
def test_engines_and_unallocated_add_up_to_the_node_spend_on_every_tick():
    started = time.monotonic()
    assert run_cases(1000, claimed_nodes(), check_engines_and_unallocated_make_the_node) >= examples(1000)
    print(f"{examples(1000)} nodes in {time.monotonic() - started:.1f}s")


def test_kubernetes_claims_take_the_gpus_no_pin_names_and_the_rest_is_unallocated():
    ledger = Ledger(cloud(), FakeGpus(4), {"pinned": [0], "llama": Claim("exclusive", 2.0), "embed": Claim("replica", 0.25)})
    ledger.acc.tick(0)
    totals = ledger.run(100.0)  # 0.1 for the node, 0.025 a GPU
    assert totals.engines == {"pinned": pytest.approx(0.025, rel=REL), "llama": pytest.approx(0.05, rel=REL),
                              "embed": pytest.approx(0.00625, rel=REL)}
    assert totals.unallocated == pytest.approx(0.1 - 0.08125, rel=REL)  # GPUs 1-3 less 2.25 of them
    assert totals.shares == {"pinned": (0.25, "config"), "llama": (0.5, "exclusive"), "embed": (0.0625, "replica")}
    assert totals.unallocated_share == pytest.approx(0.1875, rel=REL)


def test_a_device_claim_pays_for_its_own_gpu_and_its_measured_energy():
    ledger = Ledger(pricing(**OWNED), FakeGpus(2), {"hami": Claim("hami", 0.5, devices=(("GPU-1", 0.5),))})
    ledger.acc.tick(0)
    totals = ledger.run(360.0, joules=(0, 3_600_000))  # GPU 1 draws 1 kWh = 0.3 in 0.1 h
    # shared per tick 1.103 (test_owned_spend...), half a GPU each; half of GPU 1's: (0.5515 + 0.3) / 2
    assert totals.engines == {"hami": pytest.approx((0.5515 + 0.3) / 2, rel=REL)}
    assert totals.engine_energy_joules == {"hami": pytest.approx((3_600_000 + 18_000) / 2, rel=REL)}
    assert totals.unallocated == pytest.approx(1.403 - (0.5515 + 0.3) / 2, rel=REL)


def test_without_nvml_the_node_labels_give_the_gpu_count():
    ledger = Ledger(cloud(), None, {})
    ledger.acc.set_engines({"llama": Claim("exclusive", 2.0)}, node_gpu_count=8)
    ledger.acc.tick(0)
    totals = ledger.run(100.0)
    assert totals.engines == {"llama": pytest.approx(0.025, rel=REL)}  # 2 of 8 GPUs of 0.1
    assert totals.unallocated == pytest.approx(0.075, rel=REL)


def test_unallocated_spend_is_saved_and_restored():
    first = Ledger(cloud(), FakeGpus(2), {"a": [0]})
    first.acc.tick(0)
    first.run(100.0)
    state = json.loads(json.dumps(first.acc.export_state()))
    second = Ledger(first.acc.pricing, FakeGpus(2), {"a": [0]}, clock=first.clock)
    second.acc.restore_state(state, accrue_gap=False)
    assert second.acc.totals().unallocated == pytest.approx(0.05, rel=REL)
    del state["unallocated"]  # a state file of an older version
    third = Ledger(first.acc.pricing, FakeGpus(2), {"a": [0]}, clock=first.clock)
    third.acc.restore_state(state, accrue_gap=False)
    assert third.acc.totals().unallocated == 0.0
