"""Which NVML backend a configuration asks for."""

from __future__ import annotations

from exporter.config import GpuConfig
from exporter.gpu.simulated import SimulatedNVML
from exporter.gpu.source import GpuSource, load_pynvml


def gpu_source_for(gpu: GpuConfig, clock, nvml_backend=None) -> GpuSource | None:
    """The GPU source the config asks for: none, the simulated node, or real NVML (a given
    backend, e.g. a test's simulated one, wins)."""
    if gpu.backend == "none":
        return None
    if nvml_backend is not None:
        return GpuSource(lambda: nvml_backend, clock)
    if gpu.backend == "simulated":
        sim = gpu.simulated
        backend = SimulatedNVML(clock, count=sim.count, product=sim.product, idle_watts=sim.idle_watts,
                                max_watts=sim.max_watts, memory_bytes=sim.memory_bytes, energy_counter=sim.energy_counter)
        return GpuSource(lambda: backend, clock)
    return GpuSource(load_pynvml, clock)

