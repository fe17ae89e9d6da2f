"""A shortened soak in the normal run: 6 simulated hours of the demo's node at 900x, over real
HTTP, through scripts/soak.py (the full 24 h is a documented command; docs/reliability.md)."""

import importlib.util
import json
import pathlib

import pytest

pytestmark = pytest.mark.slow  # six simulated hours

SCRIPT = pathlib.Path(__file__).parent.parent / "scripts" / "soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_six_simulated_hours_memory_threads_and_totals():
    soak = load_soak()
    result = soak.soak(hours=6.0, speed=900.0)
    print(json.dumps({k: v for k, v in result.items() if k != "tokens"}))
    assert result["sim_hours"] >= 6.0
    assert result["rss_growth_mib"] < soak.RSS_LIMIT_MIB
    assert result["final"]["threads"] == result["warm"]["threads"]
    assert result["tokens_exact"], result["tokens"]
    assert result["spend"]["relative_error"] < 1e-9
    assert result["energy_max_relative_error"] < 1e-9
    assert result["monotonic_checks"] >= 10 and result["passed"]
