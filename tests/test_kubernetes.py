"""Kubernetes: node-label pricing, pod discovery, API failures.

The exporter's client (configured by the real `kubernetes` package) talks over real sockets to a
local HTTP server that answers like the API server: the Node and PodList fixtures of
tests/data/kube/ (v1 wire format), 403/404/500 as v1 Status objects, field and label selectors
honoured, a slow and a dripping mode (tests/drip.py) for timeouts. No cluster runs
here, so this is the one fake; everything on the exporter's side is real.
"""

import copy
import datetime
import json
import logging
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from prometheus_client import generate_latest

from certs import make_certs
from conftest import MODEL, run_for, value
from drip import send_dripping
from exporter import catalog
from exporter.config import from_dict
from exporter.gpu.simulated import SimulatedNVML
from exporter.kube.client import KubeClient, KubeError
from exporter.kube.discovery import pod_targets
from exporter.kube.node import node_info
from test_demo_and_promtool import free_port

DATA = pathlib.Path(__file__).parent / "data" / "kube"
NODE = "ip-10-0-12-34.ec2.internal"
LLAMA, QWEN, MISTRAL = "llm/llama-8b-7d9f8c6b5-x2kqz", "llm/qwen-32b-5c8d7f9b4-m4p7r", "llm/mistral-7b-6b7c8d9e0-q9w8e"
QWEN_MODEL = "Qwen/Qwen2.5-32B-Instruct"


def load(name: str):
    return json.loads((DATA / name).read_text())


class FakeApiServer:
    """Answers GET /api/v1/nodes/NAME, /api/v1/namespaces/NAME and the pod lists like the API server, from fixtures."""

    def __init__(self, tls=None):
        """tls: an ssl.SSLContext (server side) to answer over https."""
        self.node = None  # the Node object served
        self.pods = []  # pod items; the server applies the field and label selectors
        self.namespaces = None  # name -> Namespace object; None: every namespace as namespace-llm.json (no tier)
        self.fail = {}  # "node" | "pods" | "namespace" -> fixture name of a Status, "slow", or ("drip", a phase of tests/drip.py)
        self.slow_seconds = 1.5
        self.requests = []  # (path, query dict)
        self.authorizations = []  # the Authorization header of each request (None: none sent)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                api.requests.append((url.path, query))
                api.authorizations.append(self.headers.get("Authorization"))
                kind = "node" if url.path.startswith("/api/v1/nodes/") else \
                    "namespace" if re.fullmatch(r"/api/v1/namespaces/[^/]+", url.path) else "pods"
                failure = api.fail.get(kind)
                if failure == "slow":
                    time.sleep(api.slow_seconds)
                elif isinstance(failure, str):
                    status = load(failure)
                    return self._send(status["code"], status)
                code, obj = api.answer(kind, url.path, query)
                if isinstance(failure, tuple):  # the right answer, too slowly
                    send_dripping(self.connection, failure[1], code, "application/json", json.dumps(obj).encode())
                    self.close_connection = True
                    return
                self._send(code, obj)

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, kind, path, query) -> tuple[int, dict]:
        """(status, object) as the API server would answer the GET."""
        if kind == "node":
            name = path.rsplit("/", 1)[1]
            if self.node is None or self.node["metadata"]["name"] != name:
                return 404, load("status-404-node.json")
            return 200, self.node
        if kind == "namespace":
            return self._namespace(urllib.parse.unquote(path.rsplit("/", 1)[1]))
        match = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path)
        items = [p for p in self.pods if _selected(p, match.group(1), query)]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48213412"}, "items": items}

    def _namespace(self, name) -> tuple[int, dict]:
        if self.namespaces is None:
            namespace = load("namespace-llm.json")
            namespace["metadata"]["name"] = namespace["metadata"]["labels"]["kubernetes.io/metadata.name"] = name
            return 200, namespace
        if name not in self.namespaces:
            return 404, load("status-404-namespace.json")
        return 200, self.namespaces[name]

    def namespace_reads(self):
        return [path.rsplit("/", 1)[1] for path, _ in self.requests if re.fullmatch(r"/api/v1/namespaces/[^/]+", path)]

    def pod_queries(self):
        return [q for path, q in self.requests if path.endswith("/pods")]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _selected(pod, namespace, query) -> bool:
    metadata = pod["metadata"]
    if namespace and metadata["namespace"] != namespace:
        return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        key, _, want = term.partition("=")
        assert key == "spec.nodeName", term  # the only field selector the exporter may use
        if pod["spec"].get("nodeName") != want:
            return False
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, want = term.partition("=")
        if (metadata.get("labels") or {}).get(key) != want:
            return False
    return True


@pytest.fixture
def api():
    server = FakeApiServer()
    yield server
    server.stop()


def kube_config(api_url, node=NODE, discovery=False, pricing=None, **top):
    raw = {"pricing": pricing or {"mode": "cloud"}, "gpu": {"backend": "simulated"}, "window": "10m",
           "kubernetes": {"enabled": True, "node_name": node, "api_url": api_url, "timeout": "300ms",
                          "discovery": {"enabled": discovery, "interval": "5s", "timeout": "1s"}},
           **top}
    return from_dict(raw, environ={})


def node_info_labels(exporter):
    for family in exporter.registry.collect():
        if family.name == "llmcost_node_info":
            return [s.labels for s in family.samples]
    return []


def pricing_source(exporter):
    for family in exporter.registry.collect():
        if family.name == "llmcost_pricing_info":
            return family.samples[0].labels["price_source"]


# -- the fixtures are what the API server sends ------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json")))
def test_fixtures_deserialise_into_the_official_client_models(name):
    from kubernetes.client import ApiClient

    kind = load(name)["kind"]
    obj = ApiClient().deserialize((DATA / name).read_text(), f"V1{kind}", "application/json")
    assert type(obj).__name__ == f"V1{kind}"
    if kind == "Node":
        assert obj.metadata.labels and obj.spec.provider_id


def test_node_labels_are_read_with_beta_fallbacks():
    info = node_info(load("node-eks-managed-g4dn.xlarge.json"))
    assert (info.instance_type, info.region, info.capacity_type, info.cloud) == ("g4dn.xlarge", "us-east-1", "on-demand", "aws")
    gke = load("node-gke-a2-highgpu-1g.json")
    gke["metadata"]["labels"]["cloud.google.com/gke-spot"] = "true"
    assert node_info(gke).capacity_type == "spot"
    gke["metadata"]["labels"].pop("cloud.google.com/gke-spot")
    gke["metadata"]["labels"]["cloud.google.com/gke-preemptible"] = "true"
    assert node_info(gke).capacity_type == "spot"
    eks = load("node-eks-managed-g4dn.xlarge.json")
    eks["metadata"]["labels"]["eks.amazonaws.com/capacityType"] = "SPOT"
    assert node_info(eks).capacity_type == "spot"
    with pytest.raises(ValueError):
        node_info({"kind": "Status"})


# -- node-label pricing: AWS, GCP, Azure, spot ----------------------------------------------------

PRICED_NODES = [
    ("node-eks-karpenter-spot-g5.12xlarge.json", 2.1824, "node_labels:aws/g5.12xlarge/us-east-1/spot",
     dict(instance_type="g5.12xlarge", region="us-east-1", capacity_type="spot", gpu_product="NVIDIA-A10G", cloud="aws")),
    ("node-eks-managed-g4dn.xlarge.json", 0.526, "node_labels:aws/g4dn.xlarge/us-east-1/on-demand",
     dict(instance_type="g4dn.xlarge", region="us-east-1", capacity_type="on-demand", gpu_product="", cloud="aws")),
    ("node-gke-a2-highgpu-1g.json", 3.67339, "node_labels:gcp/a2-highgpu-1g/us-central1/on-demand",
     dict(instance_type="a2-highgpu-1g", region="us-central1", capacity_type="on-demand",
          gpu_product="nvidia-tesla-a100", cloud="gcp")),
    # Azure spot: the catalog has no spot price for it, so the on-demand price (an upper bound), and it says so.
    ("node-aks-spot-nc24ads-a100-v4.json", 3.673, "node_labels:azure/Standard_NC24ads_A100_v4/eastus/on-demand",
     dict(instance_type="Standard_NC24ads_A100_v4", region="eastus", capacity_type="spot", gpu_product="", cloud="azure")),
]


@pytest.mark.parametrize("fixture,hourly,source,labels", PRICED_NODES, ids=lambda v: v if isinstance(v, str) else None)
def test_instance_is_priced_from_the_node_labels(api, clock, exporter_for, fixture, hourly, source, labels):
    api.node = load(fixture)
    name = api.node["metadata"]["name"]
    exporter = exporter_for(kube_config(api.url, node=name))
    exporter.refresh_kubernetes()
    exporter.sample_all()
    run_for(clock, exporter, 3600, step=60)
    assert pricing_source(exporter) == source
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == pytest.approx(hourly)
    assert value(exporter, "llmcost_hourly_cost", currency="USD") == pytest.approx(hourly)
    assert node_info_labels(exporter) == [{"node": name, **labels}]
    assert value(exporter, "llmcost_source_up", source="kubernetes", name="node") == 1
    assert [p for p, _ in api.requests] == [f"/api/v1/nodes/{name}"]


def test_configured_price_or_instance_type_beats_the_node_labels(api, exporter_for):
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    for pricing, source, hourly in [({"cloud": {"hourly": 9.5}}, "configured", 9.5),
                                    ({"cloud": {"instance_type": "g6.xlarge"}}, "catalog:aws/g6.xlarge/us-east-1", 0.8048)]:
        exporter = exporter_for(kube_config(api.url, pricing=pricing))
        exporter.refresh_kubernetes()
        assert pricing_source(exporter) == source
        assert exporter.accountant.pricing.cloud.hourly == pytest.approx(hourly)
        assert node_info_labels(exporter)[0]["capacity_type"] == "spot"  # still shown


def test_catalog_override_and_multiplier_apply_to_node_label_prices(api, exporter_for):
    api.node = load("node-aks-spot-nc24ads-a100-v4.json")
    config = kube_config(api.url, node=api.node["metadata"]["name"],
                         pricing={"cloud": {"price_multiplier": 0.9}},
                         catalog={"instances": [{"instance_type": "Standard_NC24ads_A100_v4", "provider": "azure",
                                                 "hourly": 3.5, "spot_hourly": 1.2}]})
    exporter = exporter_for(config)
    exporter.refresh_kubernetes()
    assert pricing_source(exporter) == "node_labels:azure/Standard_NC24ads_A100_v4/default/spot"
    assert exporter.accountant.pricing.cloud.hourly == pytest.approx(1.2 * 0.9)


def test_a_commitment_on_the_node_pool_prices_the_node_read_from_the_api(api, clock, exporter_for):
    """Issue 15: the managed node group's label (eks.amazonaws.com/nodegroup: t4) matches a 30%-off
    reservation with $876 upfront over 12 months; the Spot node of another pool keeps its spot price."""
    api.node = load("node-eks-managed-g4dn.xlarge.json")
    commitment = {"name": "t4-ri", "start": "2020-01-01", "discount": 0.3, "upfront": 876.0, "term_months": 12,
                  "end": "2100-01-01", "match": {"node_pool": "t4", "instance_type": "g4dn.xlarge"}}
    config = kube_config(api.url, node=api.node["metadata"]["name"], pricing={"commitments": [commitment]})
    exporter = exporter_for(config)
    exporter.refresh_kubernetes()
    exporter.sample_all()
    run_for(clock, exporter, 3600, step=60)
    on_demand = catalog.find_instance(catalog.load_instances(), "g4dn.xlarge", "us-east-1").hourly
    assert pricing_source(exporter) == "commitment:t4-ri"
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == pytest.approx(
        on_demand * 0.7 + 876.0 / (12 * 730), rel=1e-9)  # one hour
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")  # another node, pool gpu, spot
    exporter = exporter_for(kube_config(api.url, pricing={"commitments": [commitment]}))
    exporter.refresh_kubernetes()
    assert pricing_source(exporter) == "node_labels:aws/g5.12xlarge/us-east-1/spot"


def test_unknown_instance_type_leaves_the_price_unknown_and_says_why(api, clock, exporter_for, caplog):
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    api.node["metadata"]["labels"]["node.kubernetes.io/instance-type"] = "x9.mega"
    exporter = exporter_for(kube_config(api.url))
    with caplog.at_level(logging.WARNING, logger="exporter"):
        exporter.refresh_kubernetes()
        exporter.sample_all()
        run_for(clock, exporter, 600, step=60)
    assert pricing_source(exporter) == "unknown"
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == 0
    assert value(exporter, "llmcost_hourly_cost", currency="USD") is None
    assert node_info_labels(exporter)[0]["instance_type"] == "x9.mega"
    assert any("'x9.mega'" in r.getMessage() and "not in the price catalog" in r.getMessage() for r in caplog.records)


def test_price_applies_from_when_the_node_is_first_read(api, clock, exporter_for):
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    api.fail["node"] = "status-403-node.json"
    exporter = exporter_for(kube_config(api.url))
    exporter.refresh_kubernetes()
    exporter.sample_all()
    run_for(clock, exporter, 600, step=60)
    assert pricing_source(exporter) == "unknown"
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == 0
    api.fail.clear()
    exporter.refresh_node()
    run_for(clock, exporter, 1800, step=60)
    assert pricing_source(exporter) == "node_labels:aws/g5.12xlarge/us-east-1/spot"
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == pytest.approx(2.1824 / 2)


# -- the API server failing ------------------------------------------------------------------

def test_api_failures_keep_the_last_values_count_reasons_and_log_once_per_change(api, clock, exporter_for, caplog):
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    exporter = exporter_for(kube_config(api.url))
    exporter.refresh_kubernetes()
    exporter.sample_all()
    steps = [("status-403-node.json", "forbidden", 3), ("status-500.json", "http_status", 2), ("slow", "timeout", 2)]
    with caplog.at_level(logging.INFO):
        for failure, reason, times in steps:
            api.fail["node"] = failure
            for _ in range(times):
                started = time.monotonic()
                exporter.refresh_node()  # never raises
                assert time.monotonic() - started < 1.0  # bounded by kubernetes.timeout (300ms), not the 1.5 s server
                run_for(clock, exporter, 60, step=60)
            assert value(exporter, "llmcost_source_up", source="kubernetes", name="node") == 0
            assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="node", reason=reason) == times
            assert pricing_source(exporter) == "node_labels:aws/g5.12xlarge/us-east-1/spot"  # the last known values
            assert node_info_labels(exporter)[0]["instance_type"] == "g5.12xlarge"
        api.fail.clear()
        exporter.refresh_node()
    assert value(exporter, "llmcost_source_up", source="kubernetes", name="node") == 1
    assert value(exporter, "llmcost_spend_total", component="instance", currency="USD") == pytest.approx(2.1824 * 7 / 60)
    lines = [r.getMessage() for r in caplog.records if "source=kubernetes" in r.getMessage()]
    assert [line.split(" detail=")[0] for line in lines] == [
        "source failing source=kubernetes name=node reason=forbidden",
        "source failing source=kubernetes name=node reason=http_status",
        "source failing source=kubernetes name=node reason=timeout",
        "source recovered source=kubernetes name=node"], lines
    assert "cannot get resource \\\"nodes\\\"" not in lines[0] and 'cannot get resource "nodes"' in lines[0]


def test_unreachable_api_server_and_no_in_cluster_configuration(clock, exporter_for, monkeypatch):
    exporter = exporter_for(kube_config(f"http://127.0.0.1:{free_port()}"))
    exporter.refresh_kubernetes()
    assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="node", reason="connection") == 1
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = from_dict({"pricing": {"cloud": {"hourly": 1.0}}, "gpu": {"backend": "simulated"},
                        "kubernetes": {"enabled": True, "node_name": NODE}}, environ={})
    exporter = exporter_for(config)
    exporter.refresh_kubernetes()
    assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="node", reason="config") == 1
    assert value(exporter, "llmcost_source_up", source="kubernetes", name="node") == 0


def server_tls(certs, client_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs["ca.crt"])
    context.load_cert_chain(certs["server.crt"], certs["server.key"])
    context.verify_mode = ssl.CERT_REQUIRED if client_certificate else ssl.CERT_NONE
    return context


@pytest.fixture
def tls_api(tmp_path):
    """The fake API server over https, asking for a client certificate signed by the test CA."""
    certs = make_certs(tmp_path / "certs")
    server = FakeApiServer(tls=server_tls(certs, client_certificate=True))
    yield server, certs
    server.stop()


def kubeconfig_client(path, server, ca, cert=None, key=None) -> KubeClient:
    user = {"token": "t0k3n"}
    if cert:
        user.update({"client-certificate": cert, "client-key": key})
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    config = from_dict({"pricing": {"cloud": {"hourly": 1.0}}, "gpu": {"backend": "none"},
                        "kubernetes": {"enabled": True, "node_name": NODE, "kubeconfig": str(path), "timeout": "2s"}},
                       environ={})
    return KubeClient(config.kubernetes)


def test_a_kubeconfig_is_followed_over_tls_with_its_ca_client_certificate_and_token(tls_api, tmp_path):
    api, certs = tls_api
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    client = kubeconfig_client(tmp_path / "kubeconfig", api.url, certs["ca.crt"], certs["client.crt"], certs["client.key"])
    assert client.read_node(NODE)["metadata"]["name"] == NODE
    assert api.authorizations == ["Bearer t0k3n"]
    strange_ca = kubeconfig_client(tmp_path / "other", api.url, certs["other-ca.crt"], certs["client.crt"], certs["client.key"])
    without_cert = kubeconfig_client(tmp_path / "nocert", api.url, certs["ca.crt"])
    for client, why in ((strange_ca, "certificate verify failed"), (without_cert, "")):
        with pytest.raises(KubeError) as failed:
            client.read_node(NODE)
        assert failed.value.reason == "connection" and why in str(failed.value), failed.value
    assert len(api.requests) == 1  # neither got as far as a request


def test_the_in_cluster_service_account_is_followed_over_tls(tmp_path, monkeypatch):
    """As in a pod: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA (their paths
    pointed at test files: the only change), the server's certificate checked against that CA."""
    from kubernetes.config import incluster_config

    certs = make_certs(tmp_path / "certs")
    api = FakeApiServer(tls=server_tls(certs, client_certificate=False))
    try:
        api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
        token = tmp_path / "token"
        token.write_text("sa-t0k3n")
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", certs["ca.crt"])
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.server.server_address[1]))
        config = from_dict({"pricing": {"cloud": {"hourly": 1.0}}, "gpu": {"backend": "none"},
                            "kubernetes": {"enabled": True, "node_name": NODE}}, environ={})
        assert KubeClient(config.kubernetes).read_node(NODE)["metadata"]["name"] == NODE
        assert api.authorizations == ["bearer sa-t0k3n"]
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", certs["other-ca.crt"])
        with pytest.raises(KubeError) as failed:
            KubeClient(config.kubernetes).read_node(NODE)
        assert failed.value.reason == "connection" and "certificate verify failed" in str(failed.value)
    finally:
        api.stop()


@pytest.mark.slow  # a fresh interpreter imports the exporter
def test_kubernetes_client_is_imported_only_when_a_kubernetes_feature_is_on():
    code = ("import sys\nfrom exporter.app import Exporter\nfrom exporter.config import from_dict\n"
            "off = Exporter(from_dict({'pricing': {'cloud': {'hourly': 1}}, 'gpu': {'backend': 'none'}}, environ={}))\n"
            "print('kubernetes' in sys.modules)\n"
            "on = Exporter(from_dict({'pricing': {'cloud': {'hourly': 1}}, 'gpu': {'backend': 'none'},\n"
            "    'kubernetes': {'enabled': True, 'node_name': 'n', 'api_url': 'http://127.0.0.1:9'}}, environ={}))\n"
            "on.refresh_kubernetes()\nprint('kubernetes' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr


# -- discovery ---------------------------------------------------------------------------------

@pytest.fixture
def cluster(api, vllm, clock):
    """The PodList fixture, its two running vLLM pods pointed at two simulated vLLM servers, plus a
    pod on another node and one without the scrape label (the selectors must leave them out)."""
    pods = load("podlist-llm-node.json")["items"]
    llama_server, qwen_server = vllm(capacity=1000.0, load=0.5), vllm(capacity=800.0, load=0.5, model=QWEN_MODEL, seed=2)
    servers = {}
    for pod, server in ((pods[0], llama_server), (pods[1], qwen_server)):
        port = int(server.url.split(":")[2].split("/")[0])
        pod["status"]["podIP"] = "127.0.0.1"
        if "annotations" in pod["metadata"]:
            pod["metadata"]["annotations"]["llmcost.io/port"] = str(port)
        else:
            pod["spec"]["containers"][0]["ports"][0]["containerPort"] = port
        servers[pod["metadata"]["name"]] = server
    elsewhere = copy.deepcopy(pods[0])
    elsewhere["metadata"]["name"], elsewhere["spec"]["nodeName"] = "llama-8b-7d9f8c6b5-other", "ip-10-0-99-1.ec2.internal"
    unlabelled = copy.deepcopy(pods[0])
    unlabelled["metadata"]["name"] = "llama-8b-7d9f8c6b5-nolabel"
    del unlabelled["metadata"]["labels"]["llmcost.io/scrape"]
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    api.pods = pods + [elsewhere, unlabelled]
    return api, pods, servers


def discovering_exporter(api, exporter_for, **top):
    return exporter_for(kube_config(api.url, discovery=True, **top))


def test_pod_targets_from_the_fixture():
    targets, skipped = pod_targets(load("podlist-llm-node.json"))
    assert [(t.engine, t.url, t.capacity, t.gpus) for t in targets] == [
        (LLAMA, "http://10.0.12.57:8000/metrics", 2400.0, (0, 1)),
        (QWEN, "http://10.0.12.61:8000/metrics", None, None)]
    assert skipped == [(MISTRAL, "llmcost.io/port: got 'http', allowed: a port number 1-65535")]
    assert targets[0].started == datetime.datetime(2026, 11, 23, 7, 41, 2, tzinfo=datetime.timezone.utc).timestamp()


def test_engine_pods_on_this_node_are_discovered_and_labelled(cluster, clock, exporter_for, caplog):
    api, _, _ = cluster
    exporter = discovering_exporter(api, exporter_for)
    with caplog.at_level(logging.WARNING, logger="exporter.kube"):
        exporter.refresh_kubernetes()
        run_for(clock, exporter, 120)
        exporter.refresh_pods()
    assert api.pod_queries()[0] == {"fieldSelector": f"spec.nodeName={NODE}", "labelSelector": "llmcost.io/scrape=true"}
    assert sorted(e.name for e in exporter.engines) == [LLAMA, QWEN]
    llama_pod = {"engine": LLAMA, "namespace": "llm", "pod": "llama-8b-7d9f8c6b5-x2kqz"}
    assert value(exporter, "llmcost_tokens_total", model=MODEL, direction="input", **llama_pod) > 0
    assert value(exporter, "llmcost_tokens_total", model=QWEN_MODEL, direction="output", engine=QWEN,
                 namespace="llm", pod="qwen-32b-5c8d7f9b4-m4p7r") > 0
    assert value(exporter, "llmcost_source_up", source="engine", name=LLAMA, namespace="llm",
                 pod="llama-8b-7d9f8c6b5-x2kqz") == 1
    assert value(exporter, "llmcost_capacity_tokens_per_second", source="configured", **llama_pod) == 2400
    assert value(exporter, "llmcost_engine_spend_total", currency="USD", **llama_pod) > 0
    assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="pods", reason="bad_annotation") == 2
    skipped = [r.getMessage() for r in caplog.records if "pod skipped" in r.getMessage()]
    assert len(skipped) == 1 and MISTRAL in skipped[0]  # logged once, counted on every listing


def test_metrics_with_pods_and_node_info_pass_promtool(cluster, clock, exporter_for):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install -y prometheus"
    api, _, _ = cluster
    exporter = discovering_exporter(api, exporter_for)
    exporter.refresh_kubernetes()
    run_for(clock, exporter, 60)
    text = generate_latest(exporter.registry).decode()
    assert 'llmcost_node_info{capacity_type="spot"' in text and 'namespace="llm",pod="llama-8b-7d9f8c6b5-x2kqz"' in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def _raw_counter(url, name):
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _engine_totals(exporter, engine):
    names = ("llmcost_tokens_total", "llmcost_engine_spend_total", "llmcost_engine_energy_joules_total",
             "llmcost_api_equivalent_spend_total", "llmcost_requests_total")
    out = {}
    for family in exporter.registry.collect():
        for s in family.samples:
            if s.name in names and s.labels.get("engine") == engine:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _node_totals(exporter):
    return {c: value(exporter, "llmcost_spend_total", component=c, currency="USD") for c in ("instance", "requests")}


def assert_not_below(before: dict, after: dict):
    for key, old in before.items():
        assert key in after and after[key] >= old - 1e-12, key


def test_a_pod_that_goes_keeps_its_totals_frozen_for_the_retention_then_its_series_go(cluster, clock, exporter_for):
    api, pods, _ = cluster
    exporter = discovering_exporter(api, exporter_for, removed_engine_retention="2m",
                                     pricing={"cloud": {"per_million_requests": 1000.0}})
    exporter.refresh_kubernetes()
    run_for(clock, exporter, 120)
    totals, node = _engine_totals(exporter, LLAMA), _node_totals(exporter)
    assert totals and node["requests"] > 0
    api.pods = [p for p in api.pods if p is not pods[0]]
    exporter.refresh_pods()
    run_for(clock, exporter, 60)
    assert _engine_totals(exporter, LLAMA) == totals  # frozen, still exposed
    assert value(exporter, "llmcost_requests_running", engine=LLAMA, model=MODEL, namespace="llm",
                 pod="llama-8b-7d9f8c6b5-x2kqz") is None  # its gauges are gone
    assert value(exporter, "llmcost_source_up", source="engine", name=LLAMA, namespace="llm",
                 pod="llama-8b-7d9f8c6b5-x2kqz") is None
    assert_not_below(node, _node_totals(exporter))
    run_for(clock, exporter, 90)  # past the 2m retention
    assert _engine_totals(exporter, LLAMA) == {}
    assert_not_below(node, _node_totals(exporter))
    before_qwen = _engine_totals(exporter, QWEN)
    run_for(clock, exporter, 60)
    assert_not_below(before_qwen, _engine_totals(exporter, QWEN))


def test_a_pod_back_within_the_retention_continues_its_series(cluster, clock, exporter_for):
    api, pods, _ = cluster
    exporter = discovering_exporter(api, exporter_for)
    exporter.refresh_kubernetes()
    run_for(clock, exporter, 60)
    before = _engine_totals(exporter, LLAMA)
    api.fail["pods"] = "status-500.json"  # a failed listing retires nothing
    exporter.refresh_pods()
    assert sorted(e.name for e in exporter.engines) == [LLAMA, QWEN]
    assert value(exporter, "llmcost_source_errors_total", source="kubernetes", name="pods", reason="http_status") == 1
    api.fail.clear()
    saved = api.pods
    api.pods = [p for p in saved if p is not pods[0]]
    exporter.refresh_pods()
    run_for(clock, exporter, 30)
    api.pods = saved
    exporter.refresh_pods()
    run_for(clock, exporter, 60)
    after = _engine_totals(exporter, LLAMA)
    assert_not_below(before, after)
    output = next(k for k in before if k[0] == "llmcost_tokens_total" and ("direction", "output") in k[1])
    assert after[output] > before[output]  # the same series, counting on


@pytest.mark.parametrize("started_after_listing", [True, False])
def test_a_pod_that_started_since_the_last_listing_is_counted_from_zero(cluster, clock, exporter_for, started_after_listing):
    api, pods, servers = cluster
    qwen = pods[1]
    api.pods = [p for p in api.pods if p is not qwen]
    exporter = discovering_exporter(api, exporter_for)
    exporter.refresh_kubernetes()
    listed_at = clock.now()
    clock.advance(60)  # the qwen server has served 60 s of tokens when it is first listed
    start = listed_at + (10 if started_after_listing else -10)
    qwen["status"]["startTime"] = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    api.pods.append(qwen)
    exporter.refresh_pods()
    exporter.engines[-1].sample()
    served = _raw_counter(servers["qwen-32b-5c8d7f9b4-m4p7r"].url, "vllm:generation_tokens_total")
    counted = value(exporter, "llmcost_tokens_total", engine=QWEN, model=QWEN_MODEL, direction="output",
                    namespace="llm", pod="qwen-32b-5c8d7f9b4-m4p7r")
    if started_after_listing:
        assert served > 0 and counted == pytest.approx(served)  # everything since the pod started
    else:
        assert counted == 0  # a baseline: what it counted before we watched is not ours


def test_start_reads_the_node_before_the_first_tick_and_schedules_the_refreshes(api, exporter_for):
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    exporter = exporter_for(kube_config(api.url, discovery=True))
    exporter.start()
    try:
        assert pricing_source(exporter) == "node_labels:aws/g5.12xlarge/us-east-1/spot"
        assert exporter.accountant.pricing.cloud.hourly == pytest.approx(2.1824)
        jobs = exporter.jobs.intervals()
        assert jobs["kubernetes:node"] == 300 and jobs["kubernetes:pods"] == 30
    finally:
        exporter.stop()


@pytest.mark.integration  # the run command as a subprocess
def test_the_run_command_prices_its_node_and_scrapes_its_pods(cluster, clock, tmp_path):
    """`llm-cost-exporter run` as a DaemonSet runs it: NODE_NAME from the environment, the file's
    kubernetes section, the real client; its node and pods served by the local API server."""
    api, _, _ = cluster
    path, port = tmp_path / "config.yml", free_port()
    path.write_text(f"gpu: {{backend: none}}\nkubernetes:\n  api_url: '{api.url}'\n"
                    "  discovery: {enabled: true, interval: 1s, timeout: 500ms}\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("LLMCOST_")}
    env.update(NODE_NAME=NODE, LLMCOST_KUBERNETES_ENABLED="true")
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--config.file={path}",
                                f"--web.listen-address=127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE, text=True)
    text = ""
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.3)
            clock.advance(5)  # the simulated vLLM servers run on the test's clock: they serve tokens as it moves
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            if re.search(r'llmcost_tokens_total\{direction="input",engine="llm/llama[^}]*pod="llama[^}]*\} [1-9]', text):
                break
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert 'price_source="node_labels:aws/g5.12xlarge/us-east-1/spot"' in text, stderr
    assert 'llmcost_node_info{capacity_type="spot",cloud="aws"' in text
    assert re.search(r'llmcost_tokens_total\{direction="input",engine="llm/llama[^}]*pod="llama[^}]*\} [1-9]', text), text
    assert 'llmcost_hourly_cost{currency="USD"} 2.1824' in text
    assert "engine discovered engine=llm/llama-8b-7d9f8c6b5-x2kqz" in stderr


# -- GPU shares: the worked 8-GPU node of docs/cost-model.md, served by the API ----------------------

def h100s(clock):
    """The 8 GPUs NVML reports on that node."""
    return SimulatedNVML(clock, count=8, product="NVIDIA H100 80GB HBM3", load_fn=lambda t: 0.5)


def test_the_worked_8_gpu_node_pays_by_the_shares_the_doc_computes_by_hand(api, clock, exporter_for):
    from test_shares import WORKED, WORKED_NODE, WORKED_PODS

    api.node, api.pods = load(WORKED_NODE), load(WORKED_PODS)["items"]
    exporter = exporter_for(kube_config(api.url, node=api.node["metadata"]["name"], discovery=True), h100s(clock))
    exporter.refresh_kubernetes()
    for _ in range(61):  # an hour of GPU ticks; the engines' own scrapes are not what this is about
        exporter.sample_gpus_and_account()
        clock.advance(60)
    assert pricing_source(exporter) == "node_labels:aws/p5.48xlarge/us-east-1/on-demand"
    node = value(exporter, "llmcost_spend_total", component="instance", currency="USD")
    assert node == pytest.approx(55.04, rel=1e-9)  # the catalog's hourly price, for the hour
    held = 0.0
    for engine, (share, method) in WORKED["compute"].items():
        if engine == "unallocated":
            assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == pytest.approx(share, rel=1e-9)
            assert value(exporter, "llmcost_unallocated_spend_total", currency="USD") == pytest.approx(share * node, rel=1e-9)
            continue
        namespace, pod = engine.split("/")
        labels = {"engine": engine, "namespace": namespace, "pod": pod}
        assert value(exporter, "llmcost_engine_gpu_share_ratio", method=method, **labels) == pytest.approx(share, rel=1e-9)
        held += value(exporter, "llmcost_engine_spend_total", currency="USD", **labels)
        assert value(exporter, "llmcost_engine_spend_total", currency="USD", **labels) == pytest.approx(share * node, rel=1e-9)
    assert held + value(exporter, "llmcost_unallocated_spend_total", currency="USD") == pytest.approx(node, rel=1e-9)


def test_the_mig_share_follows_the_configured_basis(api, clock, exporter_for):
    from test_shares import QWEN, WORKED, WORKED_NODE, WORKED_PODS

    api.node, api.pods = load(WORKED_NODE), load(WORKED_PODS)["items"]
    config = from_dict({"pricing": {"mode": "cloud"}, "gpu": {"backend": "simulated"},
                        "kubernetes": {"enabled": True, "node_name": api.node["metadata"]["name"], "api_url": api.url,
                                       "discovery": {"enabled": True, "mig_share": "memory"}}}, environ={})
    exporter = exporter_for(config, h100s(clock))
    exporter.refresh_kubernetes()
    exporter.sample_gpus_and_account()
    namespace, pod = QWEN.split("/")
    assert value(exporter, "llmcost_engine_gpu_share_ratio", engine=QWEN, method="mig", namespace=namespace,
                 pod=pod) == pytest.approx(WORKED["memory"][QWEN][0], rel=1e-9)


def test_a_gone_pod_frees_its_share_and_relabelled_gpus_change_the_shares(api, clock, exporter_for):
    from test_shares import BGE, E5, WORKED, WORKED_NODE, WORKED_PODS

    api.node, api.pods = load(WORKED_NODE), load(WORKED_PODS)["items"]
    exporter = exporter_for(kube_config(api.url, node=api.node["metadata"]["name"], discovery=True), h100s(clock))
    exporter.refresh_kubernetes()
    exporter.sample_gpus_and_account()
    unallocated = WORKED["compute"]["unallocated"][0]
    assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == pytest.approx(unallocated, rel=1e-9)
    api.pods = [p for p in api.pods if p["metadata"]["name"] != BGE.split("/")[1]]
    exporter.refresh_pods()
    clock.advance(60)
    exporter.sample_gpus_and_account()
    freed = WORKED["compute"][BGE][0]  # its replica is free now, not spread over the others
    assert value(exporter, "llmcost_unallocated_gpu_share_ratio") == pytest.approx(unallocated + freed, rel=1e-9)
    api.node["metadata"]["labels"]["nvidia.com/mig-7g.80gb.replicas"] = "2"  # the device plugin re-configured
    exporter.refresh_node()
    share = value(exporter, "llmcost_engine_gpu_share_ratio", engine=E5, method="replica", namespace="embed",
                  pod=E5.split("/")[1])
    assert share == pytest.approx(1 / 2 / 8, rel=1e-9)
