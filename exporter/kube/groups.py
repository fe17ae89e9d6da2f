"""Multi-node engines: the pods of one LeaderWorkerSet group, or of one Ray cluster, serve one
engine, and only the leader (LWS worker 0, the Ray head) serves its /metrics. The workers' GPUs
are that engine's too: on every node, a worker pod's GPUs are booked to the leader's engine
(`namespace/leader-pod`, the name discovery gives the leader), and the worker is not scraped.
Pure functions over the API server's JSON (a v1 Pod, a v1 PodList).

Names are the controllers' own (kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go,
set by pkg/controllers/leaderworkerset_controller.go, pkg/controllers/pod_controller.go and
pkg/webhooks/pod_webhook.go; ray-project/kuberay ray-operator/controllers/ray/utils/constant.go,
set by ray-operator/controllers/ray/common/pod.go `labelPod`):

    LWS leader  labels  leaderworkerset.sigs.k8s.io/name, worker-index: "0", group-index, group-key
                name    <lws>-<group-index> (a pod of the leader StatefulSet <lws>)
    LWS worker  labels  the same name, group-index and group-key, worker-index: "1".."size-1"
                annotation leaderworkerset.sigs.k8s.io/leader-name: the leader pod's name
    Ray head    labels  ray.io/cluster: <cluster>, ray.io/node-type: head, ray.io/group: headgroup
                name    random (generateName <cluster>-head-) unless deterministic names are on
    Ray worker  labels  ray.io/cluster: <cluster>, ray.io/node-type: worker, ray.io/group: <group>

LWS copies its templates' labels and annotations to the pods (the leader's from leaderTemplate,
else workerTemplate; the workers' from workerTemplate); KubeRay copies each group's template labels
to its pods. So a scrape label set on every template reaches leaders and workers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.kube.shares import PodGpus, pod_gpus

LWS = "leaderworkerset.sigs.k8s.io/"
LWS_NAME, LWS_GROUP_INDEX, LWS_WORKER_INDEX = LWS + "name", LWS + "group-index", LWS + "worker-index"
LWS_GROUP_KEY, LWS_LEADER_NAME = LWS + "group-key", LWS + "leader-name"  # a label; an annotation (workers)
LWS_SIZE = LWS + "size"  # an annotation on every pod of a group: how many pods it has, leader included
RAY_CLUSTER, RAY_NODE_TYPE, RAY_GROUP = "ray.io/cluster", "ray.io/node-type", "ray.io/group"
LWS_KIND, RAY_KIND = "lws", "ray"


@dataclass(frozen=True)
class GroupWorker:
    """A worker pod of a multi-node engine, on this node."""

    namespace: str
    pod: str
    kind: str  # lws | ray
    group: str  # LWS: <lws>/<group-index>; Ray: the cluster's name
    leader: str | None  # the leader pod's name; None: not said by the pod (a Ray head, found by ray_head)
    gpu_request: PodGpus = field(default_factory=PodGpus)

    @property
    def leader_engine(self) -> str | None:
        """The engine its GPUs are booked to: the leader's, as discovery names it."""
        return f"{self.namespace}/{self.leader}" if self.leader else None


def worker_of(pod: dict) -> GroupWorker | None:
    """The pod as a worker of a LeaderWorkerSet group or a Ray cluster; None for a leader, a head,
    or a pod of no group."""
    metadata = _mapping(pod.get("metadata"))
    labels, annotations = _mapping(metadata.get("labels")), _mapping(metadata.get("annotations"))
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    if labels.get(LWS_NAME) and labels.get(LWS_WORKER_INDEX, "0") != "0":
        lws, index = str(labels[LWS_NAME]), labels.get(LWS_GROUP_INDEX)
        # The annotation, else the leader StatefulSet's naming: <lws>-<group-index>.
        leader = annotations.get(LWS_LEADER_NAME) or (f"{lws}-{index}" if index is not None else None)
        return GroupWorker(namespace, name, LWS_KIND, f"{lws}/{index}", str(leader) if leader else None, pod_gpus(pod))
    if labels.get(RAY_CLUSTER) and labels.get(RAY_NODE_TYPE) == "worker":
        return GroupWorker(namespace, name, RAY_KIND, str(labels[RAY_CLUSTER]), None, pod_gpus(pod))
    return None


def group_size(pod: dict) -> int | None:
    """How many pods the LeaderWorkerSet group a leader pod leads has, leader included; None for
    any other pod (a Ray head does not say how many workers its cluster has)."""
    metadata = _mapping(pod.get("metadata"))
    labels, annotations = _mapping(metadata.get("labels")), _mapping(metadata.get("annotations"))
    size = str(annotations.get(LWS_SIZE, ""))
    if not labels.get(LWS_NAME) or labels.get(LWS_WORKER_INDEX, "0") != "0" or not size.isdigit():
        return None
    return int(size)


def group_workers(pod_list: dict) -> list[GroupWorker]:
    """The running worker pods of a PodList (as discovery, a pod that is not Running holds nothing)."""
    return [worker for pod in _items(pod_list)
            if _mapping(pod.get("status")).get("phase") == "Running" and (worker := worker_of(pod)) is not None]


def ray_head_selector(cluster: str) -> str:
    """The label selector of a Ray cluster's head pod (listed in the worker's namespace)."""
    return f"{RAY_CLUSTER}={cluster},{RAY_NODE_TYPE}=head"


def ray_head(pod_list: dict, namespace: str, cluster: str) -> str | None:
    """The name of the Ray cluster's running head pod in a PodList (the latest started, while an old
    one is still going), or None."""
    heads = []
    for pod in _items(pod_list):
        metadata, status = _mapping(pod.get("metadata")), _mapping(pod.get("status"))
        labels = _mapping(metadata.get("labels"))
        if (labels.get(RAY_CLUSTER) == cluster and labels.get(RAY_NODE_TYPE) == "head"
                and metadata.get("namespace") == namespace and status.get("phase") == "Running"):
            heads.append((str(status.get("startTime", "")), str(metadata.get("name", ""))))
    return max(heads)[1] if heads else None


def with_leaders(workers: list[GroupWorker], heads: dict[tuple[str, str], str]) -> list[GroupWorker]:
    """The workers with their Ray heads filled in from `heads` ((namespace, cluster) -> head pod);
    a Ray worker whose head is unknown keeps leader None (its GPUs stay unallocated)."""
    out = []
    for worker in workers:
        if worker.leader is None and worker.kind == RAY_KIND:
            head = heads.get((worker.namespace, worker.group))
            worker = GroupWorker(worker.namespace, worker.pod, worker.kind, worker.group, head, worker.gpu_request)
        out.append(worker)
    return out


def book(pods: dict[str, PodGpus], workers: list[GroupWorker], keep: frozenset[str] = frozenset()) -> dict[str, PodGpus]:
    """engine -> the GPU resources it holds on this node: its own pod's (`pods`) plus those of its
    workers here. A leader in `keep` holds its GPUs by index (configured or annotated): its workers
    add nothing to it."""
    out = dict(pods)
    for worker in workers:
        engine = worker.leader_engine
        if engine is None or engine in keep:
            continue
        out[engine] = _merged(out[engine], worker.gpu_request) if engine in out else worker.gpu_request
    return out


def pods_by_engine(pods: dict[str, tuple[str, str]], workers: list[GroupWorker]) -> dict[str, list[tuple[str, str]]]:
    """engine -> the (namespace, pod) on this node whose GPUs it holds: its own pod (`pods`) and its
    workers here. What a per-pod device mapping (the kubelet's PodResources) is read through."""
    out = {engine: [pod] for engine, pod in pods.items()}
    for worker in workers:
        if worker.leader_engine is not None:
            out.setdefault(worker.leader_engine, []).append((worker.namespace, worker.pod))
    return out


def _merged(a: PodGpus, b: PodGpus) -> PodGpus:
    resources = dict(a.resources)
    for name, amount in b.resources.items():
        resources[name] = resources.get(name, 0.0) + amount
    return PodGpus(resources, a.hami_devices + b.hami_devices)


def _items(pod_list) -> list:
    items = pod_list.get("items") if isinstance(pod_list, dict) else None
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}
