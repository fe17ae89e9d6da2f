"""The rule file on VictoriaMetrics: vmalert (Debian's victoria-metrics package, 1.79) accepts the
committed file as it is, and on the same simulated fleet (bench/_fleet.py: three nodes' real exporter
exposition, counters linear in time) vmagent + VictoriaMetrics + vmalert record what Prometheus 2.42
records, every series within 1%.

The agreement run uses the generator's short-window variant (the same rules over 5 s and 20 s
windows, 5 s increases, groups every second), so both backends evaluate every kind of group, the
increases and the window derived from them included, within seconds."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prometheus import Prometheus
from test_rules import RULE_FILE, generated

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import _fleet  # noqa: E402  (bench/: the simulated fleet the scale benchmark uses)

pytestmark = pytest.mark.integration

NODES = 3
SHORT = ["windows=[5s,20s]", "increase_window=5s", "fast_interval=1s", "slow_interval=1s",
         "cost_alert_window=5s", "breakeven_alert_window=20s", "chargeback.window=20s"]
RECORDS = '{__name__=~"[a-z_]+:llmcost_[a-z_]+:[a-z_0-9]+"}'


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not on PATH: the test command (scripts/test) installs Debian's victoria-metrics package")
    return path


def test_vmalert_accepts_the_committed_rule_file():
    """Every expression parsed by MetricsQL and every annotation template checked, as vmalert loads it."""
    result = subprocess.run([binary("vmalert"), "-dryRun", f"-rule={RULE_FILE}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr


def _values(result: list[dict]) -> dict[tuple, float]:
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}


def _agree(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.01, abs_tol=1e-9)


def test_victoriametrics_records_what_prometheus_records(tmp_path):
    for name in ("victoria-metrics", "vmagent", "vmalert"):
        binary(name)
    rules, doc = generated(tmp_path, *SHORT)
    template = tmp_path / "template.json"
    template.write_text(json.dumps(_fleet.record_template()))
    (tmp_path / "vm").mkdir()
    with _fleet.Fleet(str(template), NODES, time.time() - 86400, stamp=True) as fleet:
        scrape = [_fleet.scrape_config("llmcost", fleet.port, NODES, "1s")]
        with Prometheus(rule_files=[rules], scrape_configs=scrape) as prom:
            vm = _fleet.Victoria(str(tmp_path / "vm"), scrape, [str(rules)], "1s", notifier=prom.url,
                                 force_flush=0.5)
            try:
                # vmalert's chained records (a rule reading the one before it) appear one remote-write
                # flush after another: wait until it has as many as Prometheus.
                # And the 20 s window must hold no increase of a series' first seconds: Prometheus
                # extrapolates those from one or two samples, VictoriaMetrics counts a new series' value
                # from 0. So: the first 5 s increase, then 20 s of them, then a margin for the records deepest in the chains.
                count = f"count({RECORDS})"
                settled = time.monotonic() + 5 + 20 + 15
                deadline = settled + 12
                while time.monotonic() < deadline:
                    time.sleep(2)
                    counts = [[r["value"][1] for r in backend.query(count)] for backend in (vm, prom)]
                    if counts[0] and counts[0] == counts[1] and time.monotonic() > settled:
                        break
                at = time.time()
                ours, theirs = _values(prom.query(RECORDS, at)), _values(vm.query(RECORDS, at))
            finally:
                vm.stop()
    records = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    names = {dict(k)["__name__"] for k in ours}
    # Every record that has a value on this fleet (idle spend only while an engine idles: none here;
    # the teams' API-equivalent only with a gateway: none here, so every team row is `unattributed`).
    assert {n for n in records if "idle_spend" not in n and "worker_spend" not in n
            and not n.startswith("team_api:")} - names == set()
    assert any(n.endswith(":rate20s") for n in names) and any(n.endswith(":increase5s") for n in names)
    missing = sorted(dict(k)["__name__"] + str(dict(k)) for k in set(ours) - set(theirs))
    assert not missing, f"recorded by Prometheus, not by vmalert: {missing[:5]} ({len(missing)})"
    extra = sorted(str(dict(k)) for k in set(theirs) - set(ours))
    assert not extra, f"recorded by vmalert only: {extra[:5]}"
    off = {dict(k)["__name__"]: (ours[k], theirs[k]) for k in ours if not _agree(ours[k], theirs[k])}
    assert not off, f"{len(off)} series differ by more than 1%: {dict(list(off.items())[:8])}"
