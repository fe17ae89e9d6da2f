"""The Grafana dashboards: committed JSON equals what the grafanalib sources generate, and every
panel is a React panel with a description, a unit and queries on the `datasource` variable. The
rules' config (rules/config.yaml and its overlays) drives them: its job selector is in every query,
its cluster labels add a `$cluster` variable and keep the cluster in every aggregation.

Every query is parsed by promtool here (Prometheus 2.42); running them against a Prometheus fed by
the demo is the integration test's job (see dashboards.generate.panel_queries and substitute).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `dashboards` sits beside the installed `exporter` package

from dashboards import generate  # noqa: E402
from dashboards.generate import ALL, panel_queries, panels, substitute  # noqa: E402
from rules import generate as rules_generate  # noqa: E402

UIDS = {"llmcost-overview", "llmcost-utilization-energy", "llmcost-chargeback"}
CHARGEBACK = "llmcost-chargeback"  # reads the chargeback recording rules only (team labels exist nowhere else)


def raw_queries(config=None):
    """The queries of the dashboards that read the exporter's own series (all but the chargeback one)."""
    return [query for query in panel_queries(config) if query[0] != CHARGEBACK]
REACT_PANELS = {"timeseries", "stat", "gauge", "bargauge", "table"}
UNITS = {"currencyUSD", "watt", "joule", "percentunit", "short", "reqps", "suffix: tok/s", "suffix:×"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR = 'job=~".*llm-?cost.*"'  # rules/config.yaml
VARIABLES = {
    "node": f"label_values(llmcost_build_info{{{SELECTOR}}}, instance)",
    "engine_kind": f'label_values(llmcost_engine_info{{{SELECTOR},instance=~"$node"}}, engine_kind)',
    "model": f'label_values(llmcost_tokens_total{{{SELECTOR},instance=~"$node"}}, model)',
    "api": f"label_values(llmcost_api_price_per_million_tokens{{{SELECTOR}}}, api)",
}
# A site with another job name and several clusters, as an overlay of rules/config.yaml.
SITE = 'selector: job="gpu-cost"\ncluster_labels: [cluster]\n'
SITE_SELECTOR = 'job="gpu-cost",cluster=~"$cluster"'
METRIC_SELECTOR = re.compile(r"\b((?:[a-z_]+:)?llmcost_\w+(?::[a-z_0-9]+)?)(\{[^}]*\})?")  # raw or recorded
GROUPINGS = re.compile(r"\b(?:by|on) \(([^)]*)\)")


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return {b["uid"]: b for b in generate.dashboards_json()}


def all_panels(boards):
    return [(uid, panel) for uid, board in sorted(boards.items()) for panel in panels(board)]


def test_committed_json_is_what_the_sources_generate():
    wanted = generate.generated()
    committed = sorted(p.name for p in generate.JSON_DIR.glob("*.json"))
    assert committed == sorted(wanted), "run: python -m dashboards.generate"
    for name, text in wanted.items():
        assert (generate.JSON_DIR / name).read_bytes() == text.encode("utf-8"), \
            f"dashboards/json/{name} is stale: run python -m dashboards.generate"
    assert generate.main(["--check"]) == 0


def test_generation_is_deterministic():
    assert generate.generated() == generate.generated()


def test_check_mode_fails_on_a_stale_missing_or_orphan_file(tmp_path, capsys):
    generate.write(tmp_path)
    assert generate.main(["--check", f"--output-dir={tmp_path}"]) == 0
    stale = tmp_path / "llmcost-overview.json"
    stale.write_text(stale.read_text().replace("Self-hosted", "Self hosted"))
    assert generate.main(["--check", f"--output-dir={tmp_path}"]) == 1
    assert "llmcost-overview.json: differs" in capsys.readouterr().err
    stale.unlink()
    (tmp_path / "old.json").write_text("{}")
    assert generate.main(["--check", f"--output-dir={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "llmcost-overview.json: missing" in err and "old.json: no source generates it" in err
    generate.write(tmp_path)  # rewrites and removes the orphan
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{uid}.json" for uid in UIDS)


def test_uids_are_stable(boards):
    assert set(boards) == UIDS
    assert sorted(p.stem for p in generate.JSON_DIR.glob("*.json")) == sorted(UIDS)


def test_grafana_dashboard_model(boards):
    for uid, board in boards.items():
        assert board["schemaVersion"] >= 33, uid  # datasource references as objects
        assert board["title"] and board["description"], uid
        assert isinstance(board["templating"]["list"], list), uid
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), uid
        cells = set()
        for panel in panels(board):
            g = panel["gridPos"]
            assert set(g) == {"h", "w", "x", "y"} and g["h"] > 0 and g["w"] > 0, (uid, panel["title"])
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (uid, panel["title"])
            covered = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not covered & cells, f"{uid}: {panel['title']!r} overlaps another panel"
            cells |= covered


def test_template_variables(boards):
    for uid, board in boards.items():
        if uid == CHARGEBACK:
            continue  # its own model variable: test_chargeback_dashboard_reads_only_the_chargeback_rules
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert board["templating"]["list"][0]["name"] == "datasource", uid
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus", uid
        for name in ("node", "engine_kind", "model"):
            assert variables[name]["query"] == VARIABLES[name], (uid, name)
        used = {name for _, _, expr in panel_queries() for name in re.findall(r"\$(\w+)", expr)}
        for name, var in variables.items():
            if name == "datasource":
                continue
            assert var["type"] == "query" and var["datasource"] == DATASOURCE, (uid, name)
            assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", (uid, name)
            assert var["query"] == VARIABLES[name], (uid, name)
            assert name in used, f"{uid}: variable ${name} is used by no query"
    overview = [v["name"] for v in boards["llmcost-overview"]["templating"]["list"]]
    assert overview == ["datasource", "node", "engine_kind", "model", "api"]
    utilization = [v["name"] for v in boards["llmcost-utilization-energy"]["templating"]["list"]]
    assert utilization == ["datasource", "node", "engine_kind", "model"]  # no panel there compares with an API


def test_every_variable_a_query_uses_is_defined(boards):
    for uid, board in boards.items():
        defined = {v["name"] for v in board["templating"]["list"]}
        for panel in panels(board):
            for target in panel["targets"]:
                for name in re.findall(r"\$\{?(\w+)", target["expr"]):
                    assert name.startswith("__") or name in defined, (uid, panel["title"], name)


def test_only_react_panels_each_described_with_a_unit(boards):
    for uid, panel in all_panels(boards):
        where = f"{uid}: {panel['title']!r}"
        assert panel["type"] in REACT_PANELS, where
        assert panel["title"].strip(), where
        assert len(panel["description"].split()) >= 10, f"{where}: the description says too little"
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in UNITS, f"{where}: unit {unit!r}"
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in UNITS, where


def test_money_energy_and_power_panels_use_their_units(boards):
    by_title = {(uid, p["title"]): p["fieldConfig"]["defaults"]["unit"] for uid, p in all_panels(boards)}
    assert by_title["llmcost-overview", "Self-hosted $/1M tokens"] == "currencyUSD"
    assert by_title["llmcost-overview", "Projected monthly cost"] == "currencyUSD"
    assert by_title["llmcost-overview", "Utilization now"] == "percentunit"
    assert by_title["llmcost-utilization-energy", "Power per GPU vs limit"] == "watt"
    assert by_title["llmcost-utilization-energy", "GPU energy"] == "joule"
    assert by_title["llmcost-utilization-energy", "Energy per token"] == "joule"
    # who pays for the GPUs (issue 14)
    assert by_title["llmcost-overview", "GPU share per engine"] == "percentunit"
    assert by_title["llmcost-overview", "GPU spend in range: engines vs unallocated"] == "currencyUSD"
    assert by_title["llmcost-overview", "GPU spend per hour: engines vs unallocated (stacked)"] == "currencyUSD"
    assert by_title["llmcost-overview", "$/1M tokens: input vs output per model"] == "currencyUSD"
    assert by_title["llmcost-overview", "Prefix cache savings in range"] == "currencyUSD"
    assert by_title["llmcost-overview", "GPU utilization per engine"] == "percentunit"
    assert by_title["llmcost-overview", "Model spend in range: prefill vs decode"] == "currencyUSD"


def test_who_pays_for_the_gpus_panels(boards):
    """Issue 14's families are on the overview: engines' and unallocated spend stacked, each engine's
    share with its method beside the node's unallocated share, $/1M by direction with its split method."""
    found = {p["title"]: p for p in panels(boards["llmcost-overview"])}
    stacked = found["GPU spend per hour: engines vs unallocated (stacked)"]
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"] == {"group": "A", "mode": "normal"}
    assert [("llmcost_engine_spend_total" in t["expr"], "llmcost_unallocated_spend_total" in t["expr"])
            for t in stacked["targets"]] == [(True, False), (False, True)]
    share = [t["expr"] for t in found["GPU share per engine"]["targets"]]
    assert all("by (instance, engine, engine_kind, method)" in e for e in share)
    assert "llmcost_unallocated_gpu_share_ratio" in share[1]
    direction = [t["expr"] for t in found["$/1M tokens: input vs output per model"]["targets"]]
    assert ['direction="input"' in direction[0], 'direction="output"' in direction[1]] == [True, True]
    assert all("model, method)" in e for e in direction)
    assert "by (instance, engine, engine_kind, model, phase)" in \
        found["Model spend in range: prefill vs decode"]["targets"][0]["expr"]
    assert "llmcost_cache_savings_total" in found["Prefix cache savings in range"]["targets"][0]["expr"]
    assert "llmcost_engine_gpu_utilization_ratio" in found["GPU utilization per engine"]["targets"][0]["expr"]
    # the other timeseries are not stacked
    assert all(p["fieldConfig"]["defaults"]["custom"]["stacking"] == {} for p in found.values()
               if p["type"] == "timeseries" and p is not stacked)


def test_every_panel_and_query_uses_the_datasource_variable(boards):
    for uid, panel in all_panels(boards):
        assert panel["datasource"] == DATASOURCE, (uid, panel["title"])
        assert panel["targets"], (uid, panel["title"])
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (uid, panel["title"])
            assert target["expr"].strip() and target["refId"], (uid, panel["title"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), (uid, panel["title"])


def test_every_selector_filters_by_job_node_and_by_model_and_api_where_they_exist():
    for uid, title, expr in raw_queries():
        for metric, matchers in METRIC_SELECTOR.findall(expr):
            assert matchers.startswith("{" + SELECTOR + ","), f"{uid}: {title!r}: {metric} lacks the job selector"
            assert 'instance=~"$node"' in matchers, f"{uid}: {title!r}: {metric} is not filtered by $node"
            if metric.startswith("llmcost_api_"):
                assert 'api=~"$api"' in matchers, f"{uid}: {title!r}: {metric} is not filtered by $api"
        if "llmcost_tokens_total" in expr or "llmcost_engine_" in expr or "llmcost_utilization" in expr:
            assert 'model=~"$model"' in expr, f"{uid}: {title!r} ignores $model"


def test_every_engine_and_model_query_is_filtered_by_engine_kind():
    """Per-engine and per-model series (all those the model filter applies to) are joined to
    llmcost_engine_info of the selected kinds on the node and the engine; only node-wide figures
    (GPUs, node spend, hourly cost, list prices) are not."""
    join = re.compile(r'\* on \(instance, engine\) group_left \(engine_kind\) '
                      r'llmcost_engine_info\{[^}]*engine_kind=~"\$engine_kind"\}')
    node_wide = 0
    for uid, title, expr in raw_queries():
        if 'model=~"$model"' in expr:
            assert join.search(expr), f"{uid}: {title!r} ignores $engine_kind"
        else:
            assert "$engine_kind" not in expr, (uid, title)
            assert not re.search(r"llmcost_(engine_|tokens|utilization|cost_per|requests|kv_|api_(equivalent|blended))",
                                 expr), f"{uid}: {title!r}: an engine's series without the engine kind filter"
            node_wide += 1
    assert node_wide < len(raw_queries()) / 3


def test_only_the_per_day_panels_read_recording_rules_and_only_the_hourly_increases(boards):
    """Recording rules are optional for every other panel: it must work against a Prometheus that only
    scrapes. The per-day panels read the hourly increases the rule file records, at a step of an hour
    at least, instead of a day of raw samples at every step (docs/scaling.md)."""
    rules = yaml.safe_load((ROOT / "rules" / "llm-cost-exporter.rules.yml").read_text())
    hourly = {r["record"] for g in rules["groups"] if g["name"].endswith(".increase.1h") for r in g["rules"]}
    readers = set()
    for uid, title, expr in raw_queries():  # the chargeback board reads its own rules (test_chargeback.py)
        names = set(re.findall(r"\b([a-z_]+:[a-z_]+:[a-z_0-9]+)\b", expr))
        assert names <= hourly, f"{uid}: {title!r} uses {names - hourly}"
        assert "[1d]" not in expr or names, f"{uid}: {title!r} reads a day of raw samples"
        readers |= {title} if names else set()
    assert readers == {"Spend per day: self-hosted vs API-equivalent", "Savings per day vs each API"}
    steps = {p["title"]: p.get("interval") for _, p in all_panels(boards) if p["title"] in readers}
    assert steps == dict.fromkeys(readers, "1h")


def test_table_columns_are_renamed_and_typed(boards):
    for uid, panel in all_panels(boards):
        if panel["type"] != "table":
            continue
        names = panel["transformations"][1]["options"]["renameByName"]
        assert sorted(names) == sorted(f"Value #{t['refId']}" for t in panel["targets"]), panel["title"]
        typed = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
        assert typed == set(names.values()), panel["title"]
        assert all(t["format"] == "table" and t["instant"] for t in panel["targets"]), panel["title"]


def test_panel_queries_lists_every_target(boards):
    queries = panel_queries()
    assert len(queries) == sum(len(p["targets"]) for _, p in all_panels(boards))
    assert {uid for uid, _, _ in queries} == UIDS
    assert ("llmcost-overview", "Projected monthly cost",
            f'sum(llmcost_hourly_cost{{{SELECTOR},instance=~"$node"}}) * 730') in queries


def test_substitute():
    expr = 'sum(rate(x{instance=~"$node", model=~"${model}", api=~"${api:regex}"}[$__rate_interval])) [$__range] $__interval'
    assert substitute(expr, {"node": ".*", "$model": "m", "api": "a", "__range": "2h"}) == \
        'sum(rate(x{instance=~".*", model=~"m", api=~"a"}[1m])) [2h] 1m'
    assert substitute('m{model=~"$model"}', {"model": ["meta-llama/Llama-3.1-8B", "qwen"]}) == \
        'm{model=~"(meta\\\\-llama/Llama\\\\-3\\\\.1\\\\-8B|qwen)"}'
    assert substitute("[[node]] $__rate_interval", {"node": "n", "__rate_interval": "5s"}) == "n 5s"
    with pytest.raises(KeyError):
        substitute('x{a=~"$unknown"}', {})
    for _, _, expr in panel_queries():
        assert "$" not in substitute(expr, ALL)


@pytest.mark.parametrize("overrides", [[], ['selector=job="gpu-cost"', "cluster_labels=[cluster, region]"]],
                         ids=["default", "site"])
def test_every_query_parses_on_prometheus_2_42(tmp_path, overrides):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not on PATH: the test command installs Debian's prometheus package (2.42)")
    config = rules_generate.load_config(overrides=overrides)
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(expr, ALL)}
             for i, (_, _, expr) in enumerate(panel_queries(config))]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_json_is_valid_utf8_json():
    for path in generate.JSON_DIR.glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] == path.stem


# --- one config for the rules and the dashboards ------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, dict]:
    """The dashboards for an overlay with another job selector and a cluster label."""
    path = tmp_path_factory.mktemp("site") / "site.yaml"
    path.write_text(SITE)
    return {b["uid"]: b for b in generate.dashboards_json(rules_generate.load_config(path))}


def site_queries(boards) -> list[tuple[str, str, str]]:
    return [(uid, p["title"], t["expr"]) for uid, p in all_panels(boards) for t in p["targets"]]


def test_dashboards_read_the_rules_config_through_its_loader():
    assert generate.load_config is rules_generate.load_config


def test_an_overlay_puts_its_selector_and_cluster_in_every_query(site):
    queries = site_queries(site)
    assert len(queries) == len(panel_queries())
    for uid, title, expr in queries:
        if uid == CHARGEBACK:
            continue  # test_chargeback_dashboard_reads_only_the_chargeback_rules
        selectors = METRIC_SELECTOR.findall(expr)
        assert selectors, (uid, title)
        for metric, matchers in selectors:
            assert matchers.startswith("{" + SITE_SELECTOR + ","), f"{uid}: {title!r}: {metric}{matchers}"
        assert 'job="gpu-cost"' in expr and 'cluster=~"$cluster"' in expr, (uid, title)
        assert "llm-?cost" not in expr, (uid, title)
        # every aggregation and vector match keeps the cluster, as every level of the rules does
        for labels in GROUPINGS.findall(expr):
            assert labels.split(", ")[0] == "cluster", f"{uid}: {title!r}: by/on ({labels})"
        assert not re.search(r"\b(sum|max|avg)\(", expr), f"{uid}: {title!r}: an aggregation drops the cluster"


def test_an_overlay_with_cluster_labels_adds_the_cluster_variable(site):
    for uid, board in site.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert [v["name"] for v in board["templating"]["list"]][:2] == ["datasource", "cluster"], uid
        cluster = variables["cluster"]
        assert cluster["query"] == 'label_values(llmcost_build_info{job="gpu-cost"}, cluster)', uid
        assert cluster["type"] == "query" and cluster["datasource"] == DATASOURCE, uid
        assert cluster["multi"] and cluster["includeAll"] and cluster["allValue"] == ".*", uid
        if uid == CHARGEBACK:
            assert variables["model"]["query"] == \
                'label_values(team_model:llmcost_chargeback_spend:rate5m{cluster=~"$cluster"}, model)'
            continue
        assert variables["node"]["query"] == f"label_values(llmcost_build_info{{{SITE_SELECTOR}}}, instance)", uid
        assert variables["model"]["query"] == \
            f'label_values(llmcost_tokens_total{{{SITE_SELECTOR},instance=~"$node"}}, model)', uid
        assert variables["engine_kind"]["query"] == \
            f'label_values(llmcost_engine_info{{{SITE_SELECTOR},instance=~"$node"}}, engine_kind)', uid
        for panel in panels(board):  # series of two clusters are told apart
            for target in panel["targets"]:
                assert not target["legendFormat"] or target["legendFormat"].endswith(" ({{cluster}})"), panel["title"]


def test_the_default_config_has_no_cluster_variable_nor_matcher(boards):
    for uid, board in boards.items():
        assert "cluster" not in {v["name"] for v in board["templating"]["list"]}, uid
    for uid, title, expr in panel_queries():
        assert "cluster" not in expr, (uid, title)


def test_generate_takes_the_rules_config_options(tmp_path, capsys):
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    out = tmp_path / "out"
    assert generate.main([f"--config={site}", "--set", "cluster_labels=[dc]", f"--output-dir={out}"]) == 0
    board = json.loads((out / "llmcost-overview.json").read_text())
    assert {v["name"] for v in board["templating"]["list"]} >= {"cluster", "node"}
    expr = board["panels"][0]["targets"][0]["expr"]
    assert 'job="gpu-cost",dc=~"$cluster"' in expr and "sum by (dc)" in expr
    assert generate.main(["--check", f"--output-dir={out}", f"--config={site}", "--set", "cluster_labels=[dc]"]) == 0
    assert generate.main(["--check", f"--output-dir={out}"]) == 1  # the default config differs


@pytest.mark.parametrize("args, message", [
    (["--set", "selector=job"], "--set: selector: got 'job', allowed: PromQL label matchers without braces"),
    (["--set", "cluster_labels=[job]"], "--set: cluster_labels[0]: got 'job', allowed: a label name other than"),
    (["--config", "/nonexistent.yaml"], "--config: cannot read '/nonexistent.yaml'"),
])
def test_generate_rejects_a_bad_config_in_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        generate.main([*args, f"--output-dir={tmp_path}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dashboards.generate: error: ") and message in err, err
    assert not list(tmp_path.iterdir())


def test_chargeback_dashboard_reads_only_the_chargeback_rules(site):
    """Team labels exist only in the chargeback recording rules (rules/chargeback.py): the chargeback
    dashboard reads those and nothing else, filtered by the cluster where the site has cluster labels
    and by $model where the rule has a model."""
    window = rules_generate.load_config().chargeback.window
    names = {f"team_model:llmcost_chargeback_spend:rate{window}", f"team_api:llmcost_chargeback_api_equivalent_spend:rate{window}"}
    queries = [q for q in panel_queries() if q[0] == CHARGEBACK]
    assert len(queries) >= 5
    for _, title, expr in queries:
        used = set(re.findall(r"\b([a-z_]+:[a-z_:]+[0-9a-z]*)\b", expr))
        assert used and used <= names, (title, used)
        assert "llmcost_" not in expr.replace(":llmcost_", ":"), title  # no raw exporter series
        if "team_api" not in expr:  # API-equivalent has no model; savings compare all models on both sides
            assert 'model=~"$model"' in expr, title
    variables = [v["name"] for v in generate.dashboards_json()[0]["templating"]["list"]]
    assert variables == ["datasource", "model"]
    for _, title, expr in site_queries({CHARGEBACK: site[CHARGEBACK]}):
        for labels in GROUPINGS.findall(expr):
            assert labels.split(", ")[0] == "cluster", f"{title!r}: by/on ({labels})"
        assert 'cluster=~"$cluster"' in expr, title
