"""kubernetes.pod_resources: the kubelet's PodResources API (v1 `List`) over its unix socket.

The kubelet is a real gRPC server (grpcio) serving the real proto's PodResourcesLister from the
committed generated code, on a real unix socket (tests/kubelet.py); only its answers are the
test's. The proto is checked to be the kubelet's, byte for byte, and the committed stubs to be a
fresh generation of it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import value
from exporter.kube.podresources.client import PodResourcesError, list_pod_resources
from exporter.kube.podresources.devices import ContainerGpus, GpuDevice, container_gpus, parse_device_id, pod_gpus
from exporter.kube.podresources.v1 import api_pb2, api_pb2_grpc
from kubelet import Kubelet, container, pod
from test_kubernetes import FakeApiServer, kube_config, load

ROOT = pathlib.Path(__file__).resolve().parent.parent
V1 = ROOT / "exporter" / "kube" / "podresources" / "v1"
STUBS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")

# NVML UUIDs as NVIDIA's device plugin registers them (GPU-..., MIG-...); "::n" marks a time-slicing replica.
GPU = [f"GPU-{n}e7a2c1d-9b4f-4e0a-8c3d-1f2e3a4b5c6d" for n in range(5)]
MIG = ["MIG-0b7c1a52-3c1e-5f0e-9a3e-2b44d6a8f001", "MIG-0b7c1a52-3c1e-5f0e-9a3e-2b44d6a8f002"]


def node_pods() -> list[api_pb2.PodResources]:
    """An 8-GPU node's answer: exclusive GPUs, two replicas of one time-sliced GPU in one container,
    a MIG slice, a time-sliced MIG slice, a pod whose two containers share one GPU, and pods that hold
    no GPU (a device plugin's own pod, an SR-IOV NIC, a DRA claim, CPUs only)."""
    return [
        pod("llm", "llama-8b-7d9f8c6b5-x2kqz",
            container("vllm", {"nvidia.com/gpu": [GPU[0], GPU[1]]}, cpu_ids=[2, 3]),
            container("metrics-sidecar")),
        pod("llm", "qwen-32b-5c8d7f9b4-m4p7r", container("vllm", {"nvidia.com/gpu.shared": [f"{GPU[2]}::0", f"{GPU[2]}::3"]})),
        pod("llm", "mistral-7b-6b7c8d9e0-q9w8e", container("vllm", {"nvidia.com/mig-3g.40gb": [MIG[0]]})),
        pod("kube-system", "nvidia-device-plugin-daemonset-7xk2p", container("nvidia-device-plugin")),
        pod("net", "sriov-client", container("app", {"openshift.io/sriov_netdevice": ["0000:3b:02.1"]})),
        pod("llm", "disagg-0",
            container("prefill", {"nvidia.com/gpu": [f"{GPU[3]}::1"]}),
            container("decode", {"nvidia.com/gpu": [f"{GPU[3]}::2"], "example.com/fpga": ["fpga0"]}),
            container("router")),
        pod("batch", "embed-6f9d", container("tei", {"nvidia.com/mig-1g.10gb.shared": [f"{MIG[1]}::4"]})),
        pod("llm", "dra-claim", container("vllm", dynamic_resources=[api_pb2.DynamicResource(
            claim_name="gpu", claim_namespace="llm", claim_resources=[api_pb2.ClaimResource(
                driver_name="gpu.nvidia.com", pool_name="node-1", device_name="gpu-5")])])),
        pod("default", "cpu-only", container("app", cpu_ids=[4, 5])),
    ]


def d(raw: str) -> GpuDevice:
    return parse_device_id(raw)


EXPECTED = [
    ContainerGpus("llm", "llama-8b-7d9f8c6b5-x2kqz", "vllm", {"nvidia.com/gpu": (d(GPU[0]), d(GPU[1]))}),
    ContainerGpus("llm", "qwen-32b-5c8d7f9b4-m4p7r", "vllm",
                  {"nvidia.com/gpu.shared": (d(f"{GPU[2]}::0"), d(f"{GPU[2]}::3"))}),
    ContainerGpus("llm", "mistral-7b-6b7c8d9e0-q9w8e", "vllm", {"nvidia.com/mig-3g.40gb": (d(MIG[0]),)}),
    ContainerGpus("llm", "disagg-0", "prefill", {"nvidia.com/gpu": (d(f"{GPU[3]}::1"),)}),
    ContainerGpus("llm", "disagg-0", "decode", {"nvidia.com/gpu": (d(f"{GPU[3]}::2"),)}),
    ContainerGpus("batch", "embed-6f9d", "tei", {"nvidia.com/mig-1g.10gb.shared": (d(f"{MIG[1]}::4"),)}),
]


@pytest.fixture
def kubelet(tmp_path_factory):
    server = Kubelet(str(tmp_path_factory.mktemp("kubelet")))  # short: sun_path holds 107 bytes
    server.lister.pods = node_pods()
    yield server
    server.stop()


def failure(socket_path: str, timeout: float = 1.0) -> tuple[str, str, float]:
    """(reason, message, seconds taken) of a List that must fail."""
    started = time.monotonic()
    with pytest.raises(PodResourcesError) as err:
        list_pod_resources(socket_path, timeout)
    return err.value.reason, str(err.value), time.monotonic() - started


# -- the proto and its stubs ------------------------------------------------------------------------

def test_the_proto_is_the_kubelets_byte_for_byte():
    readme = (V1 / "README.md").read_text()
    digest = re.search(r"`sha256sum api.proto` = `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256((V1 / "api.proto").read_bytes()).hexdigest() == digest
    assert "tag: `v0.36.3`" in readme and "bbb4f8f0907ace5f317f33e06413a55a5f4636f6" in readme
    proto = (V1 / "api.proto").read_text()
    assert "package v1;" in proto and "gogo" not in proto
    assert "rpc List(ListPodResourcesRequest) returns (ListPodResourcesResponse) {}" in proto
    # The generated client calls the kubelet's method name on the wire.
    assert api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"].methods_by_name["List"].full_name == \
        "v1.PodResourcesLister.List"


def _pinned_generator() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text()
    return re.search(r'"grpcio-tools==([\d.]+)"', pyproject).group(1)


@pytest.mark.integration
def test_the_committed_stubs_are_a_fresh_generation(tmp_path):
    """scripts/gen-podresources.sh with the pinned grpcio-tools writes exactly the committed files."""
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pyproject.toml `test` extra)")
    installed, pinned = importlib.metadata.version("grpcio-tools"), _pinned_generator()
    assert installed == pinned, f"grpcio-tools {installed} is installed, the stubs are made with {pinned} (pyproject.toml)"
    result = subprocess.run([str(ROOT / "scripts" / "gen-podresources.sh"), str(tmp_path)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    fresh = tmp_path / V1.relative_to(ROOT)
    assert sorted(p.name for p in fresh.iterdir()) == sorted(STUBS)
    stale = [name for name in STUBS if (fresh / name).read_bytes() != (V1 / name).read_bytes()]
    assert not stale, f"run scripts/gen-podresources.sh: {stale} differ from a fresh generation"


# -- device IDs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,device,replica,kind", [
    (GPU[0], GPU[0], None, "gpu"),  # NVIDIA device plugin, a whole GPU
    (MIG[0], MIG[0], None, "mig"),  # a MIG slice (mig-strategy single or mixed)
    (f"{GPU[1]}::7", GPU[1], 7, "gpu"),  # time-slicing / MPS replica (NewAnnotatedID "%s::%d")
    (f"{MIG[1]}::0", MIG[1], 0, "mig"),  # a time-sliced MIG slice
    (f"{GPU[2]}-3", GPU[2], 3, "gpu"),  # HAMi virtual device
    (f"{GPU[3]}[3g.40gb-1]", GPU[3], None, "gpu"),  # HAMi MIG instance: the GPU it is on
    ("nvidia0", "nvidia0", None, "other"),  # GKE: the device node
    ("nvidia1/vgpu2", "nvidia1", 2, "other"),  # GKE time-sharing
    ("MIG-GPU-5e7a2c1d-9b4f-4e0a-8c3d-1f2e3a4b5c6d/1/0", "MIG-GPU-5e7a2c1d-9b4f-4e0a-8c3d-1f2e3a4b5c6d/1/0", None, "mig"),
    ("0", "0", None, "other"),  # another plugin's index
    (f"{GPU[4]}::x", f"{GPU[4]}::x", None, "gpu"),  # not a replica number: kept as written
])
def test_device_ids_of_each_device_plugin(raw, device, replica, kind):
    parsed = parse_device_id(raw)
    assert (parsed.id, parsed.replica, parsed.kind, parsed.raw) == (device, replica, kind, raw)


@given(uuid=st.uuids(), kind=st.sampled_from(["GPU", "MIG"]), replica=st.integers(0, 10**6), raw=st.text(max_size=80))
def test_a_replica_suffix_is_cut_and_nothing_is_invented(uuid, kind, replica, raw):
    device = f"{kind}-{uuid}"
    assert parse_device_id(f"{device}::{replica}") == GpuDevice(device, replica, f"{device}::{replica}")
    assert parse_device_id(device) == GpuDevice(device, None, device)
    parsed = parse_device_id(raw)  # any text: the device is the raw ID or a prefix of it, never more
    assert parsed.raw == raw and raw.startswith(parsed.id) and (parsed.id != raw or parsed.replica is None)


# -- List over the socket --------------------------------------------------------------------------

def test_list_maps_pods_and_containers_to_their_gpus(kubelet):
    response = list_pod_resources(kubelet.socket, 1.0)
    assert container_gpus(response) == EXPECTED
    assert pod_gpus(container_gpus(response)) == {
        ("llm", "llama-8b-7d9f8c6b5-x2kqz"): (GPU[0], GPU[1]),
        ("llm", "qwen-32b-5c8d7f9b4-m4p7r"): (GPU[2],),  # two replicas of one GPU are that GPU
        ("llm", "mistral-7b-6b7c8d9e0-q9w8e"): (MIG[0],),
        ("llm", "disagg-0"): (GPU[3],),  # both containers' replicas of one GPU
        ("batch", "embed-6f9d"): (MIG[1],),
    }
    replicas = [dev.replica for c in container_gpus(response) for ds in c.devices.values() for dev in ds]
    assert replicas == [None, None, 0, 3, None, 1, 2, 4]
    # A renamed resource (the plugin's `rename`) is counted only once it is named.
    kubelet.lister.pods = [pod("llm", "a100-pod", container("vllm", {"nvidia.com/a100": [GPU[4]]}))]
    assert container_gpus(list_pod_resources(kubelet.socket, 1.0)) == []
    assert pod_gpus(container_gpus(list_pod_resources(kubelet.socket, 1.0), ["nvidia.com/a*"])) == \
        {("llm", "a100-pod"): (GPU[4],)}


def test_a_hanging_kubelet_is_cut_at_the_whole_call_deadline(kubelet, tmp_path_factory):
    kubelet.lister.hang.set()
    reason, message, took = failure(kubelet.socket, timeout=0.5)
    assert (reason, message) == ("timeout", "no answer from the kubelet within 0.5s")
    assert 0.45 <= took <= 0.5 + 0.5
    assert kubelet.lister.calls == 1  # one attempt, no retry
    # A socket that accepts and never speaks HTTP/2: the deadline covers connecting too.
    mute = socket.socket(socket.AF_UNIX)
    path = str(tmp_path_factory.mktemp("mute") / "kubelet.sock")
    mute.bind(path)
    mute.listen(1)
    try:
        reason, _, took = failure(path, timeout=0.5)
    finally:
        mute.close()
    assert reason == "timeout" and took <= 0.5 + 0.5


def test_a_missing_or_dead_socket(tmp_path_factory):
    directory = tmp_path_factory.mktemp("nokubelet")
    reason, message, took = failure(str(directory / "kubelet.sock"))
    assert reason == "not_found" and "No such file" in message and took < 0.5
    dead = socket.socket(socket.AF_UNIX)  # a socket file nobody listens on (the kubelet stopped)
    dead.bind(str(directory / "dead.sock"))
    dead.close()
    assert failure(str(directory / "dead.sock"))[0] == "connection"
    (directory / "file.sock").write_text("")
    assert failure(str(directory / "file.sock"))[0] == "not_a_socket"


def test_a_kubelet_without_list_is_unimplemented(tmp_path_factory):
    server = Kubelet(str(tmp_path_factory.mktemp("old")), servicer=api_pb2_grpc.PodResourcesListerServicer())
    try:
        reason, message, _ = failure(server.socket)
    finally:
        server.stop()
    assert reason == "unimplemented" and "UNIMPLEMENTED" in message


def test_the_kubelets_rate_limit(kubelet):
    kubelet.lister.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "rejected by rate limit")
    reason, message, _ = failure(kubelet.socket)
    assert reason == "resource_exhausted" and "rejected by rate limit" in message


_AS_USER = """
import os, sys
from exporter.kube.podresources.client import PodResourcesError, _grpc, list_pod_resources
_grpc()  # every module loaded before the switch: the interpreter lives where only root may enter
if os.geteuid() == 0:
    os.setgroups([]), os.setgid(65532), os.setuid(65532)  # the chart's user; for good, no way back
for path in sys.argv[1:]:
    try:
        print(len(list_pod_resources(path, 1.0).pod_resources))
    except PodResourcesError as err:
        print(err.reason)
"""


@pytest.mark.integration  # a subprocess under another user when the tests run as root
def test_a_socket_without_permission():
    """The kubelet's layout: its directory is 0750 root and its socket 0755 root (net.Listen under
    umask 022), so a non-root exporter can neither enter the directory nor connect (connect needs
    write permission). A socket open to all is the control: the same user reaches it."""
    base = tempfile.mkdtemp(prefix="kubelet-perm-", dir="/tmp")  # /tmp: every user can reach it
    open_dir, closed_dir = os.path.join(base, "open"), os.path.join(base, "closed")
    os.makedirs(open_dir), os.makedirs(closed_dir)
    servers = [Kubelet(open_dir), Kubelet(closed_dir)]
    try:
        os.chmod(base, 0o755)
        os.chmod(open_dir, 0o755)
        os.chmod(closed_dir, 0o750 if os.geteuid() == 0 else 0o000)
        socket_modes = (0o755, 0o777) if os.geteuid() == 0 else (0o500, 0o777)
        paths = [servers[0].socket, servers[1].socket]
        os.chmod(paths[0], socket_modes[0])
        assert _as_other_user(paths) == ["permission", "permission"]
        os.chmod(paths[0], socket_modes[1])
        assert _as_other_user(paths[:1]) == ["0"]  # the control: an empty node's answer
    finally:
        os.chmod(closed_dir, 0o755)
        for server in servers:
            server.stop()
        shutil.rmtree(base)


def _as_other_user(paths: list[str]) -> list[str]:
    """The reasons list_pod_resources gives, as uid 65532 (the chart's user) when the tests run as
    root, else as the current (non-root) user."""
    result = subprocess.run([sys.executable, "-c", _AS_USER, *paths], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# -- the source in the exporter --------------------------------------------------------------------

@pytest.mark.integration  # real servers and a real deadline
def test_the_exporter_maps_pods_to_gpus_reports_health_and_keeps_the_last_read(kubelet, clock, exporter_for, caplog):
    api = FakeApiServer()
    try:
        api.node, api.pods = load("node-eks-karpenter-spot-g5.12xlarge.json"), load("podlist-llm-node.json")["items"]
        config = kube_config(api.url, discovery=True)
        config = _with_pod_resources(config, socket=kubelet.socket, timeout=0.3)
        exporter = exporter_for(config)
        source = exporter.kube.pod_resources
        up = {"source": "kubernetes", "name": "pod_resources"}
        assert value(exporter, "llmcost_source_up", **up) == 0  # not read yet
        with caplog.at_level(logging.INFO):
            exporter.refresh_kubernetes()
            exporter.refresh_pods()  # unchanged: no second log line
        assert value(exporter, "llmcost_source_up", **up) == 1
        assert value(exporter, "llmcost_source_up", source="kubernetes", name="pods") == 1
        read = source.pod_gpus()
        assert read[("llm", "llama-8b-7d9f8c6b5-x2kqz")] == (GPU[0], GPU[1]) and len(read) == 5
        assert source.read_at == clock.now()
        lines = [r.getMessage() for r in caplog.records if "GPU devices per pod" in r.getMessage()]
        assert lines == ["GPU devices per pod read from the kubelet pods=5 containers=6 devices=6"]

        kubelet.lister.hang.set()  # the kubelet hangs: down for timeout, the mapping stays
        caplog.clear()
        clock.advance(30)
        started = time.monotonic()
        exporter.refresh_pods()
        exporter.refresh_pods()
        assert time.monotonic() - started < 2 * (0.3 + 0.5)
        assert value(exporter, "llmcost_source_up", **up) == 0
        assert value(exporter, "llmcost_source_errors_total", reason="timeout", **up) == 2
        assert value(exporter, "llmcost_source_up", source="kubernetes", name="pods") == 1  # one source degrades
        assert source.pod_gpus() == read and source.read_at == clock.now() - 30
        failing = [r.getMessage() for r in caplog.records if "source failing" in r.getMessage()]
        assert len(failing) == 1 and "name=pod_resources reason=timeout" in failing[0]
    finally:
        api.stop()


def _with_pod_resources(config, **keys):
    import dataclasses

    kube = config.kubernetes
    pod_resources = dataclasses.replace(kube.pod_resources, enabled=True, **keys)
    return dataclasses.replace(config, kubernetes=dataclasses.replace(kube, pod_resources=pod_resources))


@pytest.mark.slow  # a fresh interpreter imports the exporter
def test_grpc_is_imported_only_when_pod_resources_is_on(kubelet):
    code = ("import sys\nfrom exporter.config import from_dict\nfrom exporter.kube.source import KubernetesSource\n"
            "from exporter.clock import SystemClock\n"
            "kube = {'enabled': True, 'node_name': 'n', 'api_url': 'http://127.0.0.1:9', 'discovery': {'enabled': True}}\n"
            "off = KubernetesSource(from_dict({'kubernetes': kube}, environ={}).kubernetes, SystemClock())\n"
            "off.refresh_pods()\nprint('grpc' in sys.modules)\n"
            f"kube['pod_resources'] = {{'enabled': True, 'socket': {kubelet.socket!r}}}\n"
            "on = KubernetesSource(from_dict({'kubernetes': kube}, environ={}).kubernetes, SystemClock())\n"
            "on.refresh_pods()\nprint('grpc' in sys.modules, sorted(on.pod_resources.pod_gpus()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.splitlines()[0] == "False", result.stderr
    assert result.stdout.splitlines()[1].startswith("True [('batch', 'embed-6f9d'), ('llm', 'disagg-0')"), result.stderr


@pytest.mark.integration  # the run command as a subprocess, real time
def test_the_run_command_reads_the_kubelet_when_it_appears_and_logs_only_its_own_lines(tmp_path_factory):
    """`llm-cost-exporter run` as the chart's profile runs it: the kubelet's socket is missing at
    start (one failing line, reason not_found), then a kubelet serves it and the next pod listing
    reads it (one recovery line). stderr holds only the exporter's logfmt lines, never gRPC's own."""
    from test_demo_and_promtool import free_port

    api = FakeApiServer()
    api.node, api.pods = load("node-eks-karpenter-spot-g5.12xlarge.json"), load("podlist-llm-node.json")["items"]
    directory = tmp_path_factory.mktemp("run")
    config, port = directory / "config.yml", free_port()
    config.write_text(f"gpu: {{backend: none}}\nkubernetes:\n  enabled: true\n  api_url: '{api.url}'\n  timeout: 500ms\n"
                      "  discovery: {enabled: true, refresh_interval: 1s}\n"
                      f"  pod_resources: {{enabled: true, socket: '{directory / 'kubelet.sock'}', timeout: 300ms}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCOST_", "GRPC_"))}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--config.file={config}",
                                f"--web.listen-address=127.0.0.1:{port}"], env={**env, "NODE_NAME": "ip-10-0-12-34.ec2.internal"},
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    kubelet, texts = None, []
    try:
        for wanted in ('llmcost_source_errors_total{name="pod_resources",reason="not_found",source="kubernetes"}',
                       'llmcost_source_up{name="pod_resources",source="kubernetes"} 1.0'):
            texts.append(_scrape_until(port, wanted))
            if kubelet is None:
                kubelet = Kubelet(str(directory))
                kubelet.lister.pods = node_pods()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        if kubelet:
            kubelet.stop()
        api.stop()
    assert 'llmcost_source_up{name="pod_resources",source="kubernetes"} 0.0' in texts[0]
    lines = stderr.splitlines()
    assert lines and all(line.startswith("ts=") and " level=" in line for line in lines), stderr
    pod_resources = [line for line in lines if "name=pod_resources" in line]
    assert len(pod_resources) == 2, pod_resources
    assert "source failing" in pod_resources[0] and "reason=not_found" in pod_resources[0]
    assert "source recovered" in pod_resources[1]
    assert any("GPU devices per pod read from the kubelet pods=5 containers=6 devices=6" in line for line in lines)


def _scrape_until(port: int, wanted: str, seconds: float = 20.0) -> str:
    import urllib.request

    deadline, text = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            text = ""
        if wanted in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{wanted} not on /metrics within {seconds}s:\n{text[-2000:]}")
