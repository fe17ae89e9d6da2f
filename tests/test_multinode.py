"""Multi-node engines (LeaderWorkerSet, Ray): the worker pods' GPUs are the leader's engine's, on
every node, and the rules sum that engine's spend over the nodes before dividing by its tokens.

The Kubernetes API is the one fake (tests/test_kubernetes.py's FakeApiServer, serving the LWS and
KubeRay PodLists of tests/data/kube/ in the v1 wire format, field and label selectors applied);
everything else is real: the exporter's client over sockets, the simulated vLLM leader over HTTP,
and, in the acceptance test, two `run` processes scraped by a real Prometheus 2.42 that evaluates
the rule file rules/generate.py makes.
"""

import copy
import pathlib
import sys
import time

import pytest
from conftest import MODEL, value
from plugins.process import ExporterProcess
from prometheus import Prometheus
from test_kubernetes import FakeApiServer, kube_config, load
from test_rules import FAST, committed_every_second, generated

from exporter.clock import SystemClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.gpu.simulated import SimulatedNVML
from exporter.kube import groups
from exporter.kube.discovery import pod_targets

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # `dashboards` sits beside `exporter`
from dashboards.generate import ALL, panel_queries, substitute  # noqa: E402

LEADER_NODE, WORKER_NODE = "ip-10-0-12-34.ec2.internal", "ip-10-0-12-35.ec2.internal"
LWS_PODS, RAY_PODS = "podlist-lws-vllm.json", "podlist-ray-vllm.json"
LEADER, WORKER = "llm/vllm-0", "llm/vllm-0-1"
RAY_HEAD, RAY_WORKER = "llm/vllm-ray-head-x7k2p", "llm/vllm-ray-gpu-group-worker-8fj2q"
G5 = "node-eks-karpenter-spot-g5.12xlarge.json"  # 4 A10G, priced from its labels


def node(name: str) -> dict:
    """The g5.12xlarge Node fixture, as the node `name`."""
    obj = load(G5)
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"]["kubernetes.io/hostname"] = name
    return obj


def pods_of(fixture: str) -> list[dict]:
    return load(fixture)["items"]


def labels_of(engine: str) -> dict:
    namespace, pod = engine.split("/")
    return {"engine": engine, "namespace": namespace, "pod": pod}


@pytest.fixture
def apis():
    servers = []

    def make(node_name, pods):
        server = FakeApiServer()
        server.node, server.pods = node(node_name), pods
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# -- reading the pods ---------------------------------------------------------------------------

def test_lws_and_ray_pods_are_read_as_leaders_and_workers_by_their_controllers_labels():
    lws = {p["metadata"]["name"]: groups.worker_of(p) for p in pods_of(LWS_PODS)}
    assert lws["vllm-0"] is None and lws["vllm-1"] is None  # leaders (worker-index 0)
    worker = lws["vllm-0-1"]
    assert (worker.kind, worker.group, worker.leader, worker.leader_engine) == ("lws", "vllm/0", "vllm-0", LEADER)
    assert worker.gpu_request.resources == {"nvidia.com/gpu": 4.0}
    assert lws["vllm-1-1"].leader_engine == "llm/vllm-1"
    ray = {p["metadata"]["name"]: groups.worker_of(p) for p in pods_of(RAY_PODS)}
    assert ray["vllm-ray-head-x7k2p"] is None
    assert (ray["vllm-ray-gpu-group-worker-8fj2q"].kind, ray["vllm-ray-gpu-group-worker-8fj2q"].group) == ("ray", "vllm-ray")
    assert ray["vllm-ray-gpu-group-worker-8fj2q"].leader is None  # a head's name is random: listed, not derived
    assert groups.ray_head(load(RAY_PODS), "llm", "vllm-ray") == "vllm-ray-head-x7k2p"
    assert groups.ray_head(load(RAY_PODS), "other", "vllm-ray") is None


def test_without_the_leader_name_annotation_the_leader_is_the_leader_statefulsets_pod():
    pod = copy.deepcopy(pods_of(LWS_PODS)[1])
    del pod["metadata"]["annotations"][groups.LWS_LEADER_NAME]
    assert groups.worker_of(pod).leader_engine == LEADER


def test_workers_are_no_scrape_targets_however_their_annotations_read():
    targets, skipped = pod_targets(load(LWS_PODS))
    assert [t.engine for t in targets] == [LEADER, "llm/vllm-1"] and skipped == []
    targets, skipped = pod_targets(load(RAY_PODS))
    assert [t.engine for t in targets] == [RAY_HEAD] and skipped == []


def test_booking_merges_a_workers_gpus_into_its_leaders_and_leaves_pinned_leaders_alone():
    leader, worker = (groups.worker_of(p) for p in pods_of(LWS_PODS)[:2])
    assert leader is None
    own = pod_targets(load(LWS_PODS))[0][0].gpu_request
    merged = groups.book({LEADER: own}, [worker])
    assert merged[LEADER].resources == {"nvidia.com/gpu": 8.0}
    assert groups.book({}, [worker])[LEADER].resources == {"nvidia.com/gpu": 4.0}
    assert groups.book({}, [worker], keep=frozenset({LEADER})) == {}
    assert groups.pods_by_engine({LEADER: ("llm", "vllm-0")}, [worker]) == {LEADER: [("llm", "vllm-0"), ("llm", "vllm-0-1")]}
    assert groups.pods_by_engine({}, [worker]) == {LEADER: [("llm", "vllm-0-1")]}


# -- one node's exporter ---------------------------------------------------------------------------

def a10gs(clock):
    """The 4 GPUs NVML reports on a g5.12xlarge."""
    return SimulatedNVML(clock, count=4, product="NVIDIA A10G", load_fn=lambda t: 0.5)


def run_ticks(exporter, clock, ticks=61, step=60.0):
    for _ in range(ticks):
        exporter.sample_gpus_and_account()
        clock.advance(step)


def test_a_worker_node_books_its_gpus_to_the_leaders_engine_without_scraping_it(apis, clock, exporter_for):
    api = apis(WORKER_NODE, pods_of(LWS_PODS))
    exporter = exporter_for(kube_config(api.url, node=WORKER_NODE, discovery=True), a10gs(clock))
    exporter.refresh_kubernetes()
    run_ticks(exporter, clock)
    node_spend = value(exporter, "llmcost_spend_total", component="instance", currency="USD")
    assert node_spend == pytest.approx(2.1824, rel=1e-9)  # the spot g5.12xlarge, one hour
    leader = labels_of(LEADER)
    assert value(exporter, "llmcost_engine_spend_total", currency="USD", **leader) == pytest.approx(node_spend, rel=1e-9)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **leader) == 1.0
    assert value(exporter, "llmcost_unallocated_spend_total", currency="USD") == 0.0
    assert value(exporter, "llmcost_engine_energy_joules_total", **leader) > 0
    up = [s.labels for f in exporter.registry.collect() if f.name == "llmcost_source_up" for s in f.samples]
    assert not [labels for labels in up if labels["source"] == "engine"]  # neither the worker nor the leader is scraped
    assert exporter.jobs.intervals().keys().isdisjoint({f"engine:{LEADER}", f"engine:{WORKER}"})


def test_a_worker_beside_another_engine_and_a_free_gpu_conserves_the_nodes_spend(apis, clock, exporter_for):
    """4 GPUs: the worker of vllm-0 holds 2 (booked to llm/vllm-0), the leader of another group 1, one is free."""
    pods = pods_of(LWS_PODS)
    worker, other = pods[1], pods[2]
    other["spec"]["nodeName"] = WORKER_NODE
    for pod, gpus in ((worker, "2"), (other, "1")):
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = gpus
        pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = gpus
    api = apis(WORKER_NODE, pods)
    exporter = exporter_for(kube_config(api.url, node=WORKER_NODE, discovery=True), a10gs(clock))
    exporter.refresh_kubernetes()
    run_ticks(exporter, clock)
    node_spend = value(exporter, "llmcost_spend_total", component="instance", currency="USD")
    booked = value(exporter, "llmcost_engine_spend_total", currency="USD", **labels_of(LEADER))
    beside = value(exporter, "llmcost_engine_spend_total", currency="USD", **labels_of("llm/vllm-1"))
    free = value(exporter, "llmcost_unallocated_spend_total", currency="USD")
    assert (booked / node_spend, beside / node_spend, free / node_spend) == pytest.approx((0.5, 0.25, 0.25), rel=1e-9)
    assert booked + beside + free == pytest.approx(node_spend, rel=1e-9)


def test_leader_and_worker_on_one_node_are_one_engine_holding_both_pods_gpus(apis, clock, exporter_for, vllm):
    pods = pods_of(LWS_PODS)[:2]
    server = vllm()
    pods[0]["status"]["podIP"] = "127.0.0.1"
    pods[0]["metadata"]["annotations"]["llmcost.io/port"] = server.url.split(":")[2].split("/")[0]
    pods[1]["spec"]["nodeName"] = LEADER_NODE
    for pod in pods:  # two GPUs each, on the 4-GPU node
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "2"
        pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"
    api = apis(LEADER_NODE, pods)
    exporter = exporter_for(kube_config(api.url, node=LEADER_NODE, discovery=True), a10gs(clock))
    exporter.refresh_kubernetes()
    assert exporter.engine_registry.pods() == {LEADER: ("llm", "vllm-0")}
    run_ticks(exporter, clock, ticks=3)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **labels_of(LEADER)) == 1.0
    assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == 0.0


def test_a_worker_that_goes_frees_its_gpus_and_its_booked_engine_is_dropped_after_the_retention(apis, clock, exporter_for):
    api = apis(WORKER_NODE, pods_of(LWS_PODS))
    exporter = exporter_for(kube_config(api.url, node=WORKER_NODE, discovery=True, removed_engine_retention="10m"), a10gs(clock))
    exporter.refresh_kubernetes()
    run_ticks(exporter, clock, ticks=11)
    leader = labels_of(LEADER)
    booked = value(exporter, "llmcost_engine_spend_total", currency="USD", **leader)
    assert booked > 0
    api.pods = [p for p in api.pods if p["metadata"]["name"] != "vllm-0-1"]
    exporter.refresh_pods()
    run_ticks(exporter, clock, ticks=5)
    assert value(exporter, "llmcost_engine_spend_total", currency="USD", **leader) == pytest.approx(booked, rel=1e-9)
    assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == 1.0  # its GPUs, no one's now
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **leader) is None
    run_ticks(exporter, clock, ticks=7)  # past the 10 min retention
    assert value(exporter, "llmcost_engine_spend_total", currency="USD", **leader) is None


def test_a_ray_worker_node_finds_the_head_with_one_list_and_books_its_gpus_to_it(apis, clock, exporter_for):
    api = apis(WORKER_NODE, pods_of(RAY_PODS))
    exporter = exporter_for(kube_config(api.url, node=WORKER_NODE, discovery=True), a10gs(clock))
    exporter.refresh_kubernetes()
    run_ticks(exporter, clock, ticks=3)
    head = labels_of(RAY_HEAD)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **head) == 1.0
    lookups = [q for q in api.pod_queries() if "fieldSelector" not in q]
    assert lookups == [{"labelSelector": "ray.io/cluster=vllm-ray,ray.io/node-type=head"}]
    assert any(path == "/api/v1/namespaces/llm/pods" for path, _ in api.requests)
    api.pods = [p for p in api.pods if p["metadata"]["name"] != "vllm-ray-head-x7k2p"]  # the head restarts
    exporter.refresh_pods()
    run_ticks(exporter, clock, ticks=2)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **head) is None
    assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == 1.0  # no head: no engine to book to


# -- acceptance: two nodes, their exporters, a real Prometheus and the rules ---------------------------

HOURLY = {LEADER_NODE: 7.2, WORKER_NODE: 3.6}  # USD per hour, configured: 0.002 and 0.001 USD/s
WINDOW = "30s"  # the fast variant's window (test_rules.FAST)


def node_config(tmp_path, api) -> object:
    name = api.node["metadata"]["name"]
    path = tmp_path / f"{name}.yml"
    path.write_text(
        f"pricing: {{mode: cloud, cloud: {{hourly: {HOURLY[name]}}}}}\n"
        "gpu: {backend: simulated, interval: 200ms, simulated: {count: 4}}\n"
        f"kubernetes:\n  enabled: true\n  node_name: {name}\n  api_url: '{api.url}'\n  timeout: 1s\n"
        "  discovery: {enabled: true, refresh_interval: 2s, interval: 500ms, timeout: 400ms}\n")
    return path


@pytest.mark.integration  # two exporter processes, a real Prometheus, ~45 s of real time
def test_a_two_node_leaderworkerset_costs_both_nodes_spend_over_its_leaders_tokens(apis, tmp_path):
    """The acceptance test of issue 14's multi-node engines: the leader vllm-0 on one node (its /metrics
    a simulated vLLM over HTTP), its worker vllm-0-1 on another, both holding all 4 GPUs of their
    g5.12xlarge; one `run` process per node, each with its own API server; Prometheus scrapes both
    and evaluates the rules. The recorded $/1M of the model is (both nodes' spend) / (the leader's
    tokens) within 1%, where the leader's node alone would say two thirds of it."""
    workload = Workload(SystemClock(), 2000.0, seed=3, constant_load=0.5)
    server = SimulatedVllm(workload, MODEL).start()
    try:
        pods = pods_of(LWS_PODS)
        pods[0]["status"]["podIP"] = "127.0.0.1"
        pods[0]["metadata"]["annotations"]["llmcost.io/port"] = server.url.split(":")[2].split("/")[0]
        configs = [node_config(tmp_path, apis(name, pods)) for name in (LEADER_NODE, WORKER_NODE)]
        fast_rules, _ = generated(tmp_path, *FAST)
        with ExporterProcess(configs[0]) as leader, ExporterProcess(configs[1]) as worker:
            leader.wait_serving()
            worker.wait_serving()
            targets = [leader.url.removeprefix("http://"), worker.url.removeprefix("http://")]
            committed, _ = committed_every_second(tmp_path)
            with Prometheus(targets, rule_files=[committed, fast_rules]) as prom:
                prom.wait_for(f'llmcost_tokens_total{{engine="{LEADER}"}} > 0', timeout=30)
                time.sleep(38)  # fill the 30 s window
                check_the_two_nodes(prom, leader, worker)
    finally:
        server.stop()


def check_the_two_nodes(prom, leader, worker):
    both = sum(HOURLY.values()) / 3600  # USD/s: every GPU of both nodes is the engine's
    # each exporter books all of its node to the engine; the worker node scrapes nothing
    for process in (leader, worker):  # (before the first pod listing, a few ms of the node were no one's)
        assert process.value("llmcost_unallocated_gpu_share_ratio") == 0.0, process.stderr
        assert process.value("llmcost_unallocated_spend_total") < 1e-3 * process.value("llmcost_engine_spend_total")
        assert process.value("llmcost_engine_gpu_share_ratio", engine=LEADER, method="exclusive", pod="vllm-0") == 1.0
    assert worker.value("llmcost_source_up", source="engine") is None
    assert worker.value("llmcost_tokens_total") is None
    [recorded] = prom.query(f'cluster_engine_model:llmcost_cost_per_million_tokens:ratio_rate{WINDOW}{{engine="{LEADER}"}}')
    at, cost = recorded["value"][0], float(recorded["value"][1])
    assert recorded["metric"]["model"] == MODEL and recorded["metric"]["currency"] == "USD"
    [tokens] = prom.query(f'sum(rate(llmcost_tokens_total{{engine="{LEADER}"}}[{WINDOW}]))', time=at)
    leader_tokens = float(tokens["value"][1])
    assert leader_tokens == pytest.approx(1000, rel=0.2)  # the simulated leader at half of 2000 tok/s
    hand = both / leader_tokens * 1e6
    assert cost == pytest.approx(hand, rel=0.01), (cost, hand)
    # the spend of both nodes, as Prometheus measures it, is the configured prices'
    [spend] = prom.query(f'sum(rate(llmcost_engine_spend_total{{engine="{LEADER}"}}[{WINDOW}]))', time=at)
    assert float(spend["value"][1]) == pytest.approx(both, rel=0.01)
    # the leader's node alone misses the worker's GPUs: a third too little
    [alone] = prom.query(f'engine_model:llmcost_cost_per_million_tokens:ratio_rate{WINDOW}{{engine="{LEADER}"}}', time=at)
    assert float(alone["value"][1]) == pytest.approx(hand * 2 / 3, rel=0.02)
    # the model level, all nodes: the same figure (the model is all of the engine's tokens)
    [model] = prom.query(f'model:llmcost_cost_per_million_tokens:ratio_rate{WINDOW}{{model="{MODEL}"}}', time=at)
    assert float(model["value"][1]) == pytest.approx(hand, rel=0.01)
    broken = [r["name"] for g in prom.api("rules")["groups"] for r in g["rules"] if r["health"] != "ok"]
    assert not broken, broken
    # the dashboard's panel computes the rule's figure from the raw series (all nodes selected)
    [(_, _, expr)] = [query for query in panel_queries() if query[1].endswith("(multi-node engines)")]
    variables = {**ALL, "__rate_interval": WINDOW}
    [panel] = prom.query(substitute(expr, variables), time=at)
    assert panel["metric"]["engine"] == LEADER and panel["metric"]["engine_kind"] == "vllm"
    assert float(panel["value"][1]) == pytest.approx(cost, rel=0.01)
    print(f"two-node LWS: recorded {cost:.6g} USD/1M, hand {hand:.6g} (spend {both:.6g} USD/s / leader "
          f"{leader_tokens:.6g} tok/s), model level {float(model['value'][1]):.6g}, leader's node alone "
          f"{float(alone['value'][1]):.6g}, panel {float(panel['value'][1]):.6g}")


def test_a_failed_ray_head_list_keeps_the_head_found_last_and_counts_the_error(apis, clock, exporter_for):
    api = apis(WORKER_NODE, pods_of(RAY_PODS))
    exporter = exporter_for(kube_config(api.url, node=WORKER_NODE, discovery=True), a10gs(clock))
    exporter.refresh_kubernetes()
    answer = api.answer

    def forbidden_without_a_node(kind, path, query):  # RBAC that lets the exporter list its node's pods only
        return (403, load("status-403-pods.json")) if "fieldSelector" not in query else answer(kind, path, query)

    api.answer = forbidden_without_a_node
    exporter.refresh_pods()
    run_ticks(exporter, clock, ticks=2)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="exclusive", **labels_of(RAY_HEAD)) == 1.0
    assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="pods", reason="forbidden") == 1
    assert value(exporter, "llmcost_source_up", source="kubernetes", name="pods") == 1


@pytest.mark.integration  # a real gRPC kubelet on a unix socket, the fake API server
def test_a_workers_exact_devices_from_the_kubelet_are_booked_to_its_leaders_engine(apis, clock, exporter_for, tmp_path):
    """With kubernetes.pod_resources, the worker's GPUs are the ones the kubelet names (GPUs 1 and
    3, not any two): the leader's engine holds them by method podresources and pays their energy."""
    from kubelet import Kubelet, container, pod
    from test_podresources import _with_pod_resources

    pods = pods_of(LWS_PODS)
    worker = pods[1]
    for key in ("limits", "requests"):
        worker["spec"]["containers"][0]["resources"][key]["nvidia.com/gpu"] = "2"
    nvml = a10gs(clock)
    for i in range(4):
        nvml.set_load(i, lambda t, i=i: (i + 1) / 5)  # each GPU its own power, so energies tell them apart
    kubelet = Kubelet(str(tmp_path))
    uuids = [g.uuid for g in nvml.gpus]
    kubelet.lister.pods = [pod(worker["metadata"]["namespace"], worker["metadata"]["name"],
                               container(worker["spec"]["containers"][0]["name"], {"nvidia.com/gpu": [uuids[1], uuids[3]]}))]
    api = apis(WORKER_NODE, pods)
    try:
        config = _with_pod_resources(kube_config(api.url, node=WORKER_NODE, discovery=True), socket=kubelet.socket,
                                     timeout=1.0)
        exporter = exporter_for(config, nvml)
        exporter.refresh_kubernetes()
        exporter.sample_gpus_and_account()  # NVML read: the kubelet's UUIDs now name GPUs
        exporter.refresh_kubernetes()
        run_ticks(exporter, clock, ticks=2)  # steady state: the intervals before accrue as they were split
        before = exporter.snapshot()
        run_ticks(exporter, clock, ticks=10)
        after = exporter.snapshot()
    finally:
        kubelet.stop()
    leader = labels_of(LEADER)
    assert value(exporter, "llmcost_engine_gpu_share_ratio", method="podresources", **leader) == pytest.approx(0.5, rel=1e-9)
    gpu_joules = {g.index: g.energy_joules for g in after.gpus}
    gpu_joules = {i: j - next(g.energy_joules for g in before.gpus if g.index == i) for i, j in gpu_joules.items()}
    engine_joules = after.spend.engine_energy_joules[LEADER] - before.spend.engine_energy_joules.get(LEADER, 0.0)
    assert engine_joules == pytest.approx(gpu_joules[1] + gpu_joules[3], rel=1e-6)  # overhead is 0: GPU energy only
    assert engine_joules != pytest.approx(gpu_joules[0] + gpu_joules[1], rel=1e-3)


@pytest.mark.parametrize("worker_here", [False, True])
def test_a_leader_whose_workers_run_elsewhere_exposes_no_cost_per_token_of_its_own(apis, clock, exporter_for, vllm,
                                                                                 worker_here):
    """Its cost per token needs every node's spend: on the leader's node alone it would read low
    (the rules' cluster_engine_model level has it). With the whole group on the node it is whole."""
    pods = pods_of(LWS_PODS)[:2]
    server = vllm()
    pods[0]["status"]["podIP"] = "127.0.0.1"
    pods[0]["metadata"]["annotations"]["llmcost.io/port"] = server.url.split(":")[2].split("/")[0]
    if worker_here:
        pods[1]["spec"]["nodeName"] = LEADER_NODE
    api = apis(LEADER_NODE, pods)
    exporter = exporter_for(kube_config(api.url, node=LEADER_NODE, discovery=True, compare={"apis": ["gpt-4o"]}),
                            a10gs(clock))
    exporter.refresh_kubernetes()
    for _ in range(30):
        exporter.sample_all()
        clock.advance(20)
    leader = labels_of(LEADER)
    tokens = value(exporter, "llmcost_tokens_total", direction="input", model=MODEL, **leader)
    assert tokens and tokens > 0  # its tokens and spend are still counted: the rules sum them
    assert value(exporter, "llmcost_engine_spend_total", currency="USD", **leader) > 0
    cost = value(exporter, "llmcost_cost_per_million_tokens", model=MODEL, currency="USD", **leader)
    savings = value(exporter, "llmcost_api_savings", api="gpt-4o", tier="standard", currency="USD", **leader)
    if worker_here:
        assert cost is not None and cost > 0 and savings is not None
    else:
        assert cost is None and savings is None
