"""A kubelet's PodResources endpoint for the tests: a real gRPC server (grpcio) serving the real
v1 proto's `PodResourcesLister` (the committed generated servicer) on a real unix socket. Only its
answers are the test's: what it lists, or that it hangs, or that it does not implement `List`.
"""

from __future__ import annotations

import os
import threading
from concurrent import futures

import grpc

from exporter.kube.podresources.v1 import api_pb2, api_pb2_grpc


def container(name: str, devices: dict[str, list[str]] | None = None, **extra) -> api_pb2.ContainerResources:
    """A ContainerResources as the kubelet fills it: devices per resource name (NUMA node 0), plus
    any other fields (cpu_ids, memory, dynamic_resources)."""
    topology = api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=0)])
    return api_pb2.ContainerResources(name=name, devices=[
        api_pb2.ContainerDevices(resource_name=resource, device_ids=ids, topology=topology)
        for resource, ids in (devices or {}).items()], **extra)


def pod(namespace: str, name: str, *containers: api_pb2.ContainerResources) -> api_pb2.PodResources:
    return api_pb2.PodResources(namespace=namespace, name=name, containers=list(containers))


class Lister(api_pb2_grpc.PodResourcesListerServicer):
    """List answers self.pods; with hang set, it holds the call until the test ends; with abort
    (code, message), it fails as the kubelet does (its rate limit: RESOURCE_EXHAUSTED,
    "rejected by rate limit", pkg/kubelet/apis/podresources/grpc/ratelimit.go)."""

    def __init__(self):
        self.pods: list[api_pb2.PodResources] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.hang = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def List(self, request, context):  # noqa: N802 - the proto's method name
        self.calls += 1
        if self.hang.is_set():
            self.release.wait(30)
        if self.abort:
            context.abort(*self.abort)
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


class Kubelet:
    """grpc.server on `<dir>/kubelet.sock`; `servicer` None = the generated base class, which
    answers every method UNIMPLEMENTED (a kubelet without the v1 List)."""

    def __init__(self, directory: str, servicer: api_pb2_grpc.PodResourcesListerServicer | None = None):
        self.socket = os.path.join(directory, "kubelet.sock")
        self.lister = servicer if servicer is not None else Lister()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self.lister, self.server)
        assert self.server.add_insecure_port(f"unix://{self.socket}")
        self.server.start()

    def stop(self) -> None:
        if isinstance(self.lister, Lister):
            self.lister.release.set()
        self.server.stop(grace=None)
