"""The Kubernetes source: reads this node's labels and lists the engine pods on it, on slow
cadences, and keeps the last values it read whenever the API server is unreachable, forbids,
errs or is slow. With discovery, the Namespace of each engine pod without its own tier annotation
is read for the namespace's (exporter.kube.namespaces). With kubernetes.pod_resources, each pod listing is followed by one question to
the kubelet: which GPU devices each container holds (exporter.kube.podresources). Health:
llmcost_source_up{source="kubernetes", name="node"|"pods"|"namespaces"|"pod_resources"}, errors by reason, one
log line per change of state (exporter.health).
"""

from __future__ import annotations

import logging
import time

from exporter.config import KubernetesConfig
from exporter.health import SourceHealth
from exporter.kube.client import KubeClient, KubeError
from exporter.kube.discovery import PodTarget, pod_targets, within_cap
from exporter.kube.groups import GroupWorker, group_workers, ray_head, ray_head_selector, with_leaders
from exporter.kube.namespaces import NamespaceTiers
from exporter.kube.node import NodeInfo, node_info
from exporter.kube.podresources.source import PodResourcesSource

log = logging.getLogger("exporter.kube")


class KubernetesSource:
    def __init__(self, config: KubernetesConfig, clock, client=None):
        self.config = config
        assert config.node_name, "config validation requires kubernetes.node_name"
        self._node_name: str = config.node_name
        self._clock = clock
        self._client = client or KubeClient(config)
        self.node_health = SourceHealth("kubernetes", "node")
        self.pods_health = SourceHealth("kubernetes", "pods") if config.discovery.enabled else None
        self.namespace_tiers = NamespaceTiers(self._client.read_namespace, SourceHealth("kubernetes", "namespaces"),
                                              clock) if config.discovery.enabled else None
        # GPU devices per pod from the kubelet (config validation requires discovery with it)
        self.pod_resources = PodResourcesSource(config.pod_resources, clock) if config.pod_resources.enabled else None
        self.node: NodeInfo | None = None  # the last successful read
        self.workers: list[GroupWorker] = []  # multi-node engines' worker pods here, at the last listing
        self._ray_heads: dict[tuple[str, str], str] = {}  # (namespace, Ray cluster) -> its head pod, last found
        self._skipped: set[tuple[str, str]] = set()  # pods skipped for bad annotations, logged once
        self._over_cap: list[str] = []  # engine pods left out by discovery.max_engines, logged on change

    @property
    def healths(self) -> list[SourceHealth]:
        pod_resources = self.pod_resources.health if self.pod_resources else None
        namespaces = self.namespace_tiers.health if self.namespace_tiers else None
        return [h for h in (self.node_health, self.pods_health, namespaces, pod_resources) if h is not None]

    def refresh_node(self) -> bool:
        """Read the Node; True if what we know of it changed. A failure keeps the last values."""
        started = time.monotonic()
        try:
            info = node_info(self._client.read_node(self._node_name))
        except Exception as err:  # noqa: BLE001 - a refresh must never take the exporter down
            self._fail(self.node_health, err, started)
            return False
        self.node_health.success(self._clock.now(), time.monotonic() - started)
        if info == self.node:
            return False
        self.node = info
        log.info("node labels read node=%s instance_type=%s region=%s capacity_type=%s gpu_product=%s cloud=%s",
                 info.name, info.instance_type or "-", info.region or "-", info.capacity_type,
                 info.gpu_product or "-", info.cloud)
        return True

    def refresh_pods(self) -> list[PodTarget] | None:
        """The engine pods on this node now; None when the list could not be read (keep what you had).
        Then, with pod_resources, the GPU devices of the pods on this node, whether the list was read
        or not: the two are separate sources (self.pod_resources.pod_gpus())."""
        if self.pods_health is None:  # discovery is off
            return None
        targets = self._list_pods()
        if self.pod_resources is not None:
            self.pod_resources.refresh()
        return targets

    def pod_devices(self):
        """(namespace, pod) -> the GPU devices it holds, from the kubelet; None without pod_resources
        or while the kubelet cannot be read (PodResourcesSource.pod_devices)."""
        return self.pod_resources.pod_devices() if self.pod_resources is not None else None

    def _list_pods(self) -> list[PodTarget] | None:
        assert self.pods_health is not None
        started = time.monotonic()
        discovery = self.config.discovery
        try:
            pod_list = self._client.list_pods(self._node_name, discovery.label_selector, discovery.namespace)
            targets, skipped = pod_targets(pod_list)
            workers = group_workers(pod_list)
        except Exception as err:  # noqa: BLE001
            self._fail(self.pods_health, err, started)
            return None
        self.pods_health.success(self._clock.now(), time.monotonic() - started)
        self.workers = with_leaders(workers, self._find_ray_heads(workers, pod_list))
        for pod, why in skipped:
            self.pods_health.count("bad_annotation")
            if (pod, why) not in self._skipped:
                log.warning("pod skipped pod=%s reason=%s", pod, why)
        self._skipped = set(skipped)
        assert self.namespace_tiers is not None
        return self.namespace_tiers.apply(self._within_cap(targets, self.pods_health))

    def _find_ray_heads(self, workers: list[GroupWorker], pod_list: dict) -> dict[tuple[str, str], str]:
        """The head pod of each Ray cluster with a worker here: in this node's listing, else one
        list of the cluster's head in the worker's namespace; on failure the head found last."""
        wanted = {(w.namespace, w.group) for w in workers if w.leader is None}
        self._ray_heads = {key: head for key, head in self._ray_heads.items() if key in wanted}
        for namespace, cluster in sorted(wanted):
            head = ray_head(pod_list, namespace, cluster)
            if head is None:
                try:
                    head = ray_head(self._client.list_pods(None, ray_head_selector(cluster), namespace),
                                    namespace, cluster)
                except Exception as err:  # noqa: BLE001 - the listing stands; this head stays as it was
                    assert self.pods_health is not None
                    self.pods_health.count(err.reason if isinstance(err, KubeError) else "error")
                    log.debug("Ray head not listed namespace=%s cluster=%s: %s", namespace, cluster, err)
                    continue
            if head is not None:
                self._ray_heads[(namespace, cluster)] = head
            else:
                self._ray_heads.pop((namespace, cluster), None)  # no head running: nothing to book to
        return self._ray_heads

    def _within_cap(self, targets: list[PodTarget], health: SourceHealth) -> list[PodTarget]:
        """At most discovery.max_engines targets; the others counted, and logged when they change."""
        limit = self.config.discovery.max_engines
        targets, over = within_cap(targets, limit)
        names = [t.engine for t in over]
        for _ in names:
            health.count("too_many_engines")
        if names and names != self._over_cap:
            log.warning("engine pods left out count=%d max_engines=%d first=%s; raise kubernetes.discovery.max_engines "
                        "or narrow the label selector", len(names), limit, names[0])
        elif self._over_cap and not names:
            log.info("engine pods within max_engines again max_engines=%d", limit)
        self._over_cap = names
        return targets

    @staticmethod
    def _fail(health: SourceHealth, err: Exception, started: float) -> None:
        if isinstance(err, KubeError):
            reason = err.reason
        elif isinstance(err, ValueError):
            reason = "parse"
        else:
            reason = "error"
            log.debug("unexpected error from the Kubernetes API", exc_info=err)
        health.failure(reason, f"{type(err).__name__}: {err}" if reason == "error" else str(err),
                       time.monotonic() - started)
