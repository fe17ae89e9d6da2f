import pathlib
import subprocess
import sys

import pytest

from exporter.config import ConfigError, from_dict, load_file

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent
BAD = sorted((HERE / "conffiles").glob("*.yml"))


def expected(path: pathlib.Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first[len("# expect: "):]


def test_there_is_a_fixture_per_failure_case():
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_names_key_value_and_allowed(path):
    with pytest.raises(ConfigError) as err:
        load_file(str(path), environ={})
    assert str(err.value).startswith(expected(path)), str(err.value)


def test_example_config_loads_with_documented_values():
    config = load_file(str(ROOT / "docs" / "config.example.yml"), environ={})
    assert config.pricing.cloud.hourly == 5.672
    assert config.engines[0].interval == 5.0 and config.engines[0].timeout == 3.0
    assert config.engines[0].max_body_bytes == 4 * 1024 * 1024
    assert config.engines[0].gpus == [0, 1, 2, 3]
    assert config.window == 300.0


def test_configuration_doc_embeds_the_example_verbatim():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert (ROOT / "docs" / "config.example.yml").read_text().strip() in doc


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("pricing: {cloud: {hourly: 1.0}}\nengines: [{url: 'http://a/metrics'}]\n")
    env = {"LLMCOST_INSTANCE_HOURLY": "2.5", "LLMCOST_ENGINE_URL": "http://b:8000/metrics",
           "LLMCOST_INSTANCE_TYPE": "g6.xlarge"}
    config = load_file(str(path), environ=env)
    assert config.pricing.cloud.hourly == 2.5
    assert config.pricing.cloud.instance_type == "g6.xlarge"
    assert config.engines[0].url == "http://b:8000/metrics"


def test_environment_alone_is_enough():
    config = from_dict({}, environ={"LLMCOST_INSTANCE_HOURLY": "3.912", "LLMCOST_ENGINE_URL": "http://x:8000/metrics"})
    assert config.pricing.cloud.hourly == 3.912 and config.engines[0].name == "vllm"


def test_bad_environment_value_is_named_by_key():
    with pytest.raises(ConfigError, match=r"^pricing.mode: got 'spot', allowed: cloud, owned"):
        from_dict({"pricing": {"cloud": {"hourly": 1}}}, environ={"LLMCOST_PRICING_MODE": "spot"})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60)


def test_cli_exits_2_with_one_line_naming_the_key():
    result = _cli("run", f"--config.file={HERE / 'conffiles' / 'bad_mode.yml'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pricing.mode" in lines[0] and "cloudy" in lines[0] and "cloud, owned" in lines[0]


def test_cli_missing_file_exits_2():
    result = _cli("run", "--config.file=/nonexistent/config.yml")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_cli_help_shows_defaults_and_version():
    help_text = _cli("run", "--help").stdout
    assert "--web.listen-address" in help_text and "(default: :9848)" in help_text
    assert "--config.file" in help_text and "--log.level" in help_text
    assert _cli("--version").stdout.strip().startswith("llm-cost-exporter 0.")


# -- kubernetes and reload keys ---------------------------------------------------------------------

def test_example_config_documents_the_kubernetes_and_reload_defaults():
    config = load_file(str(ROOT / "docs" / "config.example.yml"), environ={})
    kube = config.kubernetes
    assert (kube.enabled, kube.node_name, kube.node_labels_pricing, kube.refresh_interval, kube.timeout) == \
        (False, None, True, 300.0, 5.0)
    assert (kube.discovery.enabled, kube.discovery.label_selector, kube.discovery.namespace,
            kube.discovery.refresh_interval, kube.discovery.interval, kube.discovery.timeout) == \
        (False, "llmcost.io/scrape=true", None, 30.0, 5.0, 3.0)
    assert (config.reload_interval, config.removed_engine_retention) == (5.0, 600.0)
    assert config.catalog.instances[1].spot_hourly is not None


def test_node_name_defaults_to_the_node_name_variable_and_the_file_wins():
    raw = {"kubernetes": {"enabled": True}}
    assert from_dict(raw, environ={"NODE_NAME": "gpu-7"}).kubernetes.node_name == "gpu-7"
    raw = {"kubernetes": {"enabled": True, "node_name": "from-file"}}
    assert from_dict(raw, environ={"NODE_NAME": "gpu-7"}).kubernetes.node_name == "from-file"
    config = from_dict({}, environ={"LLMCOST_KUBERNETES_ENABLED": "true", "NODE_NAME": "123"})
    assert config.kubernetes.enabled and config.kubernetes.node_name == "123"  # a name, even if it looks like a number


def test_node_label_pricing_makes_the_hourly_price_optional_until_switched_off():
    config = from_dict({"kubernetes": {"enabled": True, "node_name": "n"}}, environ={})
    assert config.hourly_source == "node_labels" and config.pricing.cloud.hourly is None
    with pytest.raises(ConfigError, match=r"^pricing.cloud.hourly: required when pricing.mode is cloud"):
        from_dict({"kubernetes": {"enabled": True, "node_name": "n", "node_labels_pricing": False}}, environ={})
    configured = from_dict({"pricing": {"cloud": {"hourly": 2.0}}, "kubernetes": {"enabled": True, "node_name": "n"}},
                           environ={})
    assert configured.hourly_source == "configured"
    owned = from_dict({"pricing": {"mode": "owned", "energy": {"electricity_per_kwh": 0.1}},
                       "kubernetes": {"enabled": True, "node_name": "n"}}, environ={})
    assert owned.hourly_source == "configured"


def test_load_file_remembers_its_path(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("pricing: {cloud: {hourly: 1.0}}\n")
    assert load_file(str(path), environ={}).source_path == str(path)
    assert load_file(None, environ={"LLMCOST_INSTANCE_HOURLY": "1"}).source_path is None
