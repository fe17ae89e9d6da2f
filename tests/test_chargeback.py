"""Chargeback on the real Prometheus: the demo exporter and a gateway in LiteLLM's real format
(tests/gateway_sim.py), the chargeback rules generated from rules/config.yaml with a 30 s window and
two teams kept. Per model, the teams' spend + `other` + `unattributed` is the model's spend; where
the gateway saw every token the teams add up to the engine's spend; the Qwen model, which the gateway
calls `qwen-32b`, is joined through the alias map; `report --by=team` prints the same figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from gateway_sim import SimulatedLiteLLM
from prometheus import Prometheus, free_port
from test_rules import generate

from dashboards.generate import ALL, BUILTINS, panel_queries, substitute

pytestmark = pytest.mark.integration  # a real Prometheus scraping the demo subprocess and a gateway

ROOT = Path(__file__).resolve().parent.parent
LLAMA, QWEN = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-32B-Instruct"
SPLIT = {LLAMA: {"search": 0.6, "support": 0.4},  # every Llama token through the gateway, with a team
         QWEN: {"support": 0.5, "research": 0.3, "None": 0.2}}  # 20% by a key without a team
GATEWAY_NAMES = {QWEN: "qwen-32b"}  # the gateway's name for Qwen: rules/config.yaml's model_aliases
WINDOW = "30s"
TOP = 2  # teams kept by name: search, support, research -> the smallest becomes `other`
SPEND = f"team_model:llmcost_chargeback_spend:rate{WINDOW}"
API = f"team_api:llmcost_chargeback_api_equivalent_spend:rate{WINDOW}"


class TwoJobs(Prometheus):
    """Scrapes the exporter (job llmcost) and the gateway (job litellm), honouring the gateway's timestamps."""

    gateway = ""

    def _config(self) -> dict:
        config = super()._config()
        config["scrape_configs"].append({"job_name": "litellm", "static_configs": [{"targets": [self.gateway]}]})
        return config


def overlay(tmp_path: Path) -> Path:
    """rules/config.yaml with a 30 s window and two teams kept: the rules and the dashboard read it."""
    base = yaml.safe_load((ROOT / "rules" / "config.yaml").read_text())["chargeback"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"chargeback": {**base, "window": WINDOW, "top_teams": TOP},
                                    "windows": ["30s"], "cost_alert_window": "30s", "breakeven_alert_window": "30s"}))
    return path


def chargeback_rules(tmp_path: Path) -> Path:
    out = tmp_path / "rules.yml"
    result = generate("--config", str(overlay(tmp_path)), "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rules = chargeback_rules(tmp_path_factory.mktemp("rules"))
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}",
                             "--demo.speed=1", "--demo.constant-load=0.5", "--demo.summary-interval=60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prom = TwoJobs([f"127.0.0.1:{port}"], rule_files=[rules])
    prom.exprs = {r["record"]: r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]
                  if g["name"].endswith(".chargeback")}
    gateway = None
    try:
        gateway = SimulatedLiteLLM(prom, SPLIT, GATEWAY_NAMES)
        prom.gateway = gateway.address
        prom.start()
        prom.wait_for("llmcost_model_spend_total", count=4, timeout=30)
        prom.wait_for(f"{SPEND}{{team='research'}} or {SPEND}{{team='other'}}", timeout=60)
        time.sleep(35)  # a full 30 s window of gateway samples
        prom.overlay = overlay(tmp_path_factory.mktemp("site"))
        yield prom
    finally:
        prom.stop()
        if gateway is not None:
            gateway.stop()
        demo.terminate()
        demo.wait(10)


def values(prom, expr: str, *labels: str, at: float) -> dict[tuple, float]:
    return {tuple(s["metric"].get(k, "") for k in labels): float(s["value"][1]) for s in prom.query(expr, at)}


def past() -> float:
    """A moment whose samples have all landed: the gateway copies the exporter's samples with their own
    timestamps, a scrape later (longer on a busy machine)."""
    return time.time() - 6


def rule(prom, record: str) -> str:
    """A chargeback rule's own expression: evaluated at past() it sees every sample the gateway copied,
    where the series recorded live may have run a copy short on a busy machine."""
    return f"(\n{prom.exprs[record]}\n)"


def test_the_rules_are_recorded(stack):
    for record in stack.exprs:
        assert stack.query(record), record


def test_teams_other_and_unattributed_add_up_to_each_models_spend(stack):
    at = past()
    model_spend = values(stack, f"sum by (model) (rate(llmcost_model_spend_total[{WINDOW}]))", "model", at=at)
    rows = values(stack, rule(stack, SPEND), "team", "model", at=at)
    assert set(model_spend) == {(LLAMA,), (QWEN,)}
    for (model,), spend in model_spend.items():
        assert spend > 0
        total = sum(v for (team, m), v in rows.items() if m == model)
        assert total == pytest.approx(spend, rel=1e-9), model


def test_a_gateway_that_saw_every_token_charges_the_whole_spend(stack):
    """Llama: every token through the gateway with a team -> the teams sum to the engine's spend within
    0.5%, and the unattributed row is the (tiny) rest."""
    at = past()
    spend = values(stack, f"sum(rate(llmcost_model_spend_total{{model='{LLAMA}'}}[{WINDOW}]))", at=at)[()]
    rows = {k[:1]: v for k, v in values(stack, rule(stack, SPEND), "team", "model", at=at).items() if k[1] == LLAMA}
    teams = sum(v for (team,), v in rows.items() if team != "unattributed")
    print(f"llama: engine spend {spend:.6e}/s, teams {teams:.6e}/s, ratio {teams / spend:.6f}")
    assert teams == pytest.approx(spend, rel=0.005)
    assert rows[("unattributed",)] == pytest.approx(spend - teams, rel=1e-6, abs=1e-12)
    assert rows[("search",)] / rows[("support",)] == pytest.approx(0.6 / 0.4, rel=0.005)


def test_the_alias_map_joins_the_gateways_name_and_the_rest_is_unattributed(stack):
    """Qwen, called `qwen-32b` at the gateway: its teams appear under the engine's model name; 20% of
    its tokens came with no team, so the unattributed row is 20% of its spend, the difference."""
    at = past()
    assert not stack.query(f"{SPEND}{{model='qwen-32b'}}", at)
    spend = values(stack, f"sum(rate(llmcost_model_spend_total{{model='{QWEN}'}}[{WINDOW}]))", at=at)[()]
    rows = {k[:1]: v for k, v in values(stack, rule(stack, SPEND), "team", "model", at=at).items() if k[1] == QWEN}
    teams = sum(v for (team,), v in rows.items() if team != "unattributed")
    print(f"qwen: engine spend {spend:.6e}/s, teams {teams:.6e}/s ({teams / spend:.4%}), rows {rows}")
    assert teams == pytest.approx(0.8 * spend, rel=0.005)
    assert rows[("unattributed",)] == pytest.approx(spend - teams, rel=1e-9)
    assert ("None",) not in rows


def test_teams_beyond_the_top_n_are_one_other_row_and_series_stay_bounded(stack):
    at = past()
    rows = values(stack, SPEND, "team", "model", at=at)  # the recorded series themselves
    teams = {team for team, _ in rows}
    assert teams == {"search", "support", "other", "unattributed"}  # research is the smallest team
    models = {m for _, m in rows}
    assert len(rows) <= (TOP + 2) * len(models)
    apis = values(stack, API, "team", "api", at=at)
    assert {team for team, _ in apis} == {"search", "support", "other"}
    assert len(apis) <= (TOP + 1) * 2


def test_api_equivalent_per_team_matches_the_exporters_own(stack):
    """The teams' API-equivalent is the exporter's API-equivalent of the same tokens: all of Llama's
    and 80% of Qwen's (cached input at the API's cached price in both)."""
    at = past()
    exporter = values(stack, f"sum by (model, api) (rate(llmcost_api_equivalent_spend_total[{WINDOW}]))",
                      "model", "api", at=at)
    teams = values(stack, f"sum by (api) ({rule(stack, API)})", "api", at=at)
    for (api,), value in teams.items():
        expected = exporter[(LLAMA, api)] + 0.8 * exporter[(QWEN, api)]
        print(f"{api}: teams {value:.6e}/s, expected {expected:.6e}/s")
        assert value == pytest.approx(expected, rel=0.005), api


def test_report_by_team(stack):
    result = subprocess.run([sys.executable, "-m", "exporter", "report", "--by=team",
                             f"--prometheus.url={stack.url}", "--start=now-40s", f"--chargeback.window={WINDOW}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["search"] for line in lines)
    assert any(line.split()[:1] == ["unattributed"] for line in lines)
    assert any("TOTAL" in line for line in lines)


def test_every_chargeback_dashboard_query_returns_data(stack):
    sys.path.insert(0, str(ROOT))
    from rules.generate import load_config

    queries = [q for q in panel_queries(load_config(stack.overlay)) if q[0] == "llmcost-chargeback"]
    assert len(queries) >= 5
    variables = {**ALL, **BUILTINS, "__range": "40s", "__range_s": "40"}
    empty = [f"{title}: {expr}" for _, title, expr in queries if not stack.query(substitute(expr, variables))]
    assert not empty, "panels without data:\n" + "\n".join(empty)
    models = stack.api(f"label/model/values?match[]={SPEND}")
    assert sorted(models) == sorted([LLAMA, QWEN])  # the dashboard's $model: engine names, aliases mapped


# --- prices export, loaded by the real client libraries -----------------------------------------------

CLIENTS = Path(os.environ.get("LLMCOST_GATEWAY_CLIENTS", ROOT / ".tools" / "gateway-clients"))
LITELLM_CHECK = """
import json, sys
import litellm
from litellm import ModelResponse
litellm.register_model(json.load(open(sys.argv[1])))
out = {}
for key in json.load(open(sys.argv[1])):
    prompt, completion = litellm.cost_per_token(model=key, prompt_tokens=1000, completion_tokens=200)
    response = ModelResponse(model=key.split("/", 1)[1], usage={
        "prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 400}})
    out[key] = {"prompt": prompt, "completion": completion,
                "completion_cost_cached": litellm.completion_cost(completion_response=response, model=key)}
print(json.dumps(out))
"""


def exported(stack, fmt: str, at: float, tmp_path: Path) -> Path:
    path = tmp_path / f"prices-{fmt}.json"
    result = subprocess.run([sys.executable, "-m", "exporter", "prices", "export", f"--format={fmt}", "--window=30s",
                             f"--at={at:.3f}", f"--prometheus.url={stack.url}", f"--output={path}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return path


def our_prices(stack, at: float) -> dict[str, tuple[float, float]]:
    """$/token per model, input and output, straight from the exporter's counters over the same window."""
    def per_model(expr):
        return {m: v for (m,), v in values(stack, expr, "model", at=at).items()}
    prefill = per_model('sum by (model) (increase(llmcost_model_spend_total{phase="prefill"}[30s]))')
    decode = per_model('sum by (model) (increase(llmcost_model_spend_total{phase="decode"}[30s]))')
    inputs = per_model('sum by (model) (increase(llmcost_tokens_total{direction="input"}[30s]))')
    outputs = per_model('sum by (model) (increase(llmcost_tokens_total{direction="output"}[30s]))')
    return {m: (prefill[m] / inputs[m], decode[m] / outputs[m]) for m in prefill}


def test_prices_export_is_priced_by_the_real_litellm_at_our_price(stack, tmp_path):
    python = client_python("litellm")
    at = time.time() - 2
    path = exported(stack, "litellm", at, tmp_path)
    result = subprocess.run([str(python), "-c", LITELLM_CHECK, str(path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})  # no network lookup
    assert result.returncode == 0, result.stderr[-2000:]
    costs = json.loads(result.stdout.strip().splitlines()[-1])
    ours = our_prices(stack, at)
    assert set(costs) == {f"hosted_vllm/{m}" for m in ours}
    for model, (p_in, p_out) in ours.items():
        got = costs[f"hosted_vllm/{model}"]
        expected = 1000 * p_in + 200 * p_out
        print(f"{model}: ours ${expected:.6e} per request, litellm ${got['prompt'] + got['completion']:.6e} "
              f"(with 400 cached: ${got['completion_cost_cached']:.6e})")
        assert got["prompt"] == pytest.approx(1000 * p_in, rel=1e-3)
        assert got["completion"] == pytest.approx(200 * p_out, rel=1e-3)
        assert got["completion_cost_cached"] == pytest.approx(expected, rel=1e-3)  # a cached token at our input price


LANGFUSE_CHECK = """
import json, sys
from langfuse.api.core.pydantic_utilities import parse_obj_as
from langfuse.api.models.types.create_model_request import CreateModelRequest
out = {}
for item in json.load(open(sys.argv[1])):
    model = parse_obj_as(CreateModelRequest, item)  # what the Langfuse client sends to POST /api/public/models
    [tier] = model.pricing_tiers
    out[model.model_name] = {"input": tier.prices["input"], "output": tier.prices["output"], "default": tier.is_default,
                             "pattern": model.match_pattern, "start": model.start_date.isoformat(), "unit": str(model.unit)}
print(json.dumps(out))
"""
OPENLIT_CHECK = """
import json, sys
from openlit.__helpers import fetch_pricing_info, get_chat_model_cost
pricing = fetch_pricing_info(sys.argv[1])  # what openlit.init(pricing_json=...) loads
print(json.dumps({m: get_chat_model_cost(m, pricing, 1000, 200) for m in pricing["chat"]}))
"""


def read_with(client: str, check: str, path: Path) -> dict:
    result = subprocess.run([str(client_python(client)), "-c", check, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def client_python(name: str) -> Path:
    python = CLIENTS / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} missing: scripts/install-gateway-clients.sh installs it (scripts/test runs it)")
    return python


def test_prices_export_langfuse_and_openlit_are_read_by_their_libraries_at_our_price(stack, tmp_path):
    at = time.time() - 2
    ours = our_prices(stack, at)
    read = {"langfuse": read_with("langfuse", LANGFUSE_CHECK, exported(stack, "langfuse", at, tmp_path)),
            "openlit": read_with("openlit", OPENLIT_CHECK, exported(stack, "openlit", at, tmp_path))}
    assert set(read["langfuse"]) == set(ours) == set(read["openlit"])
    for model, (p_in, p_out) in ours.items():
        definition = read["langfuse"][model]
        assert definition["default"] and definition["unit"].endswith("TOKENS")
        assert re.fullmatch(definition["pattern"].removeprefix("(?i)"), model)
        assert definition["input"] == pytest.approx(p_in, rel=1e-3) and definition["output"] == pytest.approx(p_out, rel=1e-3)
        print(f"{model}: ours ${1000 * p_in + 200 * p_out:.6e} per request, openlit ${read['openlit'][model]:.6e}")
        assert read["openlit"][model] == pytest.approx(1000 * p_in + 200 * p_out, rel=1e-3)
