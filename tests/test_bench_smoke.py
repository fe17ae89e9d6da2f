"""The benchmarks (bench/) run, at a tiny size, and say what they should; and /metrics, which
scrape_latency.py measures, serves what prometheus_client itself renders.

The benchmarks' figures are not checked against their targets here (this machine is shared and
noisy): only that each script runs with one command, writes its JSON and prints a table, with
figures of the right shape and plausible size.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.exposition import choose_encoder

from conftest import make_config, run_for
from exporter.web import WebServer, metrics

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def test_metrics_serves_what_prometheus_client_renders(clock, vllm, exporter_for):
    server = vllm()
    exporter = exporter_for(make_config([("vllm", server.url, {})], apis=["gpt-4o-mini", "gpt-4o"],
                                        energy={"electricity_per_kwh": 0.1}))
    exporter.sample_all()
    run_for(clock, exporter, 120)
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    try:
        for accept in (PROMETHEUS_ACCEPT, "application/openmetrics-text; version=1.0.0", "text/plain", "",
                       "application/openmetrics-text;version=1.0.0;escaping=dots"):
            request = urllib.request.Request(f"http://127.0.0.1:{web.port}/metrics", headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=5) as response:
                body, content_type = response.read(), response.headers["Content-Type"]
            library, _ = choose_encoder(accept)
            _, asked_type = choose_encoder(metrics.unescaped_names(accept))  # the one header of ours
            assert content_type == asked_type, accept
            assert body == library(exporter.registry), accept  # the manual clock stands still: same values too
    finally:
        web.stop()


# --- the benchmark scripts, at their --quick size -------------------------------------------------

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def run_bench(name: str, tmp_path, timeout: float = 60.0, *extra: str) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", f"--results-dir={tmp_path}", *extra],
                            capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["name"] == name and data["quick"] is True
    assert data["machine"]["cores"] >= 1 and data["machine"]["date"]
    assert "|---" in result.stdout, "prints a Markdown table"
    return data, result.stdout


@pytest.mark.slow
def test_scrape_latency(tmp_path):
    data, _ = run_bench("scrape_latency", tmp_path)
    (run,) = data["runs"]
    counts = run["samples"]
    assert counts["exporter"] == counts["floor"] == counts["baseline"] > 100  # the same samples everywhere
    assert abs(run["bytes"]["floor"] - run["bytes"]["exporter"]) < 0.02 * run["bytes"]["exporter"]  # its bytes, older values
    for name in ("exporter", "floor", "baseline"):
        http = run["http"][name]
        assert http["n"] == data["setup"]["requests"]
        assert 0 < http["p50_ms"] <= http["p99_ms"] <= http["max_ms"] < 1000
    assert 0 < run["ratio"]["p50_to_floor"] < 20 and 0 < run["ratio"]["p99_to_floor"] < 20
    assert set(run["render"]) == {"cached", "library", "cached, after a tick"}
    assert run["render"]["cached"]["samples"] == run["render"]["library"]["samples"] > 100
    assert run["render"]["cached, after a tick"]["samples"] == run["render"]["cached"]["samples"]
    assert data["summary"]["ratio"]["p50_to_floor"]["median"] == run["ratio"]["p50_to_floor"]


@pytest.mark.slow
def test_overhead(tmp_path):
    data, _ = run_bench("overhead", tmp_path, 90.0, "--kubernetes")
    (run,) = data["runs"]
    measured = run["measured"]
    assert set(measured) == {"exporter", "exporter + kubernetes", "exporter, no .pyc", "exporter + kubernetes, no .pyc",
                             "node_exporter", "baseline"}
    for name, m in measured.items():
        assert 0 <= m["cpu_percent_of_one_core"] < 100, name
        assert 5 < m["rss_max_mib"] < 1024, name
        assert m["scrape_errors"] == 0, name
    assert measured["exporter + kubernetes"]["rss_max_mib"] > measured["exporter"]["rss_max_mib"]  # the client loaded
    for name in ("exporter", "exporter + kubernetes"):
        assert 0 < run["startup"][name]["first_answer_s"] <= run["startup"][name]["first_complete_scrape_s"] < 30
    assert all(size > 40_000 for size in data["setup"]["engine_page_bytes"])  # engines of real size
    summary = data["summary"]["exporter"]
    assert summary["millicores"]["min"] <= summary["millicores"]["median"] <= summary["millicores"]["max"]
    ratio = summary["ratio_to_node_exporter"]["rss_max_mib"]["median"]
    assert ratio == measured["exporter"]["rss_max_mib"] / measured["node_exporter"]["rss_max_mib"]


@pytest.mark.slow
def test_energy_accuracy(tmp_path):
    data, _ = run_bench("energy_accuracy", tmp_path)
    settings = {(s["method"], s["interval_s"], s["power_reading"]): s for s in data["settings"]}
    assert settings["counter", 1.0, None]["windows"]["60s"]["max_abs_percent"] < 0.01  # the counter is exact
    for interval in (0.1, 0.5, 1.0, 5.0):
        window = settings["integrated", interval, "instant"]["windows"]["60s"]
        assert window["n"] > 0 and 0 <= window["mean_abs_percent"] <= window["max_abs_percent"] < 100
    assert 60 < data["trace"]["mean_power_w"] < 300


@pytest.mark.slow
def test_cost_accuracy(tmp_path):
    data, _ = run_bench("cost_accuracy", tmp_path)
    for mode in ("cloud", "owned"):
        figures = data["modes"][mode]
        assert set(figures) >= {"llmcost_cost_per_million_tokens", "llmcost_tokens_per_second", "llmcost_utilization_ratio"}
        for metric, f in figures.items():
            assert f["n"] > 0 and f["max_abs_percent"] < 5, (mode, metric)


@pytest.mark.slow
def test_cardinality(tmp_path):
    data, out = run_bench("cardinality", tmp_path)
    assert len(data["points"]) >= 3
    for point in data["points"]:
        assert point["measured"] == point["formula"], point  # the documented formula holds
    assert data["all_match"]


@pytest.mark.slow
def test_scale(tmp_path):
    data, _ = run_bench("scale", tmp_path)
    (point,) = data["points"]
    assert point["nodes"] == 2 and point["head_series"] >= 2 * data["series_per_node"]
    assert len(point["rule_groups"]) == 7  # 6 of the project (chargeback included), 1 baseline
    for group in point["rule_groups"].values():
        assert (group["evaluations"] >= 2 or group.get("timed_as")) and 0 < group["median_ms"] < 10_000
    assert point["queries"] and not point["empty_queries"]
    assert all(0 < q["median_ms"] < 30_000 for q in point["queries"])


@pytest.mark.slow
def test_scale_victoria(tmp_path):
    data, _ = run_bench("scale_victoria", tmp_path, timeout=180)
    (point,) = data["points"]
    assert point["compared_series"] > 100 and point["in_both"] == point["compared_series"]
    assert point["differ_over_1pct"] == 0, point["worst"]
    assert {"llm-cost-exporter.recording.10s", "llm-cost-exporter.alerts"} <= set(point["vmalert_iteration_ms"])


@pytest.mark.slow
def test_engine_parse(tmp_path):
    data, out = run_bench("engine_parse", tmp_path)
    assert {"vllm-40kB", "vllm-400kB", "vllm/v1-0.33.0-dp2-text-0.0.4.txt"} <= set(data["pages"])
    for name, page in data["pages"].items():
        assert page["same_readings"], name  # the selective parse reads what the full parse reads
        assert 0 < min(page["selective_ms"]) and 0 < min(page["full_ms"]), name
    assert 30_000 < data["pages"]["vllm-40kB"]["bytes"] < 60_000 and 300_000 < data["pages"]["vllm-400kB"]["bytes"]
    assert "ratio (medians)" in out


def test_a_missed_target_fails_the_script_unless_quick(capsys):
    sys.path.insert(0, str(BENCH))
    import _common

    assert _common.verdict({"a": True, "b": True}, quick=False) == 0
    assert _common.verdict({"a": True, "p99_le_5ms": False}, quick=False) == 1
    assert "targets missed: p99_le_5ms" in capsys.readouterr().err
    assert _common.verdict({"p99_le_5ms": False}, quick=True) == 0  # the smoke runs judge shape, not figures
