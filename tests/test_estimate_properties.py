"""`estimate` over generated scenarios (hypothesis), through the real CLI entry, in-process.

- Every valid scenario: exit 0, and the JSON figures satisfy the identities of docs/cost-model.md
  ("Identities estimate's figures satisfy"), each recomputed here from the scenario's own inputs,
  not from the command's other figures where an input gives it.
- Every invalid scenario, made by one mutation of a valid one (an unknown key at any depth, a wrong
  type, a bare 25 for a fraction, a required key removed, owned hardware without an electricity
  price): exit 2, exactly one line on stderr naming the mutated key, no traceback, nothing on stdout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pathlib
import tempfile

import pytest
import yaml
from hypothesis import strategies as st

from exporter.cli import main
from exporter.pricing import bundled_apis, find_instance
from test_fuzz import run_cases
from plugins.profiles import examples

pytestmark = pytest.mark.slow  # 4,000 cases under the ci profile: about 50 s of CPU here

REL = 1e-9
CATALOG_APIS = sorted(bundled_apis())


def close(a, b) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


def close_difference(got, a, b) -> bool:
    """got == a - b, to REL of the operands (a difference of near-equal figures has no relative precision)."""
    return abs(got - (a - b)) <= REL * max(abs(a), abs(b), 1e-12)


# -- valid scenarios -----------------------------------------------------------------------------

def positive(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def as_given(share: float):
    """A fraction, written as a number or as the percentage that is the same number."""
    percent = round(share * 100, 2)
    return st.sampled_from([percent / 100, f"{percent:g}%"])


def fraction_value(given) -> float:
    return float(given[:-1]) / 100 if isinstance(given, str) else float(given)


prices = st.fixed_dictionaries({"input_per_million": positive(0, 100), "output_per_million": positive(0, 200)},
                               optional={"cached_input_per_million": positive(0, 50),
                                         "batch": st.fixed_dictionaries({"input_per_million": positive(0, 50),
                                                                         "output_per_million": positive(0, 100)})})


@st.composite
def hardware_pricing(draw) -> dict:
    if draw(st.booleans()):
        cloud = {"hourly": draw(positive(0.01, 200))} if draw(st.booleans()) else \
            {"instance_type": draw(st.sampled_from(["g5.12xlarge", "g4dn.12xlarge", "p5.48xlarge", "a2-highgpu-1g"])),
             "price_multiplier": draw(positive(0.05, 2))}
        out = {"pricing": {"hours_per_month": draw(positive(1, 744)), "cloud": cloud}}
        if draw(st.booleans()):  # energy as information: the instance price includes it
            out["pricing"]["energy"] = {"electricity_per_kwh": draw(positive(0, 1)), "overhead_watts": draw(positive(0, 2000))}
            out["hardware"] = {"gpu_count": draw(st.integers(1, 16)), "gpu_watts": draw(positive(0, 1000))}
        return out
    pricing = {"mode": "owned", "hours_per_month": draw(positive(1, 744)),
               "owned": {"capex": draw(positive(0, 1e6)), "amortization_months": draw(positive(0.5, 120)),
                         "fixed_monthly": draw(positive(0, 1e4))},
               "energy": {"electricity_per_kwh": draw(positive(0, 1)), "pue": draw(positive(1, 2)),
                          "overhead_watts": draw(positive(0, 2000))}}
    if draw(st.booleans()):
        pricing["energy"]["grid_co2e_grams_per_kwh"] = draw(positive(0, 1000))
    return {"pricing": pricing,
            "hardware": {"gpu_count": draw(st.integers(1, 16)), "gpu_watts": draw(positive(0, 1000))}}


@st.composite
def volume(draw, hours: float) -> dict:
    """Capacity and utilization, capacity and a monthly volume, or a monthly volume alone."""
    out: dict = {}
    capacity = draw(positive(0.1, 1e5))
    kind = draw(st.sampled_from(["capacity", "monthly_capacity", "capacity_and_tokens", "tokens"]))
    if kind == "monthly_capacity":
        out["tokens_per_month_at_full_utilization"] = capacity * hours * 3600
    elif kind != "tokens":
        out["capacity_tokens_per_s"] = capacity
    if kind in ("capacity", "monthly_capacity") and draw(st.booleans()):
        out["utilization"] = draw(positive(0.001, 1).flatmap(as_given))
    if kind in ("capacity_and_tokens", "tokens"):
        out["tokens_per_month"] = capacity * hours * 3600 * draw(positive(0.001, 1))
    return out


@st.composite
def apis(draw) -> dict:
    names = draw(st.lists(st.sampled_from(CATALOG_APIS), max_size=3, unique=True))
    inline = draw(st.dictionaries(st.sampled_from(["mine", "negotiated-gpt", "api-x"]), prices, max_size=2))
    names += [n for n in inline if n not in names]
    if not names:
        names = [draw(st.sampled_from(CATALOG_APIS))]
    out: dict = {"compare": {"apis": names}}
    if inline:
        out["catalog"] = {"apis": inline}
    return out


@st.composite
def valid_scenarios(draw) -> dict:
    scenario: dict = draw(apis())
    kind = draw(st.sampled_from(["hardware", "hardware", "hardware", "per_request", "batch_only", "fine_tuning_only"]))
    if kind == "hardware":
        scenario.update(draw(hardware_pricing()))
        scenario.update(draw(volume(scenario["pricing"]["hours_per_month"])))
    elif kind == "per_request":
        scenario["pricing"] = {"cloud": {"hourly": draw(positive(0.01, 200)),
                                         "per_million_requests": draw(positive(0, 50))}}
        scenario["tokens_per_request"] = draw(positive(1, 1e5))
        if draw(st.booleans()):
            scenario["requests_per_day"] = draw(positive(0, 1e7))
    for share in ("input_share", "cached_input_share"):
        if draw(st.booleans()):
            scenario[share] = draw(positive(0, 1).flatmap(as_given))
    if kind == "batch_only" or draw(st.integers(0, 3)) == 0:
        scenario["batch"] = {"prompts": draw(positive(1, 1e7)), "input_tokens_per_prompt": draw(positive(1, 1e4)),
                             "output_tokens_per_prompt": draw(positive(0, 4e3)),
                             "tier": draw(st.sampled_from(["batch", "standard", "flex"]))}
    if kind == "fine_tuning_only" or draw(st.integers(0, 5)) == 0:
        scenario["fine_tuning"] = {"training_tokens": draw(positive(0, 1e9)), "epochs": draw(st.integers(1, 10)),
                                   "training_per_million": draw(positive(0, 30))}
        if draw(st.booleans()):
            scenario["fine_tuning"]["base"] = {"input_per_million": draw(positive(0.01, 10)),
                                               "output_per_million": draw(positive(0.01, 10))}
            scenario["fine_tuning"]["tuned"] = {"input_per_million": draw(positive(0.01, 100)),
                                                "output_per_million": draw(positive(0.01, 100))}
    return scenario


# -- the command, in-process -----------------------------------------------------------------------

def run_estimate(scenario: dict, *extra) -> tuple[int, str, str, str]:
    """(exit code, stdout, stderr, path) of `llm-cost-exporter estimate` on the scenario."""
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "scenario.yml"
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["estimate", str(path), *extra])
        return code, out.getvalue(), err.getvalue(), str(path)


# -- the identities --------------------------------------------------------------------------------

def api_rates(scenario: dict, name: str, tier: str) -> tuple[dict, str]:
    """The API's prices in `tier` from the scenario's own catalog or the bundled one, and the tier applied."""
    inline = scenario.get("catalog", {}).get("apis", {}).get(name)
    if inline is None:
        bundled = bundled_apis()[name]
        inline = {"input_per_million": bundled.input_per_million, "output_per_million": bundled.output_per_million,
                  "cached_input_per_million": bundled.cached_input_per_million}
        tiered = getattr(bundled, tier, None) if tier != "standard" else None
        if tiered is not None:
            return {"input_per_million": tiered.input_per_million, "output_per_million": tiered.output_per_million,
                    "cached_input_per_million": tiered.cached_input_per_million}, tier
        return inline, "standard"
    if tier != "standard" and tier in inline:
        return inline[tier], tier
    return inline, "standard"


def blended(p: dict, input_share: float, cached_share: float) -> float:
    cached = p.get("cached_input_per_million")
    cached = p["input_per_million"] if cached is None else cached
    return input_share * ((1 - cached_share) * p["input_per_million"] + cached_share * cached) + \
        (1 - input_share) * p["output_per_million"]


def check_hardware(scenario: dict, f: dict) -> None:
    p = scenario["pricing"]
    hours = p.get("hours_per_month", 730.0)
    assert close(f["hours_per_month"], hours)
    if "hardware" in scenario:
        hw, energy = scenario["hardware"], p["energy"]
        kwh = (hw["gpu_count"] * hw["gpu_watts"] + energy["overhead_watts"]) * hours / 1000
        assert close(f["energy_kwh_per_month"], kwh)
        assert close(f["energy_cost_per_month"], kwh * energy.get("pue", 1.0) * energy["electricity_per_kwh"])
        if "grid_co2e_grams_per_kwh" in energy:
            assert close(f["co2e_kg_per_month"], kwh * energy["pue"] * energy["grid_co2e_grams_per_kwh"] / 1000)
    if p.get("mode") == "owned":
        owned = p["owned"]
        assert close(f["amortization_per_month"], owned["capex"] / owned["amortization_months"])
        # conservation: the month's cost is exactly its parts
        assert close(f["opex_per_month"], f["energy_cost_per_month"] + owned["fixed_monthly"])
        assert close(f["monthly_cost"], f["opex_per_month"] + f["amortization_per_month"])
    else:
        hourly = p["cloud"].get("hourly")
        if hourly is not None:
            assert f["hourly"] == hourly and f["price_source"] == "configured"
        else:
            listed = find_instance(p["cloud"]["instance_type"], None)
            assert f["price_source"] == f"catalog:{listed.provider}/{listed.instance_type}/{listed.region}"
            assert close(f["hourly"], listed.hourly * p["cloud"]["price_multiplier"])
        assert close(f["monthly_cost"], f["hourly"] * hours)


def check_volume(scenario: dict, f: dict) -> None:
    hours = f["hours_per_month"]
    capacity = scenario.get("capacity_tokens_per_s")
    if "tokens_per_month_at_full_utilization" in scenario:
        capacity = scenario["tokens_per_month_at_full_utilization"] / (hours * 3600)
    if capacity is None:
        assert "capacity_tokens_per_s" not in f and "sweep" not in f and "breakeven_utilization" not in str(f)
    else:
        u = fraction_value(scenario["utilization"]) if "utilization" in scenario else \
            scenario["tokens_per_month"] / (capacity * hours * 3600) if "tokens_per_month" in scenario else 1.0
        assert close(f["capacity_tokens_per_s"], capacity) and close(f["utilization"], u)
        full = f["cost_per_million_at_full_utilization"]
        assert close(full, f["monthly_cost"] / hours / (capacity * 3600) * 1e6)
        assert close(f["tokens_per_month"], capacity * u * hours * 3600)
        assert close(f["cost_per_million"], full / u)  # $/1M actual = $/1M at 100% / utilization
        for point in f["sweep"]:
            assert close(point["cost_per_million"], full / point["utilization"])
    assert close(f["cost_per_million"], f["monthly_cost"] / f["tokens_per_month"] * 1e6)
    if "amortization_per_month" in f:
        assert close(f["cost_per_million_excluding_capex"], f["opex_per_month"] / f["tokens_per_month"] * 1e6)
        assert close_difference(f["amortization_per_month"] / f["tokens_per_month"] * 1e6,
                                f["cost_per_million"], f["cost_per_million_excluding_capex"])


def check_api_row(scenario: dict, f: dict, name: str, row: dict) -> None:
    rates, tier = api_rates(scenario, name, "standard")
    assert row["tier"] == tier == "standard"
    price = blended(rates, fraction_value(scenario.get("input_share", 0.5)),
                    fraction_value(scenario.get("cached_input_share", 0.0)))
    assert close(row["api_blended_per_million"], price)
    if "cost_per_million_at_full_utilization" in f:
        full = f["cost_per_million_at_full_utilization"]
        # break-even = $/1M at 100% / the API's blended price: there, self-hosting costs what the API does
        assert (row["breakeven_utilization"] is None) == (price == 0)
        if price:
            assert close(row["breakeven_utilization"], full / price)
    if "tokens_per_month" in f:
        api_monthly = f["tokens_per_month"] * price / 1e6
        assert close(row["api_equivalent_per_month"], api_monthly)
        assert close_difference(row["monthly_saving"], api_monthly, f.get("opex_per_month", f["monthly_cost"]))
        if "amortization_per_month" in f:
            assert close_difference(row["monthly_saving_including_capex"], api_monthly, f["monthly_cost"])
            capex = scenario["pricing"]["owned"]["capex"]
            if row["monthly_saving"] > 0:  # payback = capex / (API monthly - opex monthly)
                assert close(row["payback_months"], capex / row["monthly_saving"])
            else:
                assert row["payback_months"] is None
    if "tokens_per_request" in scenario:
        per_request = scenario["tokens_per_request"] * price / 1e6
        fee = scenario["pricing"]["cloud"].get("per_million_requests", 0.0) / 1e6
        assert close(row["api_cost_per_request"], per_request)
        if per_request > fee:  # break-even requests/day = daily fixed cost / (API per request - fee)
            assert close(row["breakeven_requests_per_day"] * (per_request - fee), f["hourly"] * 24)
        else:
            assert row["breakeven_requests_per_day"] is None
        if "requests_per_day" in scenario:
            assert close(row["api_cost_per_day"], scenario["requests_per_day"] * per_request)
            assert close(f["self_hosted_cost_per_day"], f["hourly"] * 24 + scenario["requests_per_day"] * fee)


def check_batch(scenario: dict, f: dict) -> None:
    b, got = scenario["batch"], f["batch"]
    inputs, outputs = b["prompts"] * b["input_tokens_per_prompt"], b["prompts"] * b["output_tokens_per_prompt"]
    assert close(got["total_tokens"], inputs + outputs) and close(got["input_share"], inputs / (inputs + outputs))
    if "cost_per_million_at_full_utilization" in f:
        assert close(got["self_hosted_cost"], (inputs + outputs) * f["cost_per_million_at_full_utilization"] / 1e6)
    for name in scenario["compare"]["apis"]:
        rates, tier = api_rates(scenario, name, b["tier"])
        row = got["apis"][name]
        assert row["tier"] == tier and (("tier_note" in row) == (tier != b["tier"]))
        bill = (inputs * rates["input_per_million"] + outputs * rates["output_per_million"]) / 1e6
        assert close(row["api_bill"], bill)
        assert close(row["api_blended_per_million"] * (inputs + outputs) / 1e6, bill)  # the batch's own mix
        if "self_hosted_cost" in got:
            assert close_difference(row["saving"], bill, got["self_hosted_cost"])


def check_valid(scenario: dict) -> None:
    code, out, err, _ = run_estimate(scenario, "--format=json")
    assert code == 0 and err == "", err
    f = json.loads(out)
    if "pricing" in scenario:
        check_hardware(scenario, f)
        if "tokens_per_month" in f:
            check_volume(scenario, f)
        assert list(f["apis"]) == scenario["compare"]["apis"]  # no comparison silently left out
        for name, row in f["apis"].items():
            check_api_row(scenario, f, name, row)
    if "batch" in scenario:
        check_batch(scenario, f)
    if "fine_tuning" in scenario:
        ft = scenario["fine_tuning"]
        assert close(f["fine_tuning"]["training_cost"], ft["training_tokens"] * ft["epochs"] * ft["training_per_million"] / 1e6)
    code, table, err, _ = run_estimate(scenario)
    assert code == 0 and err == "" and table.strip()


def test_valid_scenarios_satisfy_the_cost_identities():
    assert run_cases(2000, valid_scenarios(), check_valid) >= examples(2000)


# -- invalid scenarios -----------------------------------------------------------------------------

def mappings(node, path=""):
    """(path, mapping) of every mapping in the scenario, the top level included."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from mappings(value, f"{path}.{key}" if path else str(key))


def leaves(node, path=""):
    """(path, parent, key) of every number in the scenario (not inside a list)."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield here, node, key
            yield from leaves(value, here)


REQUIRED = {"batch": ("prompts", "input_tokens_per_prompt", "output_tokens_per_prompt"),
            "fine_tuning": ("training_tokens", "epochs", "training_per_million"),
            "hardware": ("gpu_count", "gpu_watts")}


@st.composite
def invalid_scenarios(draw) -> tuple[dict, str, str]:
    """(scenario, the key its error must name, what was done) from one mutation of a valid scenario."""
    scenario = copy.deepcopy(draw(valid_scenarios()))
    kinds = ["unknown_key", "wrong_type", "bare_percent", "missing_required"]
    if scenario.get("pricing", {}).get("mode") == "owned":
        kinds.append("owned_without_electricity")
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown_key":
        path, node = draw(st.sampled_from(list(mappings(scenario))))
        base = draw(st.sampled_from(sorted(node) or ["key"]))
        key = draw(st.sampled_from([base[:-1], base + "s", base.replace("_", ""), "capx", "x"]).filter(
            lambda k: k and k not in node))
        node[key] = draw(st.sampled_from([1, "a", 0.5, None]))
        return scenario, f"{path}.{key}" if path else key, kind
    if kind == "wrong_type":
        path, parent, key = draw(st.sampled_from(list(leaves(scenario))))
        parent[key] = draw(st.sampled_from(["cheap", [1], True, {"a": 1}, -1.5, float("nan")]))  # no number here is < 0
        return scenario, path, f"{kind}: {parent[key]!r}"
    if kind == "bare_percent":
        key = draw(st.sampled_from(["input_share", "cached_input_share"] +
                                   (["utilization"] if "capacity_tokens_per_s" in scenario and "tokens_per_month" not in scenario else [])))
        scenario[key] = draw(st.integers(2, 100))
        return scenario, key, kind
    if kind == "missing_required":
        options = [(section, key) for section, keys in REQUIRED.items() if section in scenario for key in keys]
        options += [("catalog.apis." + name, price) for name in scenario.get("catalog", {}).get("apis", {})
                    for price in ("input_per_million", "output_per_million")]
        if not options:
            scenario["batch"] = {"prompts": 10, "input_tokens_per_prompt": 10}
            return scenario, "batch.output_tokens_per_prompt", kind
        section, key = draw(st.sampled_from(options))
        node = scenario
        for part in section.split(".", 2):
            node = node[part]
        del node[key]
        return scenario, f"{section}.{key}", kind
    del scenario["pricing"]["energy"]["electricity_per_kwh"]
    return scenario, "pricing.energy.electricity_per_kwh", kind


def check_invalid(case) -> None:
    scenario, key, what = case
    code, out, err, path = run_estimate(scenario)
    assert code == 2, (what, key, out[:200], err)
    assert out == "", (what, out[:200])
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, (what, err)
    prefix = f"llm-cost-exporter estimate: {path}: {key}: "
    assert lines[0].startswith(prefix) or lines[0].startswith(f"llm-cost-exporter estimate: {path}: {key}["), \
        (what, key, lines[0])


def test_invalid_scenarios_are_one_line_naming_the_key_and_exit_2():
    assert run_cases(2000, invalid_scenarios(), check_invalid) >= examples(2000)
