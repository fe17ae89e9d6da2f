"""Alerts that reach a person: the exporter (`run`, a real subprocess) reads a simulated vLLM over
HTTP, a real Prometheus 2.42 evaluates the rules and sends to a real Alertmanager 0.25 running the
routing of docs/examples/alertmanager.yml, which notifies a webhook served by this test.

The rules are the committed file's, made fast by the same generator (30 s windows, 5 s `for:`,
test_rules.FAST); the test first checks that they are the committed alerts with the same labels
and annotations, so the routing and inhibition tried here are those of the committed rules. From
docs/examples/alertmanager.yml only the receivers' URLs and the timings are replaced.

One run, in order: at 5% load self-hosting costs more per token than gpt-4o, and the critical alert
arrives at the critical receiver with its labels, value and runbook link; the exporter is frozen
(SIGSTOP: it stops answering, as a hung or partitioned exporter does), LLMCostExporterDown fires,
and the cost alert, still firing in Prometheus, is inhibited in Alertmanager and reaches nobody;
the exporter resumes, the load goes to 100%, and the cost alert arrives resolved.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from alertmanager import Alertmanager, Webhook
from conftest import MODEL
from exporter.clock import SystemClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from plugins.process import ExporterProcess, wait_for
from prometheus import Prometheus
from test_rules import FAST, RULE_FILE, generated

pytestmark = pytest.mark.integration  # Prometheus, Alertmanager and the exporter as real processes

ROOT = Path(__file__).resolve().parent.parent
ROUTING = ROOT / "docs" / "examples" / "alertmanager.yml"
DEARER = "LLMCostSelfHostingDearerThanAPI"
COST_ALERTS = {DEARER, "LLMCostUtilizationBelowBreakEven", "LLMCostGPUsIdle"}
HOURLY, CAPACITY, LOW, HIGH = 4.0, 2000.0, 0.05, 1.0
API_PRICE = 0.75 * (0.7 * 2.5 + 0.3 * 1.25) + 0.25 * 10.0  # gpt-4o at the workload's mix: 75% input, 30% of it cached


class AlertingPrometheus(Prometheus):
    """The test Prometheus, sending its alerts to one Alertmanager."""

    def __init__(self, targets, rule_files, alertmanager: str):
        super().__init__(targets, rule_files)
        self.alertmanager = urllib.parse.urlparse(alertmanager).netloc

    def _config(self) -> dict:
        return {**super()._config(), "alerting": {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]}}


def routing(webhook: str) -> dict:
    """docs/examples/alertmanager.yml with its receivers pointed at the webhook (same paths) and
    timings short enough for a test: a group's first notification after 1 s, repeats every 2 s."""
    config = yaml.safe_load(ROUTING.read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="2s")
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook + urllib.parse.urlparse(hook["url"]).path
    return config


def alert_shapes(doc: dict) -> dict[str, tuple]:
    return {r["alert"]: (r.get("labels"), sorted(r.get("annotations", {}))) for g in doc["groups"] for r in g["rules"]
            if "alert" in r}


def alerts_in(payload: dict, name: str, status: str | None = None) -> list[dict]:
    return [a for a in payload["alerts"] if a["labels"]["alertname"] == name and status in (None, a["status"])]


def cost_notifications(hook: Webhook, since: float) -> list[str]:
    return [f"{path}: {a['labels']['alertname']} {a['status']}" for path, payload, at in list(hook.notifications)
            if at >= since for a in payload["alerts"] if a["labels"]["alertname"] in COST_ALERTS]


@pytest.fixture
def fast_rules(tmp_path) -> Path:
    path, doc = generated(tmp_path, *FAST)
    assert alert_shapes(doc) == alert_shapes(yaml.safe_load(RULE_FILE.read_text()))
    return path


def test_the_cost_alert_reaches_a_person_is_inhibited_while_the_exporter_is_down_and_resolves(fast_rules, tmp_path):
    workload = Workload(SystemClock(), CAPACITY)
    workload.set_constant_load(LOW)
    server = SimulatedVllm(workload, MODEL).start()
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "pricing": {"mode": "cloud", "cloud": {"hourly": HOURLY}}, "window": "30s",
        "gpu": {"backend": "simulated", "simulated": {"count": 1}}, "compare": {"apis": ["gpt-4o"]},
        "engines": [{"name": "vllm", "kind": "vllm", "url": server.url, "interval": "1s", "timeout": "500ms",
                     "capacity_tokens_per_s": CAPACITY}]}))
    try:
        with Webhook() as hook, Alertmanager(routing(hook.url)) as am, ExporterProcess(config) as exporter:
            exporter.wait_serving()
            with AlertingPrometheus([f"127.0.0.1:{exporter.port}"], [fast_rules], am.url) as prom:
                _firing(hook, exporter)
                _inhibited(hook, am, prom, exporter)
                changed = time.monotonic()
                workload.set_constant_load(HIGH)  # 20x the tokens for the same spend: cheaper than gpt-4o
                path, payload, at = hook.wait(lambda p, n: alerts_in(n, DEARER, "resolved"), timeout=30, since=changed)
                assert path == "/critical" and at - changed < 20
    finally:
        server.stop()


def _firing(hook: Webhook, exporter: ExporterProcess) -> None:
    """The critical alert at the critical receiver, with its labels, its value and its runbook."""
    path, payload, first = hook.wait(lambda p, n: alerts_in(n, DEARER, "firing"), timeout=40)
    assert path == "/critical"
    alert = alerts_in(payload, DEARER)[0]
    assert alert["labels"] == {**alert["labels"], "severity": "critical", "job": "llmcost", "engine": "vllm",
                               "model": MODEL, "api": "gpt-4o", "currency": "USD", "instance": f"127.0.0.1:{exporter.port}"}
    assert payload["groupLabels"] == {"alertname": DEARER, "model": MODEL, "api": "gpt-4o"}  # grouped by model and API
    assert alert["annotations"]["runbook_url"].endswith("docs/runbook.md#llmcostselfhostingdearerthanapi")
    description = alert["annotations"]["description"]
    cost, price = (float(x) for x in re.search(r"cost ([\d.e+]+) USD per 1M .* charged ([\d.e+]+) USD per 1M",
                                                description).groups())
    assert cost == pytest.approx(HOURLY * 1e6 / (3600 * CAPACITY * LOW), rel=0.03), description  # 11.1 USD/1M
    assert price == pytest.approx(API_PRICE, rel=0.01), description  # 4.09 USD/1M
    assert cost == pytest.approx(exporter.value("llmcost_cost_per_million_tokens"), rel=0.03)
    # The next repeat (every 2 s here): what an inhibition has to stop.
    hook.wait(lambda p, n: p == "/critical" and alerts_in(n, DEARER, "firing"), timeout=10, since=first + 0.5)


def _inhibited(hook: Webhook, am: Alertmanager, prom: Prometheus, exporter: ExporterProcess) -> None:
    """Exporter frozen: LLMCostExporterDown fires and silences the cost alerts of its node."""
    exporter.process.send_signal(signal.SIGSTOP)
    try:
        hook.wait(lambda p, n: p == "/warning" and alerts_in(n, "LLMCostExporterDown", "firing"), timeout=20)

        def suppressed() -> bool:
            by_name = {a["labels"]["alertname"]: a for a in am.alerts()}
            down, cost = by_name.get("LLMCostExporterDown"), by_name.get(DEARER)
            return bool(down and cost and cost["status"]["state"] == "suppressed"
                        and down["fingerprint"] in cost["status"]["inhibitedBy"])

        assert wait_for(suppressed, timeout=10, every=0.2), am.alerts()
        quiet_from = time.monotonic() + 1.0  # a notification already in flight may still land
        firing = prom.query(f'ALERTS{{alertname="{DEARER}",alertstate="firing"}}')
        assert len(firing) == 1, firing  # still firing in Prometheus: only the inhibition keeps it from a person
        time.sleep(5)  # two repeat intervals and more
        assert cost_notifications(hook, quiet_from) == []
        assert suppressed()
    finally:
        exporter.process.send_signal(signal.SIGCONT)
    hook.wait(lambda p, n: alerts_in(n, "LLMCostExporterDown", "resolved"), timeout=20, since=quiet_from)


def test_the_routing_names_only_alerts_of_the_committed_rules_and_amtool_accepts_it():
    """Every alert name the routing matches (exactly, or by the inhibitions' target pattern) is an
    alert of the committed rule file, with the severities the routes expect; amtool (Alertmanager's
    own checker) accepts the file."""
    committed = {r["alert"]: r["labels"]["severity"] for g in yaml.safe_load(RULE_FILE.read_text())["groups"]
                 for r in g["rules"] if "alert" in r}
    config = yaml.safe_load(ROUTING.read_text())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            name, op, value = re.match(r'^(\w+)(=~|=)"(.*)"$', matcher).groups()
            assert name == "alertname"
            names = value.split("|") if op == "=~" else [value]
            assert set(names) <= set(committed), names
        targets = rule["target_matchers"][0]
        assert set(re.search(r'"(.*)"', targets).group(1).split("|")) == COST_ALERTS
    severities = {re.search(r'severity="(\w+)"', m).group(1) for r in config["route"]["routes"] for m in r["matchers"]
                  if m.startswith("severity")}
    assert severities == set(committed.values())  # every severity of the rules has its receiver
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing: the test command installs Debian's prometheus-alertmanager"
    result = subprocess.run([amtool, "check-config", str(ROUTING)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_inhibition_silences_the_cost_alerts_of_its_own_cluster_node_and_engine_only():
    """Every inhibition of the routing on a real Alertmanager, with alerts of the rules' own label
    sets (as Prometheus posts them, `cluster` as an external label): the cause silences the cost
    alerts that share its `equal` labels, and nothing else."""
    def alert(alertname, **labels):
        return {"labels": {"alertname": alertname, "job": "llmcost", **labels}, "annotations": {}}

    node = {"cluster": "a", "instance": "n1:9848"}
    causes = [alert("LLMCostEngineScrapeFailing", **node, source="engine", name="vllm", engine="vllm", severity="warning"),
              alert("LLMCostExporterDown", cluster="a", instance="n2:9848", severity="warning"),
              {"labels": {"alertname": "LLMCostExporterAbsent", "cluster": "c", "severity": "warning"}, "annotations": {}}]
    cost = {"engine": "vllm", "model": "m", "api": "gpt-4o", "currency": "USD", "severity": "critical"}
    expected = {  # (alert, expected state)
        ("dearer, that engine", "suppressed"): alert(DEARER, **node, **cost),
        ("idle, that engine", "suppressed"): alert("LLMCostGPUsIdle", **node, engine="vllm", currency="USD", severity="warning"),
        ("dearer, another engine on the node", "active"): alert(DEARER, **node, **{**cost, "engine": "sglang"}),
        ("dearer, same engine name, another node", "active"): alert(DEARER, cluster="a", instance="n9:9848", **cost),
        ("dearer, same node name, another cluster", "active"): alert(DEARER, cluster="b", instance="n1:9848", **cost),
        ("dearer, exporter down", "suppressed"): alert(DEARER, cluster="a", instance="n2:9848", **cost),
        ("break-even, exporter down", "suppressed"): alert("LLMCostUtilizationBelowBreakEven", cluster="a",
                                                           instance="n2:9848", engine="vllm", api="gpt-4o", severity="warning"),
        ("GPU lost, exporter down: not a cost alert", "active"): alert("LLMCostGPULost", cluster="a", instance="n2:9848",
                                                                       gpu="0", severity="critical"),
        ("dearer, no exporter in the cluster", "suppressed"): alert(DEARER, cluster="c", instance="n5:9848", **cost),
    }
    with Webhook() as hook, Alertmanager(routing(hook.url)) as am:
        am.post(causes + list(expected.values()))

        def states() -> dict[str, str]:
            by_labels = {tuple(sorted(a["labels"].items())): a["status"]["state"] for a in am.alerts()}
            return {case: by_labels.get(tuple(sorted(a["labels"].items()))) for (case, _), a in expected.items()}

        want = {case: state for case, state in expected}
        wait_for(lambda: states() == want, timeout=10, every=0.2)
        assert states() == want
