"""Which GPUs each container on the node holds, from the kubelet's PodResources `List` answer (a v1
ListPodResourcesResponse). Pure functions: no gRPC, no I/O.

Device IDs are whatever the device plugin registered with the kubelet; the kubelet reports the IDs it
allocated. What they look like, from each plugin's source:

- NVIDIA k8s-device-plugin (and the GPU Operator): the NVML UUID, `GPU-<uuid>` for a whole GPU and
  `MIG-<uuid>` for a MIG slice (mig-strategy single or mixed); `BuildDevice` sets `dev.ID = uuid`
  (internal/rm/devices.go). With time-slicing or MPS sharing every GPU is advertised `replicas`
  times as `<uuid>::<n>`: `NewAnnotatedID` formats `"%s::%d"` and `AnnotatedID.Split` cuts at the
  first `::` (internal/rm/devices.go; updateDeviceMapWithReplicas, internal/rm/device_map.go), under
  `nvidia.com/gpu` or, with `renameByDefault`, `nvidia.com/gpu.shared`. `deviceIDStrategy: index`
  changes only what the container sees (NVIDIA_VISIBLE_DEVICES), not the IDs the kubelet holds
  (deviceIDsFromAnnotatedDeviceIDs, internal/plugin/server.go).
- HAMi (a fork of it, resource `nvidia.com/gpu` by default): the same `::<n>`, virtual devices
  `GPU-<uuid>-<n>`, and MIG instances `GPU-<uuid>[<template>-<index>]`; HAMi's own
  `physicalDeviceID` strips them exactly so (pkg/device-plugin/nvidiadevice/nvinternal/plugin/server.go).
  HAMi places the work by its scheduler's pod annotation; the kubelet's IDs name the same GPU only
  when HAMi's GetPreferredAllocation is on, so for HAMi prefer the annotation (docs/kubernetes.md).
- GKE's device plugin: `nvidia<minor>` (the /dev/nvidia<minor> node, not an NVML index), and
  `nvidia<minor>/vgpu<n>` with time-sharing (GoogleCloudPlatform/container-engine-accelerators,
  its NVIDIA GPU manager).

Anything else is kept as the plugin wrote it (`kind` "other").
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

# Resource names whose devices are GPUs; kubernetes.pod_resources.resources overrides (fnmatch patterns).
DEFAULT_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*")

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_HAMI_VIRTUAL = re.compile(rf"(GPU-{_UUID})-(\d+)")  # HAMi: GPU-<uuid>-<n>
_HAMI_MIG = re.compile(rf"(GPU-{_UUID})\[[^\]]*\]")  # HAMi: GPU-<uuid>[<template>-<index>]
_GKE_SHARED = re.compile(r"(nvidia\d+)/vgpu(\d+)")  # GKE time-sharing: nvidia<minor>/vgpu<n>


@dataclass(frozen=True)
class GpuDevice:
    """One device ID as the kubelet reported it, and the physical device it stands for."""

    id: str  # GPU-<uuid>, MIG-<uuid>, or the plugin's own ID, without any replica suffix
    replica: int | None  # which share of a shared GPU (time-slicing, MPS, HAMi, GKE); None = not shared
    raw: str  # as the kubelet reported it

    @property
    def kind(self) -> str:
        """gpu (an NVML GPU UUID), mig (an NVML MIG UUID) or other (an index, a device node, ...)."""
        if self.id.startswith("GPU-"):
            return "gpu"
        return "mig" if self.id.startswith("MIG-") else "other"


@dataclass(frozen=True)
class ContainerGpus:
    namespace: str
    pod: str
    container: str
    devices: dict[str, tuple[GpuDevice, ...]] = field(hash=False)  # resource name -> devices, the kubelet's order


def parse_device_id(raw: str) -> GpuDevice:
    """`GPU-a::1` -> (GPU-a, 1); `MIG-b` -> (MIG-b, None); forms of the plugins above, else as given."""
    base, sep, replica = raw.partition("::")  # NVIDIA and HAMi time-slicing / MPS replicas
    if sep and replica.isdigit():
        return GpuDevice(base, int(replica), raw)
    for pattern, has_replica in ((_HAMI_VIRTUAL, True), (_GKE_SHARED, True), (_HAMI_MIG, False)):
        match = pattern.fullmatch(raw)
        if match:
            return GpuDevice(match.group(1), int(match.group(2)) if has_replica else None, raw)
    return GpuDevice(raw, None, raw)


def container_gpus(response, resources: tuple[str, ...] | list[str] = DEFAULT_RESOURCES) -> list[ContainerGpus]:
    """Every container that holds at least one device of a GPU resource, in the kubelet's order.
    `response` is a v1 ListPodResourcesResponse (read by field name, so any object shaped like it)."""
    found = []
    for pod in response.pod_resources:
        for container in pod.containers:
            devices: dict[str, list[GpuDevice]] = {}
            for entry in container.devices:
                if any(fnmatch.fnmatchcase(entry.resource_name, p) for p in resources):
                    devices.setdefault(entry.resource_name, []).extend(parse_device_id(i) for i in entry.device_ids)
            if any(devices.values()):
                found.append(ContainerGpus(pod.namespace, pod.name, container.name,
                                           {name: tuple(ids) for name, ids in devices.items() if ids}))
    return found


# (resource name, device) held by a pod, each once
PodDevices = tuple[tuple[str, GpuDevice], ...]


def pod_devices(containers: list[ContainerGpus]) -> dict[tuple[str, str], PodDevices]:
    """(namespace, pod) -> the devices its containers hold, with their resource names; a device two
    containers list (an init container's, reused) counts once."""
    pods: dict[tuple[str, str], set[tuple[str, GpuDevice]]] = {}
    for c in containers:
        held = pods.setdefault((c.namespace, c.pod), set())
        held.update((resource, d) for resource, devices in c.devices.items() for d in devices)
    return {pod: tuple(sorted(held, key=lambda h: (h[0], h[1].raw))) for pod, held in pods.items()}


def pod_gpus(containers: list[ContainerGpus]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(namespace, pod) -> the physical devices its containers hold (GPU-/MIG- UUIDs for NVIDIA's
    plugin), sorted, each once: two time-slicing replicas of one GPU are that GPU."""
    return {pod: tuple(sorted({d.id for _, d in held})) for pod, held in pod_devices(containers).items()}
