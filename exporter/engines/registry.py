"""The engines this exporter scrapes, static (from the config) and discovered (from pods), and
their lifecycle: added, updated, retired, expired.

An engine that goes away (removed from the config, pod gone) is retired: its totals stay, frozen,
for `removed_engine_retention` so that Prometheus scrapes their final values, then it expires and
its series are dropped. While an engine exists its totals never go backwards: a changed URL or a
re-created pod restarts its counting from a new baseline (or from zero, for a pod that started
since the last listing), never from its old values.

Every change is published to the accountant (which engines share the node's spend: each one's
claim on its GPUs, exporter.attribution) and to the jobs (one scrape job per active engine). A
discovered pod claims what its GPU resources say against the node's labels (exporter.kube.shares),
or, with kubernetes.pod_resources, the exact devices the kubelet says it holds, read against NVML's
GPUs and MIG devices (exporter.kube.podresources.claims); GPU indices, configured or annotated, win.
The worker pods of a multi-node engine here add their GPUs to their leader's engine
(exporter.kube.groups), which accrues spend on this node even where the leader is scraped on
another: a booked engine, with no scrape job, retired with its last worker.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import dataclass

from exporter import pricing
from exporter.attribution import Claim
from exporter.config import Config, EngineConfig
from exporter.engines.schemas import all_maps
from exporter.engines.source import EngineSource
from exporter.jobs import ENGINES
from exporter.kube import groups, shares
from exporter.kube.podresources.claims import exact_claim, nvml_parts, per_gpu

if typing.TYPE_CHECKING:
    from exporter.kube.discovery import PodTarget

log = logging.getLogger("exporter")


@dataclass
class _Engine:
    source: EngineSource
    gpus: list | None  # GPU indices or NVML UUIDs
    pod: PodTarget | None = None  # for a discovered engine
    removed_at: float | None = None  # gone since: frozen until removed_at + removed_engine_retention

    @property
    def active(self) -> bool:
        return self.removed_at is None


@dataclass
class _Booked:
    """An engine whose leader is scraped on another node, held here by its worker pods."""

    namespace: str
    leader: str  # the leader pod
    removed_at: float | None = None  # its last worker here gone since

    @property
    def active(self) -> bool:
        return self.removed_at is None


class EngineRegistry:
    """Call every method with the exporter's state lock held (`lock`)."""

    def __init__(self, config: Config, clock, lock, accountant, jobs):
        self._config = config
        self._clock = clock
        self._lock = lock
        self._accountant = accountant
        self._jobs = jobs
        self._engines: dict[str, _Engine] = {}
        self.sources: list[EngineSource] = []  # every engine with series, the retained ones included
        self._retired_requests = 0.0  # finished requests of expired engines: the node total stays monotonic
        self._saved: dict[str, dict] = {}  # persisted totals of engines not seen yet since the start
        self._saved_provisional = False
        self._node_gpus: shares.NodeGpus | None = None  # the node's GPU labels, once read
        self._pod_devices: dict | None = None  # (namespace, pod) -> devices, from the kubelet; None: unknown
        self._gpus: tuple[tuple, list] = ((), [])  # NVML's GPUs: (their layout, the readings)
        self._workers: list[groups.GroupWorker] = []  # multi-node engines' worker pods here
        self._booked: dict[str, _Booked] = {}  # engines that only workers here hold GPUs for

    # -- what the rest of the exporter reads ----------------------------------------------

    def active_sources(self) -> list[EngineSource]:
        return [e.source for e in self._engines.values() if e.active]

    def retired_names(self) -> set[str]:
        return {name for name, e in self._engines.items() if not e.active}

    def idle_names(self) -> set[str]:
        """Engines whose spend is idle spend now: no tokens flowing, or retired."""
        return {name for name, e in self._engines.items() if not e.active or not e.source.tokens_flowing}

    def requests_total(self) -> float:
        return self._retired_requests + sum(e.requests_total() for e in self.sources)

    def pods(self) -> dict[str, tuple[str, str]]:
        """Discovered engine -> (namespace, pod); a booked engine's pod is its leader."""
        booked = {name: (b.namespace, b.leader) for name, b in self._booked.items()}
        return {**booked, **{name: (e.pod.namespace, e.pod.pod) for name, e in self._engines.items() if e.pod is not None}}

    def spanning_other_nodes(self) -> frozenset[str]:
        """Engines led from this node whose group has pods elsewhere (a LeaderWorkerSet leader whose
        workers are not all here): their spend on this node is part of their cost only."""
        sizes = {name: e.pod.group_size for name, e in self._engines.items() if e.pod is not None and e.pod.group_size}
        here = dict.fromkeys(sizes, 1)
        for worker in self._workers:
            if worker.leader_engine in here:
                here[worker.leader_engine] += 1
        return frozenset(name for name, count in here.items() if count < sizes[name])

    def apis_in_use(self) -> list:
        compared = {(api.name, api.tier): api for engine in self.sources for api in engine.apis}
        return [compared[key] for key in sorted(compared)]

    # -- persisted totals ---------------------------------------------------------------------

    def export_totals(self) -> dict[str, dict]:
        engines = {e.name: e.export_state() for e in self.sources}
        return {**self._saved, **engines}  # engines not seen yet since the start keep their saved totals

    def restore_totals(self, saved: dict[str, dict], provisional: bool) -> None:
        """Saved totals by engine name: given to each engine as it appears, before its first scrape."""
        self._saved, self._saved_provisional = dict(saved), provisional
        for source in self.sources:
            self._restore(source)

    def _restore(self, source: EngineSource) -> None:
        saved = self._saved.pop(source.name, None)
        if saved is None:
            return
        try:
            restored = source.restore_state(saved, self._clock.now(), self._saved_provisional)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            log.warning("saved state of engine=%s unusable (%s); it starts from 0", source.name, type(err).__name__)
            return
        if not restored:
            log.info("saved state of engine=%s was for another URL; it starts from 0", source.name)

    # -- changes --------------------------------------------------------------------------------

    def sync_static(self, config: Config) -> None:
        """Make the configured engines those of `config` (at start and after a reload)."""
        maps_changed = config.engine_maps != self._config.engine_maps
        self._config = config
        wanted = {e.name: e for e in config.engines}
        for name, engine in self._engines.items():
            if engine.pod is None and engine.active and name not in wanted:
                self._retire(name, "removed from the configuration")
        for name, engine_config in wanted.items():
            existing = self._engines.get(name)
            if existing is None:
                self._add(engine_config)
            else:  # a new URL may be another process: its next scrape is a new baseline
                restart = "baseline" if engine_config.url != existing.source.config.url else None
                self._update(existing, engine_config, restart)
        for engine in self._engines.values():  # discovered engines follow compare.apis; all follow the maps
            apis = self._apis_for(engine.source.config, engine.pod, before=engine.source.apis)
            if maps_changed or (engine.pod is not None and apis != engine.source.apis):
                engine.source.reconfigure(engine.source.config, apis, maps=all_maps(config.engine_maps))
        self._publish()

    def reconcile_pods(self, targets, listed_before: float | None, workers=()) -> None:
        """Engines follow the pods listed: new ones are added, gone ones retired, changed ones
        updated. `listed_before`: when the previous listing was taken (None: this is the first).
        `workers`: the multi-node engines' worker pods listed (exporter.kube.groups)."""

        def started_since_last_list(target) -> bool:
            # A pod that started after our previous listing counted from 0 while we did not
            # watch it: all of its counts are new. Otherwise its first scrape is a baseline.
            return listed_before is not None and target.started is not None and target.started > listed_before

        seen = set()
        for target in targets:
            name = target.engine
            engine = self._engines.get(name)
            if engine is not None and engine.pod is None:
                continue  # a configured engine of that name (config validation forbids '/' in them)
            seen.add(name)
            engine_config = self._pod_engine_config(target)
            if engine is None:
                self._add(engine_config, target, "from_zero" if started_since_last_list(target) else None)
                log.info("engine discovered engine=%s url=%s", name, target.url)
                continue
            restart = None
            assert engine.pod is not None
            if target.uid != engine.pod.uid:  # re-created under the same name (a StatefulSet pod)
                restart = "from_zero" if started_since_last_list(target) else "baseline"
            elif target.url != engine.pod.url:
                restart = "baseline"
            engine.pod = target
            self._update(engine, engine_config, restart)
        for name, engine in self._engines.items():
            if engine.pod is not None and engine.active and name not in seen:
                self._retire(name, "pod gone")
        self._book(list(workers))
        self._publish()

    def _book(self, workers: list) -> None:
        """Booked engines follow the workers: one per leader not scraped here, retired (frozen,
        then dropped as any engine) when its last worker here goes."""
        self._workers = workers
        now = self._clock.now()
        scraped = {name for name, e in self._engines.items() if e.active}
        wanted = {w.leader_engine: w for w in workers if w.leader_engine and w.leader_engine not in scraped}
        for name, worker in wanted.items():
            if name not in self._booked or not self._booked[name].active:
                log.info("multi-node engine booked engine=%s worker=%s/%s kind=%s", name, worker.namespace,
                         worker.pod, worker.kind)
            self._booked[name] = _Booked(worker.namespace, worker.leader or "")
        for name, booked in list(self._booked.items()):
            if name in scraped:
                del self._booked[name]  # its leader is scraped here now: the same ledger goes on
            elif name not in wanted and booked.removed_at is None:
                booked.removed_at = now
                log.info("multi-node engine unbooked engine=%s reason=no worker here", name)

    def set_node_gpus(self, node_gpus: shares.NodeGpus | None) -> None:
        """The node's GPU labels (read again): the pods' shares follow."""
        if node_gpus != self._node_gpus:
            self._node_gpus = node_gpus
            self._publish()

    def set_pod_devices(self, pod_devices: dict | None) -> None:
        """The devices each pod holds, by the kubelet (None: not known now): the pods' shares follow."""
        if pod_devices != self._pod_devices:
            self._pod_devices = pod_devices
            self._publish()

    def set_gpus(self, readings) -> None:
        """NVML's GPUs and MIG devices (GPU readings), which the kubelet's device UUIDs name."""
        layout = tuple((r.uuid, r.name, r.memory_total_bytes, r.mig) for r in readings)
        if layout != self._gpus[0]:  # at start, and as MIG devices change: seldom
            self._gpus = (layout, list(readings))
            self._publish()

    def drop_expired(self) -> None:
        now = self._clock.now()
        retention = self._config.removed_engine_retention
        expired = [name for name, e in self._engines.items() if not e.active and now - e.removed_at >= retention]
        for name in expired:
            self._retired_requests += self._engines.pop(name).source.requests_total()
            self._accountant.forget(name)
            log.info("engine series dropped engine=%s", name)
        unbooked = [n for n, b in self._booked.items() if b.removed_at is not None and now - b.removed_at >= retention]
        # (a name both retired and booked keeps its ledger: forget() leaves an engine with a claim)
        for name in unbooked:
            del self._booked[name]
            self._accountant.forget(name)
        expired += unbooked
        if expired:
            self._publish()

    # -- one engine -------------------------------------------------------------------------------

    def _apis_for(self, engine_config: EngineConfig, pod: PodTarget | None = None, before=None) -> list:
        """The rates the engine is compared with: its APIs in its tier (catalog.ApiRates). A tier
        that some API does not offer is logged when the rates differ from `before`."""
        names = engine_config.apis if engine_config.apis is not None else self._config.compare.apis
        tier = pricing.engine_tier(engine_config.tier or self._config.compare.tier, pod is not None and pod.batch_job)
        rates = pricing.compared_rates(self._config.api_prices, names, tier)
        fallen = [r.name for r in rates if r.tier != tier]
        if fallen and before is not None and rates != before:
            log.warning("engine=%s tier=%s: not offered by %s, compared at the standard price (tier=\"standard\")",
                        engine_config.name, tier, ", ".join(fallen))
        return rates

    def _add(self, engine_config: EngineConfig, pod=None, restart: str | None = None) -> None:
        apis = self._apis_for(engine_config, pod, before=[])
        source = EngineSource(engine_config, self._clock, self._lock, self._config.window, apis,
                              all_maps(self._config.engine_maps))
        self._restore(source)
        if restart:
            source.reconfigure(engine_config, source.apis, restart)
        self._engines[engine_config.name] = _Engine(source, engine_config.gpus, pod)
        self._schedule(engine_config.name)

    def _update(self, engine: _Engine, engine_config: EngineConfig, restart: str | None = None) -> None:
        apis = self._apis_for(engine_config, engine.pod, before=engine.source.apis)
        if restart or engine_config != engine.source.config or apis != engine.source.apis:
            interval_changed = engine_config.interval != engine.source.config.interval
            engine.source.reconfigure(engine_config, apis, restart, all_maps(self._config.engine_maps))
            if interval_changed:
                self._schedule(engine_config.name)
        engine.gpus = engine_config.gpus
        if not engine.active:
            engine.removed_at = None
            self._schedule(engine_config.name)
            log.info("engine back engine=%s", engine_config.name)

    def _retire(self, name: str, why: str) -> None:
        self._engines[name].removed_at = self._clock.now()
        self._jobs.remove(f"engine:{name}")
        log.info("engine gone engine=%s reason=%s; its series stay, frozen, for %gs",
                 name, why, self._config.removed_engine_retention)

    def _schedule(self, name: str) -> None:
        source = self._engines[name].source
        self._jobs.add(source.sample, source.config.interval, f"engine:{name}", ENGINES)

    def _publish(self) -> None:
        self.sources = [e.source for e in self._engines.values()]
        self._accountant.set_engines(self._claims(), shares.gpu_count(self._node_gpus))

    def _claims(self) -> dict[str, Claim]:
        """Each active engine's claim: GPU indices where given, else its pod's GPU resources (and
        its workers' here), else nothing known (even); and each booked engine's, from its workers."""
        active = {name: e for name, e in self._engines.items() if e.active}
        pods = {name: e.pod.gpu_request for name, e in active.items() if e.gpus is None and e.pod is not None}
        by_index = frozenset(name for name, e in active.items() if e.gpus is not None)
        booked = {name for name, b in self._booked.items() if b.active}
        workers = [w for w in self._workers if w.leader_engine in booked or w.leader_engine in pods]
        from_pods = shares.claims(self._node_gpus, groups.book(pods, workers, by_index),
                                  self._config.kubernetes.discovery.mig_share)
        parts = nvml_parts(self._gpus[1], self._config.kubernetes.discovery.mig_share)
        from_pods.update(self._exact_claims(active, workers, from_pods, parts))
        claims = {name: from_pods.get(name) or _config_claim(e.gpus, parts) for name, e in active.items()}
        return {**{name: from_pods[name] for name in booked if name in from_pods}, **claims}

    def _exact_claims(self, active: dict[str, _Engine], workers: list, from_pods: dict[str, Claim],
                      parts: dict[str, tuple[str, float]]) -> dict[str, Claim]:
        """The engines whose pods here (their own and their workers') the kubelet maps, every one,
        to devices NVML knows; HAMi's own allocation stays (its kubelet IDs name a GPU only with
        its preferred allocation on, docs/kubernetes.md)."""
        if self._pod_devices is None:
            return {}
        own = {name: (e.pod.namespace, e.pod.pod) for name, e in active.items() if e.pod is not None}
        pods_of = groups.pods_by_engine(own, workers)
        exact = {}
        for name, claim in from_pods.items():
            held = [self._pod_devices.get(pod) for pod in pods_of.get(name, ())]
            if held and all(held) and claim.method != "hami":
                found = exact_claim(tuple(d for devices in held for d in devices or ()), parts, self._node_gpus)
                if found is not None:
                    exact[name] = found
        return exact

    def _pod_engine_config(self, target) -> EngineConfig:
        discovery = self._config.kubernetes.discovery
        return EngineConfig(url=target.url, name=target.engine, kind=target.kind, interval=discovery.interval,
                            timeout=discovery.timeout, capacity_tokens_per_s=target.capacity,
                            gpus=list(target.gpus) if target.gpus is not None else None, tier=target.tier)


def _config_claim(gpus: list | None, parts: dict[str, tuple[str, float]]) -> Claim:
    """GPU indices as given; NVML UUIDs on their GPUs (a MIG device: its part of its GPU, as
    podresources counts it, from `parts`); a UUID NVML does not report holds nothing."""
    claim = Claim.from_config(None if gpus is None else [g for g in gpus if isinstance(g, int)])
    uuids = [g for g in gpus or [] if isinstance(g, str)]
    if not uuids:
        return claim
    return dataclasses.replace(claim, devices=per_gpu([parts.get(uuid, (uuid, 0.0)) for uuid in dict.fromkeys(uuids)]))
