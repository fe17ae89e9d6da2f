"""A simulated SGLang server: a real HTTP /metrics as SGLang 0.5 serves it (`--enable-metrics`).

SGLang always renders its metrics through prometheus_client's MultiProcessCollector (its HTTP
server sets PROMETHEUS_MULTIPROC_DIR), so the bytes here are shaped the same way: `sglang:` names,
label names in sorted order, no `_created` samples, no finish reason on requests. Two of SGLang's
collectors write them, with different label sets (sglang/srt/observability/metrics_collector.py):

- the tokenizer manager's, counted when a request finishes, labelled `model_name`, `engine_type`
  ("unified" without prefill/decode disaggregation) and `is_streaming` ("true"/"false"):
  `sglang:prompt_tokens_total` (cached tokens included), `sglang:generation_tokens_total`,
  `sglang:num_requests_total`; and `sglang:cached_tokens_total` with `cache_source` ("device": the
  GPU prefix cache) instead of `is_streaming`, a series that appears only once it is above 0;
- the scheduler's gauges, labelled per rank `model_name`, `engine_type`, `tp_rank`, `pp_rank`,
  `moe_ep_rank`: `sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:token_usage` (the
  KV-cache pool's usage, a ratio). Only the scheduler of attention-TP rank 0 writes them (unless
  `--enable-metrics-for-all-schedulers`), so a server with tensor parallelism 2, as in the demo,
  shows `tp_rank="0"` only.

The tokenizer side's names, labels and HELP texts are those of the real SGLang 0.5.23 exposition
in tests/data/engines/sglang/; the scheduler side's are in docs/research/engine-metrics.md (names,
labels) and SGLang's metrics_collector.py (HELP texts). The engine map (exporter/engines/engines.yaml,
kind `sglang`) reads exactly these names. Faults as for vLLM (exporter.demo.server).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.demo.server import EngineCollector, SimulatedServer, split
from exporter.demo.shape import EngineShape

ENGINE_TYPE = "unified"  # no prefill/decode disaggregation
CACHE_SOURCE = "device"  # SGLang's GPU radix cache (host and storage tiers need HiCache)
STREAMING_SHARE = 4  # 3 in 4 requests (and their tokens) are streamed: the split's parts
SHAPE = EngineShape("sglang")  # the rest of SGLang 0.5.23's tokenizer-side page: its histograms


class SimulatedSglang(SimulatedServer):
    thread_name = "sim-sglang"

    def __init__(self, workload, model: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(workload, model, _SglangCollector, host, port)


class _SglangCollector(EngineCollector):
    def families(self, sim, counters, gauges):
        def by_streaming(name, doc, value):
            family = CounterMetricFamily(name, doc, labels=["engine_type", "is_streaming", "model_name"])
            batch, *streamed = split(value, STREAMING_SHARE)
            family.add_metric([ENGINE_TYPE, "true", sim.model], sum(streamed))
            family.add_metric([ENGINE_TYPE, "false", sim.model], batch)
            return family

        def scheduler_gauge(name, doc, value):
            family = GaugeMetricFamily(name, doc, labels=["engine_type", "model_name", "moe_ep_rank", "pp_rank",
                                                          "tp_rank"])
            family.add_metric([ENGINE_TYPE, sim.model, "0", "0", "0"], value)
            return family

        yield by_streaming("sglang:prompt_tokens", "Number of prefill tokens processed.", counters["input_tokens"])
        yield by_streaming("sglang:generation_tokens", "Number of generation tokens processed.",
                           counters["output_tokens"])
        if counters["cached_input_tokens"] > 0:  # MultiProcessCollector renders no family without a sample
            cached = CounterMetricFamily("sglang:cached_tokens", "Number of cached prompt tokens by source "
                                         "(device/host/storage).", labels=["cache_source", "engine_type", "model_name"])
            cached.add_metric([CACHE_SOURCE, ENGINE_TYPE, sim.model], counters["cached_input_tokens"])
            yield cached
        yield by_streaming("sglang:num_requests", "Number of requests processed.", counters["requests"])
        yield scheduler_gauge("sglang:num_running_reqs", "The number of running requests.", gauges["running"])
        yield scheduler_gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", gauges["waiting"])
        yield scheduler_gauge("sglang:token_usage", "The token usage.", gauges["kv_cache"])
        yield from SHAPE.render(sim.model, {"": counters["requests"]}, sim._started_at)
