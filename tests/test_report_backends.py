"""`report` on the backends a fleet outgrows one Prometheus into, on a backfilled history whose
totals have a closed form (bench/_history.py): a real Prometheus 2.42 (blocks written by
`promtool tsdb create-blocks-from openmetrics`), a real VictoriaMetrics (its import API), and a
header-checking endpoint in front of the Prometheus (tenant header, bearer token, basic auth).

The same history is there twice: the exporters' raw counters (5-minute scrapes) and the rules'
hourly recorded series. The report reads the recorded ones for periods of a day or more, the raw
ones otherwise or where the recorded ones do not reach back, and says which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from authproxy import AuthProxy
from prometheus import Prometheus, free_port
from vmsingle import VictoriaMetrics

from exporter import promapi, report
from exporter.promapi import Credentials, PrometheusAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _history as history  # noqa: E402 (bench/ is not a package)

NODES, HOURS, RAW_STEP = 3, 48, 300
TOKEN, TENANT, USER, PASSWORD = "tok-3f9a27c1e8", "team-a", "finops", "pw-81c2d4"


@pytest.fixture(scope="module")
def fleet():
    return history.Fleet(nodes=NODES, hours=HOURS, end=int(time.time()) // 3600 * 3600 - 3600)


def _series(fleet):
    for n in range(fleet.nodes):
        yield from history.raw(fleet, n, RAW_STEP)
        yield from history.recorded(fleet, n)


@pytest.fixture(scope="module")
def prom(fleet, tmp_path_factory):
    source = tmp_path_factory.mktemp("backfill") / "history.om"
    with open(source, "w") as out:
        out.writelines(history.openmetrics(_series(fleet)))
        out.write("# EOF\n")

    def backfill(data: Path) -> None:
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                       check=True, capture_output=True, timeout=300)

    with Prometheus(flags=["--storage.tsdb.retention.time=10y"], prepare=backfill) as p:
        yield p


@pytest.fixture(scope="module")
def vm(fleet):
    with VictoriaMetrics() as v:
        v.import_lines(history.import_lines(_series(fleet)))
        yield v


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter.report", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def assert_matches_closed_form(got: report.Report, expected: dict, rel: float) -> None:
    rows = {(m.engine, m.model): m for m in got.models}
    assert set(rows) == set(expected)
    for key, want in expected.items():
        line = rows[key]
        assert line.tokens == pytest.approx(want.tokens, rel=rel), key
        assert line.self_hosted == pytest.approx(want.self_hosted, rel=rel), key
        assert line.utilization == pytest.approx(want.utilization, rel=rel), key
        assert line.full_per_million == pytest.approx(want.full_per_million, rel=rel), key
        assert line.actual_per_million == pytest.approx(want.actual_per_million, rel=rel), key
        # The identity holds on every row exactly, whatever the basis:
        assert line.actual_per_million == pytest.approx(line.full_per_million / line.utilization, rel=1e-12), key
        assert {a.api: a.equivalent for a in line.apis} == pytest.approx(want.equivalent, rel=rel), key


BACKENDS = ["prom", "vm"]


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_period_reads_the_recorded_series_exactly(backend, fleet, request):
    url = request.getfixturevalue(backend).url
    got = report.collect(PrometheusAPI(url, 30), fleet.start, fleet.end, "auto")
    assert got.basis == report.RECORDED.name, got.reason
    assert_matches_closed_form(got, history.expected(fleet), rel=1e-9)
    assert got.totals.nodes == pytest.approx(got.totals.engines + got.totals.unallocated, rel=1e-9)


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_counters_over_the_same_period_agree(backend, fleet, request):
    """Prometheus extrapolates increase() to the period's ends, VictoriaMetrics does not: both
    within 1% of the closed form over two days of 5-minute samples."""
    url = request.getfixturevalue(backend).url
    got = report.collect(PrometheusAPI(url, 30), fleet.start, fleet.end, "raw")
    assert got.basis == report.RAW.name
    assert_matches_closed_form(got, history.expected(fleet), rel=0.01)


@pytest.mark.integration
def test_a_period_the_recorded_series_do_not_reach_back_to_is_read_raw_and_says_why(prom, fleet):
    url = PrometheusAPI(prom.url, 30)
    got = report.collect(url, fleet.start - 6 * 3600, fleet.end, "auto")
    assert got.basis == report.RAW.name and "no recorded hourly series" in got.reason
    short = report.collect(url, fleet.end - 6 * 3600, fleet.end, "auto")
    assert short.basis == report.RAW.name and short.reason == "period under 1d"
    assert_matches_closed_form(short, history.expected(fleet, first_hour=HOURS - 6), rel=0.01)
    result = cli(f"--prometheus.url={prom.url}", f"--start={fleet.start - 6 * 3600}", f"--end={fleet.end}",
                 "--source=recorded")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(report.PREFIX + "no recorded hourly series") and result.stderr.count("\n") == 1


@pytest.mark.integration
def test_the_cli_against_victoriametrics_prints_the_recorded_figures(vm, fleet):
    result = cli(f"--prometheus.url={vm.url}", f"--start={fleet.start}", f"--end={fleet.end}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"(2d), {vm.url}")
    assert lines[1] == "from recorded hourly series (period of 1d or more)"
    for engine, model in history.expected(fleet):
        assert any(line.startswith(engine) and f"  {model}  " in line for line in lines), (engine, model)


@pytest.fixture(scope="module")
def guarded(prom):
    with AuthProxy(prom.url, tenant=TENANT, bearer=TOKEN) as proxy:
        yield proxy


@pytest.mark.integration
def test_tenant_header_and_bearer_token_from_a_file(guarded, fleet, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = (f"--prometheus.url={guarded.url}", f"--start={fleet.start}", f"--end={fleet.end}")
    denied = cli(*args)
    assert denied.returncode == 1 and denied.stdout == ""
    assert "answered HTTP 401" in denied.stderr and "--prometheus.bearer-token-file" in denied.stderr
    result = cli(*args, f"--prometheus.tenant={TENANT}", f"--prometheus.bearer-token-file={token_file}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(f"{guarded.url} (tenant {TENANT}, bearer token)")
    assert TOKEN not in result.stdout + result.stderr + denied.stderr
    assert guarded.seen[-1].get("X-Scope-OrgID") == TENANT and guarded.seen[-1].get("Authorization") == f"Bearer {TOKEN}"
    # The same figures as straight from Prometheus:
    direct = cli(f"--prometheus.url={guarded.upstream}", f"--start={fleet.start}", f"--end={fleet.end}")
    assert result.stdout.splitlines()[1:] == direct.stdout.splitlines()[1:]


@pytest.mark.integration
def test_bearer_token_from_the_environment(guarded, fleet):
    env = {**_env(), promapi.TOKEN_ENV: TOKEN}
    result = cli(f"--prometheus.url={guarded.url}", f"--prometheus.tenant={TENANT}", f"--start={fleet.start}",
                 f"--end={fleet.end}", env=env)
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.integration
def test_basic_auth_from_flags_env_or_url_never_printed(prom, fleet):
    with AuthProxy(prom.url, basic=(USER, PASSWORD)) as proxy:
        period = (f"--start={fleet.start}", f"--end={fleet.end}")
        by_env = cli(f"--prometheus.url={proxy.url}", f"--prometheus.username={USER}", *period,
                     env={**_env(), promapi.PASSWORD_ENV: PASSWORD})
        assert by_env.returncode == 0, by_env.stderr
        assert by_env.stdout.splitlines()[0].endswith(f"{proxy.url} (basic auth as {USER})")
        in_url = cli(f"--prometheus.url={proxy.url.replace('://', f'://{USER}:{PASSWORD}@')}", *period)
        assert in_url.returncode == 0, in_url.stderr
        wrong = cli(f"--prometheus.url={proxy.url.replace('://', f'://{USER}:nope@')}", *period)
        assert wrong.returncode == 1 and "answered HTTP 401" in wrong.stderr
        for result in (by_env, in_url, wrong):
            assert PASSWORD not in result.stdout + result.stderr and "nope" not in result.stderr
        assert proxy.rejected == 1


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in (promapi.TOKEN_ENV, promapi.PASSWORD_ENV)}


# --- usage errors: one line, exit 2, no secret in it (no server needed) ------------------------------

@pytest.mark.parametrize("args, env, contains", [
    (["--prometheus.bearer-token-file=/nonexistent/token"], {}, "--prometheus.bearer-token-file: cannot read"),
    (["--prometheus.username=u"], {}, "--prometheus.username needs --prometheus.password-file"),
    (["--prometheus.password-file=/etc/hostname"], {}, "--prometheus.password-file needs --prometheus.username"),
    (["--prometheus.url=http://u:pw-81c2d4@127.0.0.1:1"], {promapi.TOKEN_ENV: TOKEN}, "both given"),
    (["--prometheus.url=ftp://u:pw-81c2d4@host/"], {}, "is not an http:// or https:// URL"),
    (["--start=yesterday"], {}, "cannot read time"),
])
def test_usage_errors_exit_2_with_one_line(args, env, contains, capsys, monkeypatch):
    for key in (promapi.TOKEN_ENV, promapi.PASSWORD_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert report.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(report.PREFIX) and contains in err, err
    assert PASSWORD not in err and TOKEN not in err


def test_empty_or_multiline_secret_files_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(promapi.TOKEN_ENV, raising=False)
    for text in ("\n", "a\nb\n"):
        (tmp_path / "token").write_text(text)
        assert report.main([f"--prometheus.bearer-token-file={tmp_path / 'token'}"]) == 2
        assert "must hold one non-empty line" in capsys.readouterr().err


def test_credentials_headers_and_description():
    assert Credentials("t", "x").headers()["Authorization"] == "Bearer x"
    basic = Credentials(basic=("a", "b"))
    assert basic.headers()["Authorization"] == "Basic YTpi" and basic.describe() == "basic auth as a"
    assert "X-Scope-OrgID" not in Credentials().headers() and Credentials().describe() == ""
    url, userinfo = promapi.split_url("https://a%40b:p%3Aw@mimir.example:8080/prometheus/")
    assert (url, userinfo) == ("https://mimir.example:8080/prometheus", ("a@b", "p:w"))


@pytest.mark.integration
def test_a_redirect_is_not_followed_with_credentials():
    """An endpoint that redirects elsewhere: the token must not travel there."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    elsewhere = free_port()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere}{self.path}")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cli(f"--prometheus.url=http://127.0.0.1:{server.server_address[1]}", env={**_env(), promapi.TOKEN_ENV: TOKEN})
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1 and "answered HTTP 302" in result.stderr and "not followed" in result.stderr


OPTIONAL = {"engine_model:llmcost_model_spend:increase1h", "engine:llmcost_engine_gpu_utilization:avg1h",
            "instance:llmcost_unallocated_spend:increase1h"}


@pytest.mark.integration
def test_recorded_series_a_rule_file_lacks_are_named_and_the_report_says_what_it_did(fleet):
    """A rule file that records tokens, spend, capacity and API-equivalent spend only: the models
    split their engine's spend by tokens, and the header says so; the identity still holds."""
    with VictoriaMetrics() as v:
        v.import_lines(history.import_lines(s for n in range(fleet.nodes) for s in history.recorded(fleet, n)
                                            if s[0]["__name__"] not in OPTIONAL))
        got = report.collect(PrometheusAPI(v.url, 30), fleet.start, fleet.end, "recorded")
        printed = cli(f"--prometheus.url={v.url}", f"--start={fleet.start}", f"--end={fleet.end}")
    assert {note.split()[1] for note in got.notes} == OPTIONAL
    assert printed.returncode == 0 and all(note in printed.stdout for note in got.notes)
    want = history.expected(fleet)
    for line in got.models:
        engine_tokens = sum(w.tokens for (e, _), w in want.items() if e == line.engine)
        w = want[(line.engine, line.model)]
        assert line.self_hosted == pytest.approx(w.engine_spend * w.tokens / engine_tokens, rel=1e-9)
        assert line.actual_per_million == pytest.approx(line.full_per_million / line.utilization, rel=1e-12)
        assert line.gpu_busy is None
    assert got.totals.unallocated is None


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["vm", "prometheus"])
def test_the_scale_benchmark_runs_small_on_both_backends(backend, tmp_path):
    """bench/report_scale.py at --quick size (10 nodes, 2 days): the CI-sized run of the 30-day,
    1,000-node benchmark; the figures must match the closed form there too."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "report_scale.py"
    result = subprocess.run([sys.executable, str(bench), "--quick", f"--backend={backend}", f"--results-dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / ("report_scale.json" if backend == "vm" else "report_scale_prometheus.json")).read_text())
    assert data["nodes"] == 10 and data["days"] == 2 and data["recorded_samples"] == 10 * 38 * 48
    assert data["max_relative_error"] < 1e-6 and data["targets"]["figures_match_closed_form"]
    assert data["output_head"][1] == "from recorded hourly series (period of 1d or more)"
    assert all(0 < t < 60 for t in data["report_seconds"])


@pytest.mark.integration
def test_an_api_priced_at_several_tiers_gets_a_line_per_tier(fleet):
    """Series with a `tier` label (an API's batch price beside its standard one) are never summed
    together; the line names the tier."""
    def with_batch_tier():
        for n in range(fleet.nodes):
            for labels, stamps, values in history.recorded(fleet, n):
                yield labels, stamps, values
                if labels["__name__"] == "engine_model_api:llmcost_api_equivalent_spend:increase1h":
                    yield {**labels, "tier": "batch"}, stamps, [v / 2 for v in values]

    with VictoriaMetrics() as v:
        v.import_lines(history.import_lines(with_batch_tier()))
        got = report.collect(PrometheusAPI(v.url, 30), fleet.start, fleet.end, "recorded")
    want = history.expected(fleet)
    for line in got.models:
        equivalents = {a.api: a.equivalent for a in line.apis}
        expected = want[(line.engine, line.model)].equivalent
        assert equivalents == pytest.approx({**expected, **{f"{api} (batch)": x / 2 for api, x in expected.items()}},
                                            rel=1e-9)
