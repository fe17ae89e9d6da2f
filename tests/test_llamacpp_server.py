"""A real llama.cpp llama-server (built by scripts/install-llama-server.sh, tiny random model, CPU):
how its Prometheus counters relate to the token counts its answers report.

What llama-server b11434 counts (tools/server/server-task.cpp, server_task_result_metrics::
to_metrics; tools/server/server-common.h, struct server_metrics; tools/server/server-context.cpp):
  llamacpp:prompt_tokens_total         prompt tokens decoded, NOT those reused from the prompt cache
  llamacpp:prompt_tokens_cached_total  prompt tokens reused from the cache (no decode)
  llamacpp:tokens_predicted_total      generated tokens, added when the request's slot is released
An answer reports prompt_tokens (OpenAI usage) = tokens_evaluated (/completion) = ALL prompt tokens,
cached ones included, and completion_tokens = tokens_predicted = the generated tokens. So, exactly:
  delta prompt_tokens_total + delta prompt_tokens_cached_total = sum of usage.prompt_tokens
  delta prompt_tokens_cached_total = sum of usage.prompt_tokens_details.cached_tokens
  delta tokens_predicted_total = sum of usage.completion_tokens
With "cache_prompt": false nothing is cached, and prompt_tokens_total alone equals the prompt sum.
The server is session-scoped and its counters cumulative: every test compares deltas."""

from pathlib import Path

import pytest
from conftest import make_config, value
from plugins.llamacpp import COMPLETIONS

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent / "data" / "engines" / "llamacpp" / "llama-server-b11434-tiny.txt"

COUNTERS = ["llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total", "llamacpp:tokens_predicted_total",
            "llamacpp:n_decode_total"]


def samples(text: str) -> dict[str, float]:
    """The exposition's samples by name (labels included, as written)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def counters(server) -> dict[str, float]:
    values = samples(server.get("/metrics"))
    return {name: values[name] for name in COUNTERS}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {name: int(after[name] - before[name]) for name in COUNTERS}


def test_metrics_endpoint_is_llamacpp_prometheus_text(llama_server):
    body = llama_server.get("/metrics")
    assert "# TYPE llamacpp:prompt_tokens_total counter" in body
    assert "# TYPE llamacpp:tokens_predicted_total counter" in body
    assert "# TYPE llamacpp:requests_processing gauge" in body


def test_openai_usage_sums_equal_the_counters_without_prompt_cache(llama_server):
    before = counters(llama_server)
    answers = [llama_server.post("/v1/completions", body) for body in COMPLETIONS]
    after = counters(llama_server)

    usages = [answer["usage"] for answer in answers]
    for body, usage in zip(COMPLETIONS, usages, strict=True):
        assert usage["completion_tokens"] == body["max_tokens"]  # EOS ignored: exactly max_tokens
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens_details"]["cached_tokens"] == 0
        assert usage["prompt_tokens"] >= 2  # BOS and at least one token of text
    change = delta(before, after)
    assert change["llamacpp:prompt_tokens_total"] == sum(u["prompt_tokens"] for u in usages)
    assert change["llamacpp:prompt_tokens_cached_total"] == 0
    assert change["llamacpp:tokens_predicted_total"] == sum(u["completion_tokens"] for u in usages)


def test_prompt_cache_moves_prompt_tokens_from_processed_to_cached(llama_server):
    """Same prompt twice with the cache on: the second answer still reports every prompt token,
    but llama-server decodes only the last one again (it must, for the logits) and counts the
    rest as cached."""
    body = {"prompt": "Repeat after me: the cache is warm and the tokens are free.", "max_tokens": 8,
            "temperature": 0, "ignore_eos": True, "cache_prompt": True}
    llama_server.post("/v1/completions", dict(body, prompt="A different prompt first, to fill the slot."))
    before = counters(llama_server)
    first = llama_server.post("/v1/completions", body)["usage"]
    second = llama_server.post("/v1/completions", body)["usage"]
    after = counters(llama_server)

    n = first["prompt_tokens"]
    assert second["prompt_tokens"] == n
    assert second["prompt_tokens_details"]["cached_tokens"] == n - 1
    change = delta(before, after)
    cached = first["prompt_tokens_details"]["cached_tokens"] + second["prompt_tokens_details"]["cached_tokens"]
    assert change["llamacpp:prompt_tokens_cached_total"] == cached
    assert change["llamacpp:prompt_tokens_total"] + cached == first["prompt_tokens"] + second["prompt_tokens"]
    assert change["llamacpp:tokens_predicted_total"] == first["completion_tokens"] + second["completion_tokens"] == 16


def test_native_completion_reports_evaluated_predicted_and_timings(llama_server):
    """/completion: tokens_evaluated (all prompt tokens), tokens_predicted, and timings that split
    the prompt into cache_n (reused) and prompt_n (decoded) - the counters' split, per request."""
    bodies = [{"prompt": "Tell me about tokens.", "n_predict": 9, "temperature": 0, "ignore_eos": True},
              {"prompt": "Tell me about tokens and their price.", "n_predict": 11, "temperature": 0,
               "ignore_eos": True}]  # cache_prompt defaults to true: the second reuses a prefix
    before = counters(llama_server)
    answers = [llama_server.post("/completion", body) for body in bodies]
    after = counters(llama_server)

    for body, answer in zip(bodies, answers, strict=True):
        timings = answer["timings"]
        assert answer["tokens_predicted"] == timings["predicted_n"] == body["n_predict"]
        assert answer["tokens_evaluated"] == timings["prompt_n"] + timings["cache_n"]
    assert answers[1]["timings"]["cache_n"] > 0
    change = delta(before, after)
    assert change["llamacpp:prompt_tokens_total"] == sum(a["timings"]["prompt_n"] for a in answers)
    assert change["llamacpp:prompt_tokens_cached_total"] == sum(a["timings"]["cache_n"] for a in answers)
    assert change["llamacpp:tokens_predicted_total"] == sum(a["tokens_predicted"] for a in answers)


def test_saved_fixture_is_this_build_and_these_requests(llama_server):
    """tests/data/engines/llamacpp/ holds a /metrics body of this build after COMPLETIONS on a fresh
    server: its HELP and TYPE lines are the live server's, and its token counters are the sums of
    the usage that replaying COMPLETIONS reports."""
    saved = FIXTURE.read_text()
    live = llama_server.get("/metrics")
    assert [line for line in saved.splitlines() if line.startswith("#")] == \
        [line for line in live.splitlines() if line.startswith("#")], \
        "llama-server's metrics changed: re-record the fixture (see its README)"

    usages = [llama_server.post("/v1/completions", body)["usage"] for body in COMPLETIONS]
    values = samples(saved)
    assert values["llamacpp:prompt_tokens_total"] == sum(u["prompt_tokens"] for u in usages)
    assert values["llamacpp:prompt_tokens_cached_total"] == 0
    assert values["llamacpp:tokens_predicted_total"] == sum(u["completion_tokens"] for u in usages)


def test_the_exporter_counts_exactly_what_the_answers_report(llama_server, clock, exporter_for):
    """The exporter (kind auto) scraping the real server while real completions run: its token
    totals equal the sums of the answers' usage, exactly, input being prompt + cached tokens
    (llama.cpp's prompt counter leaves the cached ones out; the engine map adds them back)."""
    exporter = exporter_for(make_config([("llama", llama_server.url + "/metrics", {"kind": "auto"})]))
    exporter.sample_all()  # the baseline: what the session's other tests sent is not ours
    usages = []
    for i, body in enumerate([*COMPLETIONS, *COMPLETIONS[:2]]):
        usages.append(llama_server.post("/v1/completions", dict(body, cache_prompt=True))["usage"])
        if i % 3 == 2:  # scrape while the requests go on
            clock.advance(5)
            exporter.sample_all()
    clock.advance(5)
    exporter.sample_all()

    assert exporter.engines[0].kind == "llamacpp"
    tokens = {d: value(exporter, "llmcost_tokens_total", engine="llama", model="unknown", direction=d)
              for d in ("input", "output")}
    cached = value(exporter, "llmcost_cached_input_tokens_total", engine="llama", model="unknown")
    assert sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages) > 0  # the repeats hit the cache
    assert tokens["input"] == sum(u["prompt_tokens"] for u in usages)
    assert tokens["output"] == sum(u["completion_tokens"] for u in usages)
    assert cached == sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
