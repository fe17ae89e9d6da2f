"""Chargeback pieces without a server: the rules' config errors (one line naming the key), the group's
shape and cardinality bound, and the price files' formats. The same on the real Prometheus, with the
real litellm loading the export: tests/test_chargeback.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus import Prometheus
from test_rules import generate

from exporter import prices_export, report_team
from exporter.prices_export import ModelPrice

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "rules" / "config.yaml").read_text())["chargeback"]
PRICES = [ModelPrice("meta-llama/Llama-3.1-8B-Instruct", 2.5e-7, 4e-6), ModelPrice("Qwen/Qwen2.5-32B-Instruct", 1e-6, 3e-5)]


def overlay(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"chargeback": {**BASE, **changes}}))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"top_teams": 0}, "chargeback.top_teams: got 0, allowed: a whole number >= 1"),
    ({"window": "5 minutes"}, "chargeback.window: got '5 minutes', allowed: a PromQL duration > 0"),
    ({"gateways": {"litellm": {**BASE["gateways"]["litellm"], "input": "litellm input"}}},
     "chargeback.gateways.litellm.input: got 'litellm input', allowed: a Prometheus metric name"),
    ({"gateways": {"litellm": {**BASE["gateways"]["litellm"], "team_label": "team-alias"}}},
     "chargeback.gateways.litellm.team_label: got 'team-alias', allowed: a Prometheus label name"),
    ({"gateways": {"litellm": {**BASE["gateways"]["litellm"], "tenant": "x"}}},
     "chargeback.gateways.litellm.tenant: unknown key"),
    ({"model_aliases": {"qwen-32b": ""}}, "chargeback.model_aliases.qwen-32b"),
])
def test_bad_chargeback_config_is_one_line_naming_the_key(tmp_path, changes, message):
    result = generate("--config", str(overlay(tmp_path, **changes)), "--output", str(tmp_path / "out.yml"))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def chargeback_group(tmp_path: Path, **changes) -> list[dict]:
    out = tmp_path / "out.yml"
    result = generate("--config", str(overlay(tmp_path, **changes)), "--output", str(out))
    assert result.returncode == 0, result.stderr
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(out.read_text())["groups"]}
    return groups.get("llm-cost-exporter.chargeback", [])


def test_the_group_records_price_spend_and_api_equivalent_once_each(tmp_path):
    rules = chargeback_group(tmp_path, window="2m", top_teams=3)
    assert [r["record"] for r in rules] == ["model:llmcost_price_per_token:ratio_rate2m",
                                            "team_model:llmcost_chargeback_spend:rate2m",
                                            "team_api:llmcost_chargeback_api_equivalent_spend:rate2m"]
    spend = rules[1]["expr"]
    assert spend.count("topk (3,") >= 2 and '"team", "other"' in spend and '"team", "unattributed"' in spend
    # every output aggregation keeps only team, model, currency: no gateway label leaks into a series
    assert re.search(r"^sum by \(team, model, currency\)", spend)
    assert 'label_replace' in spend and '"Qwen/Qwen2.5-32B-Instruct", "model", "qwen\\\\-32b"' in spend


def test_a_dotted_set_changes_one_key_of_the_section():
    result = generate("--set", "chargeback.top_teams=3", "--set", "chargeback.window=2m", "--output", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert "team_model:llmcost_chargeback_spend:rate2m" in result.stdout and "topk (3," in result.stdout
    assert '"Qwen/Qwen2.5-32B-Instruct", "model", ' in result.stdout  # the rest of the section: config.yaml's alias
    bad = generate("--set", "chargeback.top_team=3", "--output", "/dev/null")
    assert bad.returncode == 2 and "--set: chargeback.top_team: unknown key" in bad.stderr


def test_disabled_or_without_gateways_there_is_no_group(tmp_path):
    assert chargeback_group(tmp_path, enabled=False) == []
    assert chargeback_group(tmp_path, gateways={}) == []


def test_cluster_labels_reach_every_chargeback_aggregation(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"cluster_labels": ["cluster"]}))
    out = tmp_path / "out.yml"
    assert generate("--config", str(path), "--output", str(out)).returncode == 0
    [group] = [g for g in yaml.safe_load(out.read_text())["groups"] if g["name"].endswith("chargeback")]
    for rule in group["rules"]:
        for labels in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            assert labels.split(", ")[0] == "cluster", (rule["record"], labels)
        assert "topk by (cluster) (" in rule["expr"] or "topk" not in rule["expr"]


# --- prices export formats ------------------------------------------------------------------------


def test_litellm_entries():
    data = json.loads(prices_export.render("litellm", PRICES, 0, "hosted_vllm"))
    entry = data["hosted_vllm/meta-llama/Llama-3.1-8B-Instruct"]
    assert entry == {"input_cost_per_token": 2.5e-7, "output_cost_per_token": 4e-6, "cache_read_input_token_cost": 2.5e-7,
                     "litellm_provider": "hosted_vllm", "mode": "chat"}


def test_langfuse_definitions_start_now_and_match_only_their_model():
    data = json.loads(prices_export.render("langfuse", PRICES, 1764547200, "hosted_vllm"))
    assert [d["startDate"] for d in data] == ["2025-12-01T00:00:00Z"] * 2
    llama = data[0]
    assert llama["unit"] == "TOKENS"
    assert llama["pricingTiers"] == [{"name": "Standard", "isDefault": True, "priority": 0, "conditions": [],
                                      "prices": {"input": 2.5e-7, "output": 4e-6}}]
    pattern = re.compile(llama["matchPattern"].removeprefix("(?i)"), re.I)
    assert pattern.fullmatch("META-LLAMA/Llama-3.1-8B-Instruct") and not pattern.fullmatch("meta-llama/Llama-3.1-8B-Instruct-v2")
    assert not pattern.fullmatch("meta-llamaXLlama-3.1-8B-Instruct")  # the dot is escaped


def test_openlit_prices_are_per_thousand_tokens():
    data = json.loads(prices_export.render("openlit", PRICES, 0, "hosted_vllm"))
    assert data["chat"]["Qwen/Qwen2.5-32B-Instruct"] == pytest.approx({"promptPrice": 1e-3, "completionPrice": 3e-2})


# --- CLI errors: one line, exit 1 (2 for a bad flag) -------------------------------------------------------------------


@pytest.mark.integration  # a real, empty Prometheus
def test_cli_errors_are_one_line():
    with Prometheus() as empty:
        for args in (["prices", "export", "--format=litellm", f"--prometheus.url={empty.url}"],
                     ["report", "--by=team", f"--prometheus.url={empty.url}", "--start=now-1m"],
                     ["prices", "export", "--format=litellm", f"--prometheus.url={empty.url}", "--window=soon"]):
            result = subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=ROOT)
            assert result.returncode == (2 if args[-1] == "--window=soon" else 1), (args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "no llmcost_model_spend_total series" in subprocess.run(
            [sys.executable, "-m", "exporter", "prices", "export", "--format=openlit", f"--prometheus.url={empty.url}"],
            capture_output=True, text=True, cwd=ROOT).stderr


def test_team_report_orders_named_teams_first_and_adds_up():
    report = report_team.TeamReport("http://p", 0, 3600, "USD",
                                    {("unattributed", "m"): 1.0, ("a", "m"): 2.0, ("other", "m"): 0.5, ("b", "m"): 6.5},
                                    {("b", "gpt-4o"): 10.0})
    text = report_team.render(report)
    rows = [line.split()[0] for line in text.splitlines()[3:8]]
    assert rows == ["b", "a", "other", "unattributed", "TOTAL"]
    assert "$10.00" in text and "100.0%" in text and "$3.50" in text  # savings: 10 - 6.5


# --- the config's gateway names against the recorded expositions ------------------------------------

GATEWAYS = ROOT / "tests" / "data" / "gateways"
RECORDED = {"litellm": GATEWAYS / "litellm" / "litellm-1.110.2.prom",
            "sglang": GATEWAYS / "sglang" / "sglang-0.5.23-custom-labels-text-0.0.4.txt"}


@pytest.mark.parametrize("gateway", sorted(RECORDED))
def test_every_counter_and_label_the_config_reads_is_in_the_gateways_real_exposition(gateway):
    from prometheus_client.parser import text_string_to_metric_families

    config = BASE["gateways"][gateway]
    samples = {}
    for family in text_string_to_metric_families(RECORDED[gateway].read_text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    for key in ("input", "output", "cached_input"):
        name = config[key]
        assert name in samples, f"{gateway}: {key} {name} not in {RECORDED[gateway].name}"
        for labels in samples[name]:
            assert config["team_label"] in labels and config["model_label"] in labels, (name, labels)
    teams = {labels[config["team_label"]] for labels in samples[config["input"]]}
    no_team = set(config["no_team_values"]) | {""}
    assert teams - no_team and teams & no_team, teams  # named teams, and the gateway's value for "no team"


def test_series_stay_within_top_teams_plus_two_per_model_with_many_teams(tmp_path):
    """40 teams on 3 models through LiteLLM, 10 kept: (10 + 2) x 3 spend series (the kept teams,
    `other`, `unattributed`), (10 + 1) x 2 API-equivalent series, 2 x 3 prices; promtool evaluates it."""
    from test_rules import promtool_test

    models = ["m-a", "m-b", "m-c"]
    series = []
    for i, model in enumerate(models):
        exporter = f'job="llmcost",instance="a:9848",engine="e{i}",model="{model}"'
        series += [{"series": f'llmcost_model_spend_total{{{exporter},phase="{p}",currency="USD"}}', "values": "0+1x10"}
                   for p in ("prefill", "decode")]
        series += [{"series": f'llmcost_tokens_total{{{exporter},direction="{d}"}}', "values": "0+60000x10"}
                   for d in ("input", "output")]
        for team in range(40):
            gateway = f'job="litellm",model="{model}",team_alias="team-{team:02d}"'
            series += [{"series": f"{name}{{{gateway}}}", "values": f"0+{(team + 1) * 10}x10"}
                       for name in ("litellm_input_tokens_metric_total", "litellm_output_tokens_metric_total")]
    for api in ("gpt-4o-mini", "gpt-4o"):
        series += [{"series": f'llmcost_api_price_per_million_tokens{{job="llmcost",instance="a:9848",api="{api}",'
                              f'direction="{d}",currency="USD"}}', "values": "1x10"} for d in ("input", "output")]
    counts = {"count(model:llmcost_price_per_token:ratio_rate5m)": 2 * 3,
              "count(team_model:llmcost_chargeback_spend:rate5m)": (10 + 2) * 3,
              'count(team_model:llmcost_chargeback_spend:rate5m{team="other"})': 3,
              "count(team_api:llmcost_chargeback_api_equivalent_spend:rate5m)": (10 + 1) * 2,
              'count(team_model:llmcost_chargeback_spend:rate5m{team="team-39"})': 3}  # the biggest team is kept
    case = {"rule_files": [str(ROOT / "rules" / "llm-cost-exporter.rules.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "promql_expr_test": [{"expr": expr, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": n}]}
                                            for expr, n in counts.items()]}]}
    promtool_test(tmp_path / "cardinality_test.yml", case)
