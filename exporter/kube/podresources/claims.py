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
from exporter.kube.podresources.devices import PodDevices, pod_devices  # noqa: F401 (pod_devices: re-exported)
from exporter.kube.shares import SHARED_SUFFIX, NodeGpus, mig_fraction, mig_profile

PODRESOURCES = "podresources"

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
    on_gpu: list[tuple[str, float]] = []
    for resource, device in held:
        if device.id not in parts:
            return None
        gpu, part = parts[device.id]
        if device.replica is not None:
            replicas = (node or NodeGpus()).replicas.get(resource.removesuffix(SHARED_SUFFIX), 0)
            if replicas < 1:
                return None
            part /= replicas
        on_gpu.append((gpu, part))
    if not on_gpu:
        return None
    devices = per_gpu(on_gpu)
    return Claim(PODRESOURCES, gpus=sum(f for _, f in devices), devices=devices)


def per_gpu(parts: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """(GPU UUID, part of it) pairs summed per GPU, each at most the whole GPU, sorted: a claim's devices."""
    on_gpu: dict[str, float] = {}
    for gpu, part in parts:
        on_gpu[gpu] = min(on_gpu.get(gpu, 0.0) + part, 1.0)
    return tuple(sorted(on_gpu.items()))
