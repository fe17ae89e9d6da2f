"""exporter.collector.CostCollector on its own: a hand-built Snapshot in, samples out through a real
prometheus_client registry, and the exposition linted by promtool. No exporter, no sockets."""

import shutil
import subprocess

import pytest
from fakes import model_totals, spend_totals
from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.catalog import ApiRates
from exporter.collector import CostCollector
from exporter.gpu.source import GpuReading
from exporter.health import HealthStatus
from exporter.snapshot import ApiComparison, ExporterInfo, ModelFigures, Snapshot

PRICING = {"mode": "owned", "currency": "EUR", "price_source": "configured"}
NODE = {"node": "n1", "instance_type": "g5.xlarge", "region": "eu-west-1", "capacity_type": "spot",
        "gpu_product": "NVIDIA-A10G", "cloud": "aws"}
M = {"engine": "vllm", "model": "llama"}  # the model's labels
EUR = {"currency": "EUR"}


def gpu(index, **fields):
    return GpuReading(index=index, uuid=f"GPU-{index}", name="NVIDIA A10G", **{"up": True, **fields})


def figures(engine="vllm", model="llama", **fields):
    totals = model_totals(engine, model, tokens={"input": 100.0, "output": 50.0}, cached_input_tokens=10.0,
                          requests={"stop": 3.0, "length": 1.0}, capacity=400.0, capacity_source="configured",
                          gauges={"requests_running": 2.0, "requests_waiting": 1.0, "kv_cache_usage_ratio": 0.25})
    return ModelFigures(totals, **fields)


def node_snapshot(engine_pods=None, models=None, health=None):
    """An owned node: three GPUs (a plain one, a MIG one without utilization and memory, a lost one), one engine."""
    gpus = [gpu(0, power_watts=150.0, power_limit_watts=300.0, utilization_ratio=0.5, memory_used_bytes=1e9,
                memory_total_bytes=24e9, energy_joules=1000.0),
            gpu(1, power_watts=80.0, energy_joules=500.0, energy_method="integrated"),
            gpu(2, up=False, power_watts=50.0, power_limit_watts=300.0, utilization_ratio=0.3, energy_joules=70.0)]
    model = figures(tokens_per_second=100.0, cost_per_million=7.5, cost_per_million_full=2.5, utilization=0.25,
                    energy_per_token_joules=3.0, apis=[ApiComparison("gpt-x", 1.25, 1.25, 2.0),
                                                       ApiComparison("gpt-y", 0.1, None, None, "batch")],
                    phase_spend={"prefill": 0.06, "decode": 0.25}, cost_per_million_by_direction={"input": 4.0, "output": 9.0},
                    phase_method="engine_time", cache_savings=0.02)
    spend = spend_totals(mode="owned", currency="EUR", components={"amortization": 0.2, "fixed": 0.01, "energy": 0.1},
                         engines={"vllm": 0.31}, energy_cost=0.1, hourly_cost=3.6, overhead_energy_joules=1000.0,
                         engine_energy_joules={"vllm": 5000.0}, idle_spend={"vllm": 0.1}, co2e_grams=12.0)
    health = health or [HealthStatus("gpu", "nvml", True, 100.0, 0.01, {"not_supported": 1}),
                        HealthStatus("engine", "vllm", False, None, 0.5, {"timeout": 2}, "timeout")]
    info = ExporterInfo(PRICING, NODE, engine_pods or {}, True, 123.0, [ApiRates("gpt-x", "standard", 1.0, 2.0, 0.5),
                                                                         ApiRates("gpt-y", "batch", 0.1, 0.4)])
    return Snapshot(time=1000.0, window_s=600.0, gpus=gpus, models=models or [model], spend=spend, health=health,
                    engine_resets={"vllm": 2}, payback_months={("gpt-x", "standard"): 3.0, ("never", "standard"): None}, info=info)


class Scrapes:
    """take_snapshot that counts its calls."""

    def __init__(self, snap):
        self.snap, self.calls = snap, 0

    def __call__(self):
        self.calls += 1
        return self.snap


def registered(snap):
    scrapes = Scrapes(snap)
    registry = CollectorRegistry()
    registry.register(CostCollector(scrapes, PRICING, [ApiRates("gpt-x", "standard", 1.0, 2.0, 0.5)]))
    return registry, scrapes


@pytest.fixture
def registry():
    return registered(node_snapshot())[0]


# --- one snapshot per scrape ----------------------------------------------------------------------------


def test_registering_describes_without_taking_a_snapshot():
    def forbidden():
        raise AssertionError("describe() took a snapshot")

    collector = CostCollector(forbidden, PRICING)
    CollectorRegistry().register(collector)
    names = {family.name for family in collector.describe()}
    assert {"llmcost_build_info", "llmcost_gpu_power_watts", "llmcost_spend", "llmcost_payback_months"} <= names


def test_each_scrape_takes_exactly_one_snapshot():
    registry, scrapes = registered(node_snapshot())
    assert scrapes.calls == 0
    generate_latest(registry)
    assert scrapes.calls == 1
    generate_latest(registry)
    assert scrapes.calls == 2


# --- samples ----------------------------------------------------------------------------------------------


def expect(registry, samples):
    """Every (metric, labels) -> value; None means no such sample."""
    got = {(name, tuple(sorted(labels.items()))): registry.get_sample_value(name, labels)
           for name, labels, _ in samples}
    assert got == {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}


def test_exporter_health_node_and_reload_samples(registry):
    gpu_source, engine = {"source": "gpu", "name": "nvml"}, {"source": "engine", "name": "vllm"}
    expect(registry, [
        ("llmcost_build_info", {"version": __version__}, 1.0),
        ("llmcost_pricing_info", PRICING, 1.0),
        ("llmcost_window_seconds", {}, 600.0),
        ("llmcost_source_up", gpu_source, 1.0),
        ("llmcost_source_up", engine, 0.0),
        ("llmcost_source_last_success_timestamp_seconds", gpu_source, 100.0),
        ("llmcost_source_last_success_timestamp_seconds", engine, None),
        ("llmcost_source_sample_duration_seconds", engine, 0.5),
        ("llmcost_source_errors_total", {**engine, "reason": "timeout"}, 2.0),
        ("llmcost_source_errors_total", {**gpu_source, "reason": "not_supported"}, 1.0),
        ("llmcost_node_info", NODE, 1.0),
        ("llmcost_config_last_reload_successful", {}, 1.0),
        ("llmcost_config_last_reload_success_timestamp_seconds", {}, 123.0),
    ])


def test_gpu_samples_a_mig_gpu_without_utilization_and_a_lost_gpu(registry):
    g0, g1, g2 = ({"gpu": str(i), "uuid": f"GPU-{i}"} for i in range(3))
    expect(registry, [
        ("llmcost_gpu_info", {**g1, "name": "NVIDIA A10G", "energy_method": "integrated"}, 1.0),
        ("llmcost_gpu_power_watts", g0, 150.0),
        ("llmcost_gpu_utilization_ratio", g0, 0.5),
        ("llmcost_gpu_memory_used_bytes", g0, 1e9),
        ("llmcost_gpu_memory_total_bytes", g0, 24e9),
        ("llmcost_gpu_power_limit_watts", g0, 300.0),
        # the MIG GPU: power, up and energy, and no utilization, memory or limit sample at all
        ("llmcost_gpu_power_watts", g1, 80.0),
        ("llmcost_gpu_up", g1, 1.0),
        ("llmcost_gpu_energy_joules_total", g1, 500.0),
        ("llmcost_gpu_utilization_ratio", g1, None),
        ("llmcost_gpu_memory_used_bytes", g1, None),
        ("llmcost_gpu_memory_total_bytes", g1, None),
        ("llmcost_gpu_power_limit_watts", g1, None),
        # the lost GPU: up 0, its energy and limit; its stale power and utilization are not shown
        ("llmcost_gpu_up", g2, 0.0),
        ("llmcost_gpu_energy_joules_total", g2, 70.0),
        ("llmcost_gpu_power_limit_watts", g2, 300.0),
        ("llmcost_gpu_power_watts", g2, None),
        ("llmcost_gpu_utilization_ratio", g2, None),
    ])


def test_model_and_spend_samples(registry):
    expect(registry, [
        ("llmcost_tokens_total", {**M, "direction": "input"}, 100.0),
        ("llmcost_tokens_total", {**M, "direction": "output"}, 50.0),
        ("llmcost_cached_input_tokens_total", M, 10.0),
        ("llmcost_requests_total", {**M, "finished_reason": "length"}, 1.0),
        ("llmcost_requests_running", M, 2.0),
        ("llmcost_requests_waiting", M, 1.0),
        ("llmcost_kv_cache_usage_ratio", M, 0.25),
        ("llmcost_tokens_per_second", M, 100.0),
        ("llmcost_engine_restarts_total", {"engine": "vllm"}, 2.0),
        ("llmcost_spend_total", {"component": "amortization", **EUR}, 0.2),
        ("llmcost_spend_total", {"component": "instance", **EUR}, None),
        ("llmcost_engine_spend_total", {"engine": "vllm", **EUR}, 0.31),
        ("llmcost_energy_cost_total", EUR, 0.1),
        ("llmcost_overhead_energy_joules_total", {}, 1000.0),
        ("llmcost_hourly_cost", EUR, 3.6),
        ("llmcost_cost_per_million_tokens", {**M, **EUR}, 7.5),
        ("llmcost_model_spend_total", {**M, "phase": "prefill", **EUR}, 0.06),
        ("llmcost_model_spend_total", {**M, "phase": "decode", **EUR}, 0.25),
        ("llmcost_cost_per_million_tokens_by_direction", {**M, "direction": "input", "method": "engine_time", **EUR}, 4.0),
        ("llmcost_cost_per_million_tokens_by_direction", {**M, "direction": "output", "method": "engine_time", **EUR}, 9.0),
        ("llmcost_cache_savings_total", {**M, **EUR}, 0.02),
    ])


def test_economics_samples(registry):
    x, y = {"api": "gpt-x", "tier": "standard"}, {"api": "gpt-y", "tier": "batch"}  # the tier each is compared at
    expect(registry, [
        ("llmcost_api_price_per_million_tokens", {**x, "direction": "input", **EUR}, 1.0),
        ("llmcost_api_price_per_million_tokens", {**x, "direction": "output", **EUR}, 2.0),
        ("llmcost_api_price_per_million_tokens", {**x, "direction": "cached_input", **EUR}, 0.5),
        ("llmcost_api_price_per_million_tokens", {**y, "direction": "cached_input", **EUR}, None),
        ("llmcost_api_equivalent_spend_total", {**M, **x, **EUR}, 1.25),
        ("llmcost_api_blended_price_per_million_tokens", {**M, **x, **EUR}, 1.25),
        ("llmcost_api_blended_price_per_million_tokens", {**M, **y, **EUR}, None),
        ("llmcost_breakeven_utilization_ratio", {**M, **x}, 2.0),
        ("llmcost_breakeven_utilization_ratio", {**M, **y}, None),
        ("llmcost_api_savings", {"engine": "vllm", **x, **EUR}, pytest.approx(1.25 - 0.31)),
        ("llmcost_api_savings", {"engine": "vllm", **y, **EUR}, pytest.approx(0.1 - 0.31)),
        ("llmcost_capacity_tokens_per_second", {"engine": "vllm", "source": "configured"}, 400.0),
        ("llmcost_cost_per_million_tokens_at_full_utilization", {**M, **EUR}, 2.5),
        ("llmcost_utilization_ratio", M, 0.25),
        ("llmcost_energy_per_token_joules", M, 3.0),
        ("llmcost_payback_months", x, 3.0),
        ("llmcost_payback_months", {"api": "never", "tier": "standard"}, None),
        ("llmcost_engine_energy_joules_total", {"engine": "vllm"}, 5000.0),
        ("llmcost_idle_spend_total", {"engine": "vllm", **EUR}, 0.1),
        ("llmcost_co2e_grams_total", {}, 12.0),
    ])


def test_a_model_without_window_figures_has_no_windowed_series():
    registry, _ = registered(node_snapshot(models=[figures()]))
    for name in ("llmcost_tokens_per_second", "llmcost_utilization_ratio", "llmcost_energy_per_token_joules"):
        assert registry.get_sample_value(name, M) is None
    for name in ("llmcost_cost_per_million_tokens", "llmcost_cost_per_million_tokens_at_full_utilization",
                 "llmcost_cache_savings_total"):
        assert registry.get_sample_value(name, {**M, **EUR}) is None
    assert registry.get_sample_value("llmcost_model_spend_total", {**M, "phase": "decode", **EUR}) is None
    assert registry.get_sample_value("llmcost_tokens_total", {**M, "direction": "input"}) == 100.0


def test_an_empty_snapshot_falls_back_to_the_configured_labels_and_prices():
    registry, _ = registered(Snapshot.empty())
    assert registry.get_sample_value("llmcost_pricing_info", PRICING) == 1.0
    assert registry.get_sample_value("llmcost_api_price_per_million_tokens",
                                     {"api": "gpt-x", "direction": "output", "tier": "standard", **EUR}) == 2.0
    assert registry.get_sample_value("llmcost_config_last_reload_successful") is None
    assert registry.get_sample_value("llmcost_hourly_cost", EUR) is None


def test_discovered_engines_carry_namespace_and_pod():
    pod = "llm/llama-7d9f-x2kqz"
    ids = {"namespace": "llm", "pod": "llama-7d9f-x2kqz"}
    health = [HealthStatus("engine", pod, True, 1.0, 0.1), HealthStatus("gpu", "nvml", True, 1.0, 0.1)]
    snap = node_snapshot(engine_pods={pod: ("llm", "llama-7d9f-x2kqz")}, health=health,
                         models=[figures(engine=pod, tokens_per_second=5.0), figures(engine="static")])
    registry, _ = registered(snap)
    assert registry.get_sample_value("llmcost_tokens_per_second", {"engine": pod, "model": "llama", **ids}) == 5.0
    assert registry.get_sample_value("llmcost_tokens_total", {"engine": "static", "model": "llama",
                                                              "direction": "input"}) == 100.0
    assert registry.get_sample_value("llmcost_source_up", {"source": "engine", "name": pod, **ids}) == 1.0
    assert registry.get_sample_value("llmcost_source_up", {"source": "gpu", "name": "nvml"}) == 1.0


# --- the exposition --------------------------------------------------------------------------------------------


def test_the_exposition_passes_promtool_check_metrics(registry):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: the test command installs Debian's prometheus package"
    text = generate_latest(registry).decode()
    assert 'llmcost_gpu_up{gpu="1",uuid="GPU-1"} 1.0' in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
