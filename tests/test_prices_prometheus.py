"""Commitments, the spot price file and a node interruption, end to end: two real `run` processes
(simulated GPUs, as no GPU is here) scraped by a real Prometheus 2.42, and every figure read back
through PromQL compared with its closed form computed here from docs/cost-model.md.

- node A: a g4dn.xlarge under a 12-month commitment of 30% off the catalog's on-demand price with
  $1,000 upfront: hourly = 0.526 x 0.7 + 1000 / (12 x 730);
- node B: a g5.12xlarge priced spot from a dated spot file, which a refresh then changes; it is
  started, stopped, and started again on a new boot id (a reclaimed and restarted spot VM), so
  its first 4 s after the restart are warm-up waste: spot price x 4 s.
"""

import datetime
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from prometheus import Prometheus, free_port

from exporter import pricing

pytestmark = pytest.mark.integration  # real subprocesses and a real Prometheus

ROOT = pathlib.Path(__file__).resolve().parent.parent
WINDOW_S = 30  # increase() window: tick jitter (50 ms) is at most 0.17% of it
WARMUP_S = 4.0
TOLERANCE = 0.005  # the acceptance: within 0.5% of the closed form
G4 = pricing.find_instance("g4dn.xlarge", "us-east-1")
TERM_MONTHS, DISCOUNT, UPFRONT = 12, 0.3, 1000.0
SPOT_1, SPOT_2 = 2.0312, 2.4471  # $/h, as a refresh of the spot file would bring


def _start(config, port, storage):
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={storage}", "--storage.interval=1s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_serving(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if b"llmcost_spend_total" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"exporter on {port} not serving")


def _stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    return stderr


def _spot_file(path, price):
    path.write_text(yaml.safe_dump({"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "prices": [
        {"provider": "aws", "instance_type": "g5.12xlarge", "region": "us-east-1", "spot_hourly": price,
         "checked": datetime.date.today().isoformat(), "source": "test: a refresh of the spot price file"}]}))


def _one(prom, expr, at=None) -> float:
    result = prom.query(expr, time=at)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def _close(got, want, what):
    error = abs(got - want) / want
    print(f"{what}: {got:.8f} vs closed form {want:.8f}, error {error:.4%}")
    assert error < TOLERANCE, what


def test_commitment_spot_file_and_interruption_spend_match_the_closed_form(tmp_path):
    today = datetime.date.today()
    gpu = {"backend": "simulated", "interval": "50ms", "simulated": {"count": 1}}
    config_a = tmp_path / "a.yml"
    config_a.write_text(yaml.safe_dump({"gpu": gpu, "reload_interval": "500ms", "pricing": {
        "cloud": {"instance_type": "g4dn.xlarge", "region": "us-east-1"},
        "commitments": [
            {"name": "expired", "start": str(today - datetime.timedelta(days=400)),
             "end": str(today - datetime.timedelta(days=35)), "hourly": 0.01},
            {"name": "t4-ri", "start": str(today - datetime.timedelta(days=30)), "term_months": TERM_MONTHS,
             "discount": DISCOUNT, "upfront": UPFRONT, "match": {"instance_type": "g4dn.xlarge"}}]}}))
    spot, boot = tmp_path / "spot-prices.yaml", tmp_path / "boot_id"
    _spot_file(spot, SPOT_1)
    boot.write_text("0b7f3a52-1c1e-4d1a-9f00-000000000001\n")
    config_b = tmp_path / "b.yml"
    config_b.write_text(yaml.safe_dump({"gpu": gpu, "reload_interval": "500ms", "pricing": {
        "cloud": {"instance_type": "g5.12xlarge", "capacity_type": "spot", "spot_file": str(spot)},
        "interruptions": {"warmup": f"{WARMUP_S:g}s", "boot_id_file": str(boot)}}}))
    port_a, port_b = free_port(), free_port()
    node_a = _start(config_a, port_a, tmp_path / "state-a")
    node_b = _start(config_b, port_b, tmp_path / "state-b")
    try:
        _wait_serving(port_b)
        time.sleep(1.5)
        _stop(node_b)  # the spot VM is reclaimed; it comes back on a new boot
        boot.write_text("0b7f3a52-1c1e-4d1a-9f00-000000000002\n")
        node_b = _start(config_b, port_b, tmp_path / "state-b")
        with Prometheus([f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"], scrape_interval="1s") as prom:
            _wait_serving(port_a)
            _wait_serving(port_b)
            a, b = f'instance="127.0.0.1:{port_a}"', f'instance="127.0.0.1:{port_b}"'
            time.sleep(WARMUP_S + WINDOW_S + 1)
            at = time.time()
            time.sleep(1.5)  # let the last scrapes land

            committed = G4.hourly * (1 - DISCOUNT) + UPFRONT / (TERM_MONTHS * 730)
            _close(_one(prom, f'increase(llmcost_spend_total{{{a},component="instance"}}[{WINDOW_S}s])', at),
                   committed * WINDOW_S / 3600, "node A, commitment t4-ri")
            assert prom.query(f'llmcost_pricing_info{{{a},price_source="commitment:t4-ri"}}')
            _close(_one(prom, f'increase(llmcost_spend_total{{{b},component="instance"}}[{WINDOW_S}s])', at),
                   SPOT_1 * WINDOW_S / 3600, "node B, spot file price 1")
            _close(_one(prom, f'llmcost_spend_total{{{b},component="interruption_warmup"}}'),
                   SPOT_1 * WARMUP_S / 3600, "node B, warm-up waste after the interruption")
            assert _one(prom, f"llmcost_node_interruptions_total{{{b}}}") == 1
            assert _one(prom, f"llmcost_node_interruptions_total{{{a}}}") == 0
            assert prom.query(f'llmcost_pricing_info{{{b},price_source="catalog:aws/g5.12xlarge/us-east-1/spot_file"}}')

            _spot_file(spot, SPOT_2)  # the CronJob's refresh: re-read within reload_interval
            time.sleep(1.5 + WINDOW_S)
            at = time.time()
            time.sleep(1.5)
            _close(_one(prom, f'increase(llmcost_spend_total{{{b},component="instance"}}[{WINDOW_S}s])', at),
                   SPOT_2 * WINDOW_S / 3600, "node B, spot file price 2 after the refresh")
            for node in (a, b):  # conserved: no engine here, so all of the node's spend is unallocated
                total = _one(prom, f"sum(llmcost_spend_total{{{node}}})", at)
                assert _one(prom, f"llmcost_unallocated_spend_total{{{node}}}", at) == pytest.approx(total, rel=1e-9)
    finally:
        for process in (node_a, node_b):
            if process.poll() is None:
                _stop(process)
