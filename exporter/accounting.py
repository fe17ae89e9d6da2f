"""Accrues self-hosted spend on every tick, on the allocation basis: everything paid for while the
GPUs are held, idle time included.

Components: cloud `instance` (+ `requests` fees); owned `amortization`, `fixed`, `energy`
(measured GPU energy + overhead watts, times PUE, times the electricity price); in both modes
`interruption_warmup`: the time-based spend (`instance`, or `amortization` and `fixed`) of the
warm-up after a node interruption (exporter.interruptions), booked there instead. The node's spend
is then allocated to engines by their shares of its GPUs (exporter.attribution): each GPU costs
its part of the shared spend plus its own energy, and goes to the engines by their fractions of
it; the fractions no engine holds are unallocated spend. Engines + unallocated = the node, on
every tick. Formulas: docs/cost-model.md.

Engines and prices may change while running (discovered pods come and go, the config file is
reloaded): set_engines() and set_pricing() apply from the next tick on, and nothing already
accrued changes. An engine no longer active keeps its (frozen) totals until forget().
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from exporter import costmodel
from exporter.attribution import Claim, Split, split
from exporter.config import Pricing
from exporter.series import SlidingWindow

WARMUP = "interruption_warmup"
TIME_BASED = ("instance", "amortization", "fixed")  # paid by the hour, so also while the models load


@dataclass(frozen=True)
class SpendTotals:
    mode: str
    currency: str
    components: dict[str, float]  # cumulative spend by component
    engines: dict[str, float]  # cumulative spend allocated to each engine
    energy_cost: float | None  # cumulative; None when no electricity price is configured
    hourly_cost: float | None  # the current rate, from the last tick
    overhead_energy_joules: float
    engine_energy_joules: dict[str, float]  # GPU energy of the engine's GPUs + its share of overhead
    idle_spend: dict[str, float]  # per engine: spend accrued while it produced no tokens
    co2e_grams: float | None  # None without a configured grid intensity
    unallocated: float = 0.0  # cumulative spend on the GPU fractions no engine holds
    shares: dict[str, tuple[float, str]] = field(default_factory=dict)  # active engine -> (share 0-1, method)
    unallocated_share: float = 1.0  # of the node's GPUs, now
    held: dict[str, dict[int, float]] = field(default_factory=dict)  # active engine -> GPU index -> its fraction, now
    unallocated_gpus: dict[int, float] = field(default_factory=dict)  # GPU index -> the fraction no engine holds, now
    interruptions: int = 0  # node interruptions seen at start (exporter.interruptions), persisted


class Ledger:
    """One engine's running total (spend or joules) with its recent history, readable at any
    time inside the window, and just past the last tick at the last tick's rate."""

    def __init__(self, window_s: float):
        self.total = 0.0
        self.rate = 0.0  # per second, over the last tick
        # Twice the live window: token samples lag ticks, and between() must reach back to them.
        self.window = SlidingWindow(2 * window_s)

    def add(self, now: float, amount: float, dt: float) -> None:
        self.total += amount
        self.rate = amount / dt if dt > 0 else 0.0
        self.window.add(now, self.total)

    def value_at(self, t: float, last_tick: float | None) -> float | None:
        value = self.window.value_at(t)
        if value is None and last_tick is not None and t > last_tick:
            value = self.total + self.rate * (t - last_tick)
        return value

    def between(self, t0: float, t1: float, last_tick: float | None) -> float | None:
        start, end = self.value_at(t0, last_tick), self.value_at(t1, last_tick)
        return None if start is None or end is None else max(end - start, 0.0)


def _claims(engines: dict) -> dict[str, Claim]:
    """Claims as given, or GPU indices (None: nothing known) as configured."""
    return {e: c if isinstance(c, Claim) else Claim.from_config(c) for e, c in engines.items()}


class Accountant:
    def __init__(self, pricing: Pricing, gpu_source, engine_gpus: dict, clock, lock: threading.RLock, window_s: float):
        """`engine_gpus`: engine -> Claim, or GPU indices (None: nothing known), as set_engines()."""
        self._pricing = pricing
        self._gpu = gpu_source
        self._window_s = window_s
        self._engine_gpus = _claims(engine_gpus)  # the active engines: they share the node's spend
        self._node_gpu_count = 0  # the node's GPUs by its labels: used while NVML reports none
        self._last_gpu_count = 0  # GPUs NVML reported on the last tick
        self._last_uuids: dict[str, int] = {}  # and their UUIDs (claims may name GPUs by UUID)
        self._split: tuple[tuple, Split] | None = None  # (GPUs, their split), until the engines change
        self._clock = clock
        self._lock = lock
        self._components: dict[str, float] = {c: 0.0 for c in self.component_names(pricing.mode)}
        self._spend = {e: Ledger(window_s) for e in engine_gpus}
        self._energy = {e: Ledger(window_s) for e in engine_gpus}
        self._energy_cost = 0.0
        self._overhead_joules = 0.0
        self._idle_spend = {e: 0.0 for e in engine_gpus}
        self._co2e_grams = 0.0
        self._unallocated = 0.0
        self._opex = 0.0  # owned: energy + fixed (what the API must beat to pay the capex back)
        self.opex_window = SlidingWindow(window_s)
        self._last_time: float | None = None
        self._last_gpu_energy: dict[str, float] = {}
        self._last_requests = 0.0
        self._restored_engines: dict[str, tuple[float, float, float]] = {}  # exporter.storage, until the engine appears
        self._hourly: float | None = None
        self.boot_id = ""  # the node's boot now (exporter.interruptions); saved with the totals
        self._interruptions = 0
        self._warmup: tuple[float, float] | None = None  # (from, until): the warm-up after an interruption

    def warming_up(self) -> bool:
        with self._lock:
            return self._warmup is not None and self._clock.now() < self._warmup[1]

    def end_warmup(self) -> float:
        """End the warm-up now (the engines answer): its length in seconds."""
        with self._lock:
            if self._warmup is None:
                return 0.0
            start, until = self._warmup
            self._warmup = (start, max(min(until, self._clock.now()), start))
            return self._warmup[1] - start

    @staticmethod
    def component_names(mode: str) -> tuple[str, ...]:
        spend = ("instance", "requests") if mode == "cloud" else ("amortization", "fixed", "energy")
        return (*spend, WARMUP)

    def interrupted(self, warmup_s: float) -> None:
        """The node was interrupted before this start: count it, and book the next `warmup_s`
        seconds' time-based spend as warm-up waste."""
        with self._lock:
            self._interruptions += 1
            now = self._clock.now()
            self._warmup = (now, now + warmup_s)

    # -- changes while running ------------------------------------------------------------

    @property
    def pricing(self) -> Pricing:
        return self._pricing

    def set_pricing(self, pricing: Pricing) -> None:
        """Prices from the next tick on. Tick first to close the running interval at the old ones."""
        with self._lock:
            self._pricing = pricing
            for component in self.component_names(pricing.mode):
                self._components.setdefault(component, 0.0)

    def set_engines(self, engine_gpus: dict, node_gpu_count: int = 0) -> None:
        """The active engines and their claims on the node's GPUs (a Claim, or GPU indices with
        None for nothing known), and the node's GPU count by its labels. New engines start at 0;
        engines left out stop accruing and keep their totals until forget()."""
        with self._lock:
            self._engine_gpus = _claims(engine_gpus)
            self._node_gpu_count = node_gpu_count
            self._split = None
            for engine in engine_gpus:
                if engine not in self._spend:
                    self._spend[engine], self._energy[engine] = Ledger(self._window_s), Ledger(self._window_s)
                    self._idle_spend[engine] = 0.0
                    saved = self._restored_engines.pop(engine, None)  # totals from before a restart
                    if saved is not None:
                        self._spend[engine].total, self._energy[engine].total, self._idle_spend[engine] = saved
                    if self._last_time is not None:  # open the ledgers at the last tick, as the first tick does
                        self._spend[engine].add(self._last_time, 0.0, 0.0)
                        self._energy[engine].add(self._last_time, 0.0, 0.0)

    def forget(self, engine: str) -> None:
        """Drop an inactive engine's totals (its series disappear)."""
        with self._lock:
            if engine not in self._engine_gpus:
                for ledgers in (self._spend, self._energy, self._idle_spend):
                    ledgers.pop(engine, None)

    # -- persisted totals (exporter.storage) ---------------------------------------------------

    def export_state(self) -> dict:
        """Every cumulative figure and what the next tick measures from, JSON-ready."""
        with self._lock:
            return {"mode": self._pricing.mode, "currency": self._pricing.currency,
                    "components": dict(self._components),
                    "engines": {**{e: list(v) for e, v in self._restored_engines.items()},
                                **{e: [self._spend[e].total, self._energy[e].total, self._idle_spend.get(e, 0.0)]
                                   for e in self._spend}},
                    "energy_cost": self._energy_cost, "overhead_joules": self._overhead_joules,
                    "unallocated": self._unallocated,
                    "co2e_grams": self._co2e_grams, "opex": self._opex, "last_time": self._last_time,
                    "last_gpu_energy": dict(self._last_gpu_energy), "last_requests": self._last_requests,
                    "boot_id": self.boot_id, "interruptions": self._interruptions}

    def restore_state(self, state: dict, accrue_gap: bool) -> None:
        """Continue the totals of a previous run (before the first tick), saved in the same mode
        and currency. With accrue_gap the first tick accrues from the saved last tick: the time
        the exporter was down is billed like any other interval."""
        with self._lock:
            for component, value in state["components"].items():
                if component in self._components:
                    self._components[component] = float(value)
            self._restored_engines = {e: (float(spend), float(joules), float(idle))
                                      for e, (spend, joules, idle) in state["engines"].items()}
            for engine in list(self._spend):  # engines already set: take their totals now
                saved = self._restored_engines.pop(engine, None)
                if saved is not None:
                    self._spend[engine].total, self._energy[engine].total, self._idle_spend[engine] = saved
            self._energy_cost = float(state["energy_cost"])
            self._overhead_joules = float(state["overhead_joules"])
            self._co2e_grams = float(state["co2e_grams"])
            self._unallocated = float(state.get("unallocated", 0.0))  # absent from files of older versions
            self._opex = float(state["opex"])
            self._interruptions = int(state.get("interruptions", 0))  # absent from files before issue 15
            if accrue_gap and state["last_time"] is not None:
                self._last_time = float(state["last_time"])
                self._last_gpu_energy = {str(k): float(v) for k, v in state["last_gpu_energy"].items()}
                self._last_requests = float(state["last_requests"])
                for ledger in (*self._spend.values(), *self._energy.values()):
                    ledger.add(self._last_time, 0.0, 0.0)  # the window starts at the saved tick

    # -- ticking --------------------------------------------------------------------------

    def tick(self, requests: float, idle_engines=frozenset()) -> tuple[float, float, dict[str, float]]:
        """Accrue the interval since the last tick. `requests`: finished requests over all engines
        so far (for per-request fees); `idle_engines`: engines with no tokens flowing now, whose
        spend of this interval is idle spend. Returns (its time, its length, each engine's spend in
        it), for the split among the engine's models (exporter.modelsplit); nothing accrued: {}."""
        now = self._clock.now()
        readings = self._gpu.readings() if self._gpu else []
        with self._lock:
            energy_by_gpu = {r.uuid: r.energy_joules for r in readings}
            self._last_gpu_count, self._last_uuids = len(readings), {r.uuid: r.index for r in readings}
            if self._last_time is None:  # the first tick opens the ledgers
                self._last_time, self._last_gpu_energy, self._last_requests = now, energy_by_gpu, requests
                for ledger in (*self._spend.values(), *self._energy.values()):
                    ledger.add(now, 0.0, 0.0)
                return now, 0.0, {}
            if now <= self._last_time:
                return now, 0.0, {}  # no time has passed: what happened meanwhile accrues on the next tick
            dt = now - self._last_time
            gpu_joules = {r.index: max(energy_by_gpu[r.uuid] - self._last_gpu_energy.get(r.uuid, energy_by_gpu[r.uuid]), 0.0)
                          for r in readings}
            new_requests = max(requests - self._last_requests, 0.0)
            engines = self._accrue(now, dt, gpu_joules, new_requests, len(readings), idle_engines)
            self._last_time, self._last_gpu_energy, self._last_requests = now, energy_by_gpu, requests
            return now, dt, engines

    def _accrue(self, now: float, dt: float, gpu_joules: dict[int, float], new_requests: float, gpu_count: int,
                idle_engines) -> dict[str, float]:
        p = self._pricing
        hours = dt / costmodel.SECONDS_PER_HOUR
        overhead_joules = p.energy.overhead_watts * dt
        energy_price = p.energy.electricity_per_kwh
        shared: dict[str, float] = {}  # split evenly per GPU
        per_gpu_energy_cost: dict[int, float] = {}
        if p.mode == "cloud":
            shared["instance"] = (p.cloud.hourly or 0.0) * hours  # None: not known yet (node labels unread)
            shared["requests"] = p.cloud.per_million_requests * new_requests / costmodel.PER_MILLION
        else:
            shared["amortization"] = costmodel.amortization_hourly(p.owned.capex, p.owned.amortization_months, p.hours_per_month) * hours
            shared["fixed"] = costmodel.fixed_hourly(p.owned.fixed_monthly, p.hours_per_month) * hours
            owned_price = energy_price or 0.0  # required in owned mode (config validation)
            shared["energy"] = costmodel.energy_cost(overhead_joules, owned_price, p.energy.pue)
            per_gpu_energy_cost = {i: costmodel.energy_cost(j, owned_price, p.energy.pue) for i, j in gpu_joules.items()}
        fixed = shared.get("fixed", 0.0)  # opex whether or not it is warm-up waste
        self._book_warmup(now, dt, shared)
        for component, amount in shared.items():
            self._components[component] += amount
        if "energy" in self._components:
            self._components["energy"] += sum(per_gpu_energy_cost.values())
        total_joules = sum(gpu_joules.values()) + overhead_joules
        if energy_price is not None:
            self._energy_cost += costmodel.energy_cost(total_joules, energy_price, p.energy.pue)
        if p.energy.grid_co2e_grams_per_kwh is not None:
            self._co2e_grams += costmodel.energy_kwh(total_joules) * p.energy.pue * p.energy.grid_co2e_grams_per_kwh
        if p.mode == "owned":
            self._opex += fixed + shared["energy"] + sum(per_gpu_energy_cost.values())
        self.opex_window.add(now, self._opex)
        self._overhead_joules += overhead_joules
        total = sum(shared.values()) + sum(per_gpu_energy_cost.values())
        self._hourly = None if p.mode == "cloud" and p.cloud.hourly is None else total / hours
        engines = self._allocate(now, dt, sum(shared.values()), per_gpu_energy_cost, gpu_count, idle_engines)
        self._allocate_energy(now, dt, gpu_joules, overhead_joules, gpu_count)
        return engines

    def _book_warmup(self, now: float, dt: float, shared: dict[str, float]) -> None:
        """Move the part of the time-based spend inside the warm-up window to WARMUP (same total)."""
        if self._warmup is None or self._last_time is None:
            return
        start, until = self._warmup  # the down time before the start (a restored gap) is not warm-up
        fraction = max(min(now, until) - max(self._last_time, start), 0.0) / dt
        shared[WARMUP] = 0.0
        for component in TIME_BASED:
            if component in shared:
                moved = shared[component] * fraction
                shared[component] -= moved
                shared[WARMUP] += moved

    def _allocate(self, now, dt, shared_total, per_gpu_energy_cost, gpu_count, idle_engines) -> dict[str, float]:
        engines, unallocated = self._price_gpus(shared_total, per_gpu_energy_cost, gpu_count)
        self._unallocated += unallocated
        for engine, amount in engines.items():
            self._spend[engine].add(now, amount, dt)
            if amount and engine in idle_engines:
                self._idle_spend[engine] += amount
        return engines

    def _allocate_energy(self, now, dt, gpu_joules: dict[int, float], overhead_joules: float, gpu_count: int) -> None:
        """Each GPU's joules to the engines by their fractions of it; overhead like shared spend."""
        for engine, joules in self._price_gpus(overhead_joules, gpu_joules, gpu_count)[0].items():
            self._energy[engine].add(now, joules, dt)

    def _price_gpus(self, shared: float, per_gpu: dict[int, float], gpu_count: int) -> tuple[dict[str, float], float]:
        """`shared` evenly per GPU, plus each GPU's own amount, to the engines by their fractions of
        each GPU: (per engine, unallocated). Inactive engines get 0, so their ledgers stay current."""
        node_split = self._node_split(gpu_count)
        costs = {i: shared / node_split.gpu_count + per_gpu.get(i, 0.0) for i in range(node_split.gpu_count)}
        engines, unallocated = node_split.price(costs)
        return {e: engines.get(e, 0.0) for e in self._spend}, unallocated

    def _node_split(self, gpu_count: int) -> Split:
        count = gpu_count or self._node_gpu_count  # no NVML readings: the node's labels
        key = (count, tuple(sorted(self._last_uuids.items())))
        if self._split is None or self._split[0] != key:
            self._split = (key, split(self._engine_gpus, count, self._last_uuids))
        return self._split[1]

    # -- reading (call with the state lock held) ------------------------------------------

    def totals(self) -> SpendTotals:
        p = self._pricing
        node_split = self._node_split(self._last_gpu_count)
        return SpendTotals(interruptions=self._interruptions,
            mode=p.mode, currency=p.currency, components=dict(self._components),
            engines={e: ledger.total for e, ledger in self._spend.items()},
            energy_cost=self._energy_cost if p.energy.electricity_per_kwh is not None else None,
            hourly_cost=self._hourly, overhead_energy_joules=self._overhead_joules,
            engine_energy_joules={e: ledger.total for e, ledger in self._energy.items()}, idle_spend=dict(self._idle_spend),
            co2e_grams=self._co2e_grams if p.energy.grid_co2e_grams_per_kwh is not None else None,
            unallocated=self._unallocated, shares=self._shares(), unallocated_share=node_split.unallocated_share(),
            held={e: dict(node_split.fractions.get(e, {})) for e in self._engine_gpus},
            unallocated_gpus=dict(node_split.unallocated))

    def _shares(self) -> dict[str, tuple[float, str]]:
        node_split = self._node_split(self._last_gpu_count)
        return {e: (node_split.share(e), node_split.methods[e]) for e in self._engine_gpus}

    def spend_between(self, engine: str, t0: float, t1: float) -> float | None:
        """Spend allocated to `engine` in [t0, t1]; None if the ledger does not cover t0."""
        ledger = self._spend.get(engine)
        return ledger.between(t0, t1, self._last_time) if ledger else None

    def energy_between(self, engine: str, t0: float, t1: float) -> float | None:
        ledger = self._energy.get(engine)
        return ledger.between(t0, t1, self._last_time) if ledger else None
