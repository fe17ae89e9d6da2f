"""An engine pod's claim from the exact devices the kubelet says its containers hold (method
`podresources`), read against what NVML says those devices are. Pure: no gRPC, no I/O.

    device the kubelet names        part of a GPU (by the GPU's UUID)
    GPU-<uuid>                      1 (a whole GPU)
    MIG-<uuid>                      its parent GPU's, by its MIG profile (shares.mig_fraction: compute
                                    slices, or memory eighths with kubernetes.discovery.mig_share)
    <either>::<n> (time-slicing)    that / the resource's replicas (nvidia.com/<resource>.replicas)

A pod holding a device NVML does not report, or a replica of a resource whose replica count the node's
labels do not give, gets no exact claim: its resource-based claim stands (exporter.engines.registry).
exporter.attribution then places the claim on those GPUs, as it places HAMi's.
"""

from __future__ import annotations

from exporter.attribution import Claim
from exporter.kube.podresources.devices import ContainerGpus, GpuDevice
from exporter.kube.shares import SHARED_SUFFIX, NodeGpus, mig_fraction, mig_profile

PODRESOURCES = "podresources"

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


def nvml_parts(readings, basis: str = "compute") -> dict[str, tuple[str, float]]:
    """Device UUID -> (its GPU's UUID, the part of that GPU it is), for every GPU and MIG device NVML
    reports (exporter.gpu.source.GpuReading)."""
    parts: dict[str, tuple[str, float]] = {}
    for r in readings:
        parts[r.uuid] = (r.uuid, 1.0)
        gpu_mib = int((r.memory_total_bytes or 0) // 1024**2)
        node = NodeGpus(product=r.name, memory_mib=gpu_mib)
        for m in r.mig:
            parts[m.uuid] = (r.uuid, mig_fraction(mig_profile(m.gpu_slices, m.compute_slices, m.memory_mib, gpu_mib),
                                                  node, basis))
    return parts


def exact_claim(held: PodDevices, parts: dict[str, tuple[str, float]], node: NodeGpus | None) -> Claim | None:
    """The pod's claim on exact GPUs, or None where a device is unknown (see the module's doc)."""
    on_gpu: dict[str, float] = {}
    for resource, device in held:
        if device.id not in parts:
            return None
        gpu, part = parts[device.id]
        if device.replica is not None:
            replicas = (node or NodeGpus()).replicas.get(resource.removesuffix(SHARED_SUFFIX), 0)
            if replicas < 1:
                return None
            part /= replicas
        on_gpu[gpu] = min(on_gpu.get(gpu, 0.0) + part, 1.0)
    if not on_gpu:
        return None
    devices = tuple(sorted(on_gpu.items()))
    return Claim(PODRESOURCES, gpus=sum(f for _, f in devices), devices=devices)
