"""`llm-cost-exporter report` end to end: the demo exporter, a real Prometheus scraping it every
second, and the report run as a user runs it (a subprocess), checked against our own PromQL."""

import re
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.promapi import PrometheusAPI
from exporter.report import COLUMNS, PREFIX, RAW, ReportError, UsageError, collect, resolve_period
from prometheus import Prometheus, free_port

MODELS = {"meta-llama/Llama-3.1-8B-Instruct": "llama-8b", "Qwen/Qwen2.5-32B-Instruct": "qwen-32b"}
FILL_SECONDS = 28  # seconds of scrapes
# Real time: utilization is tokens over capacity x the period's wall-clock seconds, and a demo
# running faster than real time counts its tokens in simulated seconds.
DEMO_SPEED = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter.report", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}", f"--demo.speed={DEMO_SPEED}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Prometheus([f"127.0.0.1:{port}"]) as prom:
            # Start the period once every series has samples, so spend and tokens cover the same scrapes.
            prom.wait_for("llmcost_tokens_total", count=2 * len(MODELS))
            prom.wait_for("llmcost_engine_spend_total", count=len(MODELS))
            start = time.time()
            time.sleep(FILL_SECONDS)
            yield SimpleNamespace(prom=prom, port=port, start=start, end=time.time())
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def printed(demo, tmp_path_factory):
    chart = tmp_path_factory.mktemp("report") / "report.png"
    result = report(f"--prometheus.url={demo.prom.url}", f"--start={demo.start:.3f}", f"--end={demo.end:.3f}",
                    "--step=1s", f"--output={chart}")
    print(result.stdout)
    return SimpleNamespace(result=result, chart=chart)


def model_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The table's first row of each model, as {column: cell}."""
    rows = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(COLUMNS) and cells[1] in MODELS:
            rows[cells[1]] = dict(zip(COLUMNS, cells))
    return rows


def dollars(cell: str) -> float:
    return float(cell.replace("$", "").replace(",", ""))


def compared_apis(port: int) -> set[str]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {s.labels["api"] for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "llmcost_api_price_per_million_tokens"}


@pytest.mark.integration
def test_report_prints_every_model_and_compared_api(demo, printed):
    assert printed.result.returncode == 0, printed.result.stderr
    assert printed.result.stderr == ""
    out = printed.result.stdout
    apis = compared_apis(demo.port)
    assert "gpt-4o-mini" in apis  # the config default, which the demo compares with
    assert set(model_rows(out)) == set(MODELS)
    for model, engine in MODELS.items():
        for api in apis:
            verdict = [line for line in out.splitlines() if line.startswith(f"{model} on {engine}: ")
                       and (f" vs {api} (" in line or f" cheaper ({api} " in line)]
            assert len(verdict) == 1, (model, api, out)


@pytest.mark.integration
def test_actual_cost_matches_raw_samples(demo, printed):
    """ACTUAL/1M against last-minus-first of the raw counter samples: no increase() extrapolation."""
    window = f"{round(demo.end - demo.start)}s"

    def growth(metric):
        by_engine = {}
        for s in demo.prom.query(f"{metric}[{window}]", time=demo.end):
            values = [float(v) for _, v in s["values"]]
            by_engine[s["metric"]["engine"]] = by_engine.get(s["metric"]["engine"], 0.0) + values[-1] - values[0]
        return by_engine

    spend, tokens = growth("llmcost_engine_spend_total"), growth("llmcost_tokens_total")
    rows = model_rows(printed.result.stdout)
    for model, engine in MODELS.items():
        expected = spend[engine] / tokens[engine] * 1e6
        assert dollars(rows[model]["ACTUAL/1M"]) == pytest.approx(expected, rel=0.02), model


@pytest.mark.integration
def test_savings_are_api_equivalent_minus_self_hosted_share(printed):
    for model, row in model_rows(printed.result.stdout).items():
        assert dollars(row["SAVINGS"]) == pytest.approx(dollars(row["API-EQUIVALENT"]) - dollars(row["SELF-HOSTED"]),
                                                        abs=0.011), model
        assert dollars(row["AT 100%/1M"]) < dollars(row["ACTUAL/1M"])  # the demo never runs at full load


def percent(cell: str) -> float:
    return float(cell.rstrip("%")) / 100


@pytest.mark.integration
def test_every_row_satisfies_actual_equals_full_over_utilization(demo, printed):
    """The identity of issue 15, on what the report computes (exactly) and on what it prints (to the
    rounding of its cells): every column covers the same period."""
    report = collect(PrometheusAPI(demo.prom.url, 10), demo.start, demo.end, "raw")
    assert report.basis == RAW.name
    for line in report.models:
        assert line.utilization and line.full_per_million and line.actual_per_million, line
        assert line.actual_per_million == pytest.approx(line.full_per_million / line.utilization, rel=1e-9), line
    for model, row in model_rows(printed.result.stdout).items():
        full, utilization, actual = dollars(row["AT 100%/1M"]), percent(row["UTILIZATION"]), dollars(row["ACTUAL/1M"])
        # Cells carry 3 decimals and 0.1%: the printed identity holds to their rounding.
        rounding = 0.0005 / full + 0.0005 / utilization + 0.0005 / actual
        assert actual == pytest.approx(full / utilization, rel=rounding), (model, row)


@pytest.mark.integration
def test_utilization_is_the_period_tokens_over_capacity_times_the_period(demo, printed):
    """Not an average of the live-window gauge (which looks back before the period's start: the
    26.3% shown where the period's tokens gave 20.4%), but the period's own tokens."""
    window = f"{round(demo.end - demo.start)}s"
    rate = {}  # tokens/s between the first and the last raw sample of the period
    for s in demo.prom.query(f"llmcost_tokens_total[{window}]", time=demo.end):
        (t0, v0), (t1, v1) = s["values"][0], s["values"][-1]
        engine = s["metric"]["engine"]
        rate[engine] = rate.get(engine, 0.0) + (float(v1) - float(v0)) / (t1 - t0)
    capacity = {s["metric"]["engine"]: float(s["value"][1])
                for s in demo.prom.query("llmcost_capacity_tokens_per_second", time=demo.end)}
    rows = model_rows(printed.result.stdout)
    for model, engine in MODELS.items():
        expected = rate[engine] / capacity[engine]
        assert percent(rows[model]["UTILIZATION"]) == pytest.approx(expected, rel=0.015), model


@pytest.mark.integration
def test_model_rows_split_the_engine_spend_exactly_and_totals_are_printed(demo, printed):
    report = collect(PrometheusAPI(demo.prom.url, 10), demo.start, demo.end, "raw")
    engine_spend = {}
    for s in demo.prom.query(f"sum by (engine) (increase(llmcost_engine_spend_total[{round(demo.end - demo.start)}s]))",
                             time=demo.end):
        engine_spend[s["metric"]["engine"]] = float(s["value"][1])
    for engine, spend in engine_spend.items():
        assert sum(m.self_hosted or 0 for m in report.models if m.engine == engine) == pytest.approx(spend, rel=1e-12)
    assert report.totals is not None and report.totals.nodes is not None and report.totals.unallocated is not None
    # The demo's fourth GPU and the rest of the MIG GPU are held by no engine: node = engines + unallocated.
    assert report.totals.nodes == pytest.approx(report.totals.engines + report.totals.unallocated, rel=0.02)
    assert "Spend over the period: nodes $" in printed.result.stdout
    assert "from raw counters (period under 1d)" in printed.result.stdout


@pytest.mark.integration
def test_output_writes_a_png_chart(printed):
    data = printed.chart.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000
    assert f"chart: {printed.chart}" in printed.result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess, contains: str, status: int = 1) -> None:
    assert result.returncode == status, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    assert contains in lines[0]


@pytest.mark.integration
def test_unreachable_prometheus(demo):
    closed_port = free_port()  # bound and released: nothing listens there
    assert_one_line_error(report(f"--prometheus.url=http://127.0.0.1:{closed_port}"), "cannot reach http://127.0.0.1")


@pytest.mark.integration
def test_range_without_data(demo):
    url = f"--prometheus.url={demo.prom.url}"
    assert_one_line_error(report(url, "--start=2001-01-01T00:00:00Z", "--end=2001-01-02T00:00:00Z"),
                          "no llmcost_tokens_total series")
    # Before the exporter started, in a Prometheus that has its series later:
    assert_one_line_error(report(url, f"--start={demo.start - 7200:.0f}", f"--end={demo.start - 3600:.0f}"),
                          "no llmcost_tokens_total series")


@pytest.mark.integration
def test_prometheus_without_llmcost_series():
    with Prometheus() as empty:
        assert_one_line_error(report(f"--prometheus.url={empty.url}", "--start=now-5m"), "no llmcost_tokens_total series")


@pytest.mark.integration
def test_end_before_start(demo):
    assert_one_line_error(report(f"--prometheus.url={demo.prom.url}", "--start=now", "--end=now-1h"),
                          "must be after --start", status=2)


@pytest.mark.integration
def test_prometheus_error_answer_is_one_line(demo):
    # A path that is not the API: a 404 page instead of JSON.
    assert_one_line_error(report(f"--prometheus.url={demo.prom.url}/nothing-here"), "answered HTTP 404")


def test_period_forms_and_auto_step():
    now = 1_700_000_000.0
    assert resolve_period("now-24h", "now", "auto", now) == (now - 86400, now, 86400 / 200)
    assert resolve_period("2023-11-14T22:13:20Z", "1700003600", "1m30s", now) == (now, now + 3600, 90.0)
    assert resolve_period("now-10m", "now", "auto", now)[2] == 15.0  # never finer than a typical scrape interval
    for start, end, step in (("yesterday", "now", "auto"), ("now-1h", "now", "fast"), ("now", "now", "auto")):
        with pytest.raises(UsageError):
            resolve_period(start, end, step, now)
    assert issubclass(UsageError, ReportError)
