"""The kill -9 restart loop in the normal run: 15 SIGKILLs of the real `run` process at random
moments, through scripts/crash_loop.py (the full 1,000 is a documented command; docs/reliability.md)."""

import importlib.util
import json
import pathlib

import pytest

pytestmark = pytest.mark.integration  # the run command as a subprocess, 16 times

SCRIPT = pathlib.Path(__file__).parent.parent / "scripts" / "crash_loop.py"


def load_crash_loop():
    spec = importlib.util.spec_from_file_location("crash_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifteen_kill_9_restarts_never_go_backwards_nor_above_ground_truth(tmp_path):
    result = load_crash_loop().crash_loop(iterations=15, seed=7, write_share=0.4, workdir=str(tmp_path))
    print(json.dumps(result))
    assert result["violations"] == 0, result["violation_samples"]
    assert result["restarts"] == 15 and result["scrapes_checked"] >= 15
    assert result["restored_starts"] >= 5  # the loop exercised restoring, not only fresh starts
    spend = result["ratio_to_ground_truth"]['llmcost_spend_total{component="instance",currency="USD"}']
    assert 0.5 < spend["last"] <= 1.0  # billed across the kills, never above hourly x wall time
