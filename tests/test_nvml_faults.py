"""NVML faults (the campaign in docs/reliability.md), at the exporter level: the simulated NVML
raises pynvml's own NVMLError codes, the exporter serves over real HTTP, and tests/faults.py
checks the promises on every scrape (served, monotonic counters, one log line, recovery)."""

import pynvml
import pytest

from conftest import MODEL, make_config
from exporter.gpu import source as gpu_source_module
from faults import campaign  # noqa: F401 (fixture)

ENERGY = {"electricity_per_kwh": 0.20, "pue": 1.0}


@pytest.fixture
def node(clock, vllm, nvml, exporter_for):
    """An exporter over two simulated GPUs (150 W each) and one vLLM, first sample taken."""
    def make():
        server = vllm()
        exporter = exporter_for(make_config([("vllm", server.url, {})], energy=ENERGY))
        exporter.sample_all()
        return server, exporter
    return make


def gpu(c, metric, index, uuid):
    return c.get(metric, gpu=str(index), uuid=uuid)


def nvml_up(c):
    return c.get("llmcost_source_up", source="nvml", name="nvml")


def nvml_errors(c, reason):
    return c.get("llmcost_source_errors_total", source="nvml", name="nvml", reason=reason) or 0


def engine_keeps_counting(c, before):
    now = c.get("llmcost_tokens_total", engine="vllm", model=MODEL, direction="input")
    assert now > before and c.get("llmcost_source_up", source="engine", name="vllm") == 1
    return now


def test_library_missing_at_start_then_installed(clock, vllm, nvml, exporter_for, campaign):
    nvml.library_missing = True  # no driver mounted into the container
    server = vllm()
    exporter = exporter_for(make_config([("vllm", server.url, {})], energy=ENERGY))
    c = campaign(exporter)
    with c.fault(warnings=1, max_lines=1):
        c.step(seconds=1, times=7)  # tried at 1 s, retried 1, 2, 4 ... 60 s later (clock.monotonic), not every tick
        assert nvml_up(c) == 0 and nvml_errors(c, "library_not_found") == 3
        assert not any(k[0] == "llmcost_gpu_up" for k in c.samples)
        assert c.get("llmcost_spend_total", component="instance", currency="USD") > 0  # the node is billed anyway
        tokens = engine_keeps_counting(c, 0)
    nvml.library_missing = False
    c.step(seconds=1)  # the retry due at 8 s finds the library
    start = [nvml.true_energy_joules(i) for i in range(2)]
    c.step(times=12)
    assert nvml_up(c) == 1
    for i, g in enumerate(nvml.gpus):
        assert gpu(c, "llmcost_gpu_up", i, g.uuid) == 1
        assert gpu(c, "llmcost_gpu_energy_joules_total", i, g.uuid) == pytest.approx(nvml.true_energy_joules(i) - start[i], rel=1e-4)
    engine_keeps_counting(c, tokens)


def test_library_gone_mid_run_keeps_totals_and_recovers(node, nvml, campaign):
    _, exporter = node()
    c = campaign(exporter)
    c.step(times=2)
    energy = {k: v for k, v in c.samples.items() if k[0] == "llmcost_gpu_energy_joules_total"}
    tokens = c.get("llmcost_tokens_total", engine="vllm", model=MODEL, direction="input")
    with c.fault(warnings=1, max_lines=1):  # the source line only, not one per GPU
        nvml.library_missing = True  # driver unloaded under us
        c.step(times=4)
        assert nvml_up(c) == 0
        assert all(gpu(c, "llmcost_gpu_up", i, g.uuid) == 0 for i, g in enumerate(nvml.gpus))
        assert {k: v for k, v in c.samples.items() if k[0] == "llmcost_gpu_energy_joules_total"} == energy
        tokens = engine_keeps_counting(c, tokens)
    nvml.library_missing = False
    c.step(times=2)  # 5 s steps: failed at 15 s, retried at 20, 25, 30 s; the one due at 38 s succeeds
    assert nvml_up(c) == 1 and all(gpu(c, "llmcost_gpu_up", i, g.uuid) == 1 for i, g in enumerate(nvml.gpus))


def test_gpu_lost_mid_run_then_back(node, nvml, campaign):
    _, exporter = node()
    c = campaign(exporter)
    start = nvml.true_energy_joules(1)
    c.step(times=2)
    lost = nvml.gpus[1]
    with c.fault(warnings=1, max_lines=1):
        nvml.lose_gpu(1)  # Xid 79: fallen off the bus
        c.step(times=4)
        assert gpu(c, "llmcost_gpu_up", 1, lost.uuid) == 0 and gpu(c, "llmcost_gpu_up", 0, nvml.gpus[0].uuid) == 1
        assert gpu(c, "llmcost_gpu_power_watts", 1, lost.uuid) is None  # no stale readings
        assert nvml_up(c) == 1 and nvml_errors(c, "gpu_lost") == 4
    nvml.lose_gpu(1, False)
    c.step(times=2)
    assert gpu(c, "llmcost_gpu_up", 1, lost.uuid) == 1
    # The hardware counter kept counting while we could not read it: nothing lost.
    assert gpu(c, "llmcost_gpu_energy_joules_total", 1, lost.uuid) == pytest.approx(nvml.true_energy_joules(1) - start, rel=1e-4)


def test_function_not_supported_on_one_gpu(node, nvml, campaign):
    nvml.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=0)  # a MIG-enabled GPU
    _, exporter = node()
    c = campaign(exporter)
    start = nvml.true_energy_joules(0)
    with c.fault(warnings=0, max_lines=0):  # the one line came at the first sample
        c.step(times=6)
    g0, g1 = nvml.gpus
    assert gpu(c, "llmcost_gpu_up", 0, g0.uuid) == 1 and gpu(c, "llmcost_gpu_up", 1, g1.uuid) == 1
    assert gpu(c, "llmcost_gpu_utilization_ratio", 0, g0.uuid) is None
    assert gpu(c, "llmcost_gpu_power_watts", 0, g0.uuid) is not None  # each reading on its own: power stays
    assert gpu(c, "llmcost_gpu_utilization_ratio", 1, g1.uuid) is not None
    assert gpu(c, "llmcost_gpu_energy_joules_total", 0, g0.uuid) == pytest.approx(nvml.true_energy_joules(0) - start, rel=1e-4)
    assert nvml_errors(c, "not_supported") == 1 and nvml_up(c) == 1
    assert sum("does not support reading utilization" in line for line in c.lines_since(0)) == 1


def test_energy_counter_reset_never_goes_backwards(node, nvml, campaign):
    _, exporter = node()
    c = campaign(exporter)
    start = nvml.true_energy_joules(0)
    c.step(times=2)
    with c.fault(warnings=1, max_lines=1):
        nvml.reset_energy_counter(0)  # a driver reload
        c.step(times=4)
    g0 = nvml.gpus[0]
    assert nvml_errors(c, "energy_counter_reset") == 1
    # The reset interval is integrated from power; the rest comes from the counter.
    assert gpu(c, "llmcost_gpu_energy_joules_total", 0, g0.uuid) == pytest.approx(nvml.true_energy_joules(0) - start, rel=0.01)


def test_gpu_appearing_is_picked_up_at_the_next_rescan(node, nvml, campaign):
    _, exporter = node()
    c = campaign(exporter)
    with c.fault(warnings=0, max_lines=1):
        nvml.add_gpu(load_fn=lambda t: 0.5)
        c.step(times=gpu_source_module.RESCAN_EVERY)
    new = nvml.gpus[2]
    assert gpu(c, "llmcost_gpu_up", 2, new.uuid) == 1
    before, true_before = gpu(c, "llmcost_gpu_energy_joules_total", 2, new.uuid), nvml.true_energy_joules(2)
    c.step(times=4)
    assert gpu(c, "llmcost_gpu_energy_joules_total", 2, new.uuid) - before == pytest.approx(
        nvml.true_energy_joules(2) - true_before, rel=1e-4)
    assert any("device count changed from 2 to 3" in line for line in c.lines_since(0))
    assert nvml_up(c) == 1


def test_gpu_disappearing_keeps_its_total_and_the_others_go_on(node, nvml, campaign):
    _, exporter = node()
    c = campaign(exporter)
    c.step(times=2)
    g0, g1 = nvml.gpus
    with c.fault(warnings=1, max_lines=2):  # "gpu down", then the re-initialisation
        nvml.remove_gpu(1)
        c.step(times=gpu_source_module.RESCAN_EVERY)
    energy1 = gpu(c, "llmcost_gpu_energy_joules_total", 1, g1.uuid)
    energy0, true0 = gpu(c, "llmcost_gpu_energy_joules_total", 0, g0.uuid), nvml.true_energy_joules(0)
    c.step(times=4)
    assert gpu(c, "llmcost_gpu_up", 1, g1.uuid) == 0
    assert gpu(c, "llmcost_gpu_energy_joules_total", 1, g1.uuid) == energy1  # kept, not growing, not gone
    assert gpu(c, "llmcost_gpu_up", 0, g0.uuid) == 1
    assert gpu(c, "llmcost_gpu_energy_joules_total", 0, g0.uuid) - energy0 == pytest.approx(
        nvml.true_energy_joules(0) - true0, rel=1e-4)
    assert nvml_up(c) == 1
    assert any("device count changed from 2 to 1" in line for line in c.lines_since(0))
