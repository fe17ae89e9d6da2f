"""The Prometheus collector: fresh metric families from one snapshot per scrape.

Nothing here touches NVML or the network; sampling happens on the scheduler's cadence, so a
scrape costs the same whether an engine is healthy or hanging. Sample output:

    # HELP llmcost_cost_per_million_tokens Self-hosted cost per 1M tokens over the live window ...
    # TYPE llmcost_cost_per_million_tokens gauge
    llmcost_cost_per_million_tokens{currency="USD",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"} 4.127
    # TYPE llmcost_tokens_total counter
    llmcost_tokens_total{direction="input",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"} 1.234e+06
    llmcost_spend_total{component="instance",currency="USD"} 0.5432
    llmcost_gpu_power_watts{gpu="0",uuid="GPU-..."} 187.0
    llmcost_source_up{name="vllm",source="engine"} 1.0
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter import __version__
from exporter.snapshot import Snapshot

P = "llmcost_"
_SAMPLED_GPU = "Sampled from NVML on the GPU cadence, not at scrape time."
_SAMPLED_ENGINE = "Sampled from the engine's /metrics on its cadence, not at scrape time."


class CostCollector:
    def __init__(self, take_snapshot, pricing_labels: dict[str, str]):
        self._take_snapshot = take_snapshot
        self._pricing_labels = pricing_labels

    def describe(self):
        # Registering must not touch NVML or the network: describe from an empty snapshot.
        return list(self._families(Snapshot.empty()))

    def collect(self):
        return self._families(self._take_snapshot())

    def _families(self, snap: Snapshot):
        yield from self._exporter_families(snap)
        yield from self._gpu_families(snap)
        yield from self._model_families(snap)
        yield from self._cost_families(snap)

    def _exporter_families(self, snap: Snapshot):
        build = GaugeMetricFamily(P + "build_info", "llm-cost-exporter version; constant 1.", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        info = GaugeMetricFamily(P + "pricing_info", "Cost mode (cloud or owned) and currency in force; constant 1.",
                                 labels=["mode", "currency"])
        info.add_metric([self._pricing_labels["mode"], self._pricing_labels["currency"]], 1)
        yield info
        window = GaugeMetricFamily(P + "window_seconds", "Length of the window the live gauges (tokens/s, cost per 1M) look back over.")
        window.add_metric([], snap.window_s)
        yield window

        labels = ["source", "name"]
        up = GaugeMetricFamily(P + "source_up", "1 if the source's last sample succeeded, else 0.", labels=labels)
        last = GaugeMetricFamily(P + "source_last_success_timestamp_seconds", "Unix time of the source's last successful sample.", labels=labels)
        duration = GaugeMetricFamily(P + "source_sample_duration_seconds", "How long the source's last sample took.", labels=labels)
        errors = CounterMetricFamily(P + "source_errors", "Sampling errors by source and bounded reason.", labels=labels + ["reason"])
        for h in snap.health:
            key = [h.source, h.name]
            up.add_metric(key, 1 if h.up else 0)
            if h.last_success is not None:
                last.add_metric(key, h.last_success)
            duration.add_metric(key, h.last_duration)
            for reason, count in sorted(h.errors.items()):
                errors.add_metric(key + [reason], count)
        yield from (up, last, duration, errors)

    def _gpu_families(self, snap: Snapshot):
        ids = ["gpu", "uuid"]
        info = GaugeMetricFamily(P + "gpu_info", "GPU product name and energy method (counter or integrated); constant 1.",
                                 labels=ids + ["name", "energy_method"])
        up = GaugeMetricFamily(P + "gpu_up", "1 if the GPU answered its last NVML sample, else 0 (lost, or NVML down).", labels=ids)
        power = GaugeMetricFamily(P + "gpu_power_watts", "GPU power draw in watts. " + _SAMPLED_GPU, labels=ids)
        limit = GaugeMetricFamily(P + "gpu_power_limit_watts", "Enforced GPU power limit in watts.", labels=ids)
        util = GaugeMetricFamily(P + "gpu_utilization_ratio", "Share of time a kernel was running on the GPU (0-1). " + _SAMPLED_GPU, labels=ids)
        used = GaugeMetricFamily(P + "gpu_memory_used_bytes", "GPU memory in use. " + _SAMPLED_GPU, labels=ids)
        total = GaugeMetricFamily(P + "gpu_memory_total_bytes", "GPU memory installed.", labels=ids)
        energy = CounterMetricFamily(P + "gpu_energy_joules", "GPU energy since the exporter started, from the hardware counter "
                                     "or integrated power (see llmcost_gpu_info). " + _SAMPLED_GPU, labels=ids)
        for g in snap.gpus:
            key = [str(g.index), g.uuid]
            info.add_metric(key + [g.name, g.energy_method], 1)
            up.add_metric(key, 1 if g.up else 0)
            energy.add_metric(key, g.energy_joules)
            if g.power_limit_watts is not None:
                limit.add_metric(key, g.power_limit_watts)
            if not g.up or g.power_watts is None:
                continue  # stale readings of a lost GPU would lie; only up and energy remain
            power.add_metric(key, g.power_watts)
            util.add_metric(key, g.utilization_ratio)
            used.add_metric(key, g.memory_used_bytes)
            total.add_metric(key, g.memory_total_bytes)
        yield from (info, up, power, limit, util, used, total, energy)

    def _model_families(self, snap: Snapshot):
        ids = ["engine", "model"]
        tokens = CounterMetricFamily(P + "tokens", "Tokens processed, by direction (input = prompt, output = generated). "
                                     + _SAMPLED_ENGINE, labels=ids + ["direction"])
        cached = CounterMetricFamily(P + "cached_input_tokens", "Input tokens served from the prefix cache (a subset of input).",
                                     labels=ids)
        requests = CounterMetricFamily(P + "requests", "Finished requests by finish reason.", labels=ids + ["finished_reason"])
        running = GaugeMetricFamily(P + "requests_running", "Requests running in the engine. " + _SAMPLED_ENGINE, labels=ids)
        waiting = GaugeMetricFamily(P + "requests_waiting", "Requests queued in the engine. " + _SAMPLED_ENGINE, labels=ids)
        kv = GaugeMetricFamily(P + "kv_cache_usage_ratio", "KV-cache usage (0-1). " + _SAMPLED_ENGINE, labels=ids)
        tps = GaugeMetricFamily(P + "tokens_per_second", "Input + output tokens per second over the live window.", labels=ids)
        resets = CounterMetricFamily(P + "engine_restarts", "Engine restarts detected: times its counters went backwards.",
                                     labels=["engine"])
        for f in snap.models:
            m = f.model
            key = [m.engine, m.model]
            for direction, value in m.tokens.items():
                tokens.add_metric(key + [direction], value)
            cached.add_metric(key, m.cached_input_tokens)
            for reason, value in sorted(m.requests.items()):
                requests.add_metric(key + [reason], value)
            for family, gauge in ((running, "requests_running"), (waiting, "requests_waiting"), (kv, "kv_cache_usage_ratio")):
                if gauge in m.gauges:
                    family.add_metric(key, m.gauges[gauge])
            if f.tokens_per_second is not None:
                tps.add_metric(key, f.tokens_per_second)
        for engine, count in sorted(snap.engine_resets.items()):
            resets.add_metric([engine], count)
        yield from (tokens, cached, requests, running, waiting, kv, tps, resets)

    def _cost_families(self, snap: Snapshot):
        currency = self._pricing_labels["currency"]
        spend = CounterMetricFamily(P + "spend", "Self-hosted spend by component, allocation basis (idle time is paid for).",
                                    labels=["component", "currency"])
        engine_spend = CounterMetricFamily(P + "engine_spend", "Self-hosted spend allocated to each engine by the GPUs it holds.",
                                           labels=["engine", "currency"])
        energy_cost = CounterMetricFamily(P + "energy_cost", "Cost of GPU + overhead energy at the configured electricity price "
                                          "and PUE (in cloud mode for information; the instance price already includes it).",
                                          labels=["currency"])
        overhead = CounterMetricFamily(P + "overhead_energy_joules", "Energy of the rest of the box (configured overhead watts).")
        hourly = GaugeMetricFamily(P + "hourly_cost", "Current self-hosted cost per hour of the node, all components.",
                                   labels=["currency"])
        cpm = GaugeMetricFamily(P + "cost_per_million_tokens", "Self-hosted cost per 1M tokens over the live window, allocation "
                                "basis: the engine's spend divided by its tokens. Absent while no tokens flow.",
                                labels=["engine", "model", "currency"])
        s = snap.spend
        if s is not None:
            for component, value in s.components.items():
                spend.add_metric([component, currency], value)
            for engine, value in sorted(s.engines.items()):
                engine_spend.add_metric([engine, currency], value)
            if s.energy_cost is not None:
                energy_cost.add_metric([currency], s.energy_cost)
            overhead.add_metric([], s.overhead_energy_joules)
            if s.hourly_cost is not None:
                hourly.add_metric([currency], s.hourly_cost)
        for f in snap.models:
            if f.cost_per_million is not None:
                cpm.add_metric([f.model.engine, f.model.model, currency], f.cost_per_million)
        yield from (spend, engine_spend, energy_cost, overhead, hourly, cpm)
