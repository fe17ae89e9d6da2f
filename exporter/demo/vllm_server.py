"""A simulated vLLM server: a real HTTP /metrics in vLLM's V1 exposition format.

Served with prometheus_client, as vLLM does, so the bytes are what a real server sends: `vllm:`
names, `model_name` and `engine` labels (data-parallel ranks split the counts), `_created`
samples, the `vllm:iteration_tokens_total` histogram that must not be mistaken for a counter, and
the rest of a real vLLM 0.33.0 page at its real size (exporter/demo/shape.py: every other family
and histogram bucket, and the process metrics prometheus_client adds: about 60 kB a model).
Faults for tests (exporter.demo.server): restart (counters reset), HTTP 500, garbage, a huge body,
a hang, a slow drip, not HTTP at all, OpenMetrics; here also the V0 metric names and a renamed model.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from exporter.demo.server import EngineCollector, SimulatedServer, split
from exporter.demo.shape import EngineShape

ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
SHAPE = EngineShape("vllm")  # the rest of vLLM 0.33.0's page: its histograms, caches, process metrics


class SimulatedVllm(SimulatedServer):
    thread_name = "sim-vllm"

    def __init__(self, workload, model: str, host: str = "127.0.0.1", port: int = 0, data_parallel: int = 1):
        self.data_parallel = data_parallel
        self.v0_names = False
        super().__init__(workload, model, _VllmCollector, host, port, process_metrics=True)


class _VllmCollector(EngineCollector):
    def families(self, sim, counters, gauges):
        labels = ["model_name", "engine"]
        ranks = [str(i) for i in range(sim.data_parallel)]
        created = sim._started_at

        def counter(name, doc, value):
            family = CounterMetricFamily(name, doc, labels=labels)
            for rank, part in zip(ranks, split(value, sim.data_parallel), strict=True):
                family.add_metric([sim.model, rank], part, created=created)
            return family

        def gauge(name, doc, value):
            family = GaugeMetricFamily(name, doc, labels=labels)
            for rank in ranks:
                family.add_metric([sim.model, rank], value)
            return family

        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", gauges["running"])
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gauges["waiting"])
        kv_name = "vllm:gpu_cache_usage_perc" if sim.v0_names else "vllm:kv_cache_usage_perc"
        yield gauge(kv_name, "KV-cache usage. 1 means 100 percent usage.", gauges["kv_cache"])
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", counters["input_tokens"])
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", counters["output_tokens"])
        if not sim.v0_names:
            yield counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).",
                          counters["cached_input_tokens"])
        success = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=labels + ["finished_reason"])
        stops = split(counters["requests"], 10)  # 90% stop, 10% hit the length limit
        for reason, value in (("stop", sum(stops[1:])), ("length", stops[0]), ("abort", 0)):
            for rank, part in zip(ranks, split(value, sim.data_parallel), strict=True):
                success.add_metric([sim.model, rank, reason], part, created=created)
        yield success
        # A histogram whose name ends in _total: matching counters by suffix would count it.
        total = counters["input_tokens"] + counters["output_tokens"]
        iterations = max(total // 512, 0)
        histogram = HistogramMetricFamily("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                                          labels=labels)
        for rank in ranks:  # vLLM 0.33.0's buckets; none of 1 token, a third up to 256, all up to 512
            histogram.add_metric([sim.model, rank], [(f"{le:.1f}", 0 if le == 1 else iterations // 3 if le <= 256 else iterations)
                                                     for le in ITERATION_BUCKETS] + [("+Inf", iterations)], sum_value=total)
            histogram.add_sample("vllm:iteration_tokens_total_created", {"model_name": sim.model, "engine": rank}, created)
        yield histogram
        if not sim.v0_names:
            yield from SHAPE.render(sim.model, dict(zip(ranks, split(counters["requests"], sim.data_parallel), strict=True)),
                                    created)
