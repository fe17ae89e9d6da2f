"""kubernetes.pod_resources wired into the shares: each engine pod holds the exact GPUs, MIG slices
and time-sliced replicas the kubelet says (method `podresources`), read against NVML's GPUs and MIG
devices, so each GPU's energy lands on the engine that holds it; where the kubelet is down or does
not list a pod, that pod's resource-based share stands, under its own method.

The kubelet is the real gRPC server of tests/kubelet.py on a unix socket, the API server the fake of
tests/test_kubernetes.py serving the worked 8-GPU node of docs/cost-model.md, NVML the simulated one
with MIG devices (exporter.gpu.simulated).
"""

from __future__ import annotations

import pynvml
import pytest

from conftest import value
from exporter.gpu.simulated import SimulatedNVML
from exporter.gpu.source import GpuSource, MigDevice
from exporter.kube.podresources.claims import exact_claim, nvml_parts, pod_devices
from exporter.kube.podresources.devices import ContainerGpus, parse_device_id
from exporter.kube.shares import NodeGpus, mig_profile
from kubelet import Kubelet, container, pod
from test_kubernetes import FakeApiServer, kube_config, load
from test_podresources import _with_pod_resources

REL = 1e-9
H100_MIB = 81559  # nvidia.com/gpu.memory of the worked node
NODE_NAME = "ip-10-0-40-12.ec2.internal"
LLAMA, QWEN = "llm/llama-70b-6f7a8b9c0d-k2m4n", "llm/qwen-7b-5e6f7a8b9c-p3q5r"
BGE, E5 = "embed/bge-m3-4d5e6f7a8b-s6t8u", "embed/e5-large-3c4d5e6f7a-v9w1x"
OWNED = {"mode": "owned", "owned": {"capex": 240000, "amortization_months": 36, "fixed_monthly": 1000},
         "energy": {"electricity_per_kwh": 0.2, "pue": 1.25}}


def h100_node(clock) -> SimulatedNVML:
    """The worked node's GPUs as NVML sees them: 8 H100s, GPU 6 as two 3g.40gb MIG devices, GPU 7 as
    one 7g.80gb (time-sliced by the device plugin, which NVML does not know); GPU i at load i/8."""
    nvml = SimulatedNVML(clock, count=8, product="NVIDIA H100 80GB HBM3", idle_watts=70.0, max_watts=700.0,
                         memory_bytes=H100_MIB * 1024**2)
    for i in range(8):
        nvml.set_load(i, lambda t, i=i: i / 8)
    nvml.enable_mig(6, ["3g.40gb", "3g.40gb"])
    nvml.enable_mig(7, ["7g.80gb"])
    return nvml


def kubelet_answer(nvml: SimulatedNVML) -> list:
    """The kubelet's List on that node: the device IDs NVIDIA's device plugin registers (NVML UUIDs,
    `::n` for a time-slicing replica). Llama holds GPUs 3 and 5, not the first two."""
    gpu = [g.uuid for g in nvml.gpus]
    mig6, mig7 = [m.uuid for m in nvml.gpus[6].mig], nvml.gpus[7].mig[0].uuid
    return [
        pod("llm", "llama-70b-6f7a8b9c0d-k2m4n", container("vllm", {"nvidia.com/gpu": [gpu[3], gpu[5]]})),
        pod("llm", "qwen-7b-5e6f7a8b9c-p3q5r", container("vllm", {"nvidia.com/mig-3g.40gb": [mig6[1]]})),
        pod("embed", "bge-m3-4d5e6f7a8b-s6t8u", container("tei", {"nvidia.com/mig-7g.80gb": [f"{mig7}::0"]})),
        pod("embed", "e5-large-3c4d5e6f7a-v9w1x", container("tei", {"nvidia.com/mig-7g.80gb": [f"{mig7}::2"]})),
        pod("kube-system", "nvidia-device-plugin-daemonset-7xk2p", container("nvidia-device-plugin")),
    ]


# -- NVML's MIG devices ----------------------------------------------------------------------------------


def test_the_simulated_nvml_reaches_mig_devices_as_pynvml_does(clock):
    nvml = h100_node(clock)
    nvml.nvmlInit()
    gpu6, gpu0 = nvml.nvmlDeviceGetHandleByIndex(6), nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetMigMode(gpu6) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    assert nvml.nvmlDeviceGetMigMode(gpu0) == [pynvml.NVML_DEVICE_MIG_DISABLE] * 2
    assert nvml.nvmlDeviceGetMaxMigDeviceCount(gpu6) == 7 and nvml.nvmlDeviceGetMaxMigDeviceCount(gpu0) == 0
    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu6, 1)
    assert nvml.nvmlDeviceGetUUID(mig).startswith("MIG-") and nvml.nvmlDeviceIsMigDeviceHandle(mig) == 1
    assert nvml.nvmlDeviceGetName(mig) == "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    assert nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) is gpu6
    attributes = nvml.nvmlDeviceGetAttributes(mig)
    assert (attributes.gpuInstanceSliceCount, attributes.computeInstanceSliceCount) == (3, 3)
    assert 40000 < attributes.memorySizeMB <= H100_MIB / 2  # a little under its eighths, as 40448 on a real H100
    for call, args, code in [
        (nvml.nvmlDeviceGetMigDeviceHandleByIndex, (gpu6, 2), pynvml.NVML_ERROR_NOT_FOUND),  # an empty slot
        (nvml.nvmlDeviceGetMigDeviceHandleByIndex, (gpu6, 7), pynvml.NVML_ERROR_INVALID_ARGUMENT),
        (nvml.nvmlDeviceGetMigDeviceHandleByIndex, (gpu0, 0), pynvml.NVML_ERROR_INVALID_ARGUMENT),
        (nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle, (gpu6,), pynvml.NVML_ERROR_INVALID_ARGUMENT),
        (nvml.nvmlDeviceGetAttributes, (gpu6,), pynvml.NVML_ERROR_NOT_SUPPORTED),
        (nvml.nvmlDeviceGetUtilizationRates, (gpu6,), pynvml.NVML_ERROR_NOT_SUPPORTED),  # per GPU, off with MIG
    ]:
        with pytest.raises(pynvml.NVMLError) as err:
            call(*args)
        assert err.value.value == code, call.__name__
    a10g = SimulatedNVML(clock, count=1)
    a10g.nvmlInit()
    with pytest.raises(pynvml.NVMLError) as err:
        a10g.nvmlDeviceGetMigMode(a10g.nvmlDeviceGetHandleByIndex(0))
    assert err.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED  # not MIG-capable


def test_the_gpu_source_lists_each_gpus_mig_devices_and_their_profiles(clock):
    nvml = h100_node(clock)
    readings = GpuSource(lambda: nvml, clock).sample()
    assert [len(r.mig) for r in readings] == [0] * 6 + [2, 1]
    assert readings[6].mig[0] == MigDevice(nvml.gpus[6].mig[0].uuid, 3, 3, nvml.gpus[6].mig[0].memory_mb)
    assert readings[6].up and readings[6].utilization_ratio is None  # MIG: no utilization, the GPU stays up
    profiles = [mig_profile(m.gpu_slices, m.compute_slices, m.memory_mib, H100_MIB) for r in readings for m in r.mig]
    assert profiles == ["3g.40gb", "3g.40gb", "7g.80gb"]
    assert mig_profile(3, 1, 40448, H100_MIB) == "1c.3g.40gb"  # a compute instance smaller than its GPU instance
    assert mig_profile(1, 1, 9856, H100_MIB) == "1g.10gb"


# -- the exact claim of one pod --------------------------------------------------------------------------------

PARTS = {"GPU-a": ("GPU-a", 1.0), "GPU-b": ("GPU-b", 1.0), "MIG-c": ("GPU-b", 3 / 7), "MIG-d": ("GPU-b", 1.0)}
REPLICAS = NodeGpus(replicas={"nvidia.com/gpu": 4, "nvidia.com/mig-7g.80gb": 2})


def held(*pairs):
    return tuple((resource, parse_device_id(raw)) for resource, raw in pairs)


@pytest.mark.parametrize("devices, node, expected", [
    (held(("nvidia.com/gpu", "GPU-a")), None, (("GPU-a", 1.0),)),
    (held(("nvidia.com/mig-3g.40gb", "MIG-c")), None, (("GPU-b", 3 / 7),)),
    (held(("nvidia.com/gpu", "GPU-a::0"), ("nvidia.com/gpu", "GPU-a::3")), REPLICAS, (("GPU-a", 2 / 4),)),
    (held(("nvidia.com/gpu.shared", "GPU-a::1")), REPLICAS, (("GPU-a", 1 / 4),)),  # renameByDefault
    (held(("nvidia.com/mig-7g.80gb", "MIG-d::1")), REPLICAS, (("GPU-b", 1 / 2),)),  # a time-sliced MIG device
    (held(("nvidia.com/gpu", "GPU-a"), ("nvidia.com/mig-3g.40gb", "MIG-c")), None, (("GPU-a", 1.0), ("GPU-b", 3 / 7))),
    (held(("nvidia.com/gpu", "GPU-z")), None, None),  # a GPU NVML does not report
    (held(("nvidia.com/gpu", "GPU-a::1")), None, None),  # a replica of unknown replicas: the node unread
    (held(("nvidia.com/gpu", "nvidia0/vgpu1")), REPLICAS, None),  # GKE's device nodes are no UUIDs
])
def test_each_device_counts_as_its_part_of_its_gpu(devices, node, expected):
    claim = exact_claim(devices, PARTS, node)
    if expected is None:
        assert claim is None
        return
    assert claim.method == "podresources" and [u for u, _ in claim.devices] == [u for u, _ in expected]
    assert [f for _, f in claim.devices] == pytest.approx([f for _, f in expected], rel=REL)
    assert claim.gpus == pytest.approx(sum(f for _, f in expected), rel=REL)


def test_a_device_two_containers_list_counts_once():
    a = parse_device_id("GPU-a")
    containers = [ContainerGpus("ns", "p", "init", {"nvidia.com/gpu": (a,)}),
                  ContainerGpus("ns", "p", "main", {"nvidia.com/gpu": (a,)})]
    assert pod_devices(containers) == {("ns", "p"): (("nvidia.com/gpu", a),)}


def test_nvml_parts_give_mig_devices_by_compute_or_memory(clock):
    readings = GpuSource(lambda: h100_node(clock), clock).sample()
    compute, memory = nvml_parts(readings, "compute"), nvml_parts(readings, "memory")
    mig = readings[6].mig[0].uuid
    assert compute[mig] == (readings[6].uuid, 3 / 7) and memory[mig] == (readings[6].uuid, 4 / 8)
    assert compute[readings[7].mig[0].uuid] == (readings[7].uuid, 1.0)
    assert compute[readings[0].uuid] == (readings[0].uuid, 1.0) and len(compute) == 8 + 3


# -- the exporter: kubelet, API server, NVML -----------------------------------------------------------------


@pytest.fixture
def node(tmp_path_factory, clock, exporter_for):
    """(exporter, kubelet, NVML) of the worked node, GPUs sampled and the pods listed."""
    nvml = h100_node(clock)
    kubelet = Kubelet(str(tmp_path_factory.mktemp("kubelet")))
    kubelet.lister.pods = kubelet_answer(nvml)
    api = FakeApiServer()
    api.node, api.pods = load("node-eks-p5.48xlarge-mig-timeslice.json"), load("podlist-mig-timeslice-node.json")["items"]
    config = _with_pod_resources(kube_config(api.url, node=NODE_NAME, discovery=True, pricing=OWNED),
                                 socket=kubelet.socket, timeout=1.0)
    exporter = exporter_for(config, nvml)
    exporter.refresh_kubernetes()
    exporter.sample_gpus_and_account()  # NVML read: the kubelet's UUIDs now name GPUs; the ledger opens
    try:
        yield exporter, kubelet, nvml
    finally:
        kubelet.stop()
        api.stop()


def shares(exporter) -> dict[str, tuple[float, str]]:
    families = {f.name: f for f in exporter.registry.collect()}
    got = {s.labels["engine"]: (s.value, s.labels["method"]) for s in families["llmcost_engine_gpu_share_ratio"].samples}
    return {**got, "unallocated": (value(exporter, "llmcost_unallocated_gpu_share_ratio"), "")}


def tick(exporter, clock, seconds=600.0):
    """(GPU joules of the interval by index, node spend, engines' spend, unallocated spend, engines' joules)."""
    def read():
        snap = exporter.snapshot()
        return ({g.index: g.energy_joules for g in snap.gpus}, sum(snap.spend.components.values()),
                dict(snap.spend.engines), snap.spend.unallocated, dict(snap.spend.engine_energy_joules))
    before = read()
    clock.advance(seconds)
    exporter.sample_gpus_and_account()
    after = read()
    gpu_joules = {i: after[0][i] - before[0][i] for i in after[0]}
    return (gpu_joules, after[1] - before[1], {e: after[2][e] - before[2].get(e, 0.0) for e in after[2]},
            after[3] - before[3], {e: after[4][e] - before[4].get(e, 0.0) for e in after[4]})


@pytest.mark.integration  # a real gRPC server and an HTTP API server
def test_the_worked_node_maps_exactly_and_each_gpus_energy_lands_on_its_engine(node, clock):
    exporter, _, _ = node
    worked = (2 + 3 / 7 + 1 / 2) / 8  # docs/cost-model.md: the same shares, now on known GPUs
    assert shares(exporter) == {LLAMA: (pytest.approx(2 / 8, rel=REL), "podresources"),
                                QWEN: (pytest.approx(3 / 7 / 8, rel=REL), "podresources"),
                                BGE: (pytest.approx(1 / 4 / 8, rel=REL), "podresources"),
                                E5: (pytest.approx(1 / 4 / 8, rel=REL), "podresources"),
                                "unallocated": (pytest.approx(1 - worked, rel=REL), "")}
    joules, node_spend, spend, unallocated, energy = tick(exporter, clock)
    assert len(set(joules.values())) == 8 and min(joules.values()) > 0  # every GPU draws its own
    assert energy[LLAMA] == pytest.approx(joules[3] + joules[5], rel=REL)  # its own two GPUs, not the mean
    assert energy[QWEN] == pytest.approx(3 / 7 * joules[6], rel=REL)
    assert energy[BGE] == pytest.approx(joules[7] / 4, rel=REL) == pytest.approx(energy[E5], rel=REL)
    per_gpu = {i: (node_spend - sum(e for e in _energy_cost(joules).values())) / 8 + _energy_cost(joules)[i]
               for i in range(8)}
    assert spend[LLAMA] == pytest.approx(per_gpu[3] + per_gpu[5], rel=REL)
    assert spend[QWEN] == pytest.approx(3 / 7 * per_gpu[6], rel=REL)
    assert sum(spend.values()) + unallocated == pytest.approx(node_spend, rel=REL)  # conserved
    # and each engine's GPU utilization is that of the GPUs it holds, not the node's
    families = {f.name: f for f in exporter.registry.collect()}
    busy = {int(s.labels["gpu"]): s.value for s in families["llmcost_gpu_utilization_ratio"].samples}
    engine_busy = {s.labels["engine"]: s.value for s in families["llmcost_engine_gpu_utilization_ratio"].samples}
    assert busy[3] != busy[5]  # the GPUs differ, so the mean of the two is a real check
    assert engine_busy[LLAMA] == pytest.approx((busy[3] + busy[5]) / 2, rel=REL)
    assert QWEN not in engine_busy  # a MIG-enabled GPU: NVML has no utilization reading for it


def _energy_cost(joules: dict[int, float]) -> dict[int, float]:
    """Each GPU's energy at OWNED's price and PUE."""
    energy = OWNED["energy"]
    return {i: j / 3.6e6 * energy["pue"] * energy["electricity_per_kwh"] for i, j in joules.items()}


@pytest.mark.integration
def test_without_the_kubelet_or_its_entry_a_pod_keeps_its_resource_share_and_method(node, clock):
    exporter, kubelet, _ = node
    kubelet.lister.pods = [p for p in kubelet.lister.pods if p.name != "e5-large-3c4d5e6f7a-v9w1x"]
    exporter.refresh_pods()
    got = shares(exporter)
    assert got[E5] == (pytest.approx(1 / 4 / 8, rel=REL), "replica")  # not listed: its resources say it
    assert {got[e][1] for e in (LLAMA, QWEN, BGE)} == {"podresources"}
    joules, node_spend, spend, unallocated, _ = tick(exporter, clock)
    assert sum(spend.values()) + unallocated == pytest.approx(node_spend, rel=REL)

    kubelet.lister.abort = (__import__("grpc").StatusCode.UNAVAILABLE, "kubelet restarting")
    exporter.refresh_pods()
    assert value(exporter, "llmcost_source_up", source="kubernetes", name="pod_resources") == 0
    assert {e: m for e, (_, m) in shares(exporter).items()} == {
        LLAMA: "exclusive", QWEN: "mig", BGE: "replica", E5: "replica", "unallocated": ""}
    joules, node_spend, spend, unallocated, energy = tick(exporter, clock)
    assert energy[LLAMA] != pytest.approx(joules[3] + joules[5], rel=1e-3)  # spread over the free GPUs again
    assert sum(spend.values()) + unallocated == pytest.approx(node_spend, rel=REL)

    kubelet.lister.abort = None  # back: exact again
    exporter.refresh_pods()
    assert shares(exporter)[LLAMA] == (pytest.approx(2 / 8, rel=REL), "podresources")


@pytest.mark.integration
def test_mig_share_memory_counts_a_mig_slice_by_its_memory(tmp_path_factory, clock, exporter_for):
    import dataclasses

    nvml = h100_node(clock)
    kubelet = Kubelet(str(tmp_path_factory.mktemp("kubelet")))
    kubelet.lister.pods = kubelet_answer(nvml)
    api = FakeApiServer()
    try:
        api.node, api.pods = load("node-eks-p5.48xlarge-mig-timeslice.json"), load("podlist-mig-timeslice-node.json")["items"]
        config = _with_pod_resources(kube_config(api.url, node=NODE_NAME, discovery=True), socket=kubelet.socket)
        kube = config.kubernetes
        config = dataclasses.replace(config, kubernetes=dataclasses.replace(
            kube, discovery=dataclasses.replace(kube.discovery, mig_share="memory")))
        exporter = exporter_for(config, nvml)
        exporter.refresh_kubernetes()
        exporter.sample_gpus_and_account()
        assert shares(exporter)[QWEN] == (pytest.approx(4 / 8 / 8, rel=REL), "podresources")
    finally:
        kubelet.stop()
        api.stop()


# -- outside Kubernetes: engines[].gpus by NVML UUID ----------------------------------------------------------


def test_configured_uuids_pin_an_engine_to_a_gpu_or_a_mig_slice(clock, exporter_for):
    from conftest import make_config

    nvml = h100_node(clock)
    mig = nvml.gpus[6].mig[0].uuid
    config = make_config([("whole", "http://127.0.0.1:9/metrics", {"gpus": [nvml.gpus[4].uuid, 0]}),
                          ("slice", "http://127.0.0.1:9/metrics", {"gpus": [mig]}),
                          ("gone", "http://127.0.0.1:9/metrics", {"gpus": ["GPU-00000000-0000-0000-0000-000000000000"]})],
                         mode="owned", **{k: v for k, v in OWNED.items() if k != "mode"})
    exporter = exporter_for(config, nvml)
    exporter.sample_gpus_and_account()
    assert shares(exporter) == {"whole": (pytest.approx(2 / 8, rel=REL), "config"),
                                "slice": (pytest.approx(3 / 7 / 8, rel=REL), "config"),
                                "gone": (0.0, "config"),  # a UUID NVML does not report holds nothing
                                "unallocated": (pytest.approx(1 - (2 + 3 / 7) / 8, rel=REL), "")}
    joules, node_spend, spend, unallocated, energy = tick(exporter, clock)
    assert energy["whole"] == pytest.approx(joules[0] + joules[4], rel=REL)
    assert energy["slice"] == pytest.approx(3 / 7 * joules[6], rel=REL)
    assert sum(spend.values()) + unallocated == pytest.approx(node_spend, rel=REL)
