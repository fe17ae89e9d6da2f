"""Wires the sources, the accountant and the collector together, and runs the sampling jobs."""

from __future__ import annotations

import datetime
import logging
import threading

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from exporter import snapshot as snapshots
from exporter.accounting import Accountant
from exporter.clock import SystemClock
from exporter.collector import CostCollector
from exporter.config import Config
from exporter.engines.source import EngineSource
from exporter.gpu.simulated import SimulatedNVML
from exporter.gpu.source import GpuSource, load_pynvml

log = logging.getLogger("exporter")


class Exporter:
    def __init__(self, config: Config, clock=None, nvml_backend=None):
        self.config = config
        self.clock = clock or SystemClock()
        self.lock = threading.RLock()  # guards all sampled state; held briefly, never across I/O
        self.gpu = self._gpu_source(nvml_backend)
        self.engines = [EngineSource(e, self.clock, self.lock, config.window, self._apis_for(e)) for e in config.engines]
        by_name = {e.name: e for e in self.engines}
        self.accountant = Accountant(
            config.pricing, self.gpu, {e.name: e.gpus for e in config.engines},
            self._requests_total, self.clock, self.lock, config.window,
            engine_idle=lambda name: not by_name[name].tokens_flowing)
        self.registry = CollectorRegistry()
        compared = {api.name: api for engine in self.engines for api in engine.apis}
        labels = {"mode": config.pricing.mode, "currency": config.pricing.currency, "price_source": config.hourly_source}
        self.registry.register(CostCollector(self.snapshot, labels, sorted(compared.values(), key=lambda a: a.name)))
        self._scheduler: BackgroundScheduler | None = None

    def _gpu_source(self, nvml_backend):
        gpu = self.config.gpu
        if gpu.backend == "none":
            return None
        if nvml_backend is not None:
            return GpuSource(lambda: nvml_backend, self.clock)
        if gpu.backend == "simulated":
            sim = gpu.simulated
            backend = SimulatedNVML(self.clock, count=sim.count, product=sim.product, idle_watts=sim.idle_watts,
                                    max_watts=sim.max_watts, memory_bytes=sim.memory_bytes, energy_counter=sim.energy_counter)
            self.simulated_nvml = backend
            return GpuSource(lambda: backend, self.clock)
        return GpuSource(load_pynvml, self.clock)

    def _apis_for(self, engine_config):
        names = engine_config.apis if engine_config.apis is not None else self.config.compare.apis
        return [self.config.api_prices[name] for name in names]

    def _requests_total(self) -> float:
        return sum(e.requests_total() for e in self.engines)

    # -- sampling -------------------------------------------------------------------------

    def sample_gpus_and_account(self) -> None:
        if self.gpu is not None:
            self.gpu.sample()
        self.accountant.tick()

    def sample_all(self) -> None:
        """One round of everything, in order (tests and the first sample use this)."""
        for engine in self.engines:
            engine.sample()
        self.sample_gpus_and_account()

    def snapshot(self) -> snapshots.Snapshot:
        with self.lock:
            return snapshots.take(self.clock, self.config, self.gpu, self.engines, self.accountant)

    # -- scheduling -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the apscheduler jobs; the first round runs at once."""
        self.sample_gpus_and_account()  # open the spend ledger before any engine's first scrape
        workers = len(self.engines) + 2
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(workers)}, daemon=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        common = dict(trigger="interval", max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=now)
        self._scheduler.add_job(self.sample_gpus_and_account, seconds=self.config.gpu.interval, id="gpu", **common)
        for engine in self.engines:
            self._scheduler.add_job(engine.sample, seconds=engine.config.interval, id=f"engine:{engine.name}", **common)
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
