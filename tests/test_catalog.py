"""Price catalogs: the bundled files load, are sourced and dated, hold the prices the rest of the
project relies on; broken files fail with the file, entry and field named; the LiteLLM importer
converts, reports malformed entries by name, and its output loads back as a catalog."""

import datetime
import json
import math
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import catalog, spotprices
from exporter.catalog import ApiPrice, CatalogError, InstancePrice, litellm
from exporter.config import from_dict
from plugins.profiles import examples

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "litellm_sample.json"
TODAY = datetime.date.today()

REQUIRED_INSTANCES = [
    ("aws", "g4dn.xlarge", "us-east-1"), ("aws", "g4dn.12xlarge", "us-east-1"),
    ("aws", "g5.xlarge", "us-east-1"), ("aws", "g5.12xlarge", "us-east-1"), ("aws", "g5.48xlarge", "us-east-1"),
    ("aws", "g6.xlarge", "us-east-1"), ("aws", "g6.12xlarge", "us-east-1"),
    ("aws", "g6e.xlarge", "us-east-1"), ("aws", "g6e.12xlarge", "us-east-1"),
    ("aws", "p4d.24xlarge", "us-east-1"), ("aws", "p5.48xlarge", "us-east-1"),
    ("gcp", "a2-highgpu-1g", "us-central1"), ("gcp", "a2-highgpu-8g", "us-central1"),
    ("gcp", "a3-highgpu-8g", "us-central1"), ("gcp", "g2-standard-4", "us-central1"),
    ("gcp", "g2-standard-48", "us-central1"),
    ("azure", "Standard_NC24ads_A100_v4", "eastus"), ("azure", "Standard_NC96ads_A100_v4", "eastus"),
    ("azure", "Standard_NC40ads_H100_v5", "eastus"), ("azure", "Standard_NC80adis_H100_v5", "eastus"),
]
REQUIRED_APIS = {
    "gpt-4o": "openai", "gpt-4o-mini": "openai", "gpt-4.1": "openai", "gpt-4.1-mini": "openai",
    "gpt-3.5-turbo": "openai", "ft:gpt-3.5-turbo": "openai", "ft:gpt-4o-mini": "openai",
    "claude-haiku-4-5": "anthropic", "claude-sonnet-4-5": "anthropic",
    "gemini-2.5-flash": "google", "gemini-2.5-flash-lite": "google",
}


# -- bundled catalogs ------------------------------------------------------------------------

def test_bundled_catalogs_load_and_every_entry_is_sourced_and_dated():
    instances, apis = catalog.load_instances(), catalog.load_apis()
    assert len(instances) >= len(REQUIRED_INSTANCES) and len(apis) >= len(REQUIRED_APIS)
    for entry in [*instances, *apis.values()]:
        assert entry.source.startswith("https://"), entry
        checked = datetime.date.fromisoformat(entry.checked)
        assert datetime.date(2025, 1, 1) <= checked <= TODAY, entry


@pytest.mark.parametrize("provider,instance_type,region", REQUIRED_INSTANCES)
def test_required_instance_is_listed(provider, instance_type, region):
    price = catalog.find_instance(catalog.load_instances(), instance_type, region)
    assert price is not None and price.region == region and price.provider == provider
    assert price.hourly > 0 and price.gpus >= 1 and price.gpu


def test_instance_prices_the_seeds_and_the_demo_use():
    instances = catalog.load_instances()
    assert catalog.find_instance(instances, "g4dn.12xlarge").hourly == 3.912
    assert catalog.find_instance(instances, "g5.12xlarge").hourly == 5.672
    # after AWS's June 2025 cut, not the old 98.32 / 32.77
    assert catalog.find_instance(instances, "p5.48xlarge").hourly < 60
    assert catalog.find_instance(instances, "p4d.24xlarge").hourly < 25


def test_gpu_counts_match_the_instance_names():
    instances = catalog.load_instances()
    for name, gpus in [("g5.48xlarge", 8), ("g6e.12xlarge", 4), ("a2-highgpu-8g", 8), ("g2-standard-48", 4),
                       ("Standard_NC96ads_A100_v4", 4), ("Standard_NC80adis_H100_v5", 2)]:
        assert catalog.find_instance(instances, name).gpus == gpus, name


@pytest.mark.parametrize("name,provider", REQUIRED_APIS.items())
def test_required_api_is_listed(name, provider):
    api = catalog.load_apis()[name]
    assert api.name == name and api.provider == provider
    assert 0 < api.input_per_million < api.output_per_million
    assert api.cached_input_per_million is None or api.cached_input_per_million < api.input_per_million


def test_api_prices_other_tests_rely_on():
    apis = catalog.load_apis()
    mini = apis["gpt-4o-mini"]
    assert (mini.input_per_million, mini.output_per_million, mini.cached_input_per_million) == (0.15, 0.60, 0.075)
    assert apis["gpt-3.5-turbo"].cached_input_per_million is None
    assert apis["gpt-4o"].input_per_million > mini.input_per_million


def test_every_bundled_tier_is_sourced_dated_and_cheaper_or_dearer_as_its_kind_says():
    apis = catalog.load_apis()
    tiers = [(name, tier, getattr(api, tier)) for name, api in apis.items() for tier in api.tiers()[1:]]
    assert {t for _, t, _ in tiers} == {"batch", "flex", "priority", "long_context"}
    for name, tier, price in tiers:
        assert price.source.startswith("https://") and datetime.date.fromisoformat(price.checked) <= TODAY, (name, tier)
        standard = apis[name]
        if tier in ("batch", "flex"):  # every provider's batch and flex are half the standard price today
            assert (price.input_per_million, price.output_per_million) == \
                (standard.input_per_million / 2, standard.output_per_million / 2), (name, tier)
        else:
            assert price.input_per_million > standard.input_per_million, (name, tier)
    for name in ("claude-haiku-4-5", "claude-sonnet-4-5"):  # Anthropic's 5-minute cache write: 1.25x input
        assert apis[name].cache_write_per_million == pytest.approx(1.25 * apis[name].input_per_million)


def test_for_tier_gives_the_tier_and_falls_back_to_standard_saying_so():
    apis = catalog.load_apis()
    batch = apis["gpt-4o"].for_tier("batch")
    assert (batch.name, batch.tier, batch.input_per_million, batch.output_per_million) == ("gpt-4o", "batch", 1.25, 5.0)
    flex = apis["gpt-4o"].for_tier("flex")  # OpenAI offers no flex for gpt-4o
    assert flex == catalog.ApiRates("gpt-4o", "standard", 2.5, 10.0, 1.25, None)
    assert apis["gpt-3.5-turbo"].for_tier("batch").tier == "standard"
    assert apis["claude-haiku-4-5"].for_tier("standard").cache_write_per_million == 1.25
    long = apis["gemini-2.5-pro"].for_tier("long_context")
    assert (long.tier, long.input_per_million, long.output_per_million) == ("long_context", 2.5, 15.0)
    with pytest.raises(ValueError, match="allowed: standard, batch, flex, priority, long_context"):
        apis["gpt-4o"].for_tier("cheap")


@pytest.mark.parametrize("tier,change,key,problem", [
    ("batch", {"inptu_per_million": 1}, "batch.inptu_per_million", "unknown key, allowed keys: input_per_million"),
    ("batch", {"output_per_million": -1}, "batch.output_per_million", "allowed: a number >= 0"),
    ("flex", {"source": None}, "flex.source", "allowed: a non-empty string"),
    ("long_context", {}, "long_context.threshold_tokens", "required key is missing"),
    ("long_context", {"threshold_tokens": 0}, "long_context.threshold_tokens", "allowed: a whole number >= 1"),
    ("priority", "fast", "priority", "allowed: a mapping"),
])
def test_broken_tier_names_file_entry_tier_and_field(tmp_path, tier, change, key, problem):
    good = {"input_per_million": 1.25, "output_per_million": 5.0, "source": "https://example.com/", "checked": "2025-08-01"}
    path = tmp_path / "apis.yaml"
    path.write_text(yaml.safe_dump({"apis": {"gpt-4o-mini": {**GOOD_API, tier: {**good, **change}
                                                             if isinstance(change, dict) else change}}}))
    with pytest.raises(CatalogError) as err:
        catalog.load_apis(path)
    assert str(err.value).startswith(f"{path}: apis.gpt-4o-mini.{key}: ") and problem in str(err.value), str(err.value)


@pytest.mark.parametrize("missing", ["source", "checked"])
def test_a_bundled_tier_must_name_its_source_and_date(tmp_path, missing):
    tier = {"input_per_million": 1.25, "output_per_million": 5.0, "source": "https://example.com/", "checked": "2025-08-01"}
    del tier[missing]
    path = tmp_path / "apis.yaml"
    path.write_text(yaml.safe_dump({"apis": {"gpt-4o-mini": {**GOOD_API, "batch": tier}}}))
    with pytest.raises(CatalogError, match=rf"apis.gpt-4o-mini.batch.{missing}: required key is missing"):
        catalog.load_apis(path)


def test_bundled_api_catalog_is_in_the_format_the_importer_writes(tmp_path):
    apis = catalog.load_apis()
    path = tmp_path / "apis.yaml"
    path.write_text(litellm.dump_catalog(list(apis.values())))
    assert catalog.load_apis(path) == apis


# -- find_instance ---------------------------------------------------------------------------

def _instance(instance_type, region, hourly):
    return InstancePrice(instance_type, hourly, provider="aws", region=region, gpus=1, gpu="NVIDIA A10G",
                         source="https://example.com/", checked="2025-08-01")


def test_find_instance_by_region_and_default_region():
    prices = [_instance("g5.xlarge", "us-east-1", 1.006), _instance("g5.xlarge", "eu-west-1", 1.123),
              _instance("g6.xlarge", "us-east-1", 0.8048)]
    assert catalog.find_instance(prices, "g5.xlarge", "eu-west-1").hourly == 1.123
    assert catalog.find_instance(prices, "g5.xlarge").region == "us-east-1"  # the first listed
    assert catalog.find_instance(prices, "g5.xlarge", "ap-south-1").region == "us-east-1"
    assert catalog.find_instance(prices, "g6.xlarge", "eu-west-1").hourly == 0.8048
    assert catalog.find_instance(prices, "x9.huge") is None
    assert catalog.find_instance([], "g5.xlarge", "us-east-1") is None


def test_find_instance_in_the_bundled_catalog_by_region():
    instances = catalog.load_instances()
    assert catalog.find_instance(instances, "a2-highgpu-1g", "us-central1").provider == "gcp"
    assert catalog.find_instance(instances, "Standard_NC24ads_A100_v4", "eastus").gpu == "NVIDIA A100 80GB PCIe"


# -- broken catalog files ----------------------------------------------------------------------

GOOD_INSTANCE = {"provider": "aws", "instance_type": "g5.xlarge", "region": "us-east-1", "gpus": 1,
                 "gpu": "NVIDIA A10G", "hourly": 1.006, "source": "https://aws.amazon.com/ec2/pricing/on-demand/",
                 "checked": "2025-08-01"}
GOOD_API = {"provider": "openai", "input_per_million": 0.15, "output_per_million": 0.6,
            "cached_input_per_million": 0.075, "source": "https://platform.openai.com/docs/pricing",
            "checked": "2025-08-01"}


@pytest.mark.parametrize("change,field,problem", [
    ({"hourly": -1.0}, "hourly", "got -1.0, allowed: a number >= 0"),
    ({"hourly": "cheap"}, "hourly", "got 'cheap', allowed: a number"),
    ({"hourly": float("nan")}, "hourly", "got nan, allowed: a finite number"),
    ({"hourly": float("inf")}, "hourly", "got inf, allowed: a finite number"),
    ({"gpus": 0}, "gpus", "got 0, allowed: a whole number >= 1"),
    ({"gpus": True}, "gpus", "got True, allowed: a whole number"),
    ({"source": None}, "source", "a non-empty string"),
    ({"checked": "last week"}, "checked", "an ISO date"),
    ({"houly": 1.0}, "houly", "unknown key"),
    ({"region": "us-west-2", "instance_type": "g4dn.xlarge"}, "region", "duplicate of instances[0]"),
])
def test_broken_instance_entry_names_file_entry_and_field(tmp_path, change, field, problem):
    first = {**GOOD_INSTANCE, "instance_type": "g4dn.xlarge", "region": "us-west-2"}
    path = tmp_path / "instances.yaml"
    path.write_text(yaml.safe_dump({"instances": [first, {**GOOD_INSTANCE, **change}]}))
    with pytest.raises(CatalogError) as err:
        catalog.load_instances(path)
    message = str(err.value)
    assert message.startswith(f"{path}: instances[1].{field}: ") and problem in message, message
    assert (err.value.source, err.value.key) == (str(path), f"instances[1].{field}")


@pytest.mark.parametrize("missing", ["provider", "instance_type", "gpus", "gpu", "hourly", "source", "checked"])
def test_instance_entry_missing_a_required_field(tmp_path, missing):
    path = tmp_path / "instances.yaml"
    path.write_text(yaml.safe_dump({"instances": [{k: v for k, v in GOOD_INSTANCE.items() if k != missing}]}))
    with pytest.raises(CatalogError, match=rf"instances\[0\]\.{missing}: required key is missing"):
        catalog.load_instances(path)


def test_instance_region_defaults_and_unquoted_dates_are_read(tmp_path):
    path = tmp_path / "instances.yaml"
    path.write_text("instances:\n  - {provider: custom, instance_type: box, gpus: 2, gpu: NVIDIA L4, hourly: 2,\n"
                    "     source: https://example.com/, checked: 2025-08-01}\n")
    [price] = catalog.load_instances(path)
    assert (price.region, price.hourly, price.checked) == ("default", 2.0, "2025-08-01")


@pytest.mark.parametrize("change,field,problem", [
    ({"output_per_million": -0.6}, "output_per_million", "allowed: a number >= 0"),
    ({"cached_input_per_million": "free"}, "cached_input_per_million", "allowed: a number"),
    ({"input_per_million": None}, "input_per_million", "allowed: a number"),
    ({"checked": None}, "checked", "an ISO date"),
    ({"provder": "openai"}, "provder", "unknown key"),
])
def test_broken_api_entry_names_file_entry_and_field(tmp_path, change, field, problem):
    path = tmp_path / "apis.yaml"
    path.write_text(yaml.safe_dump({"apis": {"gpt-4o-mini": {**GOOD_API, **change}}}))
    with pytest.raises(CatalogError) as err:
        catalog.load_apis(path)
    message = str(err.value)
    assert message.startswith(f"{path}: apis.gpt-4o-mini.{field}: ") and problem in message, message


@pytest.mark.parametrize("text,problem", [
    ('apis:\n  "gpt-4o": {input_per_million: 1, output_per_million: 2, provider: openai, source: s, checked: "2025-08-01"}\n'
     '  "gpt-4o": {input_per_million: 1, output_per_million: 2, provider: openai, source: s, checked: "2025-08-01"}\n',
     "duplicate key 'gpt-4o' (line 3)"),
    ("apis: [gpt-4o]\n", "apis: got ['gpt-4o'], allowed: a mapping"),
    ("- just a list\n", "the top level must be a mapping"),
    ("apis: {}\ninstances: []\n", "instances: unknown key, allowed keys: apis"),
    ("apis: {\n", "not valid YAML"),
])
def test_broken_api_file(tmp_path, text, problem):
    path = tmp_path / "apis.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        catalog.load_apis(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_catalog_file_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        catalog.load_instances(tmp_path / "absent.yaml")


# -- api_from_dict (config overrides, inline scenario prices) -----------------------------------

def test_api_from_dict_defaults():
    api = catalog.api_from_dict("house-model", {"input_per_million": 1, "output_per_million": 2})
    assert api == ApiPrice("house-model", 1.0, 2.0, None, provider="custom", source="config", checked="")
    api = catalog.api_from_dict("x", {"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": 0.5,
                                      "provider": "openai", "source": "contract", "checked": "2025-08-01"})
    assert (api.provider, api.cached_input_per_million, api.source, api.checked) == ("openai", 0.5, "contract", "2025-08-01")


@pytest.mark.parametrize("entry,message", [
    ({"input_per_million": -1, "output_per_million": 2}, "house-model.input_per_million: got -1, allowed: a number >= 0"),
    ({"input_per_million": 1, "output_per_million": True}, "house-model.output_per_million: got True"),
    ({"input_per_million": 1}, "house-model.output_per_million: required key is missing"),
    ({"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": -0.1},
     "house-model.cached_input_per_million: got -0.1"),
    ({"input_per_million": 1, "output_per_million": 2, "output_per_millon": 3}, "house-model.output_per_millon: unknown key"),
    ("cheap", "house-model: got 'cheap', allowed: a mapping"),
])
def test_api_from_dict_names_the_key(entry, message):
    with pytest.raises(CatalogError) as err:
        catalog.api_from_dict("house-model", entry)
    assert str(err.value).startswith(message), str(err.value)


# -- LiteLLM import ------------------------------------------------------------------------------

def sample():
    return json.loads(SAMPLE.read_text())


def test_convert_sample_imports_chat_entries_per_million():
    result = litellm.convert(sample(), checked="2025-08-01")
    prices = {p.name: p for p in result.imported}
    assert set(prices) == {"gpt-4o-mini", "gpt-4.1-mini", "gpt-3.5-turbo", "claude-haiku-4-5", "gemini-2.5-flash",
                           "gpt-4o", "gpt-5-mini", "claude-sonnet-4-5", "gemini/gemini-2.5-pro"}
    mini = prices["gpt-4o-mini"]
    # exact: no float noise such as 0.15000000000000002 or 0.39999999999999997
    assert (mini.input_per_million, mini.output_per_million, mini.cached_input_per_million) == (0.15, 0.6, 0.075)
    assert (prices["gpt-4.1-mini"].input_per_million, prices["gpt-4.1-mini"].output_per_million) == (0.4, 1.6)
    assert prices["gpt-3.5-turbo"].cached_input_per_million is None
    assert prices["claude-haiku-4-5"].provider == "anthropic"
    assert prices["gemini-2.5-flash"].provider == "vertex_ai-language-models"
    assert all(p.source == litellm.SOURCE and p.checked == "2025-08-01" for p in prices.values())


def test_convert_reports_malformed_entries_by_name_and_skips_them():
    result = litellm.convert(sample())
    reasons = dict(result.skipped)
    assert reasons["broken-missing-output"] == "missing output_cost_per_token"
    assert reasons["broken-string-cost"] == "input_cost_per_token is not a number (got 'abc')"
    assert "output_cost_per_token" in reasons["broken-negative-cost"] and ">= 0" in reasons["broken-negative-cost"]
    assert reasons["broken-list-entry"] == "not an object (got list)"
    assert reasons["text-embedding-3-small"] == "mode embedding" and result.filtered == {"text-embedding-3-small"}
    assert "sample_spec" not in reasons and "sample_spec" not in {p.name for p in result.imported}
    assert len(result.imported) + len(result.skipped) == len(sample()) - 1


def test_convert_filters_providers_and_modes():
    result = litellm.convert(sample(), providers={"anthropic"})
    assert [p.name for p in result.imported] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert dict(result.skipped)["gpt-4o-mini"] == "provider openai"
    assert "broken-negative-cost" not in result.filtered  # an anthropic entry: malformed, not filtered
    embeddings = litellm.convert(sample(), modes=("embedding",))
    assert [(p.name, p.input_per_million, p.output_per_million) for p in embeddings.imported] == \
        [("text-embedding-3-small", 0.02, 0.0)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.0000001, 10 ** 400, None, [1e-6], {"a": 1}])
def test_convert_rejects_unusable_costs(value):
    result = litellm.convert({"m": {"mode": "chat", "input_cost_per_token": value, "output_cost_per_token": 1e-6}})
    assert result.imported == [] and result.skipped[0][0] == "m" and "input_cost_per_token" in result.skipped[0][1]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
ENTRY = st.fixed_dictionaries({}, optional={
    "mode": st.sampled_from(["chat", "embedding"]) | JSON, "litellm_provider": st.sampled_from(["openai"]) | JSON,
    "input_cost_per_token": st.floats(min_value=0, max_value=1e-3) | JSON,
    "output_cost_per_token": st.floats(min_value=0, max_value=1e-3) | JSON,
    "cache_read_input_token_cost": JSON, "input_cost_per_token_batches": st.floats(min_value=0, max_value=1e-3) | JSON,
    "output_cost_per_token_batches": JSON, "cache_creation_input_token_cost_flex": JSON,
    "input_cost_per_token_above_200k_tokens": JSON, "output_cost_per_token_above_200k_tokens": JSON}) | JSON


@pytest.mark.slow  # 300 hypothesis cases
@settings(max_examples=examples(300))
@given(st.dictionaries(st.text(min_size=1, max_size=8), ENTRY, max_size=6))
def test_convert_never_crashes_and_accounts_for_every_entry(data):
    result = litellm.convert(data, providers={"openai"})
    names = [p.name for p in result.imported] + [name for name, _ in result.skipped]
    assert sorted(names) == sorted(n for n in data if n != litellm.DOC_KEY)
    for price in result.imported:
        assert all(math.isfinite(v) and v >= 0 for v in (price.input_per_million, price.output_per_million))


def test_convert_brings_in_the_tiers_litellm_prices(tmp_path):
    """The real entries of tests/data/litellm_sample.json (LiteLLM 1.110.2): each tier's own keys,
    per 1M tokens, and nothing where LiteLLM prices no such tier."""
    prices = {p.name: p for p in litellm.convert(sample(), checked="2025-08-01").imported}
    entry = sample()
    for name, price in prices.items():
        for tier, suffix in litellm.TIER_SUFFIXES.items():
            offered = getattr(price, tier)
            if f"input_cost_per_token{suffix}" not in entry[name]:
                assert offered is None, (name, tier)
                continue
            assert (offered.input_per_million, offered.output_per_million) == pytest.approx(
                (entry[name]["input_cost_per_token" + suffix] * 1e6, entry[name]["output_cost_per_token" + suffix] * 1e6))
    gpt4o = prices["gpt-4o"]
    assert (gpt4o.batch.input_per_million, gpt4o.batch.output_per_million) == (1.25, 5.0)  # half of 2.5 / 10
    assert gpt4o.flex is None and gpt4o.priority.cached_input_per_million == 2.125
    assert prices["gpt-5-mini"].flex.output_per_million == 1.0
    sonnet = prices["claude-sonnet-4-5"]
    assert (sonnet.cache_write_per_million, sonnet.batch.cache_write_per_million) == (3.75, 1.875)  # 1.25x input
    assert prices["claude-haiku-4-5"].cache_write_per_million == 1.25
    pro = prices["gemini/gemini-2.5-pro"].long_context
    assert (pro.threshold_tokens, pro.input_per_million, pro.output_per_million, pro.cached_input_per_million) == \
        (200_000, 2.5, 15.0, 0.25)
    assert prices["gpt-4o-mini"].tiers() == ("standard",)  # the sample's older copy of it has no tier keys


def test_litellm_sample_round_trips_through_the_catalog_format(tmp_path):
    imported = litellm.convert(sample(), checked="2025-08-01").imported
    path = tmp_path / "apis.yaml"
    path.write_text(litellm.dump_catalog(imported))
    assert catalog.load_apis(path) == {p.name: p for p in imported}
    assert catalog.load_apis(path)["gemini/gemini-2.5-pro"].tiers() == ("standard", "batch", "flex", "priority",
                                                                        "long_context")


def test_dump_catalog_writes_awkward_names_and_tiny_prices_loadably(tmp_path):
    prices = [ApiPrice("ft:gpt-4o-mini-2024-07-18:org::abc", 1e-05, 123456.0, 0.0, provider="null", source='say "hi"',
                       checked="2025-08-01"),
              ApiPrice("yes", 0.0000036, 2.0, None, provider="openai", source="x: y", checked="2025-08-01")]
    path = tmp_path / "apis.yaml"
    path.write_text(litellm.dump_catalog(prices))
    assert catalog.load_apis(path) == {p.name: p for p in prices}


def run_import(*args):
    return subprocess.run([sys.executable, "-m", "exporter.catalog.litellm", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_command_writes_the_catalog_and_reports_skipped_entries(tmp_path):
    output = tmp_path / "apis.yaml"
    result = run_import(SAMPLE, "--output", output)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "imported 9, skipped 5"
    assert "skipped broken-string-cost: input_cost_per_token is not a number (got 'abc')" in lines
    assert "skipped broken-missing-output: missing output_cost_per_token" in lines
    assert "skipped broken-list-entry: not an object (got list)" in lines
    assert not any(line.startswith("skipped text-embedding-3-small") for line in lines)  # counted, not listed
    apis = catalog.load_apis(output)
    assert (apis["gpt-4o-mini"].input_per_million, apis["gpt-4o-mini"].output_per_million,
            apis["gpt-4o-mini"].cached_input_per_million) == (0.15, 0.6, 0.075)
    assert apis["gpt-4o-mini"].checked == TODAY.isoformat()


def test_command_without_output_prints_the_catalog_and_filters_providers(tmp_path):
    result = run_import(SAMPLE, "--provider", "openai", "--provider", "anthropic")
    assert result.returncode == 0, result.stderr
    names = set(yaml.safe_load(result.stdout)["apis"])
    assert names == {"gpt-4o-mini", "gpt-4.1-mini", "gpt-3.5-turbo", "claude-haiku-4-5", "gpt-4o", "gpt-5-mini",
                     "claude-sonnet-4-5"}


@pytest.mark.parametrize("content,problem", [
    (None, "cannot read"),
    ("not json {", "is not valid JSON"),
    ("[1, 2]", "is not a JSON object"),
    ('{"sample_spec": {}, "only-embedding": {"mode": "embedding", "input_cost_per_token": 1e-8}}', "nothing imported"),
])
def test_command_fails_with_one_line_on_unusable_input(tmp_path, content, problem):
    path, output = tmp_path / "prices.json", tmp_path / "apis.yaml"
    if content is not None:
        path.write_text(content)
    output.write_text("apis: {}\n# keep me\n")
    result = run_import(path, "--output", output)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("llm-cost-exporter: catalog import-litellm: ")]
    assert len(errors) == 1 and problem in errors[0], result.stderr
    if content is None or not content.startswith("{"):
        assert lines == errors  # an unusable file: that one line and nothing else
    assert output.read_text() == "apis: {}\n# keep me\n"  # an existing catalog is never emptied


# -- docs/catalog.md -----------------------------------------------------------------------------

def test_the_tier_table_lists_what_the_catalog_bundles():
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", (ROOT / "docs" / "catalog.md").read_text(), re.M)
    documented = {tier: set(names.strip().split(", ")) for tier, names in rows if tier in catalog.TIERS[1:]}
    apis = catalog.load_apis()
    assert documented == {tier: {n for n, a in apis.items() if tier in a.tiers()} for tier in catalog.TIERS[1:]}


def test_documented_examples_load(tmp_path):
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "catalog.md").read_text(), re.S)]
    instance_format, api_format, config, spot_file = blocks
    assert catalog.find_instance(catalog.load_instances(), "g5.12xlarge").hourly == instance_format["instances"][0]["hourly"]
    assert api_format["apis"]["gpt-4o-mini"]["input_per_million"] == catalog.load_apis()["gpt-4o-mini"].input_per_million
    loaded = from_dict({**config, "gpu": {"backend": "simulated"}}, environ={})
    assert loaded.pricing.cloud.hourly == pytest.approx(7.09 * 0.4)
    assert loaded.hourly_source == "catalog:custom/g5.12xlarge/eu-west-1"
    assert loaded.api_prices["gpt-4o-mini"].input_per_million == 0.12
    assert loaded.api_prices["house-gateway-llama-70b"].provider == "internal"
    spot_path = tmp_path / "spot-prices.yaml"  # the spot price file's documented example loads as is
    spot_path.write_text(yaml.safe_dump(spot_file))
    assert spotprices.load(str(spot_path))[0].instance_type == spot_file["prices"][0]["instance_type"]


def test_every_bundled_instance_price_names_its_source_region_and_date():
    """Issue 15: a bundled price without its region is a price of nowhere in particular."""
    raw = yaml.safe_load(catalog.INSTANCES_FILE.read_text())["instances"]
    for entry in raw:
        where = f"{entry['instance_type']} ({entry.get('region')})"
        assert entry.get("region") and entry["region"] != "default", where
        assert str(entry.get("source", "")).startswith("https://"), where
        assert datetime.date.fromisoformat(str(entry["checked"])) >= datetime.date(2026, 11, 23), where
        assert entry.get("note"), f"{where}: say how the price was checked"
