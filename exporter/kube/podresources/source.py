"""The PodResources source: asks the kubelet which GPU devices each container on this node holds,
on the pod-discovery cadence (kubernetes.source refreshes it after each pod listing), and keeps the
last answer it read whenever the kubelet is unreachable, slow or refuses. Health:
llmcost_source_up{source="kubernetes", name="pod_resources"}, errors by reason, one log line per
change of state (exporter.health).

For the accountant: `pod_gpus()` gives (namespace, pod) -> the GPU/MIG UUIDs the pod holds, and
`read_at` says when that was read; `pod_devices()` the devices with their resource names and replicas,
while the kubelet answers (the engines' exact shares, exporter.kube.podresources.claims). Both are replaced whole on each success, never mutated, so
another thread may read them without the state lock.
"""

from __future__ import annotations

import logging
import time

from exporter.config import PodResourcesConfig
from exporter.health import SourceHealth
from exporter.kube.podresources.client import PodResourcesError, list_pod_resources
from exporter.kube.podresources.devices import ContainerGpus, PodDevices, container_gpus, pod_devices, pod_gpus

log = logging.getLogger("exporter.kube")


class PodResourcesSource:
    def __init__(self, config: PodResourcesConfig, clock):
        self.config = config
        self._clock = clock
        self.health = SourceHealth("kubernetes", "pod_resources")
        self.containers: list[ContainerGpus] | None = None  # the last successful read; None before one
        self.read_at: float | None = None  # when (clock.now())

    def refresh(self) -> list[ContainerGpus] | None:
        """The containers holding GPUs now; None when the kubelet could not be read (the last read stays)."""
        started = time.monotonic()
        try:
            containers = container_gpus(list_pod_resources(self.config.socket, self.config.timeout),
                                        self.config.resources)
        except PodResourcesError as err:
            self.health.failure(err.reason, str(err), time.monotonic() - started)
            return None
        except Exception as err:  # noqa: BLE001 - a refresh must never take the exporter down
            log.debug("unexpected error from the kubelet's PodResources API", exc_info=err)
            self.health.failure("error", f"{type(err).__name__}: {err}", time.monotonic() - started)
            return None
        now = self._clock.now()
        self.health.success(now, time.monotonic() - started)
        if containers != self.containers:
            devices = {d.id for c in containers for ds in c.devices.values() for d in ds}
            log.info("GPU devices per pod read from the kubelet pods=%d containers=%d devices=%d",
                     len({(c.namespace, c.pod) for c in containers}), len(containers), len(devices))
        self.containers, self.read_at = containers, now
        return containers

    def pod_gpus(self) -> dict[tuple[str, str], tuple[str, ...]] | None:
        """(namespace, pod) -> the physical GPU devices it holds (devices.pod_gpus); None before a first read."""
        containers = self.containers
        return None if containers is None else pod_gpus(containers)

    def pod_devices(self) -> dict[tuple[str, str], PodDevices] | None:
        """(namespace, pod) -> the devices it holds; None before a first read and while the last read
        failed: the shares then fall back to the pods' resources rather than a mapping that may be stale."""
        containers = self.containers
        return None if containers is None or not self.health.status().up else pod_devices(containers)
