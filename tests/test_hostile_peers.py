"""Hostile peers (issue 13, cases 1 and 2): an engine or an API server that drips its status
line, headers, a chunk-size line or its body a byte every 0.5 s, so that every single read
succeeds, never holds an exchange past its deadline. Real sockets throughout (tests/drip.py):
first the engine fetch and the Kubernetes client alone, then the real `run` process."""

import math
import os
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL
from drip import PHASES, TLS_HANDSHAKE, DrippingServer
from exporter.engines.fetch import FetchError, fetch
from exporter.kube.client import KubeClient, KubeError
from test_demo_and_promtool import free_port
from test_kubernetes import NODE, api, cluster, kube_config, kubeconfig_client, load, tls_api  # noqa: F401 (fixtures)
from test_shutdown import BUDGET_S, hanging_engine, terminate, wait_serving  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration  # real-time deadlines on real sockets

EPSILON_S = 0.5  # how far past its deadline an exchange may end: one scheduling delay, with room


@pytest.fixture
def dripping():
    servers = []

    def make(**kwargs) -> DrippingServer:
        servers.append(DrippingServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def timed(call):
    started = time.monotonic()
    try:
        call()
    except (FetchError, KubeError) as err:
        return err, time.monotonic() - started
    raise AssertionError("no error")


# -- the engine fetch ----------------------------------------------------------------------

@pytest.mark.parametrize("phase", PHASES)
def test_an_engine_dripping_any_part_of_its_answer_times_out_at_the_deadline(dripping, phase):
    server = dripping(phase=phase, body=b"# TYPE x counter\nx 1\n" * 20)
    err, took = timed(lambda: fetch(server.url, 1.0, 1 << 20))
    assert err.reason == "timeout" and took < 1.0 + EPSILON_S, (err, took)
    assert "within 1s" in str(err)
    time.sleep(0.1)
    assert server.exchanges and server.exchanges[0] is not None and server.exchanges[0] < 1.0 + EPSILON_S


def test_an_https_engine_dripping_its_tls_handshake_times_out_at_the_deadline(dripping):
    server = dripping(phase=TLS_HANDSHAKE)
    err, took = timed(lambda: fetch(f"https://127.0.0.1:{server.port}/metrics", 1.0, 1 << 20))
    assert err.reason == "timeout" and took < 1.0 + EPSILON_S, (err, took)


def test_the_same_answers_at_full_speed_are_read_whole(dripping):
    """The dripped answers are valid HTTP: only their pace fails them."""
    body = b"# TYPE x counter\nx 1\n" * 20
    for phase in PHASES:
        server = dripping(phase=phase, body=body, every=0)
        assert fetch(server.url, 1.0, 1 << 20) == ("text/plain; version=0.0.4", body.decode()), phase


def test_an_engine_cut_off_mid_body_is_a_protocol_error_not_a_shorter_exposition():
    body = b'# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name="m"} 123456\n'

    class CutShort(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self.request.sendall(head + body[:-5])  # "... 12": read whole, a counter reset

    with socketserver.TCPServer(("127.0.0.1", 0), CutShort) as server:
        threading.Thread(target=server.handle_request, daemon=True).start()
        err, _ = timed(lambda: fetch(f"http://127.0.0.1:{server.server_address[1]}/metrics", 1.0, 1 << 20))
    assert err.reason == "protocol", err


def test_credentials_in_an_engine_url_are_sent_as_basic_auth_and_never_shown(dripping):
    import base64
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        err, _ = timed(lambda: fetch(f"http://user:s%40cret@127.0.0.1:{server.server_address[1]}/metrics", 1.0, 1024))
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Basic " + base64.b64encode(b"user:s@cret").decode()]
    assert err.reason == "http_status" and "cret" not in str(err) and "user" not in str(err)


# -- the Kubernetes client -------------------------------------------------------------------

@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("call", ["node", "pods"])
def test_an_api_server_dripping_any_part_of_its_answer_times_out_at_the_deadline(api, phase, call):
    api.node, api.pods = load("node-eks-karpenter-spot-g5.12xlarge.json"), load("podlist-llm-node.json")["items"]
    config = kube_config(api.url, node=NODE, discovery=True).kubernetes  # timeout: 300ms
    client = KubeClient(config)
    request = {"node": lambda: client.read_node(NODE),
               "pods": lambda: client.list_pods(NODE, "llmcost.io/scrape=true", None)}[call]
    assert request()["kind"] in ("Node", "PodList")  # answered at full speed first
    api.fail[call] = ("drip", phase)
    err, took = timed(request)
    assert err.reason == "timeout" and took < config.timeout + EPSILON_S, (err, took)
    api.fail.clear()
    assert request()["kind"] in ("Node", "PodList")  # and again once it behaves


def test_an_api_server_dripping_over_tls_times_out_at_the_deadline(tls_api, tmp_path):
    api, certs = tls_api
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    client = kubeconfig_client(tmp_path / "kubeconfig", api.url, certs["ca.crt"], certs["client.crt"], certs["client.key"])
    assert client.read_node(NODE)["kind"] == "Node"  # the kubeconfig read, at full speed
    api.fail["node"] = ("drip", "body")
    err, took = timed(lambda: client.read_node(NODE))
    assert err.reason == "timeout" and took < 2.0 + EPSILON_S, (err, took)  # the kubeconfig client's timeout: 2s


# -- the real `run` process -------------------------------------------------------------------

def scrape(port) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def sample(samples, metric, **labels):
    return samples.get((metric, tuple(sorted(labels.items()))))


def start_run(tmp_path, config: str, **env) -> tuple[subprocess.Popen, int]:
    path, port = tmp_path / "config.yml", free_port()
    path.write_text(config)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLMCOST_")}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--config.file={path}",
                                f"--web.listen-address=127.0.0.1:{port}"], env={**environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, port


def stop_run(process) -> tuple[float, str]:
    try:
        took, stderr = terminate(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert took < BUDGET_S, f"SIGTERM to exit {took:.2f}s\n{stderr}"
    return took, stderr


def failing_lines(stderr: str, source: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"source failing source={source} name={name} " in line]


def test_run_with_an_engine_dripping_its_head_times_it_out_and_counts_on(tmp_path, dripping, hanging_engine):
    """(a) Case 1: every scrape of the dripping engine ends within its timeout + 1 s; it is down with
    reason timeout, logged once; the healthy engine's tokens and the spend go on; totals finite.
    (hanging_engine: test_shutdown's simulated vLLM on the real clock, healthy here.)"""
    drip_engine = dripping(phase="headers")
    process, port = start_run(tmp_path, f"""\
pricing: {{cloud: {{hourly: 3.6}}}}
gpu: {{backend: simulated, interval: 1s}}
engines:
  - {{name: healthy, url: '{hanging_engine.url}', interval: 1s, timeout: 500ms}}
  - {{name: dripping, url: '{drip_engine.url}', interval: 2s, timeout: 1s}}
""")
    try:
        wait_serving(port)
        time.sleep(1.5)
        first = scrape(port)
        time.sleep(6)
        last = scrape(port)
    except BaseException:
        process.kill()
        raise
    took, stderr = stop_run(process)
    down = dict(source="engine", name="dripping")
    assert sample(last, "llmcost_source_up", **down) == 0
    timeouts = [sample(s, "llmcost_source_errors_total", reason="timeout", **down) or 0 for s in (first, last)]
    assert 1 <= timeouts[0] < timeouts[1], timeouts
    ended = [t for t in drip_engine.exchanges if t is not None]
    assert len(ended) >= 3 and max(ended) < 1.0 + 1.0, drip_engine.exchanges  # seen from the engine's side
    assert len(failing_lines(stderr, "engine", "dripping")) == 1, stderr
    assert sample(last, "llmcost_source_up", source="engine", name="healthy") == 1
    tokens = [sample(s, "llmcost_tokens_total", engine="healthy", model=MODEL, direction="output") for s in (first, last)]
    assert 0 < tokens[0] < tokens[1], tokens
    spend = [sample(s, "llmcost_spend_total", component="instance", currency="USD") for s in (first, last)]
    assert 0 < spend[0] < spend[1] and spend[1] - spend[0] == pytest.approx(3.6 / 3600 * 6, rel=0.35), spend
    assert all(math.isfinite(v) for (name, _), v in last.items() if name.endswith("_total"))
    print(f"dripping engine: exchanges {min(ended):.2f}-{max(ended):.2f}s, {int(timeouts[1])} timeouts, "
          f"SIGTERM to exit {took:.2f}s")


def kube_run_config(api_url: str, discovery: bool = False) -> str:
    return (f"gpu: {{backend: simulated, interval: 1s}}\nkubernetes:\n  api_url: '{api_url}'\n  timeout: 1s\n"
            f"  discovery: {{enabled: {str(discovery).lower()}, refresh_interval: 2s, interval: 1s, timeout: 500ms}}\n")


def test_run_listens_within_the_deadline_while_the_api_server_drips_the_node(tmp_path, api):
    """(b) Case 2 at start: the node is read before listening (the pods after), and that read ends
    by its deadline, with every call to the API server dripping."""
    api.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    api.fail.update(node=("drip", "headers"), pods=("drip", "headers"))
    started = time.monotonic()
    process, port = start_run(tmp_path, kube_run_config(api.url, discovery=True), NODE_NAME=NODE,
                              LLMCOST_KUBERNETES_ENABLED="true")
    try:
        while not api.requests and time.monotonic() - started < 20:
            time.sleep(0.01)
        asked = time.monotonic()  # the exporter is reading its node: the interpreter has started
        wait_serving(port)
        serving = time.monotonic()
        samples = scrape(port)
    except BaseException:
        process.kill()
        raise
    took, stderr = stop_run(process)
    assert api.requests and serving - asked < 1.0 + 1.0, f"listening {serving - asked:.2f}s after the node read began"
    assert sample(samples, "llmcost_source_up", source="kubernetes", name="node") == 0
    assert sample(samples, "llmcost_source_errors_total", source="kubernetes", name="node", reason="timeout") == 1
    assert len(failing_lines(stderr, "kubernetes", "node")) == 1, stderr
    print(f"dripping API server at start: serving {serving - asked:.2f}s after the node read began "
          f"({serving - started:.2f}s after exec), SIGTERM to exit {took:.2f}s")


def test_run_keeps_discovering_after_a_dripping_pod_listing(tmp_path, cluster, clock):
    """(c) Case 2 on the pods: a dripping listing is a timeout, not a frozen discovery."""
    api, _, _ = cluster
    api.fail["pods"] = ("drip", "chunk_size")
    process, port = start_run(tmp_path, kube_run_config(api.url, discovery=True), NODE_NAME=NODE,
                              LLMCOST_KUBERNETES_ENABLED="true")
    pods = dict(source="kubernetes", name="pods")
    llama = dict(source="engine", name="llm/llama-8b-7d9f8c6b5-x2kqz", namespace="llm", pod="llama-8b-7d9f8c6b5-x2kqz")
    try:
        wait_serving(port)
        time.sleep(4.5)  # the listing at start and two on the 2 s refresh, each dripped
        dripped = scrape(port)
        api.fail.clear()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            clock.advance(1)  # the simulated engines serve tokens as the test's clock moves
            healed = scrape(port)
            if sample(healed, "llmcost_source_up", **llama) == 1:
                break
            time.sleep(0.3)
    except BaseException:
        process.kill()
        raise
    took, stderr = stop_run(process)
    assert sample(dripped, "llmcost_source_up", **pods) == 0
    assert sample(dripped, "llmcost_source_errors_total", reason="timeout", **pods) >= 2
    assert sample(dripped, "llmcost_source_up", **llama) is None  # not discovered while the listing drips
    assert sample(healed, "llmcost_source_up", **pods) == 1
    assert sample(healed, "llmcost_source_up", **llama) == 1, stderr  # discovered once the server behaves
    assert len(failing_lines(stderr, "kubernetes", "pods")) == 1, stderr
    assert "source recovered source=kubernetes name=pods" in stderr
    print(f"dripping pod listing: {int(sample(dripped, 'llmcost_source_errors_total', reason='timeout', **pods))} "
          f"timeouts in 4.5 s, SIGTERM to exit {took:.2f}s")
