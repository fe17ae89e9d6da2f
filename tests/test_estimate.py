"""`llm-cost-exporter estimate` through the real CLI: it reproduces every seeds.yaml scenario, takes
the run config's pricing block as is, and refuses every bad scenario with one line naming the key.

Each seed's `given` is written as a scenario file in the documented format (docs/estimate.md);
the command's JSON figures must match every `expect` value within the seeds' tolerance. The
properties over generated scenarios are in tests/test_estimate_properties.py.
"""

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import time

import pytest
import yaml

from conftest import assert_matches
from exporter.cli import main

ROOT = pathlib.Path(__file__).parent.parent
SEEDS = yaml.safe_load((ROOT / "tests" / "data" / "seeds.yaml").read_text())
TOL = SEEDS["tolerance"]
K = 1000.0
API_FIGURES = ("api_blended_per_million", "breakeven_utilization", "api_equivalent_per_month", "monthly_saving",
               "payback_months", "breakeven_requests_per_day", "api_cost_per_day")
RENAMED_FIGURES = {"throughput_tokens_per_s": "capacity_tokens_per_s"}


def priced(name, input_pm, output_pm):
    """compare.apis and catalog.apis for one API given inline."""
    return {"compare": {"apis": [name]},
            "catalog": {"apis": {name: {"input_per_million": input_pm, "output_per_million": output_pm}}}}


def expect_for(expect: dict, api: str | None = None) -> dict:
    """A seed's expected figures under estimate's names: per-API ones under apis.NAME."""
    out: dict = {}
    for key, value in expect.items():
        if api and key in API_FIGURES:
            out.setdefault("apis", {}).setdefault(api, {})[key] = value
        else:
            out[RENAMED_FIGURES.get(key, key)] = value
    return out


def scenario_files(seed) -> list[tuple[dict, dict]]:
    """(scenario, expect) pairs for one seed, in the estimate scenario format."""
    g, sid = seed["given"], seed["id"]
    if sid.startswith("cloud-"):
        s = {"pricing": {"hours_per_month": g["hours_per_month"], "cloud": {"hourly": g["instance_hourly"]}},
             "utilization": g["utilization"]}
        if "throughput_tokens_per_s" in g:
            s["capacity_tokens_per_s"] = g["throughput_tokens_per_s"]
        else:
            s["tokens_per_month_at_full_utilization"] = g["tokens_per_month_at_full_utilization"]
        api = g.get("api")
        if api:
            s.update(priced(api["name"], api["input_per_million"], api["output_per_million"]), input_share=0.5)  # 1:1
        return [(s, expect_for(seed["expect"], api and api["name"]))]
    if sid == "owned-4xT4-payback":
        name, price = g["api"]["name"], g["api"]["blended_per_million"]
        pricing = {"mode": "owned", "hours_per_month": g["hours_per_month"],
                   "owned": {"capex": g["capex"], "fixed_monthly": g["other_monthly"]},
                   "energy": {"electricity_per_kwh": g["electricity_per_kwh"], "overhead_watts": g["overhead_power_w"]}}
        return [({"pricing": pricing, "hardware": {"gpu_count": g["gpu_count"], "gpu_watts": g["gpu_power_w"]},
                  "tokens_per_month": g["tokens_per_month"], **priced(name, price, price)}, expect_for(seed["expect"], name))]
    if sid == "api-vs-sagemaker-requests":
        price = g["api_per_thousand_tokens"] * K
        base = {"pricing": {"cloud": {"hourly": g["instance_hourly"],
                                      "per_million_requests": g["per_request_fees_per_million"]}},
                "tokens_per_request": g["tokens_per_request"], **priced("gpt-3.5-turbo", price, price)}
        return [(base, expect_for(seed["expect"], "gpt-3.5-turbo"))] + \
            [({**base, "requests_per_day": c["requests_per_day"]}, expect_for(c["expect"], "gpt-3.5-turbo"))
             for c in seed["cases"]]
    if sid == "batch-job-api-bill":
        # 2023-08: no batch tier yet, so the job is billed at the standard prices, as the article did
        batch = {k: g[k] for k in ("prompts", "input_tokens_per_prompt", "output_tokens_per_prompt")}
        apis = {a["name"]: {"input_per_million": a["input_per_thousand"] * K, "output_per_million": a["output_per_thousand"] * K}
                for a in g["apis"]}
        expect = {"batch": {"total_tokens": seed["expect"]["total_tokens"],
                            "apis": {n: {"api_bill": v} for n, v in seed["expect"]["api_bill"].items()}}}
        return [({"batch": {**batch, "tier": "standard"}, "compare": {"apis": list(apis)}, "catalog": {"apis": apis}},
                 expect)]
    if sid == "fine-tuned-api-baseline":
        ft = {"training_tokens": g["training_file_tokens"], "epochs": g["epochs"], "training_per_million": g["training_per_thousand"] * K,
              "base": {"input_per_million": 1.5, "output_per_million": 2.0},  # gpt-3.5-turbo 4K, 2023-08
              "tuned": {"input_per_million": g["input_per_thousand"] * K, "output_per_million": g["output_per_thousand"] * K}}
        return [({"fine_tuning": ft}, {"fine_tuning": seed["expect"]})]
    raise AssertionError(f"no scenario mapping for seed {sid}")


def run_cli(*argv) -> subprocess.CompletedProcess:
    """The real command line entry, in-process (a subprocess per case would cost an interpreter start)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def estimate(tmp_path, scenario, *extra):
    path = tmp_path / "scenario.yml"
    path.write_text(yaml.safe_dump(scenario) if isinstance(scenario, dict) else scenario)
    return run_cli("estimate", str(path), *extra)


def figures_of(tmp_path, scenario) -> dict:
    result = estimate(tmp_path, scenario, "--format=json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_exit_2(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    [line] = result.stderr.splitlines()
    assert "Traceback" not in line
    return line


@pytest.mark.parametrize("seed", SEEDS["scenarios"], ids=lambda s: s["id"])
def test_estimate_reproduces_seed(tmp_path, seed):
    for i, (scenario, expect) in enumerate(scenario_files(seed)):
        assert_matches(expect, figures_of(tmp_path, scenario), f"{seed['id']}[{i}]", TOL)


def test_table_marks_breakeven_and_unbeatable_hardware(tmp_path):
    seed = next(s for s in SEEDS["scenarios"] if s["id"] == "cloud-vllm-4xT4")
    result = estimate(tmp_path, scenario_files(seed)[0][0])
    assert result.returncode == 0
    assert "cost per 1M tokens at 100% utilization     17.9318" in result.stdout
    assert "compared with gpt-3.5-turbo (standard tier):" in result.stdout
    assert "cannot beat the API at any utilization" in result.stdout
    assert "break-even with gpt-3.5-turbo: 1793.2% (unreachable)" in result.stdout


def test_catalog_instance_and_api_by_name(tmp_path):
    scenario = {"pricing": {"cloud": {"instance_type": "g5.12xlarge"}}, "capacity_tokens_per_s": 2400,
                "utilization": "30%", "input_share": 0.75, "compare": {"apis": ["gpt-4o-mini", "gpt-4o"]}}
    figures = figures_of(tmp_path, scenario)
    assert figures["hourly"] == 5.672 and figures["price_source"] == "catalog:aws/g5.12xlarge/us-east-1"
    assert figures["utilization"] == 0.3
    assert list(figures["apis"]) == ["gpt-4o-mini", "gpt-4o"]
    # gpt-4o costs more per token, so self-hosting breaks even at a lower utilization against it
    assert figures["apis"]["gpt-4o"]["breakeven_utilization"] < figures["apis"]["gpt-4o-mini"]["breakeven_utilization"]
    spot = figures_of(tmp_path, {**scenario, "pricing": {"cloud": {"instance_type": "g5.12xlarge", "price_multiplier": 0.35}}})
    assert spot["hourly"] == pytest.approx(5.672 * 0.35)  # applied to catalog prices, as in the run config


def test_a_percentage_and_a_fraction_give_the_same_figures(tmp_path):
    base = {"pricing": {"cloud": {"hourly": 3.912}}, "capacity_tokens_per_s": 60.6, "compare": {"apis": ["gpt-4o"]}}
    as_text = figures_of(tmp_path, {**base, "utilization": "25%", "input_share": "75%", "cached_input_share": "10%"})
    as_share = figures_of(tmp_path, {**base, "utilization": 0.25, "input_share": 0.75, "cached_input_share": 0.1})
    assert as_text == as_share and as_text["utilization"] == 0.25


def test_the_run_configs_pricing_block_pastes_into_a_scenario(tmp_path):
    """docs/config.example.yml's pricing, catalog and compare blocks, unchanged, in a scenario; the
    run config and the scenario price the same hardware the same way, in both modes."""
    from exporter import config

    example = yaml.safe_load((ROOT / "docs" / "config.example.yml").read_text())
    blocks = {k: example[k] for k in ("pricing", "catalog", "compare")}
    run_config = config.from_dict({**example, "kubernetes": {}}, environ={})
    figures = figures_of(tmp_path, {**blocks, "capacity_tokens_per_s": 2400, "utilization": 0.5,
                                    "hardware": {"gpu_count": 4, "gpu_watts": 300}})
    # The price run applies now: the example's savings plan (28% off the catalog's 5.672) is in force.
    from exporter import pricing
    in_force, source, _ = pricing.effective(pricing.resolve(run_config), None, time.time())
    assert figures["hourly"] == in_force.cloud.hourly == pytest.approx(5.672 * 0.72)
    assert figures["price_source"] == source == "commitment:g5-savings-plan"
    assert figures["monthly_cost"] == pytest.approx(in_force.cloud.hourly * run_config.pricing.hours_per_month)
    assert list(figures["apis"]) == run_config.compare.apis
    # cloud mode: energy is information (the instance price includes it), CO2e from the grid intensity
    kwh = (4 * 300 + example["pricing"]["energy"]["overhead_watts"]) * 730 / 1000
    assert figures["energy_kwh_per_month"] == pytest.approx(kwh)
    assert figures["co2e_kg_per_month"] == pytest.approx(kwh * 1.3 * 380 / 1000)

    owned = {**blocks, "pricing": {**blocks["pricing"], "mode": "owned"}}
    figures = figures_of(tmp_path, {**owned, "capacity_tokens_per_s": 2400, "hardware": {"gpu_count": 4, "gpu_watts": 300}})
    assert figures["amortization_per_month"] == pytest.approx(38000 / 36)
    assert figures["energy_cost_per_month"] == pytest.approx(kwh * 1.3 * 0.12)


def test_actual_cost_on_owned_hardware_includes_capex(tmp_path):
    seed = next(s for s in SEEDS["scenarios"] if s["id"] == "owned-4xT4-payback")
    scenario, _ = scenario_files(seed)[0]
    scenario["pricing"]["owned"]["amortization_months"] = 38  # 3800 / 38 = 100 a month
    figures = figures_of(tmp_path, scenario)
    tokens = figures["tokens_per_month"]
    assert figures["amortization_per_month"] == pytest.approx(100)
    opex = figures["opex_per_month"]
    assert opex == pytest.approx(100, rel=TOL)  # the article's ~$50 energy + $50
    assert figures["cost_per_million"] == pytest.approx((opex + 100) / tokens * 1e6)  # opex + amortization
    assert figures["cost_per_million_excluding_capex"] == pytest.approx(opex / tokens * 1e6)
    row = figures["apis"]["gpt-3.5-turbo"]
    assert row["monthly_saving"] - row["monthly_saving_including_capex"] == pytest.approx(100)
    assert row["payback_months"] == pytest.approx(66.5788, rel=TOL)  # payback: capex over the cash saving


def batch_scenario(tier):
    return {"batch": {"prompts": 4_000_000, "input_tokens_per_prompt": 1000, "output_tokens_per_prompt": 200, "tier": tier},
            "compare": {"apis": ["gpt-4o", "no-batch-api"]},
            "catalog": {"apis": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0,
                                            "batch": {"input_per_million": 1.25, "output_per_million": 5.0}},
                                 "no-batch-api": {"input_per_million": 1.0, "output_per_million": 2.0}}}}


def test_a_batch_job_is_billed_at_the_batch_tier_which_halves_the_bill(tmp_path):
    standard = figures_of(tmp_path, batch_scenario("standard"))["batch"]
    batch = figures_of(tmp_path, batch_scenario("batch"))["batch"]
    assert batch["apis"]["gpt-4o"]["tier"] == "batch" and standard["apis"]["gpt-4o"]["tier"] == "standard"
    assert batch["apis"]["gpt-4o"]["api_bill"] == pytest.approx(standard["apis"]["gpt-4o"]["api_bill"] / 2)
    assert standard["apis"]["gpt-4o"]["api_bill"] == pytest.approx(4e9 * 2.5 / 1e6 + 8e8 * 10 / 1e6)
    # an API without a batch price is billed at its standard price, and says so
    assert batch["apis"]["no-batch-api"]["tier"] == "standard"
    assert batch["apis"]["no-batch-api"]["tier_note"] == "no batch price" and "tier_note" not in batch["apis"]["gpt-4o"]
    assert batch["apis"]["no-batch-api"]["api_bill"] == standard["apis"]["no-batch-api"]["api_bill"]


def test_the_bundled_catalogs_batch_tier_halves_a_batch_jobs_bill(tmp_path):
    job = {"prompts": 4_000_000, "input_tokens_per_prompt": 1000, "output_tokens_per_prompt": 200}
    apis = {"compare": {"apis": ["gpt-4o-mini", "gpt-4o"]}}
    batch = figures_of(tmp_path, {"batch": job, **apis})["batch"]["apis"]  # the batch tier is the default
    standard = figures_of(tmp_path, {"batch": {**job, "tier": "standard"}, **apis})["batch"]["apis"]
    for name in ("gpt-4o-mini", "gpt-4o"):
        assert batch[name]["tier"] == "batch" and standard[name]["tier"] == "standard"
        assert batch[name]["api_bill"] == pytest.approx(standard[name]["api_bill"] / 2)
    assert standard["gpt-4o-mini"]["api_bill"] == pytest.approx(4e9 * 0.15 / 1e6 + 8e8 * 0.6 / 1e6)


def test_a_run_config_key_estimate_does_not_use_is_refused_not_ignored(monkeypatch):
    """A key the run config gains is refused by estimate until estimate applies it (here: as if
    estimate did not apply pricing.cloud.price_multiplier)."""
    from exporter import estimate as estimate_module
    from exporter import scenario

    cloud = scenario.USED_CONFIG_KEYS["pricing"]["cloud"] - {"price_multiplier"}
    monkeypatch.setitem(scenario.USED_CONFIG_KEYS, "pricing", {**scenario.USED_CONFIG_KEYS["pricing"], "cloud": cloud})
    with pytest.raises(scenario.ScenarioError) as err:
        estimate_module.compute({"pricing": {"cloud": {"instance_type": "g5.12xlarge", "price_multiplier": 0.5}},
                                 "capacity_tokens_per_s": 100})
    assert str(err.value) == "pricing.cloud.price_multiplier: a run config key that estimate does not use"
    monkeypatch.setitem(scenario.USED_CONFIG_KEYS, "compare", {})
    with pytest.raises(scenario.ScenarioError, match=r"^compare.apis: a run config key that estimate does not use$"):
        estimate_module.compute({**CLOUD, "compare": {"apis": ["gpt-4o"]}})


def test_the_batch_figure_uses_the_batchs_own_mix(tmp_path):
    """The scenario's live traffic is 90% input; the batch job is 1000:200 (83.3% input): its API
    price per 1M and what the hardware spends on it follow the batch, not the live mix."""
    scenario = {**batch_scenario("standard"), "pricing": {"cloud": {"hourly": 10.0}}, "capacity_tokens_per_s": 5000,
                "utilization": 0.2, "input_share": 0.9}
    figures = figures_of(tmp_path, scenario)
    batch = figures["batch"]
    assert batch["input_share"] == pytest.approx(1000 / 1200)
    assert batch["apis"]["gpt-4o"]["api_blended_per_million"] == pytest.approx((1000 * 2.5 + 200 * 10.0) / 1200)
    assert figures["apis"]["gpt-4o"]["api_blended_per_million"] == pytest.approx(0.9 * 2.5 + 0.1 * 10.0)
    assert batch["hours_at_capacity"] == pytest.approx(4.8e9 / 5000 / 3600)
    assert batch["self_hosted_cost"] == pytest.approx(batch["hours_at_capacity"] * 10.0)
    assert batch["apis"]["gpt-4o"]["saving"] == pytest.approx(batch["apis"]["gpt-4o"]["api_bill"] - batch["self_hosted_cost"])


CLOUD = {"pricing": {"cloud": {"hourly": 3.0}}, "capacity_tokens_per_s": 100}
OWNED = {"pricing": {"mode": "owned", "energy": {"electricity_per_kwh": 0.2}}, "hardware": {"gpu_count": 1, "gpu_watts": 300},
         "capacity_tokens_per_s": 100}


@pytest.mark.parametrize("scenario,message", [
    ({**CLOUD, "utilization": 25}, "utilization: got 25, allowed: a fraction above 0, at most 1 (0.25) or a percentage "
     "('25%'); 25 would mean 25x, for 25% write 0.25 or '25%'"),
    ({**CLOUD, "input_share": "75"}, "input_share: got '75', allowed: a fraction from 0 to 1"),
    ({**CLOUD, "utilization": "125%"}, "utilization: got '125%', allowed: a fraction"),
    ({**OWNED, "pricing": {"mode": "owned", "owned": {"capx": 3800}, "energy": {"electricity_per_kwh": 0.2}}},
     "pricing.owned.capx: unknown key, allowed keys: capex, amortization_months, fixed_monthly"),
    ({**OWNED, "hardware": {"gpu_count": 1, "gpu_wats": 300}}, "hardware.gpu_wats: unknown key"),
    ({"batch": {"prompts": 10, "input_tokens_per_prompt": 100, "output_tokens": 5}}, "batch.output_tokens: unknown key"),
    ({"batch": {"prompts": 10, "input_tokens_per_prompt": 100}}, "batch.output_tokens_per_prompt: required key is missing"),
    ({"batch": {"prompts": 10, "input_tokens_per_prompt": 1, "output_tokens_per_prompt": 1, "tier": "fast"}},
     "batch.tier: got 'fast', allowed: standard, batch, flex, priority, long_context"),
    ({"fine_tuning": {"training_tokens": 1, "epochs": 1}}, "fine_tuning.training_per_million: required key is missing"),
    ({"fine_tuning": {"training_tokens": 1, "epochs": 1, "training_per_million": 8, "base": {"input_per_million": 1,
                                                                                           "output_per_million": 2, "x": 1}}},
     "fine_tuning.base.x: unknown key"),
    ({"fine_tuning": {"training_tokens": 1, "epochs": 1, "training_per_million": 8,
                      "base": {"input_per_million": 1, "output_per_million": 2}}}, "fine_tuning.tuned: required with"),
    ({"fine_tuning": True}, "fine_tuning: got True, allowed: a mapping"),
    ({**CLOUD, "catalog": {"apis": {"x": {"input_per_million": 1, "output_per_milion": 2}}}},
     "catalog.apis.x.output_per_milion: unknown key"),
    ({"pricing": {"mode": "owned"}, "hardware": {"gpu_count": 1, "gpu_watts": 300}, "capacity_tokens_per_s": 100},
     "pricing.energy.electricity_per_kwh: required when pricing.mode is owned"),
    ({"pricing": {"mode": "owned", "energy": {"electricity_per_kwh": 0.2}}, "capacity_tokens_per_s": 100},
     "hardware: required when pricing.mode is owned"),
    ({"pricing": {"cloud": {"hourly": 3.0}}, "compare": {"apis": ["gpt-4o"]}},
     "capacity_tokens_per_s: required to compare with the APIs"),
    ({"pricing": {"cloud": {}}, "capacity_tokens_per_s": 100}, "pricing.cloud.hourly: required when pricing.mode is cloud"),
    ({"capacity_tokens_per_s": 100}, "pricing: required with a capacity or tokens_per_month"),
    ({}, "pricing: required: nothing to estimate"),
    ({**CLOUD, "tokens_per_month_at_full_utilization": 1e9}, "tokens_per_month_at_full_utilization: not with capacity_tokens_per_s"),
    ({**CLOUD, "utilization": 0.5, "tokens_per_month": 1e6}, "utilization: not with tokens_per_month"),
    ({**CLOUD, "tokens_per_month": 1e12}, "tokens_per_month: got 1e+12, allowed: at most the capacity's 2.628e+08 a month"),
    ({"pricing": {"cloud": {"hourly": 3.0}}, "tokens_per_month": 1e6, "utilization": 0.5}, "utilization: needs capacity_tokens_per_s"),
    ({**CLOUD, "requests_per_day": 10}, "requests_per_day: needs tokens_per_request"),
    ({**OWNED, "tokens_per_request": 500}, "tokens_per_request: needs a cloud instance price"),
    ({"pricing": {"cloud": {"hourly": 3.0, "per_million_requests": 1}}, "capacity_tokens_per_s": 100},
     "pricing.cloud.per_million_requests: used by the per-request figures only"),
    ({**CLOUD, "compare": {"apis": []}}, "compare.apis: got [], allowed: at least one API name"),
    ({**CLOUD, "compare": {"apis": ["gpt-4o", "gpt-4o"]}}, "compare.apis[1]: got 'gpt-4o' again, allowed: each API once"),
    ({**CLOUD, "compare": {"apis": ["gpt-99"]}}, "compare.apis[0]: got 'gpt-99', allowed: an API in the catalog"),
    ({**CLOUD, "compare": {"apis": [{"name": "x", "input_per_million": 1}]}}, "compare.apis[0]: got {"),
    ({"pricing": {"cloud": {"instance_type": "x9.huge"}}, "capacity_tokens_per_s": 100},
     "pricing.cloud.instance_type: got 'x9.huge', not in the price catalog"),
    ({"pricing": {"cloud": {"hourly": "cheap"}}, "capacity_tokens_per_s": 100}, "pricing.cloud.hourly: got 'cheap', allowed: a number"),
    ({"pricing": {"cloud": {"hourly": -1}}, "capacity_tokens_per_s": 100}, "pricing.cloud.hourly: got -1, allowed: a number >= 0"),
    ({"pricing": {"hours_per_month": 0, "cloud": {"hourly": 3}}, "capacity_tokens_per_s": 100},
     "pricing.hours_per_month: got 0, allowed: a number > 0"),
    ({"pricing": {"cloud": {"hourly": float("inf")}}, "capacity_tokens_per_s": 100}, "pricing.cloud.hourly: got inf, allowed: a finite number"),
    ({"hourly": 3}, "hourly: unknown key: the scenario takes the run config's names now, use pricing.cloud.hourly"),
    ({"owned": {"capex": 3800}}, "owned: unknown key: the scenario takes the run config's names now, use pricing.mode: owned"),
    ({**CLOUD, "hourli": 3}, "hourli: unknown key, allowed keys: pricing, catalog, compare, hardware"),
])
def test_bad_scenario_is_one_line_naming_the_key_and_exit_2(tmp_path, scenario, message):
    line = one_line_exit_2(estimate(tmp_path, scenario))
    assert line.startswith(f"llm-cost-exporter estimate: {tmp_path / 'scenario.yml'}: ") and message in line, line


def test_a_file_that_is_not_a_scenario_is_one_line(tmp_path):
    assert "scenario: the top level must be a mapping" in one_line_exit_2(estimate(tmp_path, "- a\n- list\n"))
    assert "not valid YAML" in one_line_exit_2(estimate(tmp_path, "pricing: {cloud: [\n"))
    assert "cannot read" in one_line_exit_2(run_cli("estimate", str(tmp_path / "none.yml")))


@pytest.mark.integration  # a subprocess: the installed entry point's exit codes, as a shell sees them
def test_the_command_in_a_shell(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "exporter", "estimate", "docs/examples/owned-4xT4.yaml"],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert ok.returncode == 0 and ok.stderr == "" and "payback (months)" in ok.stdout
    (tmp_path / "bad.yml").write_text("utilization: 25\n")
    bad = subprocess.run([sys.executable, "-m", "exporter", "estimate", str(tmp_path / "bad.yml")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert one_line_exit_2(bad).endswith("utilization: got 25, allowed: a fraction above 0, at most 1 (0.25) or a "
                                         "percentage ('25%'); 25 would mean 25x, for 25% write 0.25 or '25%'")


def test_without_a_capacity_to_sweep_output_is_one_line(tmp_path):
    no_capacity = {"pricing": {"cloud": {"hourly": 3}}, "tokens_per_month": 1e6, "compare": {"apis": ["gpt-4o"]}}
    line = one_line_exit_2(estimate(tmp_path, no_capacity, f"--output={tmp_path / 'c.png'}"))
    assert line == "llm-cost-exporter estimate: --output: no chart: the scenario gives no capacity " \
                   "(capacity_tokens_per_s) to sweep"


@pytest.mark.slow  # matplotlib's import
def test_an_unwritable_output_is_one_line_and_nothing_printed(tmp_path):
    line = one_line_exit_2(estimate(tmp_path, {**CLOUD, "compare": {"apis": ["gpt-4o"]}},
                                    f"--output={tmp_path / 'missing' / 'c.png'}"))
    assert line == f"llm-cost-exporter estimate: --output: cannot write {str(tmp_path / 'missing' / 'c.png')!r}: " \
                   "No such file or directory"
    assert not (tmp_path / "missing").exists()
    line = one_line_exit_2(estimate(tmp_path, {**CLOUD, "compare": {"apis": ["gpt-4o"]}}, f"--output={tmp_path}"))
    assert line == f"llm-cost-exporter estimate: --output: cannot write {str(tmp_path)!r}: Is a directory"


@pytest.mark.slow  # matplotlib
def test_chart_is_written_and_its_labels_match_the_table(tmp_path):
    scenario = {"pricing": {"cloud": {"hourly": 5.672}}, "capacity_tokens_per_s": 2400, "utilization": 0.3,
                "input_share": 0.75, "compare": {"apis": ["gpt-4o-mini", "gpt-4o", "gpt-4.1"]}}
    chart = tmp_path / "sweep.png"
    result = estimate(tmp_path, scenario, f"--output={chart}")
    assert result.returncode == 0, result.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from exporter import estimate as estimate_module
    from exporter import estimate_chart

    figures = estimate_module.compute(scenario)
    fig = estimate_chart._draw(plt, figures)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    api_lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("gpt-")]
    assert len({(line.get_color(), str(line.get_linestyle())) for line in api_lines}) == 3  # a style of its own each
    assert "this scenario: 30.0% utilization, 2.1883 per 1M" in legend
    table = estimate_module.render_table(figures)
    for name, row in figures["apis"].items():
        shown = estimate_chart.breakeven_text(row["breakeven_utilization"])
        assert f"break-even with {name}: {shown}" in table
        assert any(text.startswith(f"{name} (standard)") and text.endswith(f"break-even {shown}") for text in legend)
    assert "break-even with gpt-4o-mini: 250.1% (unreachable)" in table
