"""The node under test: a manual clock, the simulated NVML, an exporter factory, and the helpers
that tests import (through conftest) to configure, step and read an exporter."""

import pytest

from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.gpu.simulated import SimulatedNVML

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def nvml(clock):
    return SimulatedNVML(clock, count=2, idle_watts=50.0, max_watts=250.0, load_fn=lambda t: 0.5)


@pytest.fixture
def exporter_for(clock, nvml):
    def make(config, backend=None):
        return Exporter(config, clock=clock, nvml_backend=backend or nvml)
    return make


def make_config(engines=(), mode="cloud", apis=None, **pricing):
    """A node's config; its engines are vLLM (the simulated servers) unless `extra` names a kind
    (tests of auto-detection say kind: auto)."""
    raw = {"pricing": {"mode": mode}, "gpu": {"backend": "simulated"}, "window": "10m",
           "engines": [{"name": name, "url": url, "interval": "5s", "timeout": "1s", "kind": "vllm", **extra}
                       for name, url, extra in engines]}
    if apis is not None:
        raw["compare"] = {"apis": apis}
    if mode == "cloud":
        raw["pricing"]["cloud"] = {"hourly": pricing.pop("hourly", 3.6)}
    raw["pricing"].update(pricing)
    return from_dict(raw, environ={})


def run_for(clock, exporter, seconds, step=5.0):
    """Advance the manual clock in steps, sampling everything at each (the scheduler's job, done exactly)."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        exporter.sample_all()


def assert_matches(expect: dict, got: dict, where: str, tolerance: float):
    """Every expected figure (nested dicts too) is present and within the relative tolerance."""
    for key, want in expect.items():
        assert key in got, f"{where}: {key!r} is not computed"
        if isinstance(want, dict):
            assert_matches(want, got[key], f"{where}.{key}", tolerance)
        else:
            assert got[key] == pytest.approx(want, rel=tolerance), f"{where}.{key}"


def value(exporter, metric, **labels):
    """A sample value through the real registry (None if absent)."""
    return exporter.registry.get_sample_value(metric, labels)
