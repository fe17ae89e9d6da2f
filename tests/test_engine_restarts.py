"""Engine restarts and resets, series by series, over real HTTP.

A two-rank vLLM (data parallel: `engine="0"` and `engine="1"`) serving two models, rendered per
request by prometheus_client from counters the test sets (exactly as vLLM's own registry renders
them), scraped by a real exporter on a manual clock. The shapes that a sum-then-diff
implementation gets wrong:

  (i)   one rank restarts: only its series restart; no model gains its lifetime again;
  (ii)  a rank restarts while the other grows past the old sum: the restart is still seen;
  (iii) a rank disappears (data-parallel scale-down): the other rank's lifetime is not counted
        again; when it comes back, only its growth counts;
  (iv)  one request counter goes 10 -> 9 while tokens grow by 300: tokens +300 exactly, requests
        +9, the API-equivalent spend only for the 300 tokens;
  (v)   `_created` moves forward while the value went up (a restart the value hides): a reset
        where the exposition carries `_created` in the counter's family.

Each of (i)-(iv) runs twice: text 0.0.4 without `_created`, and OpenMetrics with `_created`
moving at each restart; the figures must be the same. `llmcost_engine_restarts_total` goes up by
one per series group that reset in a scrape: one model with one label set (here: one rank of one
model), all its counters, the finished reason not included (exporter/series.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from conftest import value
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.config import from_dict

A, B = "org/model-a", "org/model-b"
RANKS = ("0", "1")
API = {"input_per_million": 3.0, "output_per_million": 15.0, "cached_input_per_million": 0.3}
NOTHING = {"input": 0.0, "output": 0.0, "cached": 0.0, "stop": 0.0, "length": 0.0}  # a model's totals, none counted
BEFORE = 1_600_000_000.0  # when the ranks started, long before the exporter's ManualClock (1.7e9)


@dataclass
class Rank:
    """One data-parallel rank's counters for one model, as vLLM serves them."""
    prompt: float
    generation: float
    cached: float
    requests: dict[str, float] = field(default_factory=lambda: {"stop": 0.0, "length": 0.0})
    created: float = BEFORE

    def plus(self, prompt=0.0, generation=0.0, cached=0.0, **requests) -> Rank:
        return replace(self, prompt=self.prompt + prompt, generation=self.generation + generation,
                       cached=self.cached + cached,
                       requests={r: v + requests.get(r, 0.0) for r, v in self.requests.items()})


class Engine:
    """The ranks the server serves now: {(model, rank): Rank}; absent ranks are not served."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.ranks: dict[tuple[str, str], Rank] = {}

    def collect(self):
        with_created = self.fmt != "text"
        families = {
            "prompt": CounterMetricFamily("vllm:prompt_tokens", "Number of prefill tokens processed.",
                                          labels=["model_name", "engine"]),
            "generation": CounterMetricFamily("vllm:generation_tokens", "Number of generation tokens processed.",
                                              labels=["model_name", "engine"]),
            "cached": CounterMetricFamily("vllm:prompt_tokens_cached", "Number of cached prompt tokens.",
                                          labels=["model_name", "engine"]),
        }
        requests = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                       labels=["model_name", "engine", "finished_reason"])
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests running.", labels=["model_name", "engine"])
        for (model, rank), r in sorted(self.ranks.items()):
            created = r.created if with_created else None
            for attr, family in families.items():
                family.add_metric([model, rank], getattr(r, attr), created=created)
            for reason, count in r.requests.items():
                requests.add_metric([model, rank, reason], count, created=created)
            running.add_metric([model, rank], 1.0)
        yield from (*families.values(), requests, running)

    def body(self) -> str:
        registry = CollectorRegistry()
        registry.register(self)
        if self.fmt.startswith("text"):
            return text_latest(registry).decode()
        return openmetrics_latest(registry, escaping="allow-utf-8" if self.fmt == "openmetrics" else "underscores").decode()

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE_PLAIN_0_0_4 if self.fmt.startswith("text") else OPENMETRICS

    def restart(self, model: str, rank: str, now: float, **counters) -> None:
        """The rank's process restarted at `now` and has counted `counters` since."""
        self.ranks[(model, rank)] = Rank(**{"prompt": 0.0, "generation": 0.0, "cached": 0.0, **counters}, created=now)


@pytest.fixture
def setup(dynamic_server, exporter_for, clock):
    def make(fmt="text"):
        engine = Engine(fmt)
        for model in (A, B):
            for rank in RANKS:
                engine.ranks[(model, rank)] = Rank(10_000.0, 2_000.0, 1_000.0, {"stop": 10.0, "length": 10.0})
        url = dynamic_server(lambda _n: engine.body(), engine.content_type)
        raw = {"pricing": {"mode": "cloud", "cloud": {"hourly": 3.6}}, "gpu": {"backend": "simulated"},
               "engines": [{"name": "vllm", "url": url, "interval": "5s", "timeout": "1s"}],
               "catalog": {"apis": {"example-api": API}}, "compare": {"apis": ["example-api"]}}
        exporter = exporter_for(from_dict(raw, environ={}))
        exporter.sample_all()  # the baseline
        assert exporter.engines[0].kind == "vllm" and totals(exporter)[A]["input"] == 0
        return engine, exporter
    return make


def scrape(clock, exporter):
    clock.advance(5)
    exporter.sample_all()
    assert value(exporter, "llmcost_source_up", source="engine", name="vllm") == 1


def totals(exporter) -> dict[str, dict[str, float]]:
    out = {}
    for model in (A, B):
        out[model] = {d: value(exporter, "llmcost_tokens_total", engine="vllm", model=model, direction=d)
                      for d in ("input", "output")}
        out[model]["cached"] = value(exporter, "llmcost_cached_input_tokens_total", engine="vllm", model=model)
        for reason in ("stop", "length"):
            out[model][reason] = value(exporter, "llmcost_requests_total", engine="vllm", model=model,
                                       finished_reason=reason)
    return out


def restarts(exporter) -> float:
    return value(exporter, "llmcost_engine_restarts_total", engine="vllm")


def spend(exporter, model) -> float:
    return value(exporter, "llmcost_api_equivalent_spend_total", engine="vllm", model=model, api="example-api", tier="standard",
                 currency="USD")


FORMATS = pytest.mark.parametrize("fmt", ["text", "openmetrics"])


@FORMATS
def test_one_rank_restarts_only_its_series_restart(setup, clock, fmt):
    engine, exporter = setup(fmt)
    for model in (A, B):
        engine.ranks[(model, "0")] = engine.ranks[(model, "0")].plus(800, 100, 300, stop=4)
        engine.restart(model, "1", clock.now() + 1, prompt=780, generation=90, cached=200,
                       requests={"stop": 3.0, "length": 0.0})
    scrape(clock, exporter)
    for model in (A, B):  # rank 0's growth + rank 1's count since its restart; nobody's lifetime
        assert totals(exporter)[model] == {"input": 1580.0, "output": 190.0, "cached": 500.0, "stop": 7.0, "length": 0.0}
    assert restarts(exporter) == 2  # (model-a, engine="1") and (model-b, engine="1")
    engine.ranks[(A, "1")] = engine.ranks[(A, "1")].plus(20, 10, 0, length=1)
    scrape(clock, exporter)
    assert totals(exporter)[A] == {"input": 1600.0, "output": 200.0, "cached": 500.0, "stop": 7.0, "length": 1.0}
    assert totals(exporter)[B]["input"] == 1580.0 and restarts(exporter) == 2


@FORMATS
def test_a_restart_hidden_in_the_sum_by_the_other_ranks_growth_is_seen(setup, clock, fmt):
    engine, exporter = setup(fmt)
    # rank 0 of model-a grows by 11,000; rank 1 restarts and has counted 200 since: the model's sum
    # goes from 20,000 to 21,200, up, yet a restart happened
    engine.ranks[(A, "0")] = engine.ranks[(A, "0")].plus(11_000, 1_500, 0, stop=50)
    engine.restart(A, "1", clock.now() + 1, prompt=200, generation=20, cached=0, requests={"stop": 1.0, "length": 0.0})
    scrape(clock, exporter)
    assert totals(exporter)[A] == {"input": 11_200.0, "output": 1_520.0, "cached": 0.0, "stop": 51.0, "length": 0.0}
    assert totals(exporter)[B] == NOTHING and restarts(exporter) == 1


@FORMATS
def test_a_vanished_rank_never_recounts_the_other_and_counts_only_its_growth_back(setup, clock, fmt):
    engine, exporter = setup(fmt)
    gone = {model: engine.ranks.pop((model, "1")) for model in (A, B)}  # data-parallel scale-down
    for model in (A, B):
        engine.ranks[(model, "0")] = engine.ranks[(model, "0")].plus(100, 10, 5, stop=1)
    scrape(clock, exporter)
    assert totals(exporter)[A] == {"input": 100.0, "output": 10.0, "cached": 5.0, "stop": 1.0, "length": 0.0}
    assert restarts(exporter) == 0
    engine.ranks[(A, "0")] = engine.ranks[(A, "0")].plus(200, 20, 0)
    scrape(clock, exporter)
    engine.ranks[(A, "1")] = gone[A].plus(50, 5, 40, length=2)  # scaled up again: the same process, grown
    engine.ranks[(A, "0")] = engine.ranks[(A, "0")].plus(1, 1, 1)
    scrape(clock, exporter)
    assert totals(exporter)[A] == {"input": 351.0, "output": 36.0, "cached": 46.0, "stop": 1.0, "length": 2.0}
    assert totals(exporter)[B] == {"input": 100.0, "output": 10.0, "cached": 5.0, "stop": 1.0, "length": 0.0}
    assert restarts(exporter) == 0


@FORMATS
def test_a_request_counter_down_by_one_counts_its_new_value_and_tokens_exactly(setup, clock, fmt):
    engine, exporter = setup(fmt)
    # tokens +300 (input +200, 50 of them cached; output +100) while model-a rank 0's stop counter
    # goes 10 -> 9: that series was reset and has counted 9 since; the tokens' series were not
    r = engine.ranks[(A, "0")].plus(200, 100, 50)
    engine.ranks[(A, "0")] = replace(r, requests={"stop": 9.0, "length": 10.0})
    scrape(clock, exporter)
    assert totals(exporter)[A] == {"input": 200.0, "output": 100.0, "cached": 50.0, "stop": 9.0, "length": 0.0}
    assert totals(exporter)[B] == NOTHING and restarts(exporter) == 1
    billed = (150 * API["input_per_million"] + 50 * API["cached_input_per_million"]
              + 100 * API["output_per_million"]) / 1e6  # the 300 tokens, nothing else
    assert spend(exporter, A) == pytest.approx(billed, rel=1e-12) and spend(exporter, B) == 0.0


def masked_restart(setup, clock, fmt):
    """model-a rank 1 restarts and counts past its old values before the next scrape."""
    engine, exporter = setup(fmt)
    engine.restart(A, "1", clock.now() + 1, prompt=12_000, generation=2_500, cached=1_500,
                   requests={"stop": 20.0, "length": 15.0})
    engine.ranks[(A, "0")] = engine.ranks[(A, "0")].plus(100, 10, 0)
    scrape(clock, exporter)
    return exporter


def test_a_created_time_moved_forward_is_a_reset_the_value_hides(setup, clock):
    """OpenMetrics carries `_created` in the counter's own family: the restart is seen though every
    value went up, and rank 1's whole count since its restart is counted (Prometheus' increase()
    without `_created` would count only 2,000 of its 12,000 input tokens)."""
    exporter = masked_restart(setup, clock, "openmetrics")
    assert totals(exporter)[A] == {"input": 12_100.0, "output": 2_510.0, "cached": 1_500.0, "stop": 20.0,
                                   "length": 15.0}
    assert restarts(exporter) == 1


@pytest.mark.parametrize("fmt", ["text-created", "underscores"])
def test_a_created_time_moved_forward_is_a_reset_in_every_format_vllm_serves(setup, clock, fmt):
    exporter = masked_restart(setup, clock, fmt)
    assert totals(exporter)[A]["input"] == 12_100.0 and restarts(exporter) == 1


def test_without_created_a_masked_restart_counts_like_prometheus_increase(setup, clock):
    """An exposition without `_created` (SGLang's and multi-process vLLM's multiprocess registry):
    rank 1's values only went up, so its growth is counted, as Prometheus' increase() would, and
    no restart is seen."""
    exporter = masked_restart(setup, clock, "text")
    assert totals(exporter)[A] == {"input": 2_100.0, "output": 510.0, "cached": 500.0, "stop": 10.0, "length": 5.0}
    assert restarts(exporter) == 0
