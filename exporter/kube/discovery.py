"""Engine pods on this node: which pods of a v1 PodList are scrape targets, and at which URL.

A pod is a target when it is Running, has an IP, and says where its metrics are:

    metadata.annotations:
      llmcost.io/port: "8000"         # else a container port named "metrics", else the pod's only port
      llmcost.io/path: /metrics       # default /metrics
      llmcost.io/scheme: http         # http (default) or https
      llmcost.io/kind: auto           # the engine map to read it with (engines[].kind), default auto
      llmcost.io/capacity-tokens-per-second: "2400"   # optional, as engines[].capacity_tokens_per_s
      llmcost.io/gpus: "0,1"          # optional NVML indices it holds; default: its GPU resources
      llmcost.io/tier: batch          # optional API tier it is compared at (engines[].tier); default compare.tier

Which pods are listed at all is the API server's business (label selector, spec.nodeName field
selector). A pod whose annotations are wrong is skipped with a reason, so one bad pod never
hides the others. A worker pod of a multi-node engine (LeaderWorkerSet, Ray) is no target: its
leader serves the engine's metrics, and its GPUs are booked to the leader (exporter.kube.groups).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from exporter.engines.schemas import AUTO, all_maps
from exporter.kube.groups import group_size, worker_of
from exporter.kube.shares import PodGpus, pod_gpus
from exporter.pricing import COMPARE_TIERS

PREFIX = "llmcost.io/"
PORT, PATH, SCHEME, KIND = PREFIX + "port", PREFIX + "path", PREFIX + "scheme", PREFIX + "kind"
CAPACITY, GPUS, TIER = PREFIX + "capacity-tokens-per-second", PREFIX + "gpus", PREFIX + "tier"


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    pod: str
    uid: str
    url: str
    kind: str
    capacity: float | None
    gpus: tuple[int, ...] | None
    started: float | None  # status.startTime as Unix time
    gpu_request: PodGpus = field(default_factory=PodGpus)  # its GPU resources: its share of the node's GPUs
    group_size: int | None = None  # a LeaderWorkerSet leader: the pods of its group, itself included
    tier: str | None = None  # llmcost.io/tier, else its namespace's (exporter.kube.namespaces); None: compare.tier
    batch_job: bool = False  # run by a Kubernetes Job (controller ownerReference): compare.tier auto picks batch

    @property
    def engine(self) -> str:
        """The engine label: unique on the node, as a pod's name is unique in its namespace."""
        return f"{self.namespace}/{self.pod}"


def pod_targets(pod_list: dict) -> tuple[list[PodTarget], list[tuple[str, str]]]:
    """(targets, skipped as (namespace/pod, why)). Raises ValueError if it is not a PodList."""
    items = pod_list.get("items") if isinstance(pod_list, dict) else None
    if not isinstance(items, list):
        raise ValueError("not a PodList object (no items)")
    targets, skipped = [], []
    for pod in items:
        if not isinstance(pod, dict):
            raise ValueError("a PodList item is not an object")
        metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
        name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
        if status.get("phase") != "Running" or not status.get("podIP") or worker_of(pod) is not None:
            continue  # pending, finished, no IP yet, or a group's worker: nothing to scrape, nothing wrong
        try:
            targets.append(_target(pod, metadata, status))
        except ValueError as err:
            skipped.append((name, str(err)))
    return targets, skipped


def within_cap(targets: list[PodTarget], limit: int) -> tuple[list[PodTarget], list[PodTarget]]:
    """(the `limit` longest-running targets, the others): a pod that starts while the node is at the
    cap is left out rather than one already scraped."""
    ordered = sorted(targets, key=lambda t: (t.started is None, t.started or 0.0, t.engine))
    return ordered[:limit], ordered[limit:]


def _target(pod: dict, metadata: dict, status: dict) -> PodTarget:
    annotations = metadata.get("annotations") or {}
    port = _port(annotations.get(PORT), (pod.get("spec") or {}).get("containers") or [])
    scheme = annotations.get(SCHEME, "http")
    if scheme not in ("http", "https"):
        raise ValueError(f"{SCHEME}: got {scheme!r}, allowed: http, https")
    path = annotations.get(PATH, "/metrics")
    if not path.startswith("/"):
        raise ValueError(f"{PATH}: got {path!r}, allowed: a path starting with /")
    kind = annotations.get(KIND, AUTO)
    if kind != AUTO and kind not in all_maps():
        raise ValueError(f"{KIND}: got {kind!r}, allowed: {AUTO}, {', '.join(all_maps())}")
    tier = annotations.get(TIER)
    if tier is not None and tier not in COMPARE_TIERS:
        raise ValueError(f"{TIER}: got {tier!r}, allowed: {', '.join(COMPARE_TIERS)}")
    ip = status["podIP"]
    host = f"[{ip}]" if ":" in ip else ip
    return PodTarget(
        namespace=str(metadata.get("namespace", "")), pod=str(metadata.get("name", "")), uid=str(metadata.get("uid", "")),
        url=f"{scheme}://{host}:{port}{path}", kind=kind, capacity=_capacity(annotations.get(CAPACITY)),
        gpus=_gpus(annotations.get(GPUS)), started=_timestamp(status.get("startTime")), gpu_request=pod_gpus(pod),
        group_size=group_size(pod), tier=tier, batch_job=_run_by_job(metadata))


def _run_by_job(metadata: dict) -> bool:
    """Is the pod's controller a batch/v1 Job (directly, or for a CronJob's run)?"""
    owners = metadata.get("ownerReferences") or []
    return any(isinstance(o, dict) and o.get("controller") and o.get("kind") == "Job"
               and str(o.get("apiVersion", "")).startswith("batch/") for o in owners)


def _port(annotation, containers) -> int:
    if annotation is not None:
        if not str(annotation).isdigit() or not 1 <= int(annotation) <= 65535:
            raise ValueError(f"{PORT}: got {annotation!r}, allowed: a port number 1-65535")
        return int(annotation)
    ports = [p for c in containers for p in (c.get("ports") or []) if isinstance(p.get("containerPort"), int)]
    named = [p["containerPort"] for p in ports if p.get("name") == "metrics"]
    if named:
        return named[0]
    if len(ports) == 1:
        return ports[0]["containerPort"]
    raise ValueError(f"no {PORT} annotation, no container port named 'metrics' and {len(ports)} container ports")


def _capacity(annotation) -> float | None:
    if annotation is None:
        return None
    try:
        value = float(annotation)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{CAPACITY}: got {annotation!r}, allowed: a number > 0")
    return value


def _gpus(annotation) -> tuple[int, ...] | None:
    if annotation is None:
        return None
    parts = [p.strip() for p in str(annotation).split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"{GPUS}: got {annotation!r}, allowed: GPU indices such as 0,1")
    return tuple(int(p) for p in parts)


def _timestamp(text) -> float | None:
    """RFC 3339 as the API server writes it (2026-11-23T08:12:44Z) -> Unix time."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
