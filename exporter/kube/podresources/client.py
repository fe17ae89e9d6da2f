"""The one call the exporter makes to the kubelet's PodResources API: `List`, over the kubelet's unix
socket, with one deadline for the whole call (connecting included).

grpcio and protobuf (the `podresources` extra) are imported on first use, so an exporter without
kubernetes.pod_resources never loads them. Each call opens a channel and closes it: no connection
and no reconnect thread lives between refreshes, and the next refresh is the retry. Every failure
becomes PodResourcesError with a short, bounded `reason` for llmcost_source_errors_total.
"""

from __future__ import annotations

import os
import stat

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # as the kubelet's own client; a node's pods take a few KiB

# gRPC status code name -> reason; UNAVAILABLE is told apart by looking at the socket (_unavailable).
_CODE_REASONS = {
    "DEADLINE_EXCEEDED": "timeout",
    "UNIMPLEMENTED": "unimplemented",  # a kubelet without the v1 List (before Kubernetes 1.20), or not a kubelet
    "PERMISSION_DENIED": "permission",
    "UNAUTHENTICATED": "permission",
    "RESOURCE_EXHAUSTED": "resource_exhausted",  # the kubelet's rate limit, or an answer over MAX_MESSAGE_BYTES
}


class PodResourcesError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def list_pod_resources(socket_path: str, timeout: float):
    """The kubelet's v1 ListPodResourcesResponse, within `timeout` seconds, or PodResourcesError."""
    grpc, api_pb2, api_pb2_grpc = _grpc()
    channel = grpc.insecure_channel(f"unix://{socket_path}", options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 0),  # one attempt per refresh
    ])
    try:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        return stub.List(api_pb2.ListPodResourcesRequest(), timeout=timeout)  # timeout: the whole call's deadline
    except grpc.RpcError as err:
        code = err.code().name if callable(getattr(err, "code", None)) else "UNKNOWN"
        details = err.details() if callable(getattr(err, "details", None)) else str(err)
        reason = _unavailable(socket_path) if code == "UNAVAILABLE" else _CODE_REASONS.get(code, "error")
        if reason == "timeout":
            raise PodResourcesError(reason, f"no answer from the kubelet within {timeout:g}s") from None
        raise PodResourcesError(reason, f"kubelet {socket_path}: {code}: {details}") from None
    finally:
        channel.close()


def _unavailable(socket_path: str) -> str:
    """Why a unix socket could not be reached, from the socket itself rather than gRPC's message text."""
    try:
        mode = os.stat(socket_path).st_mode
    except FileNotFoundError:
        return "not_found"  # the directory is not mounted, or no kubelet serves it
    except PermissionError:
        return "permission"  # a directory on the way is not searchable (the kubelet's is 0750 root)
    except OSError:
        return "connection"
    if not stat.S_ISSOCK(mode):
        return "not_a_socket"
    if not os.access(socket_path, os.W_OK):  # connect(2) needs write permission on the socket
        return "permission"
    return "connection"  # refused: nothing listens on it


def _grpc():
    """grpc and the generated stubs, imported on first use (the `podresources` extra)."""
    # gRPC's C core writes its own log lines to stderr; the exporter's log is one logfmt line per
    # record, and every failure here is reported as a reason instead. An explicit setting wins.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import grpc

    from exporter.kube.podresources.v1 import api_pb2, api_pb2_grpc

    return grpc, api_pb2, api_pb2_grpc
