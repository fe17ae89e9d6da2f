"""What the exporter reads from its Node object: instance type, region, capacity type (spot or
not), GPU product and cloud, and its GPU labels (for the engines' shares, exporter.kube.shares). Pure functions over the API server's JSON (a v1 Node).

Label keys are the ones the clouds and their autoscalers set (the beta keys are the older names
that nodes still carry); the first key present wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.kube.shares import NodeGpus, node_gpus

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
# NVIDIA GPU feature discovery's label first; GKE's and Karpenter's own names where GFD is absent.
GPU_PRODUCT_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator", "karpenter.k8s.aws/instance-gpu-name")
# The node's pool: Karpenter's NodePool, EKS managed node group, GKE node pool, AKS agent pool.
NODE_POOL_LABELS = ("karpenter.sh/nodepool", "eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool",
                    "kubernetes.azure.com/agentpool")
# (label, {value in lower case: capacity type}); a node with none of them is on-demand.
CAPACITY_TYPE_LABELS = (
    ("karpenter.sh/capacity-type", {"spot": "spot", "on-demand": "on-demand", "reserved": "reserved"}),
    ("eks.amazonaws.com/capacityType", {"spot": "spot", "on_demand": "on-demand", "capacity_block": "reserved"}),
    ("cloud.google.com/gke-spot", {"true": "spot"}),
    ("cloud.google.com/gke-preemptible", {"true": "spot"}),
    ("kubernetes.azure.com/scalesetpriority", {"spot": "spot", "regular": "on-demand"}),
)
# spec.providerID scheme -> cloud: aws:///us-east-1a/i-..., gce://project/zone/name, azure:///subscriptions/...
CLOUDS = {"aws": "aws", "gce": "gcp", "azure": "azure"}


@dataclass(frozen=True)
class NodeInfo:
    name: str
    instance_type: str  # "" when the node has no instance-type label
    region: str  # "" when unlabelled
    capacity_type: str  # on-demand | spot | reserved
    gpu_product: str  # "" when unlabelled
    cloud: str  # aws | gcp | azure | the providerID's own scheme (kind, ...) | unknown
    gpus: NodeGpus = field(default_factory=NodeGpus)  # what its labels say of its GPUs (exporter.kube.shares)
    node_pool: str = ""  # "" when unlabelled; matched by pricing.commitments, not a label of node_info

    def labels(self) -> dict[str, str]:
        """The labels of llmcost_node_info."""
        return {"node": self.name, "instance_type": self.instance_type, "region": self.region,
                "capacity_type": self.capacity_type, "gpu_product": self.gpu_product, "cloud": self.cloud}


def node_info(node: dict) -> NodeInfo:
    """A v1 Node (as JSON) -> NodeInfo. Raises ValueError if it is not a Node object."""
    if not isinstance(node, dict) or not isinstance(node.get("metadata"), dict):
        raise ValueError("not a Node object (no metadata)")
    metadata = node["metadata"]
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError("metadata.labels is not a mapping")
    spec = node.get("spec") or {}
    return NodeInfo(
        name=str(metadata.get("name", "")),
        instance_type=_first(labels, INSTANCE_TYPE_LABELS),
        region=_first(labels, REGION_LABELS),
        capacity_type=capacity_type(labels),
        gpu_product=_first(labels, GPU_PRODUCT_LABELS),
        cloud=cloud(spec.get("providerID") or ""),
        gpus=node_gpus(node),
        node_pool=_first(labels, NODE_POOL_LABELS),
    )


def capacity_type(labels: dict) -> str:
    for key, values in CAPACITY_TYPE_LABELS:
        value = labels.get(key)
        if isinstance(value, str) and value.lower() in values:
            return values[value.lower()]
    return "on-demand"


def cloud(provider_id: str) -> str:
    scheme, sep, _ = provider_id.partition("://")
    if not sep or not scheme:
        return "unknown"
    return CLOUDS.get(scheme.lower(), scheme.lower())


def _first(labels: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
