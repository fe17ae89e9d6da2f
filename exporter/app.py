"""The exporter: builds the sources, the accountant, the engine registry and the collector from one
configuration, and wires them to the sampling jobs. docs/architecture.md draws the flow.

Prices change when the configuration is reloaded (exporter.reload) or the node's labels change
(exporter.pricing): they apply from then on, and nothing already counted changes. Engines come
and go through the registry (exporter.engines.registry). Signals, flags and the HTTP server
belong to the CLI (exporter.cli).
"""

from __future__ import annotations

import functools
import logging
import math
import threading

from prometheus_client import CollectorRegistry

from exporter import interruptions, pricing
from exporter.accounting import Accountant
from exporter.clock import SystemClock
from exporter.collector import CostCollector
from exporter.config import Config
from exporter.engines.registry import EngineRegistry
from exporter.gpu.backends import gpu_source_for
from exporter.jobs import ACCRUAL, CONTROL, Jobs, JobsCollector
from exporter.modelsplit import ModelSpend
from exporter.reload import ConfigReloader, check_restart_keys
from exporter.snapshot import ExporterInfo, Snapshot, take_snapshot
from exporter.spotprices import SpotPrices

log = logging.getLogger("exporter")


def _changes(method):
    """The method changes what the exposition shows: the state version moves on after it, raised or not."""
    @functools.wraps(method)
    def changing(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self._bump()
    return changing


class Exporter:
    def __init__(self, config: Config, clock=None, nvml_backend=None, kube_client=None, environ=None, storage=None):
        self.config = config
        self.clock = clock or SystemClock()
        self.lock = threading.RLock()  # guards all sampled state; held briefly, never across I/O
        self.gpu = gpu_source_for(config.gpu, self.clock, nvml_backend)
        self.kube = None
        if config.kubernetes.enabled:
            from exporter.kube.source import KubernetesSource  # the kubernetes client itself loads on first use

            self.kube = KubernetesSource(config.kubernetes, self.clock, kube_client)
        self._pods_listed_at: float | None = None
        self.spot = SpotPrices(config.pricing.cloud.spot_file, self.clock)
        prices, self.price_source, self._price_note = pricing.effective(config, None, self.clock.now(), self.spot.prices)
        self._price_change_at = pricing.next_change(config, self.clock.now())  # a commitment starts or ends
        self.accountant = Accountant(prices, self.gpu, {}, self.clock, self.lock, config.window)
        self.accountant.boot_id = interruptions.read_boot_id(config.pricing.interruptions.boot_id_file)
        self.model_spend = ModelSpend(config.window, config.attribution.prefill_token_weight)
        self._version = 0  # bumped by every change of what the exposition shows (exposition_state)
        self._listeners: list = []
        self._storage = storage
        self.jobs = Jobs(after_run=self._changed_by_job)
        self.engine_registry = EngineRegistry(config, self.clock, self.lock, self.accountant, self.jobs)
        if storage is not None:
            self._restore(storage.load(config.pricing.mode, config.pricing.currency))
            storage.bind(self.dump_totals)
        with self.lock:
            self.engine_registry.sync_static(config)
        self.reloader = ConfigReloader(config.source_path, self._apply_config, self.clock, environ)
        self.registry = CollectorRegistry()
        labels = {"mode": config.pricing.mode, "currency": config.pricing.currency, "price_source": self.price_source}
        self.registry.register(CostCollector(self.snapshot, labels, self.engine_registry.apis_in_use()))
        self.registry.register(JobsCollector(self.jobs))
        if storage is not None:
            from exporter.storage import StorageCollector

            self.registry.register(StorageCollector(storage))

    @property
    def engines(self):
        """Every engine source with series, the retained (gone, frozen) ones included."""
        return self.engine_registry.sources

    # -- sampling -------------------------------------------------------------------------

    @_changes
    def sample_gpus_and_account(self) -> None:
        if self.gpu is not None:
            readings = self.gpu.sample()
            with self.lock:  # the GPU and MIG UUIDs the kubelet's devices name
                self.engine_registry.set_gpus(readings)
        self._tick()
        with self.lock:
            self.engine_registry.drop_expired()

    def _tick(self) -> None:
        if self._price_change_at is not None and self.clock.now() >= self._price_change_at:
            self._apply_pricing()  # ticks first: the interval so far at the old price
        with self.lock:
            engines = self.engine_registry
            self._end_warmup_when_ready()
            now, dt, amounts = self.accountant.tick(engines.requests_total(), engines.idle_names())
            if dt > 0:
                self.model_spend.accrue(now, dt, amounts, {e.name: e.work_totals() for e in engines.sources})

    def _end_warmup_when_ready(self) -> None:
        """After an interruption, the warm-up ends once every engine has answered a scrape: its
        model is loaded (an engine serves /metrics only then). Call with the lock held."""
        if not (self.config.pricing.interruptions.until_ready and self.accountant.warming_up()):
            return
        active = self.engine_registry.active_sources()
        if active and all(e.health.status().last_success is not None for e in active):
            seconds = self.accountant.end_warmup()
            log.info("warm-up after the interruption ended after %.1fs: every engine answers", seconds)

    def sample_all(self) -> None:
        """One round of everything, in order (tests and the first sample use this)."""
        with self.lock:
            active = self.engine_registry.active_sources()
        for engine in active:
            engine.sample()
        self.sample_gpus_and_account()

    def snapshot(self) -> Snapshot:
        with self.lock:
            engines = self.engine_registry
            node = self.kube.node if self.kube else None
            info = ExporterInfo(
                pricing={"mode": self.config.pricing.mode, "currency": self.config.pricing.currency,
                         "price_source": self.price_source},
                node=node.labels() if node else None, engine_pods=engines.pods(),
                reload_successful=self.reloader.successful, reload_success_time=self.reloader.success_time,
                api_prices=engines.apis_in_use(), spanning_other_nodes=engines.spanning_other_nodes())
            return take_snapshot(self.clock, self.config, self.gpu, engines.sources, self.accountant,
                                 retired=engines.retired_names(), extra_health=(*(self.kube.healths if self.kube else ()), *self.spot.healths),
                                 info=info, model_spend=self.model_spend)

    # -- changes of the exposition (exporter.web.prerender) ------------------------------------

    def on_change(self, listener) -> None:
        """listener(): called in a job's thread after each run of it (the body may be rendered ahead)."""
        self._listeners.append(listener)

    def off_change(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _bump(self) -> None:
        with self.lock:
            self._version += 1

    def _changed_by_job(self) -> None:
        self._bump()
        for listener in self._listeners:
            listener()

    def exposition_key(self) -> tuple:
        """Changes with every change of what the exposition shows, time aside (exposition_steady_until)."""
        skipped = sum(self.jobs.skipped().values())
        stored = (self._storage.last_write, self._storage.write_errors, self._storage.restored_gap) \
            if self._storage is not None else None
        with self.lock:
            return self._version, tuple(e.generation for e in self.engine_registry.sources), skipped, stored

    def exposition_steady_until(self) -> float:
        """The state clock's time until which time alone changes nothing in the exposition: no live
        window loses a sample."""
        with self.lock:
            now = self.clock.now()
            windows = [w for e in self.engine_registry.sources for w in e.windows()]
            if self.config.pricing.mode == "owned":  # payback reads the opex window at snapshot time
                windows.append(self.accountant.opex_window)
            return min((w.steady_until(now) for w in windows), default=math.inf)

    # -- persisted totals (exporter.storage) --------------------------------------------------

    def dump_totals(self) -> dict:
        """Every cumulative figure, JSON-ready, for the state file."""
        gpus = self.gpu.export_state() if self.gpu is not None else []
        with self.lock:
            return {"accountant": self.accountant.export_state(), "gpus": gpus,
                    "engines": self.engine_registry.export_totals(), "models": self.model_spend.export_state()}

    def _restore(self, saved) -> None:
        if saved is None:
            return
        self.accountant.restore_state(saved.accountant, saved.accrue_gap)
        if interruptions.interrupted(saved.accountant.get("boot_id"), self.accountant.boot_id):
            warmup = self.config.pricing.interruptions.warmup
            log.warning("node interrupted since the totals were saved (boot id changed); the next %gs are "
                        "booked as interruption_warmup", warmup)
            self.accountant.interrupted(warmup)
        self.model_spend.restore_state(saved.models, after_crash=saved.provisional)  # shape checked on load
        if self.gpu is not None:
            self.gpu.restore_state(saved.gpus, saved.accrue_gap)
        with self.lock:
            self.engine_registry.restore_totals(saved.engines, saved.provisional)

    # -- Kubernetes -----------------------------------------------------------------------

    @_changes
    def refresh_node(self) -> None:
        if self.kube is not None and self.kube.refresh_node():
            self._apply_pricing()
            with self.lock:  # the node's GPU labels: the engine pods' shares of its GPUs
                self.engine_registry.set_node_gpus(self.kube.node.gpus if self.kube.node else None)

    @_changes
    def refresh_pods(self) -> None:
        if self.kube is None or self.kube.pods_health is None:
            return
        now, targets = self.clock.now(), self.kube.refresh_pods()
        with self.lock:
            self.engine_registry.set_pod_devices(self.kube.pod_devices())
            if targets is not None:
                self.engine_registry.reconcile_pods(targets, self._pods_listed_at, self.kube.workers)
                self._pods_listed_at = now
            self.engine_registry.drop_expired()

    def refresh_kubernetes(self) -> None:
        """Read the node and list the pods now (at start, and in tests)."""
        self.refresh_node()
        self.refresh_pods()

    def _apply_pricing(self) -> None:
        with self.lock:  # computed under the lock: a reload and a node refresh may race
            now = self.clock.now()
            self._price_change_at = pricing.next_change(self.config, now)
            prices, source, note = pricing.effective(self.config, self.kube.node if self.kube else None, now,
                                                     self.spot.prices)
            if (prices, source, note) == (self.accountant.pricing, self.price_source, self._price_note):
                return
            if (prices, source) != (self.accountant.pricing, self.price_source):
                self._tick()  # the interval so far accrues at the old prices
                self.accountant.set_pricing(prices)
                self.price_source = source
            self._price_note = note
        if source == pricing.UNKNOWN:
            log.warning("instance price unknown: %s; the instance spend component does not accrue until it is known",
                        note)
        else:
            hourly = prices.cloud.hourly
            log.info("pricing price_source=%s hourly=%s%s", source, "-" if hourly is None else f"{hourly:g}",
                     f" note={note}" if note else "")

    # -- configuration reload ---------------------------------------------------------------

    @_changes
    def reload_config(self) -> tuple[bool, str]:
        """Re-read the configuration file and apply it now (SIGHUP): (success, message)."""
        return self.reloader.reload()

    @_changes
    def check_config_file(self) -> None:
        self.reloader.poll()
        if self.spot.poll():
            self._apply_pricing()

    @property
    def reload_successful(self) -> bool:
        return self.reloader.successful

    def _apply_config(self, new: Config) -> None:
        """Apply a valid configuration, or raise ConfigError naming a key that needs a restart."""
        old = self.config
        check_restart_keys(old, new)
        with self.lock:
            self._tick()  # what ran so far accrues at the old prices
            self.config = new
            if new.pricing.cloud.spot_file != self.spot.path:
                self.spot = SpotPrices(new.pricing.cloud.spot_file, self.clock)
            self.model_spend.prefill_token_weight = new.attribution.prefill_token_weight
            self.engine_registry.sync_static(new)
        self._apply_pricing()
        if new.gpu.interval != old.gpu.interval:
            self.jobs.reschedule("gpu", new.gpu.interval)
        if new.reload_interval != old.reload_interval:
            self.jobs.remove("config:reload")
            self._schedule_reload()
        with self.lock:
            self.engine_registry.drop_expired()

    # -- jobs -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sampling jobs; the first round runs at once."""
        if self.kube is not None:
            # The node's price before the first tick, bounded by kubernetes.timeout; the pods are
            # listed by their job at once, so a slow API server delays listening by one timeout only.
            self.refresh_node()
            if self.price_source == pricing.UNKNOWN and self._price_note.endswith("not been read yet"):
                log.warning("instance price unknown: %s; the instance spend component does not accrue until it is "
                            "known", self._price_note)
        self.sample_gpus_and_account()  # open the spend ledger before any engine's first scrape
        self.jobs.add(self.sample_gpus_and_account, self.config.gpu.interval, "gpu", ACCRUAL)
        if self.kube is not None:
            kube = self.config.kubernetes
            self.jobs.add(self.refresh_node, kube.refresh_interval, "kubernetes:node", CONTROL,
                          first_in=kube.refresh_interval)
            if kube.discovery.enabled:
                self.jobs.add(self.refresh_pods, kube.discovery.refresh_interval, "kubernetes:pods", CONTROL)
        self._schedule_reload()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()

    def _schedule_reload(self) -> None:
        if (self.reloader.path or self.spot.path) and self.config.reload_interval > 0:
            self.jobs.add(self.check_config_file, self.config.reload_interval, "config:reload", CONTROL,
                          first_in=self.config.reload_interval)

