"""The Prometheus rules in rules/: promtool checks them and runs their unit tests (Prometheus 2.42),
the committed rule file is what rules/generate.py makes of rules/config.yaml, every alert is complete
and has its runbook section, and --set overrides reach the output, down to a fast variant that a real
Prometheus scraping the demo every second can fire within seconds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
RULE_FILE = RULES / "llm-cost-exporter.rules.yml"
GENERATE = RULES / "generate.py"
RUNBOOK = ROOT / "docs" / "runbook.md"
TEST_FILES = sorted((RULES / "tests").glob("*.yml"))

# The overrides for an integration test against a Prometheus that scrapes every second (documented
# in docs/runbook.md, "Tuning thresholds"); tests/test_prometheus_integration.py uses them too.
FAST = [
    "windows=[30s]", "fast_interval=1s", "slow_interval=1s", "increase_window=30s", "series_budget_for=5s", "cost_alert_window=30s", "breakeven_alert_window=30s",
    "cost_alert_for=5s", "breakeven_alert_for=5s", "idle_alert_window=30s", "idle_alert_for=5s",
    "exporter_down_for=5s", "exporter_absent_for=5s", "engine_failing_for=5s",
    "nvml_errors_window=30s", "nvml_errors_for=5s", "gpu_lost_for=5s",
    "config_reload_failed_for=5s", "price_unknown_for=5s", "chargeback.window=30s",
]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not on PATH: the test command (scripts/test) installs Debian's prometheus "
                    "package (2.42); or run `apt-get install -y prometheus`")
    return path


def promtool_test(path: Path, case: dict) -> None:
    """`promtool test rules` of one test file written from `case`; fails the test with promtool's output."""
    path.write_text(yaml.safe_dump(case, sort_keys=False))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, cwd=ROOT)


def generated(tmp_path: Path, *overrides: str) -> tuple[Path, dict]:
    out = tmp_path / "rules.yml"
    args = [a for o in overrides for a in ("--set", o)]
    result = generate(*args, "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out, yaml.safe_load(out.read_text())


def rules_of(doc: dict, kind: str) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if kind in r]


def committed() -> dict:
    return yaml.safe_load(RULE_FILE.read_text())


def committed_every_second(directory: Path) -> tuple[Path, dict]:
    """The committed rule file with every group evaluated every second (not every 30 s, 1 m, 1 h), for a
    Prometheus that must have run every rule within seconds; the expressions are the committed ones."""
    rules = committed()
    for group in rules["groups"]:
        group["interval"] = "1s"
    path = directory / "committed-every-second.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path, rules


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean():
    result = subprocess.run([promtool(), "check", "rules", str(RULE_FILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(rules_of(committed(), "record")) + len(rules_of(committed(), "alert"))
    assert f"SUCCESS: {count} rules found" in result.stdout


@pytest.mark.slow  # promtool runs every unit test file
def test_promtool_unit_tests_pass():
    """`promtool test rules rules/tests/*.yml`, one file per process, side by side (the slowest is ~10 s)."""
    assert TEST_FILES, "no rule tests in rules/tests/"
    binary = promtool()

    def run(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "test", "rules", path.name], capture_output=True, text=True, cwd=path.parent)

    with ThreadPoolExecutor(len(TEST_FILES)) as pool:
        results = list(pool.map(run, TEST_FILES))
    failed = [f"{p.name}:\n{r.stdout}{r.stderr}" for p, r in zip(TEST_FILES, results) if r.returncode != 0]
    assert not failed, "\n".join(failed)


# --- generated file --------------------------------------------------------------------------------


def test_committed_rule_file_is_regenerated(tmp_path):
    out = tmp_path / "rules.yml"
    result = generate("--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == RULE_FILE.read_bytes(), (
        "rules/llm-cost-exporter.rules.yml differs from what rules/generate.py makes of rules/config.yaml: "
        "run `python rules/generate.py` and commit the result")


def test_output_is_deterministic(tmp_path):
    first, _ = generated(tmp_path / "a", "cost_alert_for=10s")
    second, _ = generated(tmp_path / "b", "cost_alert_for=10s")
    assert first.read_bytes() == second.read_bytes()


def test_one_recording_group_per_window_the_hourly_increases_and_one_alert_group():
    groups = {g["name"]: g for g in committed()["groups"]}
    assert list(groups) == ["llm-cost-exporter.recording.5m", "llm-cost-exporter.recording.1h",
                            "llm-cost-exporter.increase.1h", "llm-cost-exporter.recording.1d",
                            "llm-cost-exporter.alerts", "llm-cost-exporter.chargeback"]
    assert {name: g.get("interval") for name, g in groups.items()} == {
        "llm-cost-exporter.recording.5m": "30s", "llm-cost-exporter.recording.1h": "1m",
        "llm-cost-exporter.increase.1h": "1h", "llm-cost-exporter.recording.1d": "1m",
        "llm-cost-exporter.alerts": "30s", "llm-cost-exporter.chargeback": "30s"}
    for name, group in groups.items():
        if name.endswith((".alerts", ".chargeback")):
            continue
        window = name.rsplit(".", 1)[1]
        for rule in group["rules"]:
            assert re.fullmatch(r"[a-z_]+:llmcost_[a-z_]+:[a-z_]+" + window, rule["record"]), rule["record"]


def test_no_rule_reads_a_day_of_raw_samples():
    """The 1d group reads the recorded hourly increases; raw counters are read over 1h at most, and
    the cluster-wide levels of the windows only from recorded series (a `llmcost_...{` selector is a
    raw one)."""
    for group in committed()["groups"]:
        for rule in group["rules"]:
            windows = re.findall(r"\b(llmcost_[a-z_]+)\{[^}]*\}\[(\w+)\]", rule["expr"])
            assert all(w in ("5m", "1h", "10m") for _, w in windows), (rule.get("record") or rule["alert"], windows)
            # The hourly increases read raw counters at every level (rules/generate.py: increase_rules).
            # The chargeback group prices gateway tokens, which are cluster-wide by nature, at the
            # models' live price: it reads the exporters' counters once per model (docs/chargeback.md).
            if rule.get("record", "").split(":")[0] in ("model", "model_api", "api", "cluster") \
                    and not group["name"].endswith((".increase.1h", ".chargeback")):
                assert not windows and "llmcost_" not in rule["expr"].split(":")[0], rule["record"]
    derived = next(g for g in committed()["groups"] if g["name"].endswith("recording.1d"))
    reads = [r for r in derived["rules"] if "_over_time(" in r["expr"]]
    assert reads and all(re.search(r":(increase|max)1h\{[^}]*\}\[1d\]", r["expr"]) for r in reads), reads


def test_every_series_keeps_fewer_than_20_labels(tmp_path):
    """Records and ALERTS series, with the most cluster labels the config allows; one more is refused."""
    from rules.generate import API_LABELS, MAX_LABELS, widest_series
    most = [f"c{i}" for i in range(MAX_LABELS - 1 - widest_series([], {}))]
    _, doc = generated(tmp_path, f"cluster_labels=[{', '.join(most)}]")
    groupings = [labels for rule in rules_of(doc, "record") for labels in re.findall(r"by \(([^)]*)\)", rule["expr"])]
    widest = max(len(labels.split(", ")) for labels in groupings)
    assert widest == len(most) + 5 + len(API_LABELS)  # engine_model_api + currency: job, instance, engine, model, api, tier, currency
    assert widest + 1 < MAX_LABELS and widest_series(most, {}) < MAX_LABELS  # + __name__; ALERTS' own labels
    result = generate("--set", f"cluster_labels=[{', '.join(most + ['one_more'])}]", "--output", str(tmp_path / "x.yml"))
    assert result.returncode == 2 and "cluster_labels" in result.stderr and result.stderr.count("\n") == 1, result.stderr


# --- alerts ------------------------------------------------------------------------------------------


def test_every_alert_has_severity_summary_description_and_runbook():
    runbook_headings = set(re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), flags=re.M))
    alerts = rules_of(committed(), "alert")
    assert {a["alert"] for a in alerts} == {
        "LLMCostSelfHostingDearerThanAPI", "LLMCostUtilizationBelowBreakEven", "LLMCostGPUsIdle",
        "LLMCostExporterDown", "LLMCostExporterAbsent", "LLMCostEngineScrapeFailing", "LLMCostNVMLErrors",
        "LLMCostGPULost", "LLMCostConfigReloadFailed", "LLMCostPriceUnknown", "LLMCostSeriesBudgetExceeded"}
    for a in alerts:
        name = a["alert"]
        assert a["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = a["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        if not a["expr"].startswith("absent("):  # absent() has no series, hence no value, to show
            assert "{{" in notes["description"], f"{name}: the description carries no value"
        assert notes["runbook_url"] == ("https://github.com/llm-cost-exporter/llm-cost-exporter/blob/main/"
                                        f"docs/runbook.md#{name.lower()}"), name
        assert name in runbook_headings, f"docs/runbook.md has no '## {name}' section"
        assert a.get("for"), f"{name} has no for:"


def test_every_alert_has_positive_and_negative_unit_tests():
    cases: dict[str, set[str]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "positive" if case.get("exp_alerts") else "negative"
                cases.setdefault(case["alertname"], set()).add(kind)
    for a in rules_of(committed(), "alert"):
        assert cases.get(a["alert"]) == {"positive", "negative"}, f"{a['alert']}: {cases.get(a['alert'])}"


def test_every_recording_rule_has_an_expression_test():
    tested = {case["expr"].strip() for path in TEST_FILES
              for test in yaml.safe_load(path.read_text())["tests"] for case in test.get("promql_expr_test", [])}
    records = [r["record"] for r in rules_of(committed(), "record")]
    five_minutes = [r for r in records if r.endswith("5m")]
    assert set(five_minutes) <= tested, sorted(set(five_minutes) - tested)
    for window in ("1h", "1d"):
        assert any(r in tested for r in records if r.endswith(window)), f"no test of the {window} group"


def test_rules_readme_lists_every_recording_rule():
    readme = (RULES / "README.md").read_text()
    missing = [r["record"] for r in committed()["groups"][0]["rules"] if f"`{r['record']}`" not in readme]
    assert not missing, f"rules/README.md does not list {missing}"


# --- overrides ------------------------------------------------------------------------------------


def test_set_overrides_change_the_output(tmp_path):
    _, doc = generated(tmp_path, "cost_alert_for=10s", "cost_alert_ratio=1.2", "cost_alert_min_tokens_per_second=5",
                       "alert_labels={team: ml-platform}", "disabled_alerts=[LLMCostGPULost]")
    alerts = {a["alert"]: a for a in rules_of(doc, "alert")}
    dearer = alerts["LLMCostSelfHostingDearerThanAPI"]
    assert dearer["for"] == "10s"
    assert "1.2 * engine_model_api:llmcost_api_price_per_million_tokens:ratio_rate1h" in dearer["expr"]
    assert "engine_model:llmcost_tokens:rate1h > 5)" in dearer["expr"]
    assert all(a["labels"]["team"] == "ml-platform" for a in alerts.values())
    assert "LLMCostGPULost" not in alerts
    assert [g for g in committed()["groups"] if g["name"].endswith(".alerts")][0]["rules"][0]["for"] == "30m"


def test_cluster_labels_and_selector_reach_every_level(tmp_path):
    path, doc = generated(tmp_path, "cluster_labels=[cluster]", 'selector=job="llmcost"')
    exprs = {r["record"]: r["expr"] for r in rules_of(doc, "record")}
    assert exprs["model:llmcost_tokens:rate5m"] == "sum by (cluster, model) (engine_model:llmcost_tokens:rate5m)"
    assert 'rate(llmcost_tokens_total{job="llmcost"}[5m])' in exprs["engine_model:llmcost_tokens:rate5m"]
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_labels_keep_two_clusters_apart_at_every_level(tmp_path):
    """Two clusters whose nodes have the same job, instance and engine (remote-write into one Mimir or
    Thanos): every level keeps `cluster`, so the cluster-wide figures and the alerts stay per cluster."""
    path, doc = generated(tmp_path, "cluster_labels=[cluster]", "idle_alert_for=5m")
    for rule in rules_of(doc, "record") + rules_of(doc, "alert"):
        for labels in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            assert labels.startswith("cluster,") or labels == "cluster", (rule.get("record") or rule["alert"], labels)
    node = 'job="llmcost",instance="gpu-1:9848",engine="vllm"'
    case = {
        "rule_files": [str(path)],
        "evaluation_interval": "1m",
        "group_eval_order": [g["name"] for g in doc["groups"]],
        "tests": [{
            "interval": "1m",
            "input_series": [  # cluster a serves 1 token/s, cluster b none; both spend 1 USD/s
                {"series": f'llmcost_tokens_total{{cluster="a",{node},model="llama",direction="output"}}', "values": "0+60x30"},
                {"series": f'llmcost_tokens_total{{cluster="b",{node},model="llama",direction="output"}}', "values": "0+0x30"},
                {"series": f'llmcost_engine_spend_total{{cluster="a",{node},currency="USD"}}', "values": "0+60x30"},
                {"series": f'llmcost_engine_spend_total{{cluster="b",{node},currency="USD"}}', "values": "0+60x30"},
            ],
            "promql_expr_test": [
                {"expr": "cluster:llmcost_tokens:rate5m", "eval_time": "20m", "exp_samples": [
                    {"labels": 'cluster:llmcost_tokens:rate5m{cluster="a"}', "value": 1},
                    {"labels": 'cluster:llmcost_tokens:rate5m{cluster="b"}', "value": 0}]},
                {"expr": "model:llmcost_cost_per_million_tokens:ratio_rate5m", "eval_time": "20m", "exp_samples": [
                    {"labels": 'model:llmcost_cost_per_million_tokens:ratio_rate5m{cluster="a",model="llama",currency="USD"}',
                     "value": 1e6}]},
            ],
            "alert_rule_test": [{"eval_time": "20m", "alertname": "LLMCostGPUsIdle", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "cluster": "b", "job": "llmcost", "instance": "gpu-1:9848",
                               "engine": "vllm", "currency": "USD"},
                "exp_annotations": {
                    "summary": "GPUs of engine vllm are paid for but serve no tokens",
                    "description": "Engine vllm on gpu-1:9848 (job llmcost) has served no tokens for more than 5m "
                                   "while its GPUs cost 3600.00 USD per hour (allocation basis).",
                    "runbook_url": "https://github.com/llm-cost-exporter/llm-cost-exporter/blob/main/docs/"
                                   "runbook.md#llmcostgpusidle"},
            }]}],
        }],
    }
    promtool_test(tmp_path / "clusters_test.yml", case)


@pytest.mark.parametrize("override, message", [
    ("cost_alert_for=5x", "--set: cost_alert_for: got '5x', allowed: a PromQL duration (whole numbers"),
    ("cost_alert_window=2h", "--set: cost_alert_window: got '2h', allowed: one of windows (5m, 1h, 1d)"),
    ("no_such_key=1", "--set: no_such_key: unknown key, allowed keys: selector, cluster_labels,"),
    ("cost_alert_ratio=0", "--set: cost_alert_ratio: got 0, allowed: a number > 0"),
    ("cost_alert_min_tokens_per_second=-1", "cost_alert_min_tokens_per_second: got -1, allowed: a number >= 0"),
    ("cluster_labels=[instance]", "--set: cluster_labels[0]: got 'instance', allowed: a label name other than job,"),
    ("disabled_alerts=[NoSuchAlert]", "disabled_alerts[0]: got 'NoSuchAlert', allowed: LLMCostSelfHostingDearerThanAPI,"),
    ("windows=[]", "windows: got [], allowed: a non-empty list of PromQL durations"),
    ("windows=[5m,0s]", "windows[1]: got '0s', allowed: a PromQL duration > 0"),
    ("idle_alert_window=1.5m", "idle_alert_window: got '1.5m', allowed: a PromQL duration > 0"),
    ("selector='{job=\"x\"}'", "selector: got '{job=\"x\"}', allowed: PromQL label matchers without braces"),
    ("selector=job", "selector: got 'job', allowed: PromQL label matchers without braces"),
    ("cost_alert_apis=(", "cost_alert_apis: got '(', allowed: a regular expression"),
    ("alert_labels={severity: page}", "alert_labels.severity: got 'severity', allowed: a label name other than"),
    ("cost_alert_severity=", "cost_alert_severity: got '', allowed: a non-empty string"),
    ("justakey", "--set: got 'justakey', allowed: KEY=VALUE"),
    ("windows=[5m,1h,1d,90m]", "windows[3]: got '90m', allowed: a whole multiple of increase_window (1h)"),
    ("increase_window=0s", "increase_window: got '0s', allowed: a PromQL duration > 0"),
    ("fast_interval=soon", "fast_interval: got 'soon', allowed: a PromQL duration > 0"),
    ("series_budget=0", "series_budget: got 0, allowed: a number > 0"),
])
def test_bad_configuration_is_one_line_naming_the_key(override, message, tmp_path):
    result = generate("--set", override, "--output", str(tmp_path / "x.yml"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "x.yml").exists()


def test_config_file_overlay(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("gpu_lost_for: 1m\ngpu_lost_severity: warning\n")
    out = tmp_path / "rules.yml"
    result = generate("--config", str(site), "--output", str(out))
    assert result.returncode == 0, result.stderr
    lost = next(a for a in rules_of(yaml.safe_load(out.read_text()), "alert") if a["alert"] == "LLMCostGPULost")
    assert (lost["for"], lost["labels"]["severity"]) == ("1m", "warning")


@pytest.mark.parametrize("content, message", [
    ("gpu_lost_for: 1x\n", "{site}: gpu_lost_for: got '1x', allowed: a PromQL duration"),
    ("gpu_lost_for: 1m\ngpu_lost_for: 2m\n", "--config: not valid YAML: duplicate key 'gpu_lost_for'"),
    ("- gpu_lost_for\n", "--config: the top level must be a mapping"),
    ("no_such_key: 1\n", "{site}: no_such_key: unknown key, allowed keys:"),
    ("a: &a [1, 2]\nb: [*a, *a]\n" + "".join(f"k{i}: *a\n" for i in range(120)), "--config: not valid YAML: more than 100 aliases"),
])
def test_bad_config_file_is_one_line_naming_the_file_and_key(content, message, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(content)
    result = generate("--config", str(site), "--output", str(tmp_path / "x.yml"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message.format(site=site) in result.stderr, result.stderr


def test_config_must_be_a_regular_file(tmp_path):
    result = generate("--config", "/dev/zero", "--output", str(tmp_path / "x.yml"))
    assert result.returncode == 2
    assert "--config: cannot read '/dev/zero': not a regular file" in result.stderr, result.stderr


def test_config_errors_are_input_errors():
    sys.path.insert(0, str(ROOT))
    from exporter.validation import InputError
    from rules.generate import RulesConfigError, load_config

    with pytest.raises(RulesConfigError) as err:
        load_config(overrides=["cost_alert_ratio=-2"])
    assert isinstance(err.value, InputError) and err.value.key == "cost_alert_ratio"
    assert str(err.value) == "--set: cost_alert_ratio: got -2, allowed: a number > 0"


# --- fast variant for an integration test --------------------------------------------------------------


def test_fast_variant_has_short_windows_and_fors(tmp_path):
    path, doc = generated(tmp_path, *FAST)
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [g["name"] for g in doc["groups"]] == ["llm-cost-exporter.recording.30s", "llm-cost-exporter.increase.30s",
                                                  "llm-cost-exporter.alerts", "llm-cost-exporter.chargeback"]
    assert {a["for"] for a in rules_of(doc, "alert")} == {"5s"}
    ranges = set(re.findall(r"\[(\w+)\]", path.read_text()))
    assert ranges <= {"30s", "5s"}, ranges


def test_fast_variant_fires_within_seconds_at_a_one_second_scrape(tmp_path):
    """Self-hosting dearer than the API from the first second: the alert is pending at 4 s, firing at 10 s."""
    path, _ = generated(tmp_path, *FAST)
    labels = 'job="llmcost",instance="127.0.0.1:9848",engine="vllm"'
    case = {
        "rule_files": [str(path)],
        "evaluation_interval": "1s",
        # recording before alerts, as Prometheus would at steady state; promtool's own order is not fixed
        "group_eval_order": ["llm-cost-exporter.recording.30s", "llm-cost-exporter.alerts"],
        "tests": [{
            "interval": "1s",
            "input_series": [
                # 512 tokens/s at 2^-9 USD/s: 3.815 USD per 1M; mini would bill 2^-13 USD/s: 0.2384 per 1M
                {"series": f'llmcost_tokens_total{{{labels},model="llama",direction="input"}}', "values": "0+384x70"},
                {"series": f'llmcost_tokens_total{{{labels},model="llama",direction="output"}}', "values": "0+128x70"},
                {"series": f'llmcost_engine_spend_total{{{labels},currency="USD"}}', "values": "0+0.001953125x70"},
                {"series": f'llmcost_api_equivalent_spend_total{{{labels},model="llama",api="mini",tier="standard",currency="USD"}}',
                 "values": "0+0.0001220703125x70"},
            ],
            "alert_rule_test": [
                {"eval_time": "4s", "alertname": "LLMCostSelfHostingDearerThanAPI", "exp_alerts": []},
                {"eval_time": "10s", "alertname": "LLMCostSelfHostingDearerThanAPI", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "llmcost", "instance": "127.0.0.1:9848",
                                   "engine": "vllm", "model": "llama", "api": "mini", "tier": "standard",
                                   "currency": "USD"},
                    "exp_annotations": {
                        "summary": "Self-hosting llama costs more per 1M tokens than mini (standard tier)",
                        # 10 s of data in a 30s window: rates are a third of the full-window ones, ratios are not
                        "description": "llama on engine vllm on 127.0.0.1:9848 (job llmcost) cost 3.815 USD per 1M "
                                       "tokens over the last 30s (allocation basis: idle time included), while mini "
                                       "(standard tier) would have charged 0.2384 USD per 1M for the same traffic (170.7 tokens/s).",
                        "runbook_url": "https://github.com/llm-cost-exporter/llm-cost-exporter/blob/main/docs/"
                                       "runbook.md#llmcostselfhostingdearerthanapi"},
                }]},
            ],
        }],
    }
    promtool_test(tmp_path / "fast_test.yml", case)


def test_the_rule_file_records_every_hourly_series_report_reads():
    """`report --source=recorded` reads these names (exporter/report.py RECORDED): each must be a
    record of the committed file's hourly group, evaluated once per hour as the report assumes."""
    import dataclasses

    from exporter.report import RECORDED, RECORDED_PROBE

    hourly = next(g for g in committed()["groups"] if g["name"].endswith(".increase.1h"))
    assert hourly["interval"] == "1h"
    recorded = {r["record"] for r in hourly["rules"]}
    read = {name for value in [*dataclasses.astuple(RECORDED), RECORDED_PROBE]
            for name in re.findall(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", value)}
    assert len(read) >= 7 and read <= recorded, read - recorded
