"""Wires the sources, the accountant and the collector together, and runs the sampling jobs.

Engines change while running: pods discovered on this node come and go (docs/kubernetes.md), and
a reloaded configuration file adds, removes or changes engines. An engine that goes away keeps
its totals, frozen, for `removed_engine_retention` so that Prometheus scrapes their final
values, then its series are dropped; while an engine exists its totals never go backwards.
Prices change when the configuration is reloaded or the node's labels change: they apply from
then on, and nothing already counted changes.

The configuration file is re-read every `reload_interval`, on SIGHUP, and through
`Exporter.reload_config()` (the hook for an HTTP reload endpoint). A file that fails to load
(invalid, a key that needs a restart, deleted, unreadable) leaves the running configuration in
place; llmcost_config_last_reload_successful says so, and one log line names the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import signal
import threading
import time
from dataclasses import dataclass

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from exporter import snapshot as snapshots
from exporter.accounting import Accountant
from exporter.clock import SystemClock
from exporter.collector import CostCollector
from exporter.config import Config, ConfigError, EngineConfig, find_instance_price, load_bytes, node_labels_pricing, read_file
from exporter.engines.source import EngineSource
from exporter.gpu.simulated import SimulatedNVML
from exporter.gpu.source import GpuSource, load_pynvml

log = logging.getLogger("exporter")

# Keys a reload cannot change in a running exporter: totals are kept per currency and cost
# component, windows are sized at start, and the GPU and Kubernetes sources are built at start.
SETTLE_SECONDS = 0.1  # a changed file must read the same this much later before it is loaded
RESTART_KEYS = ("pricing.mode", "pricing.currency", "gpu.backend", "gpu.simulated", "window", "kubernetes")


@dataclass
class _Engine:
    source: EngineSource
    gpus: list[int] | None
    pod: object = None  # kube.discovery.PodTarget for a discovered engine
    removed_at: float | None = None  # gone since: frozen until removed_at + removed_engine_retention


class Exporter:
    def __init__(self, config: Config, clock=None, nvml_backend=None, kube_client=None, environ=None):
        self.config = config
        self.clock = clock or SystemClock()
        self.lock = threading.RLock()  # guards all sampled state; held briefly, never across I/O
        self._environ = environ  # for reloads; None = os.environ
        self.gpu = self._gpu_source(nvml_backend)
        self._engines: dict[str, _Engine] = {}
        self.engines: list[EngineSource] = []  # every engine with series, the retained ones included
        self._retired_requests = 0.0  # finished requests of dropped engines, so the total stays monotonic
        self._pods_listed_at: float | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._previous_sighup = None
        self.restore_engine = None  # exporter.state sets it: an engine added later gets its saved totals
        self.kube = None
        if config.kubernetes.enabled:
            from exporter.kube.source import KubernetesSource  # the kubernetes client itself loads on first use

            self.kube = KubernetesSource(config.kubernetes, self.clock, kube_client)
        pricing, self.price_source, self._price_note = self._effective_pricing()
        self.accountant = Accountant(pricing, self.gpu, {}, self._requests_total, self.clock, self.lock,
                                     config.window, engine_idle=self._engine_idle)
        self._sync_static_engines()
        # Config reloads: the content last looked at (a digest, or the read error) and the one running.
        self.config_path = config.source_path
        self._reload_lock = threading.Lock()
        self._running_digest = self._last_seen = self._file_state()
        self.reload_successful = True
        self.reload_success_time = self.clock.now()
        self.registry = CollectorRegistry()
        labels = {"mode": config.pricing.mode, "currency": config.pricing.currency, "price_source": self.price_source}
        self.registry.register(CostCollector(self.snapshot, labels, self._compared_apis()))

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

    def _apis_for(self, engine_config: EngineConfig):
        names = engine_config.apis if engine_config.apis is not None else self.config.compare.apis
        return [self.config.api_prices[name] for name in names]

    def _compared_apis(self):
        compared = {api.name: api for engine in self.engines for api in engine.apis}
        return sorted(compared.values(), key=lambda a: a.name)

    def _requests_total(self) -> float:
        return self._retired_requests + sum(e.requests_total() for e in self.engines)

    def _engine_idle(self, name: str) -> bool:
        engine = self._engines.get(name)
        return engine is None or engine.removed_at is not None or not engine.source.tokens_flowing

    # -- sampling -------------------------------------------------------------------------

    def sample_gpus_and_account(self) -> None:
        if self.gpu is not None:
            self.gpu.sample()
        self.accountant.tick()
        self._drop_expired_engines()

    def sample_all(self) -> None:
        """One round of everything, in order (tests and the first sample use this)."""
        with self.lock:
            active = [e.source for e in self._engines.values() if e.removed_at is None]
        for engine in active:
            engine.sample()
        self.sample_gpus_and_account()

    def snapshot(self) -> snapshots.Snapshot:
        with self.lock:
            retired = {name for name, e in self._engines.items() if e.removed_at is not None}
            node = self.kube.node if self.kube else None
            info = snapshots.ExporterInfo(
                pricing={"mode": self.config.pricing.mode, "currency": self.config.pricing.currency,
                         "price_source": self.price_source},
                node=node.labels() if node else None,
                engine_pods={name: (e.pod.namespace, e.pod.pod) for name, e in self._engines.items() if e.pod},
                reload_successful=self.reload_successful, reload_success_time=self.reload_success_time,
                api_prices=self._compared_apis())
            return snapshots.take(self.clock, self.config, self.gpu, self.engines, self.accountant, retired=retired,
                                  extra_health=self.kube.healths if self.kube else (), info=info)

    # -- engines: static ones from the config, discovered ones from pods --------------------

    def _add_engine(self, engine_config: EngineConfig, pod=None, restart: str | None = None) -> None:
        source = EngineSource(engine_config, self.clock, self.lock, self.config.window, self._apis_for(engine_config))
        if self.restore_engine is not None:
            self.restore_engine(source)
        if restart:
            source.reconfigure(engine_config, source.apis, restart)
        self._engines[engine_config.name] = _Engine(source, engine_config.gpus, pod)
        self._schedule_engine(engine_config.name)

    def _update_engine(self, engine: _Engine, engine_config: EngineConfig, restart: str | None = None) -> None:
        apis = self._apis_for(engine_config)
        if restart or engine_config != engine.source.config or apis != engine.source.apis:
            interval_changed = engine_config.interval != engine.source.config.interval
            engine.source.reconfigure(engine_config, apis, restart)
            if interval_changed:
                self._schedule_engine(engine_config.name)
        engine.gpus = engine_config.gpus
        if engine.removed_at is not None:
            engine.removed_at = None
            self._schedule_engine(engine_config.name)
            log.info("engine back engine=%s", engine_config.name)

    def _retire_engine(self, name: str, why: str) -> None:
        engine = self._engines[name]
        engine.removed_at = self.clock.now()
        self._unschedule(f"engine:{name}")
        log.info("engine gone engine=%s reason=%s; its series stay, frozen, for %gs",
                 name, why, self.config.removed_engine_retention)

    def _publish_engines(self) -> None:
        """Call with the lock held, after changing self._engines."""
        self.engines = [e.source for e in self._engines.values()]
        self.accountant.set_engines({name: e.gpus for name, e in self._engines.items() if e.removed_at is None})

    def _drop_expired_engines(self) -> None:
        now = self.clock.now()
        with self.lock:
            expired = [name for name, e in self._engines.items()
                       if e.removed_at is not None and now - e.removed_at >= self.config.removed_engine_retention]
            for name in expired:
                self._retired_requests += self._engines.pop(name).source.requests_total()
                self.accountant.forget(name)
                log.info("engine series dropped engine=%s", name)
            if expired:
                self._publish_engines()

    def _sync_static_engines(self) -> None:
        """Make the configured engines those of self.config (at start and after a reload)."""
        wanted = {e.name: e for e in self.config.engines}
        with self.lock:
            for name, engine in self._engines.items():
                if engine.pod is None and engine.removed_at is None and name not in wanted:
                    self._retire_engine(name, "removed from the configuration")
            for name, engine_config in wanted.items():
                engine = self._engines.get(name)
                if engine is None:
                    self._add_engine(engine_config)
                else:  # a new URL may be another process: its next scrape is a new baseline
                    restart = "baseline" if engine_config.url != engine.source.config.url else None
                    self._update_engine(engine, engine_config, restart)
            for engine in self._engines.values():  # discovered engines follow compare.apis
                if engine.pod is not None:
                    self._update_engine_apis(engine)
            self._publish_engines()

    def _update_engine_apis(self, engine: _Engine) -> None:
        apis = self._apis_for(engine.source.config)
        if apis != engine.source.apis:
            engine.source.reconfigure(engine.source.config, apis)

    def _pod_engine_config(self, target) -> EngineConfig:
        discovery = self.config.kubernetes.discovery
        return EngineConfig(url=target.url, name=target.engine, kind=target.kind, interval=discovery.interval,
                            timeout=discovery.timeout, capacity_tokens_per_s=target.capacity,
                            gpus=list(target.gpus) if target.gpus is not None else None)

    def _reconcile_pods(self, targets) -> None:
        """Engines follow the pods listed: new ones are added, gone ones retired, changed ones updated."""
        listed_before, now = self._pods_listed_at, self.clock.now()

        def started_since_last_list(target) -> bool:
            # A pod that started after our previous listing counted from 0 while we did not
            # watch it: all of its counts are new. Otherwise its first scrape is a baseline.
            return listed_before is not None and target.started is not None and target.started > listed_before

        with self.lock:
            seen = set()
            for target in targets:
                name = target.engine
                engine = self._engines.get(name)
                engine_config = self._pod_engine_config(target)
                if engine is not None and engine.pod is None:
                    continue  # a configured engine of that name (config validation forbids '/' in them)
                seen.add(name)
                if engine is None:
                    self._add_engine(engine_config, target, "from_zero" if started_since_last_list(target) else None)
                    log.info("engine discovered engine=%s url=%s", name, target.url)
                    continue
                restart = None
                if target.uid != engine.pod.uid:  # re-created under the same name (a StatefulSet pod)
                    restart = "from_zero" if started_since_last_list(target) else "baseline"
                elif target.url != engine.pod.url:
                    restart = "baseline"
                engine.pod = target
                self._update_engine(engine, engine_config, restart)
            for name, engine in self._engines.items():
                if engine.pod is not None and engine.removed_at is None and name not in seen:
                    self._retire_engine(name, "pod gone")
            self._publish_engines()
        self._pods_listed_at = now

    # -- Kubernetes -----------------------------------------------------------------------

    def refresh_node(self) -> None:
        if self.kube is not None and self.kube.refresh_node():
            self._apply_pricing()

    def refresh_pods(self) -> None:
        if self.kube is not None and self.kube.pods_health is not None:
            targets = self.kube.refresh_pods()
            if targets is not None:
                self._reconcile_pods(targets)
            self._drop_expired_engines()

    def refresh_kubernetes(self) -> None:
        """Read the node and list the pods now (at start, and in tests)."""
        self.refresh_node()
        self.refresh_pods()

    # -- pricing --------------------------------------------------------------------------

    def _effective_pricing(self):
        """(Pricing, price_source, why) from the config, and from the node's labels where the
        config names no price and no instance type."""
        config = self.config
        if not node_labels_pricing(config):
            return config.pricing, config.hourly_source, ""
        cloud = config.pricing.cloud
        node = self.kube.node if self.kube else None
        hourly, source, why = None, "unknown", ""
        if node is None:
            why = "the node's labels have not been read yet"
        elif not node.instance_type:
            why = f"node {node.name} has no instance-type label"
        else:
            found = find_instance_price(config, node.instance_type, node.region or None)
            if found is None:
                why = (f"instance type {node.instance_type!r} of node {node.name} is not in the price catalog: "
                       "add it under catalog.instances or set pricing.cloud.hourly")
            else:
                hourly, basis = found.hourly, "on-demand"
                if node.capacity_type == "spot" and found.spot_hourly is not None:
                    hourly, basis = found.spot_hourly, "spot"
                elif node.capacity_type == "spot":
                    why = f"no spot price for {found.instance_type} in the catalog: priced on-demand (an upper bound)"
                if node.region and found.region not in (node.region, "default"):
                    why = (why + "; " if why else "") + \
                        f"no {node.region} price for {found.instance_type}: priced as in {found.region}"
                hourly *= cloud.price_multiplier
                source = f"node_labels:{found.provider}/{found.instance_type}/{found.region}/{basis}"
        pricing = dataclasses.replace(config.pricing, cloud=dataclasses.replace(cloud, hourly=hourly))
        return pricing, source, why

    def _apply_pricing(self) -> None:
        with self.lock:  # computed under the lock: a reload and a node refresh may race
            pricing, source, why = self._effective_pricing()
            if (pricing, source, why) == (self.accountant.pricing, self.price_source, self._price_note):
                return
            if (pricing, source) != (self.accountant.pricing, self.price_source):
                self.accountant.tick()  # the interval so far accrues at the old prices
                self.accountant.set_pricing(pricing)
                self.price_source = source
            self._price_note = why
        hourly = pricing.cloud.hourly
        if source == "unknown":
            log.warning("instance price unknown: %s; the instance spend component does not accrue until it is known", why)
        else:
            log.info("pricing price_source=%s hourly=%s%s", source, "-" if hourly is None else f"{hourly:g}",
                     f" note={why}" if why else "")

    # -- configuration reload ---------------------------------------------------------------

    def reload_config(self) -> tuple[bool, str]:
        """Re-read the configuration file and apply it now; the hook for SIGHUP and an HTTP
        reload endpoint (e.g. POST /-/reload answering 200 or 500 with the message). Returns
        (success, message); on failure the running configuration stays."""
        return self._check_config_file(force=True)

    def check_config_file(self) -> None:
        """The polling job: load the file again only if its content (or readability) changed."""
        self._check_config_file(force=False)

    def _file_state(self) -> str | None:
        """'sha256:<digest>' of the file's content, 'error:<why>' if unreadable, None without a file."""
        if not self.config_path:
            return None
        try:
            return "sha256:" + hashlib.sha256(read_file(self.config_path)).hexdigest()
        except ConfigError as err:
            return f"error:{err}"

    def _check_config_file(self, force: bool) -> tuple[bool, str]:
        if not self.config_path:
            return True, "no configuration file to reload"
        with self._reload_lock:
            try:
                data = read_file(self.config_path)  # ConfigMap updates swap a symlink: read the target anew
                state = "sha256:" + hashlib.sha256(data).hexdigest()
            except ConfigError as err:
                data, state, error = None, f"error:{err}", err
            if state == self._last_seen and not force:
                return self.reload_successful, "unchanged"
            if not force and data is not None and not self._settled(data):
                return self.reload_successful, "changing"  # an editor still writing it: look at the next poll
            self._last_seen = state
            if data is None:
                return self._reload_failed(error)
            if state == self._running_digest:
                return self._reload_succeeded("configuration file unchanged", applied=False)
            try:
                new = load_bytes(data, self.config_path, self._environ)
                self._apply_config(new)
            except ConfigError as err:
                return self._reload_failed(err)
            self._running_digest = state
            return self._reload_succeeded("configuration reloaded", applied=True)

    def _settled(self, data: bytes) -> bool:
        """Is the file still the same a moment later? A file rewritten in place can be read half
        written (a ConfigMap update, a rename, cannot)."""
        time.sleep(SETTLE_SECONDS)
        try:
            return read_file(self.config_path) == data
        except ConfigError:
            return False

    def _reload_failed(self, err: ConfigError) -> tuple[bool, str]:
        self.reload_successful = False
        log.error("config reload failed, keeping the running configuration path=%s key=%s error=%s",
                  self.config_path, err.key, err)
        return False, str(err)

    def _reload_succeeded(self, message: str, applied: bool) -> tuple[bool, str]:
        recovered = not self.reload_successful
        self.reload_successful, self.reload_success_time = True, self.clock.now()
        if applied or recovered:
            log.info("%s path=%s", message, self.config_path)
        return True, message

    def _apply_config(self, new: Config) -> None:
        """Apply a valid configuration, or raise ConfigError naming a key that needs a restart."""
        old = self.config
        for key in RESTART_KEYS:
            changed = _first_difference(_get(old, key), _get(new, key), key)
            if changed:
                raise ConfigError(changed[0], f"changed from {changed[1]!r} to {changed[2]!r}, allowed: the running "
                                  "value; this key needs a restart")
        with self.lock:
            self.accountant.tick()  # what ran so far accrues at the old prices
            self.config = new
            self._sync_static_engines()
        self._apply_pricing()
        if new.gpu.interval != old.gpu.interval:
            self._reschedule("gpu", new.gpu.interval)
        if new.reload_interval != old.reload_interval:
            self._unschedule("config:reload")
            self._schedule_reload()
        self._drop_expired_engines()

    # -- scheduling -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the apscheduler jobs; the first round runs at once."""
        if self.kube is not None:
            self.refresh_kubernetes()  # the node's price before the first tick (bounded by kubernetes.timeout)
            if self.price_source == "unknown" and self._price_note.endswith("not been read yet"):
                log.warning("instance price unknown: %s; the instance spend component does not accrue until it is "
                            "known", self._price_note)
        self.sample_gpus_and_account()  # open the spend ledger before any engine's first scrape
        workers = len(self.engines) + 4 + (32 if self.config.kubernetes.discovery.enabled else 0)
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(workers)}, daemon=True)
        self._add_job(self.sample_gpus_and_account, self.config.gpu.interval, "gpu")
        with self.lock:
            for name, engine in self._engines.items():
                if engine.removed_at is None:
                    self._schedule_engine(name)
        if self.kube is not None:
            kube = self.config.kubernetes
            self._add_job(self.refresh_node, kube.refresh_interval, "kubernetes:node", first_in=kube.refresh_interval)
            if kube.discovery.enabled:
                self._add_job(self.refresh_pods, kube.discovery.refresh_interval, "kubernetes:pods",
                              first_in=kube.discovery.refresh_interval)
        self._schedule_reload()
        self._scheduler.start()
        self._install_sighup()

    def stop(self) -> None:
        if self._previous_sighup is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def _add_job(self, func, seconds: float, job_id: str, first_in: float = 0.0) -> None:
        if self._scheduler is None:
            return
        first = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=first_in)
        self._scheduler.add_job(func, trigger="interval", seconds=seconds, id=job_id, max_instances=1, coalesce=True,
                                misfire_grace_time=None, next_run_time=first, replace_existing=True)

    def _schedule_engine(self, name: str) -> None:
        source = self._engines[name].source
        self._add_job(source.sample, source.config.interval, f"engine:{name}")

    def _schedule_reload(self) -> None:
        if self.config_path and self.config.reload_interval > 0:
            self._add_job(self.check_config_file, self.config.reload_interval, "config:reload",
                          first_in=self.config.reload_interval)

    def _reschedule(self, job_id: str, seconds: float) -> None:
        if self._scheduler is not None and self._scheduler.get_job(job_id):
            self._scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)

    def _unschedule(self, job_id: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(job_id):
            self._scheduler.remove_job(job_id)

    def _install_sighup(self) -> None:
        """SIGHUP reloads the configuration, as for Prometheus (only the main thread may set handlers)."""
        if not self.config_path or threading.current_thread() is not threading.main_thread():
            return

        def on_sighup(*_):  # do the work in a thread: a signal handler must not take our locks
            threading.Thread(target=self.reload_config, name="config-reload", daemon=True).start()

        self._previous_sighup = signal.signal(signal.SIGHUP, on_sighup)


def _get(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _first_difference(old, new, key: str):
    """(key, old, new) of the first leaf that differs between two configuration values, or None."""
    if old == new:
        return None
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new):
        for f in dataclasses.fields(old):
            found = _first_difference(getattr(old, f.name), getattr(new, f.name), f"{key}.{f.name}")
            if found:
                return found
    return key, old, new
