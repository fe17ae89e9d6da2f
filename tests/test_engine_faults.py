"""Engine faults (the campaign in docs/reliability.md): an engine that restarts, dies, hangs, talks
garbage or explodes its label values degrades only its own metrics. Each test runs the exporter
behind its real HTTP server and checks the four promises through tests/faults.py: /metrics keeps
being served, the fault shows in a health metric and in one log line, every counter stays
monotonic and the totals correct, and recovery needs nobody."""

import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import MODEL, make_config, value
from exporter.demo.vllm_server import SimulatedVllm
from exporter.engines import source as engine_source
from faults import campaign  # noqa: F401 (fixture)


def tokens(exporter, direction="input", engine="vllm", model=MODEL):
    return value(exporter, "llmcost_tokens_total", engine=engine, model=model, direction=direction)


def up(exporter, name="vllm"):
    return value(exporter, "llmcost_source_up", source="engine", name=name)


def errors(exporter, reason, name="vllm"):
    return value(exporter, "llmcost_source_errors_total", source="engine", name=name, reason=reason) or 0


def spend(exporter):
    return value(exporter, "llmcost_spend_total", component="instance", currency="USD")


@pytest.fixture
def setup(clock, vllm, exporter_for):
    def make(timeout="1s", **engine):
        server = vllm()
        clock.advance(60)  # the engine has been serving before the exporter came
        exporter = exporter_for(make_config([("vllm", server.url, {"timeout": timeout, **engine})]))
        exporter.sample_all()
        return server, exporter
    return make


def step(clock, exporter, seconds=5):
    clock.advance(seconds)
    exporter.sample_all()


def truth(server, baseline, key="input_tokens"):
    return server.served_counters()[key] - baseline[key]


def test_counter_reset_keeps_totals_exact_and_monotonic(setup, campaign):
    server, exporter = setup()
    c = campaign(exporter)
    start = server.workload.counters()["input_tokens"]
    c.step()
    with c.fault(warnings=1):
        server.restart()  # right after a scrape, so no tokens fall between scrape and restart
        c.step(times=3)
    # Every token the workload produced since the exporter's baseline, none invented.
    assert tokens(exporter) == server.workload.counters()["input_tokens"] - start
    assert server.served_counters()["input_tokens"] < tokens(exporter)  # the engine itself restarted from 0
    assert value(exporter, "llmcost_engine_restarts_total", engine="vllm") == 1
    assert up(exporter) == 1


def test_connection_refused_keeps_serving_and_recovers(setup, campaign):
    server, exporter = setup()
    c = campaign(exporter)
    baseline = server.served_counters()
    c.step()
    counted, billed = tokens(exporter), spend(exporter)
    with c.fault(warnings=1):
        server.stop()  # nothing listens on the port now
        c.step(times=3)
        assert up(exporter) == 0 and errors(exporter, "connection") == 3
        assert tokens(exporter) == counted  # totals kept, not dropped
        assert value(exporter, "llmcost_requests_running", engine="vllm", model=MODEL) is None  # unknown now
        assert spend(exporter) > billed  # the GPUs are still billed
        assert value(exporter, "llmcost_source_up", source="nvml", name="nvml") == 1
    port = int(server.url.split(":")[2].split("/")[0])
    back = SimulatedVllm(server.workload, MODEL, port=port).start()  # the same process, reachable again
    try:
        c.step()
        assert up(exporter) == 1
        assert tokens(exporter) == truth(back, baseline)  # what it served while unreachable is counted too
        assert any("recovered" in line for line in c.lines_since(0))
    finally:
        back.stop()


@pytest.mark.parametrize("fault,reason", [("http_500", "http_status"), ("garbage", "parse"), ("huge", "too_large"),
                                          ("not_http", "protocol")])
def test_bad_answers_are_counted_and_recovered_from(setup, campaign, fault, reason):
    server, exporter = setup()
    c = campaign(exporter)
    baseline = server.served_counters()
    c.step()
    counted = tokens(exporter)
    with c.fault(warnings=1):
        server.fault = fault
        c.step(times=3)
        assert up(exporter) == 0 and errors(exporter, reason) == 3
        assert tokens(exporter) == counted
    server.fault = "none"
    c.step()
    assert up(exporter) == 1
    assert tokens(exporter) == truth(server, baseline)  # nothing lost, nothing invented


def test_huge_body_is_cut_at_the_cap_quickly(setup):
    server, exporter = setup(max_body_bytes="1MiB")
    server.fault = "huge"  # 50 MB
    started = time.monotonic()
    exporter.engines[0].sample()
    assert time.monotonic() - started < 2.0
    assert errors(exporter, "too_large") == 1


@pytest.mark.integration  # real-time timeouts
@pytest.mark.parametrize("fault", ["hang", "drip"])
def test_slow_engine_times_out_and_scrapes_stay_fast(setup, campaign, fault):
    server, exporter = setup(timeout="1s")
    c = campaign(exporter)
    baseline = server.served_counters()
    with c.fault(warnings=1):
        server.fault = fault
        sampler = threading.Thread(target=exporter.engines[0].sample)
        started = time.monotonic()
        sampler.start()
        time.sleep(0.2)
        samples = c.scrape()  # while the engine hangs: answered from the snapshot, within SCRAPE_BUDGET_S
        assert ("llmcost_tokens_total", (("direction", "input"), ("engine", "vllm"), ("model", MODEL))) in samples
        sampler.join(5)
        assert time.monotonic() - started < 2.5  # the 1 s deadline held, drip included
        c.step()
        assert errors(exporter, "timeout") == 2 and up(exporter) == 0
    server.fault = "none"
    c.step()
    assert up(exporter) == 1 and tokens(exporter) == truth(server, baseline)


def test_switch_between_text_and_openmetrics_is_seamless(setup, campaign):
    server, exporter = setup()
    c = campaign(exporter)
    baseline = server.served_counters()
    with c.fault(warnings=0, max_lines=0):  # not a fault at all: no error, no line
        for fmt in ("openmetrics", "negotiate", "text", "openmetrics", "text"):  # negotiate: honours our Accept
            server.format = fmt
            c.step()
            assert up(exporter) == 1
    assert tokens(exporter) == truth(server, baseline)
    assert tokens(exporter, "output") == truth(server, baseline, "output_tokens")
    assert not any(k[0] == "llmcost_source_errors_total" and dict(k[1])["source"] == "engine" for k in c.samples)


def test_data_parallel_ranks_are_summed(clock, vllm, exporter_for):
    server = vllm(data_parallel=3)
    exporter = exporter_for(make_config([("vllm", server.url, {})]))
    exporter.sample_all()
    baseline = server.served_counters()
    step(clock, exporter, 60)
    assert tokens(exporter) == truth(server, baseline)


def test_renamed_model_starts_its_own_series(setup, campaign):
    server, exporter = setup()
    c = campaign(exporter)
    c.step()
    old = tokens(exporter)
    with c.fault(warnings=0, max_lines=0):
        server.restart()  # vLLM renames a served model only across a restart
        server.model = "meta-llama/Llama-3.1-70B-Instruct"
        c.step(times=2)
    assert tokens(exporter) == old  # the old model's series stays, and stops growing
    assert tokens(exporter, model=server.model) == server.served_counters()["input_tokens"]
    assert up(exporter) == 1


def test_model_cap_bounds_cardinality(static_server, exporter_for, campaign):
    body = "# TYPE vllm:prompt_tokens_total counter\n" + "".join(
        f'vllm:prompt_tokens_total{{model_name="m{i}"}} {i}\n' for i in range(20))
    exporter = exporter_for(make_config([("vllm", static_server(body), {"max_models": 5})]))
    exporter.gpu.sample()
    c = campaign(exporter)
    with c.fault(warnings=1):
        c.step(times=3)
    models = {f.model.model for f in exporter.snapshot().models}
    assert models == {"m0", "m1", "m10", "m11", "m12"}  # a stable choice: the first five by name
    assert errors(exporter, "too_many_models") == 3
    assert up(exporter) == 1


@pytest.mark.slow  # 45 scrapes of 200 new model names each, under tracemalloc
def test_exploding_label_values_are_capped_per_engine_with_bounded_memory(dynamic_server, exporter_for, campaign):
    """Every scrape brings 200 model names never seen before and 100 finished reasons: the
    engine's tracked series stay under the caps, memory stops growing, requests stay exact."""
    def body(n):
        lines = ["# TYPE vllm:prompt_tokens_total counter", "# TYPE vllm:request_success_total counter"]
        for i in range(200):
            lines.append(f'vllm:prompt_tokens_total{{model_name="scrape{n}-model{i}"}} {n * 10 + i}')
        lines.append(f'vllm:prompt_tokens_total{{model_name="a-steady"}} {n * 100}')
        lines += [f'vllm:request_success_total{{model_name="a-steady",finished_reason="r{j}"}} {n}' for j in range(100)]
        return "\n".join(lines) + "\n"

    exporter = exporter_for(make_config([("vllm", dynamic_server(body), {"max_models": 10})]))
    exporter.gpu.sample()
    c = campaign(exporter)
    tracemalloc.start()
    try:
        with c.fault(warnings=2, max_lines=2):  # one line per cap: models, then finished reasons
            c.step(times=5)
            first = tracemalloc.get_traced_memory()[0]
            c.step(times=40)
            growth = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    engine = exporter.engines[0]
    assert len(engine._model_names()) <= 10
    models = {f.model.model: f.model for f in exporter.snapshot().models}
    assert "a-steady" in models and len(models) == 10
    assert errors(exporter, "too_many_models") == 45 and errors(exporter, "too_many_series") >= 1
    assert up(exporter) == 1
    steady = models["a-steady"]
    assert len(steady.requests) == engine_source.MAX_REASONS
    assert sum(steady.requests.values()) == 100 * 44  # exact, the excess summed as "other"; scrape 1 was the baseline
    assert growth < 256 * 1024, f"memory grew {growth} bytes over 40 scrapes of new label values"


def test_reasons_fold_into_other_and_long_names_are_dropped(dynamic_server, exporter_for, campaign):
    def body(n):
        long_name = "x" * (engine_source.MAX_LABEL_LENGTH + 1)
        lines = ["# TYPE vllm:prompt_tokens_total counter", "# TYPE vllm:request_success_total counter",
                 f'vllm:prompt_tokens_total{{model_name="m"}} {n * 10}',
                 f'vllm:prompt_tokens_total{{model_name="{long_name}"}} {n}']
        lines += [f'vllm:request_success_total{{model_name="m",finished_reason="r{j:02d}"}} {n * (j + 1)}'
                  for j in range(30)]
        return "\n".join(lines) + "\n"

    exporter = exporter_for(make_config([("vllm", dynamic_server(body), {})]))
    exporter.gpu.sample()
    c = campaign(exporter)
    with c.fault(warnings=2):
        c.step(times=3)
    (model,) = [f.model for f in exporter.snapshot().models]
    assert model.model == "m"
    assert len(model.requests) == engine_source.MAX_REASONS and "other" in model.requests
    # Baseline at the first scrape (n=1), then two more: each adds sum(j+1 for j<30) = 465 requests.
    assert sum(model.requests.values()) == 2 * 465
    assert model.requests["r29"] == 2 * 30  # the largest reasons keep their own label
    assert errors(exporter, "label_too_long") == 3 and errors(exporter, "too_many_series") == 3


def test_a_retired_model_makes_room_for_a_new_one_after_an_hour(dynamic_server, exporter_for, campaign, clock):
    names = {"current": ["a", "b"]}

    def body(n):
        return "# TYPE vllm:prompt_tokens_total counter\n" + "".join(
            f'vllm:prompt_tokens_total{{model_name="{m}"}} {n}\n' for m in names["current"])

    exporter = exporter_for(make_config([("vllm", dynamic_server(body), {"max_models": 2})]))
    exporter.gpu.sample()
    c = campaign(exporter)
    c.step()
    names["current"] = ["b", "c"]  # a was undeployed, c deployed
    with c.fault(warnings=1):
        c.step()
        assert {f.model.model for f in exporter.snapshot().models} == {"a", "b"}  # c waits: a is too recent
        clock.advance(engine_source.RETIRE_AFTER_S)
        c.samples, c._counters = {}, set()  # a's series ends here, on purpose
        c.step()
    assert {f.model.model for f in exporter.snapshot().models} == {"b", "c"}


def test_engine_credentials_in_the_url_are_never_logged(clock, exporter_for, caplog):
    from exporter.engines.fetch import redact

    assert redact("http://user:s3cret@127.0.0.1:9/metrics") == "http://127.0.0.1:9/metrics"
    exporter = exporter_for(make_config([("vllm", "http://user:s3cret@127.0.0.1:9/metrics", {})]))
    exporter.sample_all()
    assert "s3cret" not in caplog.text and up(exporter) == 0


def test_engine_redirects_are_not_followed(clock, exporter_for):
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        exporter = exporter_for(make_config([("vllm", f"http://127.0.0.1:{server.server_address[1]}/metrics", {})]))
        exporter.sample_all()
        assert errors(exporter, "http_status") == 1
    finally:
        server.shutdown()
        server.server_close()
