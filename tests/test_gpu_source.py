"""The GPU source against the simulated NVML (real pynvml error types) and the real pynvml."""

import pynvml
import pytest

from exporter.gpu.simulated import SimulatedNVML
from exporter.gpu.source import GpuSource, load_pynvml


def source(clock, nvml):
    return GpuSource(lambda: nvml, clock)


def sample_for(gpu_source, clock, seconds, step=1.0):
    for _ in range(int(seconds / step)):
        clock.advance(step)
        gpu_source.sample()


def test_readings_are_in_base_units(clock, nvml):
    gpus = source(clock, nvml).sample()
    assert [g.index for g in gpus] == [0, 1]
    g = gpus[0]
    assert g.up and g.name == "NVIDIA A10G" and g.uuid.startswith("GPU-")
    assert g.power_watts == pytest.approx(150.0)  # 50 W idle + 200 W x 0.5 load
    assert g.power_limit_watts == 250.0
    assert 0 < g.utilization_ratio <= 1
    assert g.memory_total_bytes == 24 * 1024**3 and 0 < g.memory_used_bytes < g.memory_total_bytes


def test_energy_counter_matches_ground_truth(clock, nvml):
    gpu_source = source(clock, nvml)
    gpu_source.sample()
    start = nvml.true_energy_joules(0)
    sample_for(gpu_source, clock, 600)
    measured = gpu_source.readings()[0].energy_joules
    assert measured == pytest.approx(nvml.true_energy_joules(0) - start, rel=1e-4)
    assert measured == pytest.approx(150.0 * 600, rel=1e-4)


def test_power_is_integrated_where_the_counter_is_not_supported(clock):
    nvml = SimulatedNVML(clock, count=1, idle_watts=50.0, max_watts=250.0, energy_counter=False,
                         load_fn=lambda t: 0.2 + 0.6 * ((t // 7) % 2))  # a square wave
    gpu_source = source(clock, nvml)
    gpu_source.sample()
    start = nvml.true_energy_joules(0)
    sample_for(gpu_source, clock, 700, step=0.5)
    g = gpu_source.readings()[0]
    assert g.energy_method == "integrated"
    assert g.energy_joules == pytest.approx(nvml.true_energy_joules(0) - start, rel=0.01)


def test_energy_counter_reset_never_goes_backwards(clock, nvml):
    gpu_source = source(clock, nvml)
    sample_for(gpu_source, clock, 10)
    before = gpu_source.readings()[0].energy_joules
    nvml.reset_energy_counter(0)  # a driver reload
    sample_for(gpu_source, clock, 10)
    after = gpu_source.readings()[0].energy_joules
    assert after > before
    # The reset interval is integrated from power (150 W), not read as a huge or negative jump.
    assert after - before == pytest.approx(150.0 * 10, rel=0.01)
    assert gpu_source.health.status().errors == {"energy_counter_reset": 1}


def test_lost_gpu_is_down_and_the_others_continue(clock, nvml):
    gpu_source = source(clock, nvml)
    sample_for(gpu_source, clock, 5)
    energy_lost_gpu = gpu_source.readings()[1].energy_joules
    nvml.lose_gpu(1)
    sample_for(gpu_source, clock, 5)
    first, lost = gpu_source.readings()
    assert first.up and first.power_watts == pytest.approx(150.0)
    assert not lost.up and lost.energy_joules == energy_lost_gpu
    health = gpu_source.health.status()
    assert health.up and health.errors["gpu_lost"] == 5


def test_unsupported_reading_on_one_gpu_is_absent_and_the_gpu_stays_up(clock, nvml):
    """MIG-enabled GPUs answer NOT_SUPPORTED for utilization; power and energy still work."""
    nvml.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=0)
    gpu_source = source(clock, nvml)
    gpu_source.sample()
    start = nvml.true_energy_joules(0)
    sample_for(gpu_source, clock, 60)
    first, second = gpu_source.readings()
    assert first.up and second.up
    assert first.utilization_ratio is None and second.utilization_ratio is not None
    assert first.memory_total_bytes == 24 * 1024**3
    assert first.energy_joules == pytest.approx(nvml.true_energy_joules(0) - start, rel=1e-4)
    assert gpu_source.health.status().errors == {"not_supported": 1}  # asked once, not every second


def test_library_missing_reports_down_then_reinitialises_with_backoff(clock, nvml):
    nvml.library_missing = True
    gpu_source = source(clock, nvml)
    assert gpu_source.sample() == []
    health = gpu_source.health.status()
    assert not health.up and health.errors == {"library_not_found": 1}
    nvml.library_missing = False
    clock.advance(0.9)
    gpu_source.sample()  # inside the 1 s backoff: no retry yet
    assert gpu_source.health.status().errors == {"library_not_found": 1} and not gpu_source.health.status().up
    clock.advance(0.1)
    assert len(gpu_source.sample()) == 2 and gpu_source.health.status().up


def test_reinitialisation_backoff_doubles_up_to_a_minute_of_monotonic_time(clock, nvml):
    """The backoff runs on the injected monotonic clock: wall time (clock.now) does not move here."""
    mono = [1000.0]
    nvml.library_missing = True
    gpu_source = GpuSource(lambda: nvml, clock, monotonic=lambda: mono[0])
    tries = []
    for tick in range(600):  # 300 s in 0.5 s steps
        mono[0] = 1000.0 + tick * 0.5
        gpu_source.sample()
        if sum(gpu_source.health.status().errors.values()) > len(tries):
            tries.append(mono[0] - 1000.0)
    assert tries == [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]  # waits of 1, 2, 4 ... 32, then 60 s each
    nvml.library_missing = False
    mono[0] = 1000.0 + 302.5
    gpu_source.sample()
    assert not gpu_source.health.status().up  # the library is back, but the next try is due at 303 s
    mono[0] = 1000.0 + 303
    assert len(gpu_source.sample()) == 2 and gpu_source.health.status().up


def test_driver_gone_mid_run_keeps_energy_and_recovers(clock, nvml):
    gpu_source = source(clock, nvml)
    sample_for(gpu_source, clock, 5)
    energy = gpu_source.total_energy_joules()
    nvml.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    clock.advance(1)
    gpu_source.sample()
    assert not gpu_source.health.status().up
    assert all(not g.up for g in gpu_source.readings())
    assert gpu_source.total_energy_joules() == energy
    nvml.clear_failures()
    sample_for(gpu_source, clock, 2)  # the retry is due 1 s (of clock.monotonic) after the failure
    assert gpu_source.health.status().up and gpu_source.total_energy_joules() > energy


def test_real_pynvml_without_a_gpu_reports_library_not_found(clock):
    """This machine (and CI) has no NVIDIA driver: the real binding must fail cleanly."""
    gpu_source = GpuSource(load_pynvml, clock)
    assert gpu_source.sample() == []
    health = gpu_source.health.status()
    assert not health.up
    assert set(health.errors) <= {"library_not_found", "driver_not_loaded"} and health.errors
