"""exporter.modelsplit: an engine's spend over its models, each model's over prefill and decode, and
the prefix cache's savings (docs/cost-model.md, "Per model, per phase, per cache").

The phase times and token counts are the engines' own, read by the real engine source from the
recorded expositions of tests/data/engines/, so each expected split is worked out from the
fixture's numbers by hand. The conservation properties run over generated engines and ticks.
"""

import pathlib
import re
import shutil
import subprocess
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.engines import serve_loopback
from plugins.profiles import examples
from prometheus_client import generate_latest

from exporter.accounting import Ledger
from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.config import ConfigError, EngineConfig, from_dict
from exporter.engines.source import EngineSource
from exporter.modelsplit import ENGINE_TIME, PHASES, RATIO, ModelSpend, Work, proportional, split_engine, token_weights

ENGINES = pathlib.Path(__file__).parent / "data" / "engines"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
REL = 1e-9
WINDOW_S = 300.0
QWEN = "Qwen/Qwen3-0.6B"


def counted(fixture: str, kind: str) -> dict[str, Work]:
    """What a real engine source counts from the fixture when all of it is new since start (the
    engine started after the exporter), by model."""
    source = EngineSource(EngineConfig(url="http://127.0.0.1:9/metrics", name="e", kind=kind), ManualClock(),
                          threading.RLock(), WINDOW_S)
    source.reconfigure(source.config, restart="from_zero")
    source.ingest(TEXT, (ENGINES / fixture).read_text())
    return source.work_totals()


def one_tick(works: dict[str, Work], amount: float, weight: float = 0.25) -> ModelSpend:
    spend = ModelSpend(WINDOW_S, weight)
    spend.accrue(1000.0, 1.0, {"e": amount}, {"e": works})
    return spend


# -- the engines' own phase times -------------------------------------------------------------------


def test_vllm_dp2_fixture_splits_by_its_prefill_and_decode_time_sums():
    # Two data-parallel ranks: prompt 1200 + 800, cached 400 + 0, generated 300 + 150, and the
    # _sum of request_prefill_time_seconds 0.4 + 0.2, of request_decode_time_seconds 4.4 + 2.2.
    works = counted("vllm/v1-0.33.0-dp2-text-0.0.4.txt", "vllm")
    work = works[QWEN]
    assert (work.input_tokens, work.output_tokens, work.cached_input_tokens) == (2000.0, 450.0, 400.0)
    assert work.prefill_seconds == pytest.approx(0.6, rel=REL) and work.decode_seconds == pytest.approx(6.6, rel=REL)
    w_prefill, w_decode, method = token_weights(works.values(), 0.25)
    assert method == ENGINE_TIME
    assert w_prefill == pytest.approx(0.6 / 1600, rel=REL) and w_decode == pytest.approx(6.6 / 450, rel=REL)
    spend = one_tick(works, 12.0)
    # One model: prefill gets 0.6 / (0.6 + 6.6) = 1/12 of the engine's $12.
    assert spend.totals()[("e", QWEN, "prefill")] == pytest.approx(1.0, rel=REL)
    assert spend.totals()[("e", QWEN, "decode")] == pytest.approx(11.0, rel=REL)
    assert spend.methods["e"] == ENGINE_TIME
    # 400 cached tokens at $1 / 1600 computed prompt tokens.
    assert spend.savings[("e", QWEN)] == pytest.approx(0.25, rel=REL)


def test_lmdeploy_fixture_splits_by_its_own_time_sums():
    # prefill 0.400000095..., decode 5.400000095... s; prompt 1536 of which 384 cached, 256 generated.
    works = counted("lmdeploy/0.18.0-pytorch-text-0.0.4.txt", "lmdeploy")
    [(model, work)] = works.items()
    assert work.prefill_seconds == pytest.approx(0.4, rel=1e-6) and work.decode_seconds == pytest.approx(5.4, rel=1e-6)
    spend = one_tick(works, 5.8)
    assert spend.totals()[("e", model, "prefill")] == pytest.approx(0.4, rel=1e-6)
    assert spend.totals()[("e", model, "decode")] == pytest.approx(5.4, rel=1e-6)
    assert spend.savings[("e", model)] == pytest.approx(384 * 0.4 / (1536 - 384), rel=1e-6)


def test_llamacpp_fixture_splits_by_its_prompt_and_predicted_seconds():
    works = counted("llamacpp/llama-server-b11434-tiny.txt", "llamacpp")
    [(model, work)] = works.items()
    assert (work.prefill_seconds, work.decode_seconds) == (0.007664, 0.050542)
    spend = one_tick(works, 1.0)
    assert spend.totals()[("e", model, "prefill")] == pytest.approx(0.007664 / (0.007664 + 0.050542), rel=REL)
    assert spend.methods["e"] == ENGINE_TIME


def test_an_engine_without_phase_times_splits_by_the_configured_ratio():
    # SGLang serves no per-request prefill/decode time: computed input tokens weigh 0.25 (or the
    # configured weight) of an output token.
    works = counted("sglang/0.5.23-tokenizer-collector-multiproc-text-0.0.4.txt", "sglang")
    [(model, work)] = works.items()
    assert work.prefill_seconds is None and work.decode_seconds is None
    assert work.computed_input > 0 and work.output_tokens > 0
    for weight in (0.25, 1.0):
        spend = one_tick(works, 10.0, weight)
        prefill = work.computed_input * weight
        assert spend.methods["e"] == RATIO
        assert spend.totals()[("e", model, "prefill")] == pytest.approx(10.0 * prefill / (prefill + work.output_tokens), rel=REL)


def test_phase_times_that_say_nothing_yet_fall_back_to_the_ratio():
    # Time histograms are observed when a request ends: tokens may flow before any has.
    started = {"m": Work(1000.0, 100.0, 0.0, prefill_seconds=0.0, decode_seconds=0.0)}
    assert token_weights(started.values(), 0.5) == (0.5, 1.0, RATIO)
    spend = one_tick(started, 6.0, 0.5)
    assert spend.totals()[("e", "m", "prefill")] == pytest.approx(6.0 * 500 / 600, rel=REL)


def test_prefill_token_weight_is_validated_and_defaults_to_a_quarter():
    def load(**attribution):
        return from_dict({"pricing": {"cloud": {"hourly": 1.0}}, "gpu": {"backend": "none"},
                          **({"attribution": attribution} if attribution else {})}, environ={})

    assert load().attribution.prefill_token_weight == 0.25
    assert load(prefill_token_weight=0.1).attribution.prefill_token_weight == 0.1
    for bad in (0, -1, "x", float("inf"), 1e6):
        with pytest.raises(ConfigError) as err:
            load(prefill_token_weight=bad)
        assert str(err.value).startswith("attribution.prefill_token_weight: got"), str(err.value)


# -- models within an engine ------------------------------------------------------------------------


def test_models_share_the_engine_by_token_weighted_work_not_evenly():
    works = {"chat": Work(1000.0, 100.0, 0.0), "batch": Work(0.0, 300.0, 0.0)}
    spend = one_tick(works, 13.0).totals()
    # chat: 1000 × 0.25 + 100 = 350, batch: 300; of 650.
    assert spend[("e", "chat", "prefill")] + spend[("e", "chat", "decode")] == pytest.approx(7.0, rel=REL)
    assert spend[("e", "chat", "prefill")] == pytest.approx(5.0, rel=REL)
    assert spend[("e", "batch", "prefill")] == 0.0 and spend[("e", "batch", "decode")] == pytest.approx(6.0, rel=REL)


def test_the_split_follows_the_live_window_and_an_idle_engine_the_mix_since_start():
    spend, t = ModelSpend(10.0, 0.25), 0.0
    a, b = Work(0.0, 0.0, 0.0), Work(0.0, 0.0, 0.0)
    for _ in range(20):  # only a works
        t += 1.0
        a = Work(0.0, a.output_tokens + 100.0, 0.0)
        spend.accrue(t, 1.0, {"e": 1.0}, {"e": {"a": a, "b": b}})
    for _ in range(20):  # only b works: after the 10 s window, b pays for everything
        t += 1.0
        b = Work(0.0, b.output_tokens + 100.0, 0.0)
        spend.accrue(t, 1.0, {"e": 1.0}, {"e": {"a": a, "b": b}})
    assert spend.between("e", "a", "decode", t - 5.0, t) == pytest.approx(0.0, abs=1e-12)
    assert spend.between("e", "b", "decode", t - 5.0, t) == pytest.approx(5.0, rel=REL)
    for _ in range(20):  # idle: by the work since start, 2000 tokens each
        t += 1.0
        spend.accrue(t, 1.0, {"e": 1.0}, {"e": {"a": a, "b": b}})
    assert spend.between("e", "a", "decode", t - 5.0, t) == pytest.approx(2.5, rel=REL)


def test_spend_before_the_engine_serves_a_model_goes_to_its_first_models():
    spend = ModelSpend(WINDOW_S, 0.25)
    spend.accrue(1.0, 1.0, {"e": 2.0}, {"e": {}})
    spend.accrue(2.0, 1.0, {"e": 3.0}, {})
    assert spend.totals() == {}
    spend.accrue(3.0, 1.0, {"e": 1.0}, {"e": {"m": Work(10.0, 10.0, 0.0)}})
    assert sum(spend.totals().values()) == pytest.approx(6.0, rel=REL)


def test_an_engine_the_accountant_forgot_is_forgotten():
    spend = one_tick({"m": Work(10.0, 10.0, 5.0)}, 1.0)
    spend.accrue(1001.0, 1.0, {"other": 1.0}, {"other": {"x": Work(1.0, 1.0, 0.0)}})
    assert {k[0] for k in spend.totals()} == {"other"} and ("e", "m") not in spend.savings


# -- conservation -----------------------------------------------------------------------------------

weights = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
amounts = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)  # ~0.3 s: the fast tier
@given(amounts, st.dictionaries(st.text(min_size=1, max_size=3), st.tuples(weights, weights), min_size=1, max_size=6))
def test_split_engine_conserves_the_amount(amount, work):
    out = split_engine(amount, work)
    assert set(out) == {(m, p) for m in work for p in PHASES}
    assert all(v >= 0 for v in out.values())
    assert sum(out.values()) == pytest.approx(amount, rel=REL, abs=1e-12)
    for model in work:  # each model's phases add up to its share
        share = proportional(amount, {m: p + d for m, (p, d) in work.items()})[model]
        assert out[(model, "prefill")] + out[(model, "decode")] == pytest.approx(share, rel=REL, abs=1e-12)


@st.composite
def engines_over_ticks(draw):
    """Engines with up to 4 models (phase times or none), over up to 30 ticks of growing counts."""
    engines = {f"e{i}": [f"m{j}" for j in range(draw(st.integers(0, 4)))] for i in range(draw(st.integers(1, 3)))}
    timed = {e: draw(st.booleans()) for e in engines}
    ticks = []
    for _ in range(draw(st.integers(1, 30))):
        dt = draw(st.floats(min_value=0.1, max_value=20.0))
        amounts_now = {e: draw(amounts) for e in engines}
        grow = {(e, m): draw(st.tuples(*[st.floats(min_value=0.0, max_value=1e4)] * 5)) for e in engines for m in engines[e]}
        ticks.append((dt, amounts_now, grow))
    return engines, timed, ticks


def check_conservation(case):
    engines, timed, ticks = case
    spend, ledgers = ModelSpend(30.0, 0.25), {e: Ledger(30.0) for e in engines}
    counts = {(e, m): [0.0] * 5 for e in engines for m in engines[e]}
    t, times, paid = 100.0, [100.0], dict.fromkeys(engines, 0.0)
    for ledger in ledgers.values():
        ledger.add(t, 0.0, 0.0)
    for dt, amounts_now, grow in ticks:
        t += dt
        works = {}
        for e, models in engines.items():
            works[e] = {}
            for m in models:
                c = counts[(e, m)] = [a + b for a, b in zip(counts[(e, m)], grow[(e, m)], strict=True)]
                inputs = c[0] + c[2]  # input includes cached
                works[e][m] = Work(inputs, c[1], c[2], *(c[3:] if timed[e] else (None, None)))
        before = spend.totals()
        spend.accrue(t, dt, amounts_now, works)
        after = spend.totals()
        for e, models in engines.items():
            paid[e] += amounts_now[e]
            ledgers[e].add(t, amounts_now[e], dt)
            if models:  # every tick: the models' phases add up to the engine's spend of the tick
                tick = sum(after[k] - before.get(k, 0.0) for k in after if k[0] == e)
                assert tick == pytest.approx(amounts_now[e], rel=REL, abs=1e-9)
                assert sum(v for k, v in after.items() if k[0] == e) == pytest.approx(paid[e], rel=REL, abs=1e-9)
        times.append(t)
    for e, models in engines.items():  # over any window the ledgers cover, the same
        if models:
            # The engine's ledger keeps twice the 30 s window: any span inside that, and past the last tick.
            for t0, t1 in ((max(times[0], t - 50.0), t), (max(times[0], t - 20.0), t + 1.0)):
                window = sum(spend.between(e, m, p, t0, t1) or 0.0 for m in models for p in PHASES)
                assert window == pytest.approx(ledgers[e].between(t0, t1, times[-1]), rel=REL, abs=1e-9)
    assert all(v >= 0 for v in spend.savings.values())


@pytest.mark.slow  # 300 generated engines over up to 30 ticks: several seconds
@settings(max_examples=examples(300), deadline=None)
@given(engines_over_ticks())
def test_models_and_phases_add_up_to_the_engine_every_tick_and_window(case):
    check_conservation(case)


def test_conservation_holds_on_a_fixed_case_in_the_fast_tier():
    case = ({"e0": ["m0", "m1"], "e1": []}, {"e0": True, "e1": False},
            [(1.0, {"e0": 2.0, "e1": 1.0}, {("e0", "m0"): (100.0, 10.0, 5.0, 0.1, 1.0), ("e0", "m1"): (0.0,) * 5}),
             (2.5, {"e0": 3.0, "e1": 0.0}, {("e0", "m0"): (0.0,) * 5, ("e0", "m1"): (50.0, 40.0, 0.0, 0.2, 3.0)})])
    check_conservation(case)


def test_subnormal_work_still_conserves():
    # Found by the property: 1.5 × 5e-324 / 5e-324 is 2.0 in floats; fractions are taken first.
    check_conservation(({"e0": ["m0"]}, {"e0": False}, [(1.0, {"e0": 1.5}, {("e0", "m0"): (0.0, 5e-324, 0.0, 0.0, 0.0)})]))


def test_saved_totals_resume_and_cached_tokens_are_not_priced_twice():
    works = {"m": Work(200.0, 100.0, 100.0)}
    first = one_tick(works, 3.0)
    saved = first.export_state()
    second = ModelSpend(WINDOW_S, 0.25)
    second.restore_state(saved)
    second.accrue(2000.0, 1.0, {}, {})  # the engine not listed yet: its totals wait for it
    assert second.totals() == first.totals()
    second.accrue(2001.0, 1.0, {"e": 1.0}, {"e": works})  # nothing new cached since the save
    assert sum(second.totals().values()) == pytest.approx(4.0, rel=REL)
    assert second.savings == first.savings


def test_after_a_crash_spend_and_savings_count_from_0_and_cached_tokens_are_still_not_priced_twice():
    """A crash may have exposed more than was saved, and the first tick's split need not bring each
    model back above it: those totals reset (which Prometheus handles), the cached baseline stays."""
    works = {"m": Work(200.0, 100.0, 100.0)}
    first = one_tick(works, 3.0)
    second = ModelSpend(WINDOW_S, 0.25)
    second.restore_state(first.export_state(), after_crash=True)
    assert second.totals() == {} and second.savings == {}
    second.accrue(2001.0, 1.0, {"e": 1.0}, {"e": works})  # nothing new cached since the save
    assert sum(second.totals().values()) == pytest.approx(1.0, rel=REL)
    assert sum(second.savings.values()) == 0.0


# -- end to end: the real exporter scraping the recorded vLLM exposition over HTTP --------------------------


def test_the_exporter_serves_the_dp2_split_and_promtool_accepts_it():
    recorded = (ENGINES / "vllm/v1-0.33.0-dp2-text-0.0.4.txt").read_text()
    # The same series at 0 first (the engine just started), then as recorded: everything is new.
    zero = "\n".join(line if line.startswith("#") or "_created" in line else re.sub(r" \S+$", " 0.0", line)
                     for line in recorded.splitlines()) + "\n"
    body = [zero]
    server = serve_loopback(lambda path: (200, "text/plain; version=0.0.4; charset=utf-8", body[0].encode()))
    try:
        clock = ManualClock()
        config = from_dict({"pricing": {"cloud": {"hourly": 3.6}}, "gpu": {"backend": "none"},
                            "engines": [{"name": "vllm", "url": f"http://127.0.0.1:{server.server_port}/metrics",
                                         "kind": "vllm"}]}, environ={})
        exporter = Exporter(config, clock=clock)
        exporter.sample_all()
        clock.advance(5.0)
        body[0] = recorded
        exporter.sample_all()  # 5 s at $3.6/h = $0.005, all of it the engine's
        text = generate_latest(exporter.registry).decode()
    finally:
        server.shutdown()
        server.server_close()
    value = exporter.registry.get_sample_value
    m = {"engine": "vllm", "model": QWEN, "currency": "USD"}
    assert value("llmcost_engine_spend_total", {"engine": "vllm", "currency": "USD"}) == pytest.approx(0.005, rel=REL)
    assert value("llmcost_model_spend_total", {**m, "phase": "prefill"}) == pytest.approx(0.005 / 12, rel=REL)
    assert value("llmcost_model_spend_total", {**m, "phase": "decode"}) == pytest.approx(0.005 * 11 / 12, rel=REL)
    by_direction = {**m, "method": ENGINE_TIME}
    assert value("llmcost_cost_per_million_tokens_by_direction", {**by_direction, "direction": "input"}) == \
        pytest.approx(0.005 / 12 / 2000 * 1e6, rel=REL)
    assert value("llmcost_cost_per_million_tokens_by_direction", {**by_direction, "direction": "output"}) == \
        pytest.approx(0.005 * 11 / 12 / 450 * 1e6, rel=REL)
    assert value("llmcost_cache_savings_total", m) == pytest.approx(400 * 0.005 / 12 / 1600, rel=REL)
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: the test command installs Debian's prometheus package"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
