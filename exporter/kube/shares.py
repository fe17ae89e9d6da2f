"""How many GPUs each engine pod holds, read from the Kubernetes API: the pod's GPU resources
(container limits, else requests) read against its node's GPU labels. Pure functions over the API
server's JSON (a v1 Node, a v1 Pod); exporter.attribution splits the node between the claims.

Names are those of the NVIDIA device plugin and GPU feature discovery (NVIDIA/k8s-device-plugin
README.md "Shared Access to GPUs" and "Catalog of Labels"; docs/gpu-feature-discovery/README.md)
and of HAMi (Project-HAMi/HAMi charts/hami/values.yaml, docs/develop/protocol.md):

    method     pod resource                      share of a GPU
    exclusive  nvidia.com/gpu: n                 n whole GPUs
    replica    nvidia.com/gpu[.shared]: n        n / nvidia.com/gpu.replicas (time-slicing, MPS); a
               time-sliced MIG resource: n x its MIG fraction / nvidia.com/mig-<profile>.replicas
    mig        nvidia.com/mig-3g.40gb: n         n x 3/7 (compute) or 4/8 (memory) of a GPU
               nvidia.com/gpu: n, mig.strategy=single: the same, profile from nvidia.com/gpu.product
    hami       hami.io/vgpu-devices-allocated    each device (by UUID): cores/100, else memory / the device's
               nvidia.com/gpucores, gpumem(-percentage)   n x cores/100, else memory percentage
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from exporter.attribution import EVEN, Claim

GPU, SHARED_SUFFIX, MIG_PREFIX = "nvidia.com/gpu", ".shared", "nvidia.com/mig-"
HAMI_CORES, HAMI_MEMORY, HAMI_MEMORY_PERCENT = "nvidia.com/gpucores", "nvidia.com/gpumem", "nvidia.com/gpumem-percentage"
# The HAMi scheduler's decision (to-allocate), then the device plugin's record of it (allocated).
HAMI_POD_ANNOTATIONS = ("hami.io/vgpu-devices-allocated", "hami.io/vgpu-devices-to-allocate")
HAMI_NODE_ANNOTATION = "hami.io/node-nvidia-register"
COUNT_LABEL, PRODUCT_LABEL, MEMORY_LABEL = GPU + ".count", GPU + ".product", GPU + ".memory"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
# A MIG profile: [<c>c.]<g>g.<memory>gb[+me|+gfx|...]; <g> GPU instance slices, <c> compute slices if fewer.
MIG_PROFILE = re.compile(r"(?:(\d+)c\.)?(\d+)g\.(\d+)gb")
COMPUTE_SLICES = 7  # A100, H100, H200, B200 (NVIDIA MIG user guide, "Supported MIG Profiles")
COMPUTE_SLICES_BY_PRODUCT = {"A30": 4}
MEMORY_SLICES = 8  # memory goes in eighths (A30: quarters, which are eighths too)


@dataclass(frozen=True)
class NodeGpus:
    """What the node's labels and annotations say of its GPUs."""

    count: int = 0  # physical GPUs (nvidia.com/gpu.count); 0 unknown
    product: str = ""
    memory_mib: int = 0  # of one GPU (nvidia.com/gpu.memory); 0 unknown
    mig_strategy: str = "none"
    replicas: dict[str, int] = field(default_factory=dict)  # resource -> replicas per device (<resource>.replicas)
    hami_memory_mib: dict[str, int] = field(default_factory=dict)  # HAMi: device UUID -> its memory


@dataclass(frozen=True)
class PodGpus:
    """A pod's GPU resources, summed over its containers, and HAMi's allocation of it."""

    resources: dict[str, float] = field(default_factory=dict)
    hami_devices: tuple[tuple[str, int, int], ...] = ()  # (device UUID, memory MiB, cores %) per device


# -- reading the objects -------------------------------------------------------------------------


def node_gpus(node: dict) -> NodeGpus:
    metadata = _mapping(node.get("metadata"))
    labels, annotations = _mapping(metadata.get("labels")), _mapping(metadata.get("annotations"))
    replicas = {key[:-len(".replicas")]: n for key, value in labels.items()
                if key.startswith("nvidia.com/") and key.endswith(".replicas") and (n := _int(value)) > 0}
    single = labels.get(MIG_STRATEGY_LABEL) == "single"
    return NodeGpus(count=0 if single else _int(labels.get(COUNT_LABEL)),  # single: the count is of MIG devices
                    product=str(labels.get(PRODUCT_LABEL, "")), memory_mib=0 if single else _int(labels.get(MEMORY_LABEL)),
                    mig_strategy=str(labels.get(MIG_STRATEGY_LABEL, "none")), replicas=replicas,
                    hami_memory_mib=_hami_node_devices(annotations.get(HAMI_NODE_ANNOTATION)))


def pod_gpus(pod: dict) -> PodGpus:
    """Effective resources as the scheduler counts them: the containers' sum, or the largest init
    container's if that is more."""
    spec = _mapping(pod.get("spec"))
    total: dict[str, float] = {}
    for container in _list(spec.get("containers")):
        for name, amount in _gpu_resources(container).items():
            total[name] = total.get(name, 0.0) + amount
    for container in _list(spec.get("initContainers")):
        for name, amount in _gpu_resources(container).items():
            total[name] = max(total.get(name, 0.0), amount)
    annotations = _mapping(_mapping(pod.get("metadata")).get("annotations"))
    hami = next((str(annotations[key]) for key in HAMI_POD_ANNOTATIONS if annotations.get(key)), "")
    return PodGpus(total, _hami_pod_devices(hami))


def _gpu_resources(container: dict) -> dict[str, float]:
    resources = _mapping(_mapping(container).get("resources"))
    limits, requests = _mapping(resources.get("limits")), _mapping(resources.get("requests"))
    out = {}
    for name in set(limits) | set(requests):
        if str(name).startswith("nvidia.com/"):  # extended resources: limits, else requests (they must be equal)
            amount = _quantity(limits.get(name, requests.get(name)))
            if amount > 0:
                out[name] = amount
    return out


def _hami_node_devices(text) -> dict[str, int]:
    """HAMi's device register: JSON (current) or `uuid,count,memory,cores,type,numa,healthy:...` (older)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        devices = json.loads(text)
        return {str(d["id"]): _int(d.get("devmem")) for d in devices if isinstance(d, dict) and d.get("id")}
    except (ValueError, TypeError):
        fields = [d.split(",") for d in text.split(":") if d.count(",") >= 3]
        return {f[0]: _int(f[2]) for f in fields}


def _hami_pod_devices(text: str) -> tuple[tuple[str, int, int], ...]:
    """`uuid,type,memory,cores:` per device, `;` between containers (docs/develop/protocol.md)."""
    devices = []
    for container in text.split(";"):
        for device in container.split(":"):
            fields = device.split(",")
            if len(fields) >= 4 and fields[0]:
                devices.append((fields[0], _int(fields[2]), _int(fields[3])))
    return tuple(devices)


# -- the share of one pod -----------------------------------------------------------------------------


def pod_share(node: NodeGpus, pod: PodGpus, mig_basis: str = "compute") -> Claim | None:
    """The pod's claim on the node's GPUs, or None when it has no GPU resource at all."""
    hami = _hami_claim(node, pod)
    if hami is not None:
        return hami
    parts: list[tuple[float, str]] = []
    for name, amount in sorted(pod.resources.items()):
        if name.startswith(MIG_PREFIX):
            replicas = node.replicas.get(name, 1)  # a time-sliced MIG device: its replicas split it
            parts.append((amount * mig_fraction(name[len(MIG_PREFIX):], node, mig_basis) / replicas,
                          "replica" if replicas > 1 else "mig"))
        elif name in (GPU, GPU + SHARED_SUFFIX):
            parts.append(_gpu_part(node, amount, mig_basis))
    if not parts:
        return None
    methods = [m for _, m in parts]
    method = next(m for m in ("mig", "replica", "exclusive") if m in methods)
    return Claim(method, gpus=sum(g for g, _ in parts))


def _gpu_part(node: NodeGpus, amount: float, mig_basis: str) -> tuple[float, str]:
    replicas = node.replicas.get(GPU, 1)
    if node.mig_strategy == "single":  # every nvidia.com/gpu is a MIG device of the one profile
        return amount * mig_fraction(node.product, node, mig_basis) / replicas, "replica" if replicas > 1 else "mig"
    if replicas > 1:
        return amount / replicas, "replica"
    return amount, "exclusive"


def _hami_claim(node: NodeGpus, pod: PodGpus) -> Claim | None:
    """From HAMi's allocation where every device's part is known (by GPU UUID), else from the
    HAMi resources (GPU-equivalents)."""
    devices = tuple((uuid, cores / 100 if cores > 0 else _ratio(memory, node.hami_memory_mib.get(uuid, 0)))
                    for uuid, memory, cores in pod.hami_devices)
    if devices and all(f is not None for _, f in devices):
        exact = tuple((uuid, min(f or 0.0, 1.0)) for uuid, f in devices)
        return Claim("hami", gpus=sum(f for _, f in exact), devices=exact)
    resources = pod.resources
    if not any(k in resources for k in (HAMI_CORES, HAMI_MEMORY, HAMI_MEMORY_PERCENT)):
        return None
    count = resources.get(GPU, 1.0)  # HAMi's webhook adds nvidia.com/gpu: 1 when only these are set
    if HAMI_CORES in resources:
        fraction = resources[HAMI_CORES] / 100
    elif HAMI_MEMORY_PERCENT in resources:
        fraction = resources[HAMI_MEMORY_PERCENT] / 100
    else:
        fraction = _ratio(resources[HAMI_MEMORY], node.memory_mib) or 1.0
    return Claim("hami", gpus=count * min(fraction, 1.0))


def mig_profile(gpu_slices: int, compute_slices: int, memory_mib: int, gpu_memory_mib: int) -> str:
    """A MIG device's profile name from NVML's attributes of it, as GPU feature discovery names it
    (NVIDIA/go-nvlib pkg/nvlib/device/mig_profile.go: memory rounded up to the GPU's eighths)."""
    eighths = math.ceil(memory_mib / gpu_memory_mib * MEMORY_SLICES - 1e-9) if gpu_memory_mib > 0 else MEMORY_SLICES
    memory_gb = round(eighths / MEMORY_SLICES * math.ceil(gpu_memory_mib / 1024)) if gpu_memory_mib > 0 else 0
    compute = f"{compute_slices}c." if compute_slices < gpu_slices else ""
    return f"{compute}{gpu_slices}g.{memory_gb}gb"


def mig_fraction(profile: str, node: NodeGpus, basis: str = "compute") -> float:
    """The fraction of a GPU one MIG device of `profile` is: by compute slices (3g = 3/7), or by
    memory (3g.40gb on an 80 GB GPU = 4/8, rounded to the eighths MIG allots memory in). An
    unreadable profile counts as a whole GPU."""
    match = MIG_PROFILE.search(profile)
    if match is None:
        return 1.0
    compute_slices, instance_slices, memory_gb = match.groups()
    if basis == "memory" and node.memory_mib > 0:
        gpu_gb = math.ceil(node.memory_mib / 1024)  # 81559 MiB (H100) -> the 80 GB of its 7g.80gb profile
        return min(round(int(memory_gb) / gpu_gb * MEMORY_SLICES), MEMORY_SLICES) / MEMORY_SLICES
    total = next((n for p, n in COMPUTE_SLICES_BY_PRODUCT.items() if p in node.product), COMPUTE_SLICES)
    return min(int(compute_slices or instance_slices) / total, 1.0)


# -- the claims of the engine pods on one node ----------------------------------------------------------


def claims(node: NodeGpus | None, pods: dict[str, PodGpus], mig_basis: str = "compute") -> dict[str, Claim]:
    """engine -> its claim. A pod with no GPU resource holds none while another pod on the node
    has one (it runs on CPUs, or its GPUs are unknown to Kubernetes); when no pod has any,
    nothing is known and each holds every GPU (the even fallback)."""
    node = node or NodeGpus()
    shares = {engine: pod_share(node, pod, mig_basis) for engine, pod in pods.items()}
    if all(share is None for share in shares.values()):
        return {engine: Claim(EVEN) for engine in pods}
    return {engine: share or Claim("exclusive", gpus=0.0) for engine, share in shares.items()}


def gpu_count(node: NodeGpus | None) -> int:
    """Physical GPUs by the node's labels (HAMi's register where GFD's count is absent); 0 unknown."""
    return 0 if node is None else node.count or len(node.hami_memory_mib)


# -- helpers ----------------------------------------------------------------------------------------

_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|Ki|Mi|Gi)?")


def _quantity(text) -> float:
    """A resource quantity ("2", "500m", "1k"); anything else is 0."""
    match = _QUANTITY.fullmatch(str(text).strip())
    value = float(match.group(1)) * _SUFFIXES[match.group(2) or ""] if match else 0.0
    return value if math.isfinite(value) else 0.0


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _int(text) -> int:
    try:
        return max(int(str(text).strip()), 0)
    except ValueError:
        return 0


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None
