"""`llm-cost-exporter estimate` reproduces every seeds.yaml scenario, through the real CLI.

Each seed's `given` is written as a scenario file in the documented format (docs/estimate.md);
the command's JSON figures must match every `expect` value within the seeds' tolerance.
"""

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

from conftest import assert_matches

SEEDS = yaml.safe_load((pathlib.Path(__file__).parent / "data" / "seeds.yaml").read_text())
TOL = SEEDS["tolerance"]
K = 1000.0


def inline_api(name, input_pm, output_pm):
    return {"name": name, "input_per_million": input_pm, "output_per_million": output_pm}


def scenario_files(seed) -> list[tuple[dict, dict]]:
    """(scenario, expect) pairs for one seed, in the estimate scenario format."""
    g, sid = seed["given"], seed["id"]
    if sid.startswith("cloud-"):
        s = {k: g[k] for k in ("instance_hourly", "hours_per_month", "throughput_tokens_per_s",
                               "tokens_per_month_at_full_utilization", "utilization") if k in g}
        s["hourly"] = s.pop("instance_hourly")
        if "api" in g:
            api = g["api"]
            s["apis"] = [inline_api(api["name"], api["input_per_million"], api["output_per_million"])]
            s["input_share"] = 0.5  # the article's 1:1
        return [(s, seed["expect"])]
    if sid == "owned-4xT4-payback":
        owned = {k: g[k] for k in ("capex", "gpu_count", "gpu_power_w", "overhead_power_w", "electricity_per_kwh", "other_monthly")}
        price = g["api"]["blended_per_million"]
        return [({"owned": owned, "hours_per_month": g["hours_per_month"], "tokens_per_month": g["tokens_per_month"],
                  "apis": [inline_api(g["api"]["name"], price, price)]}, seed["expect"])]
    if sid == "api-vs-sagemaker-requests":
        price = g["api_per_thousand_tokens"] * K
        base = {"hourly": g["instance_hourly"], "tokens_per_request": g["tokens_per_request"],
                "per_request_fees_per_million": g["per_request_fees_per_million"], "apis": [inline_api("gpt-3.5-turbo", price, price)]}
        return [(base, seed["expect"])] + [({**base, "requests_per_day": c["requests_per_day"]}, c["expect"]) for c in seed["cases"]]
    if sid == "batch-job-api-bill":
        batch = {k: g[k] for k in ("prompts", "input_tokens_per_prompt", "output_tokens_per_prompt")}
        apis = [inline_api(a["name"], a["input_per_thousand"] * K, a["output_per_thousand"] * K) for a in g["apis"]]
        return [({"batch": batch, "apis": apis}, seed["expect"])]
    if sid == "fine-tuned-api-baseline":
        ft = {"training_tokens": g["training_file_tokens"], "epochs": g["epochs"], "training_per_million": g["training_per_thousand"] * K,
              "base": {"input_per_million": 1.5, "output_per_million": 2.0},  # gpt-3.5-turbo 4K, 2023-08
              "tuned": {"input_per_million": g["input_per_thousand"] * K, "output_per_million": g["output_per_thousand"] * K}}
        return [({"fine_tuning": ft}, seed["expect"])]
    raise AssertionError(f"no scenario mapping for seed {sid}")


def estimate(tmp_path, scenario, *extra):
    path = tmp_path / "scenario.yml"
    path.write_text(yaml.safe_dump(scenario))
    return subprocess.run([sys.executable, "-m", "exporter", "estimate", str(path), *extra],
                          capture_output=True, text=True, timeout=60)



@pytest.mark.parametrize("seed", SEEDS["scenarios"], ids=lambda s: s["id"])
def test_estimate_reproduces_seed(tmp_path, seed):
    for i, (scenario, expect) in enumerate(scenario_files(seed)):
        result = estimate(tmp_path, scenario, "--format=json")
        assert result.returncode == 0, result.stderr
        assert_matches(expect, json.loads(result.stdout), f"{seed['id']}[{i}]", TOL)


def test_table_marks_breakeven_and_unbeatable_hardware(tmp_path):
    seed = next(s for s in SEEDS["scenarios"] if s["id"] == "cloud-vllm-4xT4")
    result = estimate(tmp_path, scenario_files(seed)[0][0])
    assert result.returncode == 0
    assert "cost per 1M tokens at 100% utilization" in result.stdout and "17.9318" in result.stdout
    assert "cannot beat the API at any utilization" in result.stdout
    assert "break-even with gpt-3.5-turbo: 1793.2% utilization (unreachable)" in result.stdout


def test_catalog_instance_and_api_by_name(tmp_path):
    scenario = {"instance_type": "g5.12xlarge", "throughput_tokens_per_s": 2400, "utilization": 0.3,
                "input_share": 0.75, "apis": ["gpt-4o-mini", "gpt-4o"]}
    result = estimate(tmp_path, scenario, "--format=json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["hourly"] == 5.672
    assert set(figures["apis"]) == {"gpt-4o-mini", "gpt-4o"}
    # gpt-4o costs more per token, so self-hosting breaks even at a lower utilization against it
    assert figures["apis"]["gpt-4o"]["breakeven_utilization"] < figures["apis"]["gpt-4o-mini"]["breakeven_utilization"]


@pytest.mark.slow  # matplotlib
def test_chart_is_written(tmp_path):
    scenario = {"hourly": 5.672, "throughput_tokens_per_s": 2400, "apis": ["gpt-4o"], "input_share": 0.75}
    chart = tmp_path / "sweep.png"
    result = estimate(tmp_path, scenario, f"--output={chart}")
    assert result.returncode == 0, result.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


@pytest.mark.parametrize("scenario,message", [
    ({"hourly": "cheap"}, "hourly: got 'cheap', allowed: a number"),
    ({"hourly": -1}, "hourly: got -1, allowed: a number >= 0"),
    ({"hourly": 3, "utilization": 25}, "utilization: got 25, allowed: a number from 0 to 1 (a share: 0.25 for 25%)"),
    ({"owned": {"capx": 3800}}, "owned.capx: unknown key, allowed keys: capex, "),
    ({"batch": {"prompts": 10, "input_tokens_per_prompt": 100}}, "batch.output_tokens_per_prompt: required key is missing"),
    ({"fine_tuning": True}, "fine_tuning: got True, allowed: a mapping"),
    ({"hourly": 3, "hours_per_month": 0}, "hours_per_month: got 0, allowed: a number > 0"),
    ({"hourly": float("inf")}, "hourly: got inf, allowed: a finite number"),
    ({"hourli": 3}, "hourli: unknown key"),
    ({"hourly": 3, "apis": ["gpt-99"]}, "apis[0]: got 'gpt-99', allowed: a catalog API"),
    ({"instance_type": "x9.huge"}, "instance_type: got 'x9.huge', not in the price catalog"),
])
def test_bad_scenario_is_one_line_naming_the_key(tmp_path, scenario, message):
    result = estimate(tmp_path, scenario)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
