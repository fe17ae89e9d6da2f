"""The golden /metrics contract: the whole exposition of three fixed setups, byte for byte.

In the style of node_exporter's end-to-end fixture (collector/fixtures/e2e-output.txt) and
prometheus-pve-exporter's tests/golden/: each setup below is built only from public entry points
(Exporter, config.from_dict, ManualClock, SimulatedNVML, sample_all/refresh_kubernetes), driven
through a fixed sequence of sample rounds, rendered with prometheus_client.generate_latest and
compared with tests/golden/<setup>.prom. Any change to a name, label, HELP text, type, series set
or computed value shows up as a unified diff. If the change is intended, regenerate and review
the diff of the golden files like code:

    pytest tests/test_golden.py --update-golden      (or UPDATE_GOLDEN=1 pytest tests/test_golden.py)

Setups:
  cloud       hourly price + per-request fee, 2 simulated GPUs, two engines on one GPU each (one
              with a configured capacity, one observed), compared with gpt-4o-mini and gpt-4o.
  owned       capex, amortization, fixed monthly, electricity, PUE, overhead watts, grid CO2e;
              2 GPUs without an energy counter (energy integrated from power), one engine.
  kubernetes  the instance priced from the Node's labels (spot g5.12xlarge), engine pods discovered
              on the node (series carry namespace/pod), one pod skipped for a bad annotation.

Determinism. Time is a ManualClock stepped 5 s per round; GPUs are SimulatedNVML at constant
loads (energy integrated exactly over the manual clock). Engines are real HTTP servers on
loopback, but they serve a FIXED vLLM V1 exposition whose counters this file steps by fixed
integers before each round; no random workload, no wall clock. The Kubernetes API is a local HTTP
server answering with the v1 JSON fixtures of tests/data/kube/ through the real `kubernetes`
client. What cannot be made deterministic is normalized in `normalize()` and nowhere else:

  1. `llmcost_source_sample_duration_seconds` values are wall-clock durations of real HTTP and
     NVML calls (time.monotonic; the Kubernetes node's first read includes importing the
     client). Each value is checked to be a number in [0, 60) s, then written as 0.0 in the
     golden file. Everything else in the files is an exact value.
  2. Loopback ports are random. `127.0.0.1:<port>` is rewritten to `127.0.0.1:PORT`. Today
     this never fires: engine URLs are not labels, and test_golden_files_show_what_each_setup_is_for
     asserts that no loopback address reaches a golden file (drop that line if a URL label is
     ever added on purpose; the substitution then keeps the files stable).
  3. `process_*` and `python_*` families would be dropped (the exporter's own registry has
     none today; docs/metrics.md says so).

Timestamps (`llmcost_*_timestamp_seconds`) come from the ManualClock (start 1700000000) and are
exact. `llmcost_build_info{version=...}` carries exporter.__version__: a version bump means an
update of the golden files.

Also here: every golden file passes `promtool check metrics`, and docs/metrics.md documents
every family of the golden files (with the right type and label names), and every documented
`llmcost_*` family that these setups can produce is in a golden file.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import urllib.parse

import pytest
from prometheus_client import generate_latest

from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.gpu.simulated import SimulatedNVML
from plugins.engines import serve_loopback

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
KUBE_DATA = ROOT / "tests" / "data" / "kube"
METRICS_DOC = ROOT / "docs" / "metrics.md"
SETUPS = ("cloud", "owned", "kubernetes")

STEP_S = 5.0  # one sample round: the engines' default interval
ROUNDS = 24  # 2 minutes after the baseline round: twice the 1m window, so it is full and has slid

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-32B-Instruct"
NODE = "ip-10-0-12-34.ec2.internal"

# Documented `llmcost_*` families that none of the three setups emits. Each entry says why; the
# test checks that every entry is really documented in docs/metrics.md and really absent from
# every golden file, so this list cannot go stale silently.
NOT_IN_GOLDEN = {
    # Persisted state: only with `--storage.path` (exporter.state registers its collector then).
    "llmcost_state_last_write_timestamp_seconds",
    "llmcost_state_write_errors_total",
    "llmcost_state_restored_gap_seconds",
    # Only once a task skipped a run (its previous run still going): never in these setups' steady runs.
    "llmcost_skipped_runs_total",
}


# -- engines: fixed expositions over loopback HTTP ------------------------------------------------

class FixedEngine:
    """A vLLM V1 /metrics on a real loopback socket. The body is fixed text; its counters move only
    when step() is called, by the per-round increments given (so every scrape is reproducible)."""

    def __init__(self, model: str, start: dict[str, int], per_round: dict[str, int], gauges: dict[str, float]):
        self.model = model
        self.counters = dict(start)
        self.per_round = per_round
        self.gauges = gauges
        self.server = serve_loopback(lambda _path: (200, "text/plain; version=0.0.4; charset=utf-8",
                                                    self.body().encode()), poll_interval=0.02)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def step(self) -> None:
        for key, increment in self.per_round.items():
            self.counters[key] += increment

    def body(self) -> str:
        c, g, m = self.counters, self.gauges, self.model
        lines = []
        for name, value in (("vllm:num_requests_running", g["running"]), ("vllm:num_requests_waiting", g["waiting"]),
                            ("vllm:kv_cache_usage_perc", g["kv_cache"])):
            lines += [f"# TYPE {name} gauge", f'{name}{{engine="0",model_name="{m}"}} {value}']
        for name, key in (("vllm:prompt_tokens", "input"), ("vllm:generation_tokens", "output"),
                          ("vllm:prompt_tokens_cached", "cached")):
            lines += [f"# TYPE {name}_total counter", f'{name}_total{{engine="0",model_name="{m}"}} {c[key]}.0']
        lines.append("# TYPE vllm:request_success_total counter")
        for reason in ("stop", "length", "abort"):
            lines.append(f'vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="{m}"}} '
                         f"{c[reason]}.0")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fixed_engine(model, tokens_per_round, cached_share, output_share, requests_per_round, gauges, start=1_000_000):
    """An engine at a constant rate: tokens_per_round input + output tokens per 5 s round."""
    output = int(tokens_per_round * output_share)
    inputs = tokens_per_round - output
    stop, length = requests_per_round
    return FixedEngine(model,
                       start={"input": start, "output": start // 2, "cached": start // 4,
                              "stop": start // 1000, "length": start // 10000, "abort": 7},
                       per_round={"input": inputs, "output": output, "cached": int(inputs * cached_share),
                                  "stop": stop, "length": length, "abort": 0},
                       gauges=gauges)


# -- a Kubernetes API server answering from the v1 fixtures ----------------------------------------

class FixtureApiServer:
    """GET /api/v1/nodes/NAME, GET /api/v1/namespaces/llm (no tier annotation) and GET /api/v1/pods
    with the field and label selectors honoured."""

    def __init__(self, node: dict, pods: list[dict]):
        def respond(path):
            url = urllib.parse.urlsplit(path)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            if url.path == f"/api/v1/nodes/{node['metadata']['name']}":
                return 200, "application/json", json.dumps(node).encode()
            if url.path == "/api/v1/namespaces/llm":
                return 200, "application/json", (KUBE_DATA / "namespace-llm.json").read_bytes()
            if url.path == "/api/v1/pods":
                items = [p for p in pods if _selected(p, query)]
                return 200, "application/json", json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {
                    "resourceVersion": "48213412"}, "items": items}).encode()
            return 404, "application/json", (KUBE_DATA / "status-404-node.json").read_bytes()

        self.server = serve_loopback(respond, poll_interval=0.02)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _selected(pod: dict, query: dict) -> bool:
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        key, _, want = term.partition("=")
        if key == "spec.nodeName" and pod["spec"].get("nodeName") != want:
            return False
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, want = term.partition("=")
        if (pod["metadata"].get("labels") or {}).get(key) != want:
            return False
    return True


# -- the three setups -----------------------------------------------------------------------------

def drive(exporter: Exporter, clock: ManualClock, engines, rounds: int = ROUNDS, every_round=None) -> None:
    """The scheduler's job, exactly: a baseline round, then `rounds` rounds of 5 s in which every
    engine's counters move by their fixed increments before it is scraped."""
    exporter.sample_all()
    for n in range(1, rounds + 1):
        clock.advance(STEP_S)
        for engine in engines:
            engine.step()
        if every_round is not None:
            every_round(n)
        exporter.sample_all()


def build_cloud(stack) -> Exporter:
    clock = ManualClock()
    nvml = SimulatedNVML(clock, count=2, product="NVIDIA L4", idle_watts=20.0, max_watts=72.0,
                         memory_bytes=24 * 1024**3, load_fn=lambda t: 0.5)
    nvml.set_load(1, lambda t: 0.25)
    chat = stack(fixed_engine(LLAMA, tokens_per_round=2500, cached_share=0.4, output_share=0.3,
                              requests_per_round=(9, 1), gauges={"running": 12, "waiting": 0, "kv_cache": 0.375}))
    batch = stack(fixed_engine(QWEN, tokens_per_round=1500, cached_share=0.0, output_share=0.5,
                               requests_per_round=(2, 0), gauges={"running": 4, "waiting": 3, "kv_cache": 0.8125}))
    config = from_dict({
        "pricing": {"mode": "cloud", "cloud": {"hourly": 1.6, "per_million_requests": 20.0},
                    "energy": {"electricity_per_kwh": 0.12, "overhead_watts": 80.0}},
        "gpu": {"backend": "simulated"},
        "window": "1m",
        "compare": {"apis": ["gpt-4o-mini", "gpt-4o"]},
        "engines": [
            {"name": "chat", "url": chat.url, "gpus": [0], "capacity_tokens_per_s": 1000},
            {"name": "batch", "url": batch.url, "gpus": [1], "tier": "batch"},  # capacity observed; Batch API prices
        ],
    }, environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=nvml)
    drive(exporter, clock, [chat, batch])
    return exporter


def build_owned(stack) -> Exporter:
    clock = ManualClock()
    nvml = SimulatedNVML(clock, count=2, product="NVIDIA RTX 6000 Ada Generation", idle_watts=40.0, max_watts=300.0,
                         memory_bytes=48 * 1024**3, energy_counter=False, load_fn=lambda t: 0.75)
    engine = stack(fixed_engine(LLAMA, tokens_per_round=5000, cached_share=0.25, output_share=0.3,
                                requests_per_round=(18, 2), gauges={"running": 24, "waiting": 1, "kv_cache": 0.5}))
    config = from_dict({
        "pricing": {"mode": "owned",
                    "owned": {"capex": 25000.0, "amortization_months": 36, "fixed_monthly": 150.0},
                    "energy": {"electricity_per_kwh": 0.15, "pue": 1.3, "overhead_watts": 120.0,
                               "grid_co2e_grams_per_kwh": 380.0}},
        "gpu": {"backend": "simulated"},
        "window": "1m",
        "compare": {"apis": ["gpt-4o", "gpt-4o-mini"]},
        "engines": [{"name": "vllm", "url": engine.url, "capacity_tokens_per_s": 2000}],
    }, environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=nvml)
    drive(exporter, clock, [engine])
    return exporter


def build_kubernetes(stack) -> Exporter:
    clock = ManualClock()
    nvml = SimulatedNVML(clock, count=4, product="NVIDIA A10G", idle_watts=60.0, max_watts=300.0,
                         load_fn=lambda t: 0.5)
    llama = stack(fixed_engine(LLAMA, tokens_per_round=6000, cached_share=0.3, output_share=0.25,
                               requests_per_round=(20, 2), gauges={"running": 16, "waiting": 2, "kv_cache": 0.625}))
    qwen = stack(fixed_engine(QWEN, tokens_per_round=2000, cached_share=0.1, output_share=0.4,
                              requests_per_round=(5, 1), gauges={"running": 6, "waiting": 0, "kv_cache": 0.25}))
    pods = json.loads((KUBE_DATA / "podlist-llm-node.json").read_text())["items"]
    # The two running vLLM pods point at the loopback engines: llama through its llmcost.io/port
    # annotation (capacity 2400, GPUs 0,1), qwen through its container port named "metrics".
    pods[0]["status"]["podIP"] = pods[1]["status"]["podIP"] = "127.0.0.1"
    pods[0]["metadata"]["annotations"]["llmcost.io/port"] = str(llama.port)
    pods[1]["spec"]["containers"][0]["ports"][0]["containerPort"] = qwen.port
    elsewhere = copy.deepcopy(pods[0])  # on another node: the field selector leaves it out
    elsewhere["metadata"]["name"], elsewhere["spec"]["nodeName"] = "llama-8b-7d9f8c6b5-other", "ip-10-0-99-1.ec2.internal"
    node = json.loads((KUBE_DATA / "node-eks-karpenter-spot-g5.12xlarge.json").read_text())
    assert node["metadata"]["name"] == NODE
    api = stack(FixtureApiServer(node, pods + [elsewhere]))
    config = from_dict({
        "pricing": {"mode": "cloud"},  # no price, no instance type: priced from the node's labels
        "gpu": {"backend": "simulated"},
        "window": "1m",
        "kubernetes": {"enabled": True, "node_name": NODE, "api_url": api.url, "timeout": "5s",
                       "discovery": {"enabled": True, "interval": "5s", "timeout": "2s"}},
    }, environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=nvml)
    exporter.refresh_kubernetes()

    def relist(n):  # the pods are listed every 30 s (kubernetes.discovery.refresh_interval)
        if n % 6 == 0:
            exporter.refresh_pods()

    drive(exporter, clock, [llama, qwen], every_round=relist)
    return exporter


BUILDERS = {"cloud": build_cloud, "owned": build_owned, "kubernetes": build_kubernetes}


# -- rendering and normalization ------------------------------------------------------------------

_DURATION = re.compile(r"^(llmcost_source_sample_duration_seconds\{[^}]*\}) (\S+)$")
_LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:\d+")
_DROPPED_PREFIXES = ("process_", "python_")


def normalize(text: str) -> str:
    """The only changes made to the exposition (see the module docstring)."""
    out = []
    for line in text.splitlines():
        name = line.split()[2] if line.startswith(("# HELP ", "# TYPE ")) else re.split(r"[{ ]", line, 1)[0]
        if name.startswith(_DROPPED_PREFIXES):
            continue
        match = _DURATION.match(line)
        if match:
            seconds = float(match.group(2))
            assert math.isfinite(seconds) and 0.0 <= seconds < 60.0, line
            line = f"{match.group(1)} 0.0"
        out.append(_LOOPBACK_PORT.sub("127.0.0.1:PORT", line))
    return "\n".join(out) + "\n"


def render(setup: str) -> str:
    resources = []

    def stack(resource):
        resources.append(resource)
        return resource

    try:
        exporter = BUILDERS[setup](stack)
        return normalize(generate_latest(exporter.registry).decode())
    finally:
        for resource in reversed(resources):
            resource.stop()


def updating(request) -> bool:
    return bool(request.config.getoption("--update-golden", default=False)) or os.environ.get("UPDATE_GOLDEN") == "1"


def families(text: str) -> dict[str, str]:
    """Family name (as on its TYPE line: counters with _total) -> type."""
    return {parts[2]: parts[3] for parts in (line.split() for line in text.splitlines() if line.startswith("# TYPE "))}


# -- the contract ---------------------------------------------------------------------------------

@pytest.mark.parametrize("setup", SETUPS)
def test_metrics_match_the_golden_file(setup, request):
    got = render(setup)
    path = GOLDEN / f"{setup}.prom"
    if updating(request):
        GOLDEN.mkdir(exist_ok=True)
        if not path.exists() or path.read_text() != got:
            path.write_text(got)
            print(f"updated {path.relative_to(ROOT)}")
        return
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run pytest tests/test_golden.py --update-golden"
    want = path.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), got.splitlines(keepends=True),
                                            f"tests/golden/{setup}.prom", f"{setup} (this run)"))
        pytest.fail(f"/metrics of the {setup} setup differs from tests/golden/{setup}.prom; if the change is "
                    f"intended, run: pytest tests/test_golden.py --update-golden\n{diff}", pytrace=False)


def test_rendering_is_deterministic():
    """Two fresh runs of the same setup give the same bytes (new ports, new threads, new clock)."""
    assert render("owned") == render("owned")


@pytest.mark.parametrize("setup", SETUPS)
def test_golden_files_pass_promtool(setup):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install -y prometheus"
    text = (GOLDEN / f"{setup}.prom").read_text()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_golden_files_show_what_each_setup_is_for():
    """Guards against a golden file that is byte-stable but no longer exercises its setup."""
    cloud, owned, kube = ((GOLDEN / f"{s}.prom").read_text() for s in SETUPS)
    for text in (cloud, owned, kube):
        assert "llmcost_cost_per_million_tokens{" in text and "llmcost_tokens_per_second{" in text
        assert "llmcost_utilization_ratio{" in text and "llmcost_hourly_cost{" in text
        assert ":PORT" not in text and "127.0.0.1" not in text  # ports and URLs stay out of the labels
    assert 'llmcost_capacity_tokens_per_second{engine="batch",source="observed"}' in cloud
    assert 'llmcost_spend_total{component="requests",currency="USD"}' in cloud
    assert 'llmcost_payback_months{api="gpt-4o",tier="standard"}' in owned and "llmcost_co2e_grams_total " in owned
    assert 'energy_method="integrated"' in owned and 'component="amortization"' in owned
    assert 'price_source="node_labels:aws/g5.12xlarge/us-east-1/spot"' in kube
    assert 'namespace="llm",pod="llama-8b-7d9f8c6b5-x2kqz"' in kube and "llama-8b-7d9f8c6b5-other" not in kube
    assert 'reason="bad_annotation",source="kubernetes"' in kube


# -- docs/metrics.md against the contract ---------------------------------------------------------

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def documented() -> dict[str, tuple[str, set[str] | None]]:
    """Family -> (type, label names or None where the table has no labels column), from the
    reference tables of docs/metrics.md (rows whose first cell is a backticked llmcost_ name)."""
    out = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in _CELL_SPLIT.split(line)[1:-1]]
        if not cells or not re.fullmatch(r"`llmcost_[a-z0-9_]+`", cells[0]):
            continue
        name = cells[0].strip("`")
        labels = None
        if len(cells) == 5:  # metric | type | unit | labels | notes
            labels = {m.group(1) for item in cells[3].split(",") if (m := re.match(r"\s*`([a-z_]+)`", item))}
        out[name] = (cells[1], labels)
    return out


def golden_types() -> dict[str, str]:
    """Every family rendered in a golden file (with or without samples) -> its type."""
    found = {}
    for setup in SETUPS:
        found.update(families((GOLDEN / f"{setup}.prom").read_text()))
    return found


def golden_labels() -> dict[str, set[str]]:
    """Families with at least one sample in some golden file -> the label names of their samples."""
    types, served = golden_types(), {}
    for setup in SETUPS:
        for line in (GOLDEN / f"{setup}.prom").read_text().splitlines():
            if line and not line.startswith("#"):
                name = re.split(r"[{ ]", line, maxsplit=1)[0]
                assert name in types, f"sample {name} has no TYPE line of its own"  # no histograms here
                labels = line.rsplit(" ", 1)[0]
                served.setdefault(name, set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', labels))
    return served


def test_every_family_in_the_golden_files_is_documented_with_its_type_and_labels():
    docs, types, served = documented(), golden_types(), golden_labels()
    assert sorted(set(types) - set(docs)) == [], "served but not documented in docs/metrics.md"
    assert {n: (t, docs[n][0]) for n, t in types.items() if docs[n][0] != t} == {}, "type differs from docs/metrics.md"
    # `namespace` and `pod` are documented once for every series of a discovered engine (section
    # "Engines and models"), not in each row.
    pod_labels = {"namespace", "pod"}
    assert [f for f in served if docs[f][1] is None] == [], "documented without a labels column"
    undocumented = {f: sorted(labels - docs[f][1] - pod_labels) for f, labels in served.items()
                    if labels - docs[f][1] - pod_labels}
    assert undocumented == {}, "labels served but not in the labels column of docs/metrics.md"
    unserved = {f: sorted(docs[f][1] - labels) for f, labels in served.items() if docs[f][1] - labels}
    assert unserved == {}, "labels in the labels column of docs/metrics.md but not served"


def test_every_documented_family_the_setups_can_produce_is_in_a_golden_file():
    docs, golden = set(documented()), set(golden_labels())  # families with samples, not only a TYPE line
    assert sorted(NOT_IN_GOLDEN - docs) == [], "NOT_IN_GOLDEN names something docs/metrics.md does not document"
    assert sorted(NOT_IN_GOLDEN & golden) == [], "now in a golden file: remove it from NOT_IN_GOLDEN"
    assert sorted(docs - golden - NOT_IN_GOLDEN) == [], \
        "documented, but no setup emits it: extend a setup, or list it in NOT_IN_GOLDEN with the reason"
