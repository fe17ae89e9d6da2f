"""The proof on a real Prometheus: it scrapes the demo exporter, evaluates the project's rules, and
answers every dashboard panel's query with the template variables substituted as Grafana would.

The demo serves two engine kinds, a simulated vLLM (llama-8b) and a simulated SGLang (qwen-32b),
each detected by the exporter (kind auto); the dashboards' $engine_kind filter is run for each.

The demo runs in real time (`--demo.speed=1`, so rate() over counters means what it says) at a
constant 50% load. At that load both demo engines cost more per token than gpt-4o-mini and less than
gpt-4o, which gives the cost alert its positive and its negative case in one run.

Prometheus loads two rule files: the committed one (its 5m/1h/1d windows are too long to fill here,
but Prometheus 2.42 must evaluate every rule of it without an error) and a fast variant made by
rules/generate.py with 30 s windows and 5 s `for:` durations (test_rules.FAST).

The scrape config labels the target `cluster="demo"`, as a site with several clusters would, so the
dashboards generated for such a site (its job selector, `cluster_labels: [cluster]`) run here too.
"""

import pathlib
import re
import urllib.parse
import subprocess
import sys
import time

import pytest
import yaml

from prometheus import Prometheus, free_port
from test_rules import FAST, committed_every_second, generated

pytestmark = pytest.mark.integration  # a real Prometheus scraping the demo subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboards.generate import ALL, dashboards_json, panel_queries, substitute  # noqa: E402
from rules.generate import load_config  # noqa: E402

VARIABLES = {**ALL, "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
CLUSTER = "demo"
CHARGEBACK = "llmcost-chargeback"
# rules/config.yaml's keys for a site whose job is `llmcost` and whose series carry `cluster`
SITE = ['selector=job="llmcost"', "cluster_labels=[cluster]"]
WINDOW_S = 30  # the fast variant's recording window
KINDS = {"llama-8b": "vllm", "qwen-32b": "sglang"}  # the demo's engines and what each is detected as
ENGINES = set(KINDS)
# Panels whose series are documented to be absent for a kind's demo engines: panel title -> those kinds.
# qwen-32b (sglang) holds only a MIG device, which reports no utilization, so it has no
# llmcost_engine_gpu_utilization_ratio (docs/metrics.md); the filter must then leave the panel empty.
ABSENT_FOR_KIND = {"GPU utilization per engine": {"sglang"}}

# Recording rule of the fast variant -> the exporter gauge it must agree with (same labels).
AGREEING = {
    "engine_model:llmcost_cost_per_million_tokens:ratio_rate30s": "llmcost_cost_per_million_tokens",
    "engine_model:llmcost_cost_per_million_tokens_at_full_utilization:ratio_rate30s":
        "llmcost_cost_per_million_tokens_at_full_utilization",
    "engine_model:llmcost_utilization:ratio_rate30s": "llmcost_utilization_ratio",
    "engine_model:llmcost_energy_per_token_joules:ratio_rate30s": "llmcost_energy_per_token_joules",
    "engine_model_api:llmcost_api_price_per_million_tokens:ratio_rate30s":
        "llmcost_api_blended_price_per_million_tokens",
    "engine_model_api:llmcost_breakeven_utilization:ratio_rate30s": "llmcost_breakeven_utilization_ratio",
    # node and cluster levels: spend per hour against the hourly price, tokens/s against the live gauge
    "3600 * instance:llmcost_spend:rate30s": "sum by (job, instance, currency) (llmcost_hourly_cost)",
    "cluster:llmcost_tokens:rate30s": "sum(llmcost_tokens_per_second)",
}


class ClusterPrometheus(Prometheus):
    """The test Prometheus with its target labelled as a multi-cluster site's scrape config would."""

    def _config(self) -> dict:
        config = super()._config()
        for scrape in config.get("scrape_configs", []):
            for static in scrape["static_configs"]:
                static["labels"] = {"cluster": CLUSTER}
        return config


def every_second(directory):
    """The committed rule file with every group evaluated every second (test_rules), plus its hourly
    group as the site's overlay generates it (records that keep `cluster`), for the site's dashboards:
    the per-day panels read the hourly increases, which then have data within seconds (not a day's
    worth, but every query runs on the series the rules record)."""
    path, rules = committed_every_second(directory)
    _, site = generated(directory, *SITE)
    rules["groups"] += [dict(g, name=g["name"] + ".site", interval="1s")
                        for g in site["groups"] if g["name"].endswith(".increase.1h")]
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    fast_rules, _ = generated(tmp_path_factory.mktemp("rules"), *FAST)
    committed = every_second(tmp_path_factory.mktemp("committed"))
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}",
                             "--demo.speed=1", "--demo.constant-load=0.5", "--demo.summary-interval=60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with ClusterPrometheus([f"127.0.0.1:{port}"], rule_files=[committed, fast_rules]) as prom:
            prom.wait_for("llmcost_cost_per_million_tokens", count=2, timeout=30)
            time.sleep(WINDOW_S + 8)  # fill the 30 s windows, then let the alerts pass their 5 s `for:`
            prom.fast_rules = str(fast_rules)
            yield prom
    finally:
        demo.terminate()
        demo.wait(10)


def demo_queries(config=None):
    """Every panel's query but the chargeback dashboard's, which needs a gateway (tests/test_chargeback.py)."""
    return [query for query in panel_queries(config) if query[0] != CHARGEBACK]


def test_every_dashboard_query_parses_and_returns_data(stack):
    queries = demo_queries()
    assert len(queries) >= 20
    empty, kinds = [], set()
    for uid, title, expr in queries:
        result = stack.query(substitute(expr, VARIABLES))  # raises on a PromQL error
        if not result:
            empty.append(f"{uid} / {title}: {expr}")
        kinds |= {s["metric"]["engine_kind"] for s in result if "engine_kind" in s["metric"]}
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert kinds == set(KINDS.values())  # All kinds: the panels show both engines' kinds


def test_both_engine_kinds_are_detected_and_served(stack):
    info = {s["metric"]["engine"]: (s["metric"]["engine_kind"], s["metric"]["cached_input_source"])
            for s in stack.query("llmcost_engine_info")}
    assert info == {engine: (kind, "counter") for engine, kind in KINDS.items()}
    flowing = {s["metric"]["engine"] for s in stack.query("rate(llmcost_tokens_total[30s]) > 0")}
    assert flowing == ENGINES  # both kinds' token counters are read


@pytest.mark.parametrize("kind", sorted(set(KINDS.values())))
def test_the_engine_kind_filter_selects_that_kinds_engines(stack, kind):
    """$engine_kind = one kind: every query it filters still has data (each kind has an engine),
    only from that kind's engines; a kind that no engine has leaves those queries empty."""
    filtered = [(uid, title, expr) for uid, title, expr in panel_queries() if "$engine_kind" in expr]
    assert len(filtered) >= 30
    empty, foreign, leaked = [], [], []
    for uid, title, expr in filtered:
        result = stack.query(substitute(expr, {**VARIABLES, "engine_kind": kind}))
        if kind in ABSENT_FOR_KIND.get(title, ()):
            assert not result, f"{uid} / {title}: data for {kind}, whose demo engines should have none"
        elif not result:
            empty.append(f"{uid} / {title}: {expr}")
        others = {s["metric"]["engine"] for s in result if "engine" in s["metric"]} - {
            e for e, k in KINDS.items() if k == kind}
        kinds = {s["metric"]["engine_kind"] for s in result if "engine_kind" in s["metric"]}
        if others or kinds - {kind}:
            foreign.append(f"{uid} / {title}: {others or kinds}")
        if stack.query(substitute(expr, {**VARIABLES, "engine_kind": "none"})):
            leaked.append(f"{uid} / {title}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert not foreign, "series of another kind's engines:\n" + "\n".join(foreign)
    assert not leaked, "panels with data for a kind no engine has:\n" + "\n".join(leaked)


def test_a_sites_dashboards_return_data_for_the_selected_cluster_only(stack):
    """Generated for the site (another selector, a cluster label), every query answers for
    $cluster=demo, every series it returns is demo's, and another cluster gets nothing."""
    queries = demo_queries(load_config(overrides=SITE))
    assert len(queries) == len(demo_queries())
    empty, foreign, leaked = [], [], []
    for uid, title, expr in queries:
        result = stack.query(substitute(expr, {**VARIABLES, "cluster": CLUSTER}))
        if not result:
            empty.append(f"{uid} / {title}: {expr}")
        if any(s["metric"].get("cluster") != CLUSTER for s in result):
            foreign.append(f"{uid} / {title}: {[s['metric'] for s in result]}")
        if stack.query(substitute(expr, {**VARIABLES, "cluster": "other"})):
            leaked.append(f"{uid} / {title}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert not foreign, "series without the cluster label:\n" + "\n".join(foreign)
    assert not leaked, "panels with data for another cluster:\n" + "\n".join(leaked)


def label_values(stack, query: str, variables: dict) -> list[str]:
    """Grafana's label_values(SELECTOR, LABEL) on the Prometheus: the label's values of the matching series."""
    selector, label = re.fullmatch(r"label_values\((.*), (\w+)\)", query).groups()
    match = urllib.parse.quote(substitute(selector, variables))
    return stack.api(f"label/{label}/values?match[]={match}")


@pytest.mark.parametrize("overrides", [[], SITE], ids=["default", "site"])
def test_every_variable_lists_the_demos_values(stack, overrides):
    expected = {"cluster": [CLUSTER], "engine_kind": sorted(set(KINDS.values()))}
    for board in dashboards_json(load_config(overrides=overrides)):
        if board["uid"] == CHARGEBACK:
            continue  # its variable lists the chargeback rules' models: tests/test_chargeback.py
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            values = label_values(stack, variable["query"], {**VARIABLES, "cluster": CLUSTER})
            assert values, f"{board['uid']}: ${variable['name']} lists nothing"
            if variable["name"] in expected:
                assert sorted(values) == sorted(expected[variable["name"]]), (variable["name"], values)


def test_prometheus_evaluates_every_rule_without_error(stack):
    groups = stack.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len({g["file"] for g in groups}) == 2 and len(rules) > 200
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("recorded, gauge", AGREEING.items(), ids=lambda s: s.split(":")[1] if ":" in s else None)
def test_recording_rules_agree_with_the_exporters_gauges(stack, recorded, gauge):
    def samples(expr):
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
                for s in stack.query(expr)}

    rule, own = samples(recorded).items(), samples(gauge)
    assert rule, f"{recorded} has no samples"
    for labels, value in rule:
        # the gauge's labels are a subset or superset: match on the labels both sides carry
        matches = [v for k, v in own.items() if set(k) <= set(labels) or set(labels) <= set(k)]
        assert len(matches) == 1, f"{recorded}{dict(labels)}: {len(matches)} matching {gauge} series"
        assert value == pytest.approx(matches[0], rel=0.01), f"{recorded}{dict(labels)}"


def fast_alerts(stack) -> list[dict]:
    """The active alerts of the fast variant (the committed file's same-named ones stay pending)."""
    return [alert for group in stack.api("rules?type=alert")["groups"] if group["file"] == stack.fast_rules
            for rule in group["rules"] for alert in rule["alerts"]]


def alerts(stack, name: str) -> dict[tuple[str, str], str]:
    """(engine, api) -> state of the fast variant's alert `name`."""
    return {(a["labels"]["engine"], a["labels"]["api"]): a["state"]
            for a in fast_alerts(stack) if a["labels"]["alertname"] == name}


def test_cost_alert_fires_for_the_cheaper_api_only(stack):
    # 50% load: llama-8b costs ~$1.1 and qwen-32b ~$3.75 per 1M; gpt-4o-mini charges ~$0.25, gpt-4o ~$4.1+
    prices = {(s["metric"]["engine"], s["metric"]["api"]): float(s["value"][1])
              for s in stack.query("engine_model_api:llmcost_api_price_per_million_tokens:ratio_rate30s")}
    costs = {s["metric"]["engine"]: float(s["value"][1])
             for s in stack.query("engine_model:llmcost_cost_per_million_tokens:ratio_rate30s")}
    for engine in ENGINES:  # the scenario really is one-sided
        assert prices[(engine, "gpt-4o-mini")] < costs[engine] < prices[(engine, "gpt-4o")]
    assert alerts(stack, "LLMCostSelfHostingDearerThanAPI") == {
        (engine, "gpt-4o-mini"): "firing" for engine in ENGINES}


def test_breakeven_alert_fires_for_the_cheaper_api_only(stack):
    assert alerts(stack, "LLMCostUtilizationBelowBreakEven") == {
        (engine, "gpt-4o-mini"): "firing" for engine in ENGINES}


def test_a_healthy_node_fires_no_operational_alert(stack):
    fired = {a["labels"]["alertname"] for a in fast_alerts(stack)}
    assert fired == {"LLMCostSelfHostingDearerThanAPI", "LLMCostUtilizationBelowBreakEven"}
