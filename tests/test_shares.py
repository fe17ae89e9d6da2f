"""Which engine pays for which GPU: each engine pod's share of its node's GPUs, read from Node and
Pod objects in the API server's wire format (exporter.kube.shares), and the node split between the
claims with its unallocated remainder (exporter.attribution).

The worked example is docs/cost-model.md's ("Which engine pays for which GPU"): its figures are
the hand computation there, not read back from the code.
"""

import json
import pathlib
import time

import pytest
from hypothesis import strategies as st

from exporter.attribution import Claim, split
from exporter.kube.shares import claims, gpu_count, mig_fraction, node_gpus, pod_gpus, pod_share
from plugins.profiles import examples
from test_fuzz import run_cases

DATA = pathlib.Path(__file__).parent / "data" / "kube"
REL = 1e-9
H100_MIB = 81559  # nvidia.com/gpu.memory of an H100 80GB HBM3, as GFD labels it


def load(name):
    return json.loads((DATA / name).read_text())


def node(labels=None, annotations=None):
    """A v1 Node carrying only what the share depends on."""
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n", "labels": labels or {},
                                                             "annotations": annotations or {}}}


def pod(limits=None, requests=None, annotations=None, init=None):
    """A v1 Pod with one container (and optionally one init container) asking for `limits`/`requests`."""
    container = {"name": "engine", "resources": {"limits": limits or {}, "requests": requests or {}}}
    spec = {"containers": [container]}
    if init:
        spec["initContainers"] = [{"name": "warmup", "resources": {"limits": init}}]
    return {"metadata": {"name": "p", "namespace": "llm", "annotations": annotations or {}}, "spec": spec}


def share(node_json, pod_json, basis="compute"):
    """(GPU-equivalents, method) of the pod's claim, None without one."""
    claim = pod_share(node_gpus(node_json), pod_gpus(pod_json), basis)
    return None if claim is None else (claim.gpus, claim.method)


# -- one pod, each method -----------------------------------------------------------------------------


def test_whole_gpus_from_the_limits_else_the_requests_are_exclusive():
    plain = node({"nvidia.com/gpu.count": "4", "nvidia.com/gpu.replicas": "1"})
    assert share(plain, pod({"nvidia.com/gpu": "2"})) == (2.0, "exclusive")
    assert share(plain, pod(requests={"nvidia.com/gpu": "1", "cpu": "4"})) == (1.0, "exclusive")
    assert share(plain, pod({"cpu": "4", "memory": "32Gi"})) is None


def test_containers_add_up_and_an_init_container_counts_only_if_it_asks_for_more():
    two = pod({"nvidia.com/gpu": "1"})
    two["spec"]["containers"].append({"name": "sidecar", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
    assert share(node(), two) == (2.0, "exclusive")
    assert share(node(), pod({"nvidia.com/gpu": "1"}, init={"nvidia.com/gpu": "4"})) == (4.0, "exclusive")
    assert share(node(), pod({"nvidia.com/gpu": "2"}, init={"nvidia.com/gpu": "1"})) == (2.0, "exclusive")


def test_a_time_sliced_replica_is_one_over_the_replicas_of_its_gpu():
    sliced = node({"nvidia.com/gpu.count": "2", "nvidia.com/gpu.replicas": "4",
                   "nvidia.com/gpu.sharing-strategy": "time-slicing"})
    assert share(sliced, pod({"nvidia.com/gpu": "1"})) == (0.25, "replica")
    assert share(sliced, pod({"nvidia.com/gpu": "2"})) == (0.5, "replica")  # two replicas, maybe of one GPU
    assert share(sliced, pod({"nvidia.com/gpu.shared": "1"})) == (0.25, "replica")  # renameByDefault: true
    mps = node({"nvidia.com/gpu.count": "1", "nvidia.com/gpu.replicas": "10", "nvidia.com/gpu.sharing-strategy": "mps"})
    assert share(mps, pod({"nvidia.com/gpu": "1"})) == (pytest.approx(0.1), "replica")


@pytest.mark.parametrize("profile, product, memory_mib, compute, memory", [
    ("3g.40gb", "NVIDIA-H100-80GB-HBM3", H100_MIB, 3 / 7, 4 / 8),
    ("1g.10gb", "NVIDIA-H100-80GB-HBM3", H100_MIB, 1 / 7, 1 / 8),
    ("1g.10gb+me", "NVIDIA-H100-80GB-HBM3", H100_MIB, 1 / 7, 1 / 8),  # media extensions: the same slices
    ("1g.20gb", "NVIDIA-H100-80GB-HBM3", H100_MIB, 1 / 7, 2 / 8),
    ("4g.40gb", "NVIDIA-A100-SXM4-80GB", 81920, 4 / 7, 4 / 8),
    ("7g.80gb", "NVIDIA-A100-SXM4-80GB", 81920, 1.0, 1.0),
    ("3g.71gb", "NVIDIA-H200", 143771, 3 / 7, 4 / 8),  # 141 GB sold, 140.4 GiB reported: still 4 eighths
    ("2g.12gb", "NVIDIA-A30", 24576, 2 / 4, 4 / 8),  # an A30 has 4 compute slices
    ("1c.3g.40gb", "NVIDIA-H100-80GB-HBM3", H100_MIB, 1 / 7, 4 / 8),  # a compute instance of a 3g GPU instance
])
def test_a_mig_device_is_its_compute_slices_or_its_memory_eighths(profile, product, memory_mib, compute, memory):
    gpus = node_gpus(node({"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": str(memory_mib),
                           "nvidia.com/mig.strategy": "mixed"}))
    assert mig_fraction(profile, gpus, "compute") == pytest.approx(compute, rel=REL)
    assert mig_fraction(profile, gpus, "memory") == pytest.approx(memory, rel=REL)
    claim = pod_share(gpus, pod_gpus(pod({f"nvidia.com/mig-{profile}": "2"})), "compute")
    assert (claim.gpus, claim.method) == (pytest.approx(2 * compute, rel=REL), "mig")


def test_single_strategy_reads_the_profile_from_the_product_and_has_no_physical_count():
    single = node({"nvidia.com/mig.strategy": "single", "nvidia.com/gpu.count": "56",
                   "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb", "nvidia.com/gpu.memory": "4864"})
    assert share(single, pod({"nvidia.com/gpu": "2"})) == (pytest.approx(2 / 7, rel=REL), "mig")
    # the memory label is the MIG device's: the memory basis falls back to compute slices
    assert share(single, pod({"nvidia.com/gpu": "2"}), "memory") == (pytest.approx(2 / 7, rel=REL), "mig")
    assert gpu_count(node_gpus(single)) == 0  # 56 MIG devices, not 56 GPUs: NVML tells


def test_a_time_sliced_mig_device_is_split_by_its_own_replicas():
    gpus = node({"nvidia.com/mig.strategy": "mixed", "nvidia.com/mig-7g.80gb.replicas": "4",
                 "nvidia.com/mig-3g.40gb.replicas": "1", "nvidia.com/gpu.replicas": "1"})
    assert share(gpus, pod({"nvidia.com/mig-7g.80gb": "1"})) == (0.25, "replica")
    assert share(gpus, pod({"nvidia.com/mig-3g.40gb": "1"})) == (pytest.approx(3 / 7, rel=REL), "mig")


HAMI_REGISTER = json.dumps([  # hami.io/node-nvidia-register as HAMi's device plugin writes it (JSON)
    {"id": "GPU-6b3c2a1d-0000-4000-8000-000000000001", "count": 10, "devmem": 81559, "devcore": 100,
     "type": "NVIDIA-NVIDIA H100 80GB HBM3", "health": True, "index": 0, "mode": "hami-core"},
    {"id": "GPU-6b3c2a1d-0000-4000-8000-000000000002", "count": 10, "devmem": 81559, "devcore": 100,
     "type": "NVIDIA-NVIDIA H100 80GB HBM3", "health": True, "index": 1, "mode": "hami-core"}])


def test_hami_fractions_from_its_allocation_annotation_else_from_its_resources():
    hami_node = node({"nvidia.com/gpu.memory": str(H100_MIB)}, {"hami.io/node-nvidia-register": HAMI_REGISTER})
    allocated = {"hami.io/vgpu-devices-allocated":
                 "GPU-6b3c2a1d-0000-4000-8000-000000000001,NVIDIA,20000,30:;"}  # 30% of the cores
    assert share(hami_node, pod({"nvidia.com/gpu": "1", "nvidia.com/gpucores": "30"}, annotations=allocated)) == (
        pytest.approx(0.3, rel=REL), "hami")
    by_memory = {"hami.io/vgpu-devices-to-allocate":  # no core limit: its memory over the device's
                 "GPU-6b3c2a1d-0000-4000-8000-000000000001,NVIDIA,40779,0:GPU-6b3c2a1d-0000-4000-8000-000000000002,NVIDIA,20389,0:;"}
    assert share(hami_node, pod({"nvidia.com/gpu": "2", "nvidia.com/gpumem": "40779"}, annotations=by_memory)) == (
        pytest.approx(40779 / H100_MIB + 20389 / H100_MIB, rel=REL), "hami")
    assert share(hami_node, pod({"nvidia.com/gpu": "2", "nvidia.com/gpucores": "25"})) == (0.5, "hami")
    assert share(hami_node, pod({"nvidia.com/gpumem-percentage": "50"})) == (0.5, "hami")
    assert share(hami_node, pod({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "20389"})) == (
        pytest.approx(20389 / H100_MIB, rel=REL), "hami")
    assert gpu_count(node_gpus(hami_node)) == 2  # GFD's count absent: HAMi's register counts


def test_hami_older_colon_register_is_read_too():
    older = "GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:"
    gpus = node_gpus(node(annotations={"hami.io/node-nvidia-register": older}))
    assert gpus.hami_memory_mib == {"GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec": 32768}


def test_pods_without_gpu_resources_hold_none_unless_no_pod_says_anything():
    gpus = node_gpus(node({"nvidia.com/gpu.count": "4"}))
    cpu_only, holder = pod_gpus(pod({"cpu": "2"})), pod_gpus(pod({"nvidia.com/gpu": "1"}))
    assert claims(gpus, {"a": cpu_only, "b": holder}) == {"a": Claim("exclusive", 0.0), "b": Claim("exclusive", 1.0)}
    assert claims(gpus, {"a": cpu_only, "b": cpu_only}) == {"a": Claim("even"), "b": Claim("even")}


def test_unreadable_quantities_and_labels_count_as_nothing():
    gpus = node_gpus(node({"nvidia.com/gpu.count": "eight", "nvidia.com/gpu.replicas": "-2"}))
    assert (gpus.count, gpus.replicas) == (0, {})
    assert share(node(), pod({"nvidia.com/gpu": "lots"})) is None
    assert share(node(), pod({"nvidia.com/gpu": "9" * 400})) is None  # past the floats: not infinite GPUs


# -- the split of the node ------------------------------------------------------------------------------


def test_config_pins_first_then_kubernetes_claims_on_the_other_gpus_then_unallocated():
    node_split = split({"pinned": Claim.from_config([0]), "k8s": Claim("exclusive", 1.5)}, 4)
    assert node_split.fractions["pinned"] == {0: 1.0}
    assert node_split.fractions["k8s"] == {1: 0.5, 2: 0.5, 3: 0.5}  # 1.5 GPUs over the 3 GPUs no pin names
    assert node_split.unallocated == {0: 0.0, 1: 0.5, 2: 0.5, 3: 0.5}
    assert (node_split.share("pinned"), node_split.share("k8s"), node_split.unallocated_share()) == (0.25, 0.375, 0.375)


def test_device_fractions_sit_on_their_own_gpus_and_the_rest_share_what_is_left():
    uuids = {"GPU-a": 0, "GPU-b": 1}
    node_split = split({"hami": Claim("hami", 0.75, devices=(("GPU-b", 0.75),)), "k8s": Claim("exclusive", 1.0)}, 2, uuids)
    assert node_split.fractions["hami"] == {1: 0.75}
    # 1.25 GPUs left (all of GPU 0, a quarter of GPU 1): the whole GPU goes in proportion to it
    assert node_split.fractions["k8s"] == {0: pytest.approx(0.8, rel=REL), 1: pytest.approx(0.2, rel=REL)}
    assert node_split.unallocated_share() == pytest.approx(0.125, rel=REL)
    crowded = split({"a": Claim("hami", 0.8, devices=(("GPU-a", 0.8),)), "b": Claim("hami", 0.8, devices=(("GPU-a", 0.8),))},
                    2, uuids)
    assert crowded.fractions == {"a": {0: 0.5}, "b": {0: 0.5}}  # 1.6 of one GPU: scaled down to it
    pinned = split({"cfg": Claim.from_config([1]), "hami": Claim("hami", 0.5, devices=(("GPU-b", 0.5),))}, 2, uuids)
    assert pinned.fractions == {"cfg": {1: 1.0}, "hami": {}}  # a configured GPU keeps its holders
    unknown = split({"hami": Claim("hami", 0.5, devices=(("GPU-z", 0.5),))}, 2, uuids)
    assert unknown.fractions == {"hami": {0: 0.25, 1: 0.25}}  # a UUID NVML did not report: GPU-equivalents


def test_claims_beyond_the_node_are_scaled_down_to_fit():
    node_split = split({"a": Claim("exclusive", 3.0), "b": Claim("replica", 1.0)}, 2)
    assert (node_split.share("a"), node_split.share("b"), node_split.unallocated_share()) == (0.75, 0.25, 0.0)


def test_without_any_gpu_known_one_notional_gpu_is_split_evenly():
    assert split({"a": Claim("exclusive", 2.0), "b": Claim.from_config(None)}, 0).fractions == {"a": {0: 0.5}, "b": {0: 0.5}}
    assert split({}, 0).unallocated_share() == 1.0


# -- the worked example: docs/cost-model.md ---------------------------------------------------------

WORKED_NODE, WORKED_PODS = "node-eks-p5.48xlarge-mig-timeslice.json", "podlist-mig-timeslice-node.json"
LLAMA, QWEN = "llm/llama-70b-6f7a8b9c0d-k2m4n", "llm/qwen-7b-5e6f7a8b9c-p3q5r"
BGE, E5 = "embed/bge-m3-4d5e6f7a8b-s6t8u", "embed/e5-large-3c4d5e6f7a-v9w1x"
# The hand computation of docs/cost-model.md, as shares of the node's 8 GPUs.
WORKED = {"compute": {LLAMA: (2 / 8, "exclusive"), QWEN: (3 / 7 / 8, "mig"), BGE: (1 / 4 / 8, "replica"),
                      E5: (1 / 4 / 8, "replica"), "unallocated": (1 - (2 + 3 / 7 + 1 / 2) / 8, "")},
          "memory": {LLAMA: (2 / 8, "exclusive"), QWEN: (4 / 8 / 8, "mig"), BGE: (1 / 4 / 8, "replica"),
                     E5: (1 / 4 / 8, "replica"), "unallocated": (1 - (2 + 1 / 2 + 1 / 2) / 8, "")}}


def worked_example(basis):
    gpus = node_gpus(load(WORKED_NODE))
    pods = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": pod_gpus(p) for p in load(WORKED_PODS)["items"]}
    node_split = split(claims(gpus, pods, basis), gpu_count(gpus))
    got = {engine: (node_split.share(engine), node_split.methods[engine]) for engine in pods}
    return {**got, "unallocated": (node_split.unallocated_share(), "")}


@pytest.mark.parametrize("basis", ["compute", "memory"])
def test_the_worked_8_gpu_node_matches_the_hand_computation(basis):
    got = worked_example(basis)
    assert got == {k: (pytest.approx(share, rel=REL), method) for k, (share, method) in WORKED[basis].items()}
    assert sum(share for share, _ in got.values()) == pytest.approx(1.0, rel=REL)


# -- the property: generated nodes ----------------------------------------------------------------------

PROFILES = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.10gb+me"]


@st.composite
def nodes_with_engines(draw):
    """A Node (whole, time-sliced, MIG mixed or single, or HAMi GPUs) and engine Pods asking for its
    resources, possibly more than it has (stale data), some pinned by config, some with nothing."""
    count = draw(st.integers(1, 8))
    kind = draw(st.sampled_from(["whole", "time-sliced", "mig-mixed", "mig-single", "hami"]))
    labels = {"nvidia.com/gpu.count": str(count), "nvidia.com/gpu.memory": str(H100_MIB),
              "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.replicas": "1"}
    annotations, resource = {}, st.just({"nvidia.com/gpu": str(draw(st.integers(1, count)))})
    if kind == "time-sliced":
        labels["nvidia.com/gpu.replicas"] = str(draw(st.integers(2, 10)))
        resource = st.builds(lambda n, name: {name: str(n)}, st.integers(1, 4),
                             st.sampled_from(["nvidia.com/gpu", "nvidia.com/gpu.shared"]))
    elif kind == "mig-mixed":
        labels["nvidia.com/mig.strategy"] = "mixed"
        for profile in PROFILES:
            labels[f"nvidia.com/mig-{profile}.replicas"] = str(draw(st.sampled_from([1, 1, 2, 4])))
        resource = st.builds(lambda n, p: {f"nvidia.com/mig-{p}": str(n)}, st.integers(1, 3), st.sampled_from(PROFILES))
    elif kind == "mig-single":
        labels.update({"nvidia.com/mig.strategy": "single", "nvidia.com/gpu.count": str(count * 7),
                       "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"})
        resource = st.builds(lambda n: {"nvidia.com/gpu": str(n)}, st.integers(1, 7))
    elif kind == "hami":
        devices = [{"id": f"GPU-{i}", "count": 10, "devmem": H100_MIB, "devcore": 100} for i in range(count)]
        annotations["hami.io/node-nvidia-register"] = json.dumps(devices)
        resource = st.builds(lambda n, cores: {"nvidia.com/gpu": str(n), "nvidia.com/gpucores": str(cores)},
                             st.integers(1, count), st.integers(1, 100))
    allocated = st.lists(st.tuples(st.integers(0, count), st.integers(0, H100_MIB), st.integers(0, 100)),
                         min_size=1, max_size=3).map(  # GPU-<count> is one NVML does not report
        lambda devs: {"hami.io/vgpu-devices-allocated": "".join(f"GPU-{i},NVIDIA,{m},{c}:" for i, m, c in devs) + ";"})
    engine_pod = st.one_of(resource.map(pod), st.just(pod({"cpu": "2"})),
                           st.builds(lambda r, a: pod(r, annotations=a), resource, allocated) if kind == "hami"
                           else st.nothing())
    pods = draw(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f"]), engine_pod, max_size=6))
    pins = draw(st.dictionaries(st.sampled_from(sorted(pods) or ["-"]),
                                st.one_of(st.none(), st.lists(st.integers(0, count + 1), max_size=3)), max_size=2))
    basis = draw(st.sampled_from(["compute", "memory"]))
    return node(labels, annotations), pods, {e: p for e, p in pins.items() if e in pods}, count, basis


def check_split_is_conserved(case):
    node_json, pods, pins, count, basis = case
    engine_claims = claims(node_gpus(node_json), {e: pod_gpus(p) for e, p in pods.items()}, basis)
    engine_claims.update({e: Claim.from_config(gpus) for e, gpus in pins.items()})  # the annotation wins
    node_split = split(engine_claims, count, {f"GPU-{i}": i for i in range(count)})
    for index in range(count):
        held = [node_split.fractions[e].get(index, 0.0) for e in engine_claims]
        assert all(0.0 <= f <= 1.0 for f in held + [node_split.unallocated[index]])
        assert sum(held) + node_split.unallocated[index] == pytest.approx(1.0, rel=REL)
    gpus_held = sum(node_split.share(e) for e in engine_claims) * count
    assert gpus_held + node_split.unallocated_share() * count == pytest.approx(count, rel=REL)
    assert set(node_split.methods.values()) <= {"exclusive", "replica", "mig", "hami", "config", "even"}


@pytest.mark.slow  # 2,000 generated nodes
def test_every_generated_node_is_split_exactly_into_engines_and_unallocated():
    started = time.monotonic()
    assert run_cases(2000, nodes_with_engines(), check_split_is_conserved) >= examples(2000)
    print(f"{examples(2000)} nodes in {time.monotonic() - started:.1f}s")
