"""Small stand-ins shared by the unit tests of accounting, snapshot and collector: no NVML, no HTTP."""

from __future__ import annotations

from exporter.accounting import SpendTotals
from exporter.engines.source import ModelTotals
from exporter.gpu.source import GpuReading
from exporter.health import SourceHealth


class FakeGpus:
    """A GPU source whose energy counters move only when a test says so."""

    def __init__(self, count: int):
        self.energy = [0.0] * count
        self.health = SourceHealth("gpu", "nvml")

    def draw(self, *joules: float) -> None:
        """Add joules to each GPU's counter, in index order."""
        for i, j in enumerate(joules):
            self.energy[i] += j

    def readings(self) -> list[GpuReading]:
        return [GpuReading(index=i, uuid=f"GPU-{i}", name="Fake", up=True, energy_joules=e)
                for i, e in enumerate(self.energy)]


def model_totals(engine: str, model: str, **fields) -> ModelTotals:
    """A ModelTotals with empty defaults; pass only what a test is about."""
    base = dict(tokens={}, cached_input_tokens=0.0, requests={}, gauges={}, window=None, api_equivalent={},
                capacity=None, capacity_source="configured")
    return ModelTotals(engine=engine, model=model, **{**base, **fields})


def spend_totals(**fields) -> SpendTotals:
    """SpendTotals of a cloud node in USD with nothing accrued; pass only what a test is about."""
    base = dict(mode="cloud", currency="USD", components={}, engines={}, energy_cost=None, hourly_cost=None,
                overhead_energy_joules=0.0, engine_energy_joules={}, idle_spend={}, co2e_grams=None)
    return SpendTotals(**{**base, **fields})
