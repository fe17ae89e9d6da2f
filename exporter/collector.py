"""The Prometheus collector: fresh metric families from one snapshot per scrape.

Nothing here touches NVML or the network; sampling happens on the scheduler's cadence, so a
scrape costs the same whether an engine is healthy or hanging. Sample output:

    # HELP llmcost_cost_per_million_tokens Self-hosted cost per 1M tokens over the live window ...
    # TYPE llmcost_cost_per_million_tokens gauge
    llmcost_cost_per_million_tokens{currency="USD",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"} 4.127
    # TYPE llmcost_tokens_total counter
    llmcost_tokens_total{direction="input",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"} 1.234e+06
    llmcost_spend_total{component="instance",currency="USD"} 0.5432
    llmcost_engine_gpu_share_ratio{engine="vllm",method="exclusive"} 0.25
    llmcost_unallocated_spend_total{currency="USD"} 0.1358
    llmcost_model_spend_total{currency="USD",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct",phase="decode"} 0.3694
    llmcost_cost_per_million_tokens_by_direction{currency="USD",direction="output",engine="vllm",method="engine_time",model="..."} 11.2
    llmcost_cache_savings_total{currency="USD",engine="vllm",model="meta-llama/Llama-3.1-8B-Instruct"} 0.0121
    llmcost_gpu_power_watts{gpu="0",uuid="GPU-..."} 187.0
    llmcost_source_up{name="vllm",source="engine"} 1.0
    llmcost_engine_info{cached_input_source="counter",engine="vllm",engine_kind="vllm"} 1.0
    llmcost_node_info{capacity_type="spot",cloud="aws",gpu_product="NVIDIA-A10G",instance_type="g5.12xlarge",node="ip-10-0-12-34.ec2.internal",region="us-east-1"} 1.0
    llmcost_config_last_reload_successful 1.0

Series of engines discovered as pods also carry `namespace` and `pod` (engine = namespace/pod):

    llmcost_tokens_total{direction="output",engine="llm/llama-8b-7d9f8c6b5-x2kqz",model="...",namespace="llm",pod="llama-8b-7d9f8c6b5-x2kqz"} 5.1e+05
"""

from __future__ import annotations

import math
from operator import itemgetter

from exporter import __version__
from exporter.families import CounterMetricFamily, GaugeMetricFamily
from exporter.snapshot import Snapshot, engine_gpu_utilization, engine_savings

P = "llmcost_"
_VALUE = itemgetter(2)  # a row's value (exporter.families)
_SAMPLED_GPU = "Sampled from NVML on the GPU cadence, not at scrape time."
_SAMPLED_ENGINE = "Sampled from the engine's /metrics on its cadence, not at scrape time."


class CostCollector:
    def __init__(self, take_snapshot, pricing_labels: dict[str, str], api_prices=()):
        self._take_snapshot = take_snapshot
        self._pricing_labels = pricing_labels
        self._api_prices = list(api_prices)  # the catalog.ApiRates (API, tier) some engine is compared with

    def describe(self):
        # Registering must not touch NVML or the network: describe from an empty snapshot.
        return list(self._families(Snapshot.empty()))

    def collect(self):
        snap = self._take_snapshot()
        pods = snap.info.engine_pods if snap.info else {}
        for family in self._families(snap):
            # A figure whose arithmetic left the finite range (a rate of counts near 1e308) is
            # absent, as an unknown figure is: no NaN or Inf ever reaches a dashboard or a sum.
            rows = family.rows or []
            if not all(map(math.isfinite, map(_VALUE, rows))):  # the common case checked in C
                rows = [row for row in rows if math.isfinite(row[2])]
            family.replace_rows([_with_pod_labels(row, pods) for row in rows] if pods else rows)
            yield family

    def _families(self, snap: Snapshot):
        yield from self._exporter_families(snap)
        yield from self._kubernetes_and_reload_families(snap)
        yield from self._gpu_families(snap)
        yield from self._model_families(snap)
        yield from self._cost_families(snap)
        yield from self._split_families(snap)
        yield from self._economics_families(snap)

    def _exporter_families(self, snap: Snapshot):
        build = GaugeMetricFamily(P + "build_info", "llm-cost-exporter version; constant 1.", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        info = GaugeMetricFamily(P + "pricing_info", "Cost mode (cloud or owned), currency and where the instance "
                                 "price came from (configured, catalog:provider/type/region, "
                                 "node_labels:provider/type/region/spot|on-demand, or unknown); constant 1.",
                                 labels=["mode", "currency", "price_source"])
        pricing = snap.info.pricing if snap.info else self._pricing_labels
        info.add_metric([pricing[k] for k in ("mode", "currency", "price_source")], 1)
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

    def _kubernetes_and_reload_families(self, snap: Snapshot):
        names = ["node", "instance_type", "region", "capacity_type", "gpu_product", "cloud"]
        node = GaugeMetricFamily(P + "node_info", "The node's labels as read from the Kubernetes API: instance type, "
                                 "region, capacity type (on-demand, spot, reserved), GPU product, cloud; constant 1. "
                                 "Read on the Kubernetes refresh cadence.", labels=names)
        reload_ok = GaugeMetricFamily(P + "config_last_reload_successful",
                                      "1 if the last attempt to reload the configuration file succeeded, else 0.")
        reload_time = GaugeMetricFamily(P + "config_last_reload_success_timestamp_seconds",
                                        "Unix time of the last successful configuration load (start included).")
        if snap.info is not None:
            if snap.info.node is not None:
                node.add_metric([snap.info.node[k] for k in names], 1)
            reload_ok.add_metric([], 1 if snap.info.reload_successful else 0)
            if snap.info.reload_success_time is not None:
                reload_time.add_metric([], snap.info.reload_success_time)
        yield from (node, reload_ok, reload_time)

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
            for family, reading in ((util, g.utilization_ratio), (used, g.memory_used_bytes),
                                    (total, g.memory_total_bytes)):
                if reading is not None:  # a MIG GPU has no utilization reading
                    family.add_metric(key, reading)
        yield from (info, up, power, limit, util, used, total, energy)

    def _model_families(self, snap: Snapshot):
        engine_info = GaugeMetricFamily(P + "engine_info", "The engine's kind: the engine map its metrics are read "
                                        "with, configured or detected (auto until its first good scrape), and where its "
                                        "cached input tokens come from (counter, prefix_cache_hits: an estimate, or "
                                        "none); constant 1.", labels=["engine", "engine_kind", "cached_input_source"])
        for e in sorted(snap.engines, key=lambda e: e.name):
            engine_info.add_metric([e.name, e.kind, e.cached_input_source], 1)
        yield engine_info
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
        interruptions = CounterMetricFamily(P + "node_interruptions", "Node interruptions (spot reclaim, eviction, "
                                            "reboot) seen at start as a new boot id; their warm-up is the "
                                            "interruption_warmup spend component.")
        unallocated = CounterMetricFamily(P + "unallocated_spend", "Self-hosted spend on the GPU fractions no engine "
                                          "holds: with the engines' spend, the node's spend.", labels=["currency"])
        share = GaugeMetricFamily(P + "engine_gpu_share_ratio", "The engine's share of the node's GPUs (0-1) and the "
                                  "method that produced it (exclusive, replica, mig, hami, podresources, config, even).",
                                  labels=["engine", "method"])
        unallocated_share = GaugeMetricFamily(P + "unallocated_gpu_share_ratio", "The share of the node's GPUs (0-1) "
                                              "that no engine holds.")
        busy = GaugeMetricFamily(P + "engine_gpu_utilization_ratio", "Busy share (0-1) of the GPUs the engine holds, "
                                 "each weighted by its fraction of it; a shared GPU reports the whole GPU's.",
                                 labels=["engine"])
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
            unallocated.add_metric([currency], s.unallocated)
            for engine, (ratio, method) in sorted(s.shares.items()):
                share.add_metric([engine, method], ratio)
            unallocated_share.add_metric([], s.unallocated_share)
            for engine, ratio in sorted(engine_gpu_utilization(snap).items()):
                busy.add_metric([engine], ratio)
            if s.energy_cost is not None:
                energy_cost.add_metric([currency], s.energy_cost)
            overhead.add_metric([], s.overhead_energy_joules)
            interruptions.add_metric([], s.interruptions)
            if s.hourly_cost is not None:
                hourly.add_metric([currency], s.hourly_cost)
        for f in snap.models:
            if f.cost_per_million is not None:
                cpm.add_metric([f.model.engine, f.model.model, currency], f.cost_per_million)
        yield from (spend, engine_spend, unallocated, share, unallocated_share, busy, energy_cost, overhead,
                    interruptions, hourly, cpm)

    def _split_families(self, snap: Snapshot):
        """The split inside an engine (exporter.modelsplit; estimates, docs/cost-model.md)."""
        currency = self._pricing_labels["currency"]
        ids = ["engine", "model"]
        spend = CounterMetricFamily(P + "model_spend", "The engine's spend allocated to the model and phase (prefill, "
                                    "decode) by token-weighted work; over an engine's models and phases, its spend "
                                    "since they appeared. An estimate.", labels=ids + ["phase", "currency"])
        by_direction = GaugeMetricFamily(P + "cost_per_million_tokens_by_direction", "Self-hosted cost per 1M input "
                                         "(prefill spend) or output (decode spend) tokens over the live window, and how "
                                         "the phases were weighed (engine_time, ratio). An estimate.",
                                         labels=ids + ["direction", "method", "currency"])
        savings = CounterMetricFamily(P + "cache_savings", "Estimated spend the prefix cache saved: cached input "
                                      "tokens at the model's prefill cost per computed input token.",
                                      labels=ids + ["currency"])
        for f in snap.models:
            key = [f.model.engine, f.model.model]
            for phase, value in f.phase_spend.items():
                spend.add_metric(key + [phase, currency], value)
            for direction, value in f.cost_per_million_by_direction.items():
                by_direction.add_metric(key + [direction, f.phase_method or "", currency], value)
            if f.cache_savings is not None:
                savings.add_metric(key + [currency], f.cache_savings)
        yield from (spend, by_direction, savings)

    def _economics_families(self, snap: Snapshot):
        currency = self._pricing_labels["currency"]
        ids = ["engine", "model"]
        prices = GaugeMetricFamily(P + "api_price_per_million_tokens", "API list price per 1M tokens from the catalog, "
                                   "by direction (input, cached_input, output), in the tier some engine is compared at.",
                                   labels=["api", "direction", "tier", "currency"])
        for api in (snap.info.api_prices if snap.info else self._api_prices):
            for direction, price in (("input", api.input_per_million), ("output", api.output_per_million),
                                     ("cached_input", api.cached_input_per_million)):
                if price is not None:
                    prices.add_metric([api.name, direction, api.tier, currency], price)
        api_ids = ids + ["api", "tier"]  # tier: the API's price tier the engine is compared at (one per engine)
        equivalent = CounterMetricFamily(P + "api_equivalent_spend", "What the API would have billed for the same input, "
                                         "cached input and output tokens, at the tier's prices.", labels=api_ids + ["currency"])
        blended = GaugeMetricFamily(P + "api_blended_price_per_million_tokens", "The API's price per 1M tokens of this "
                                    "model's actual traffic mix since start (input/output/cached).", labels=api_ids + ["currency"])
        breakeven = GaugeMetricFamily(P + "breakeven_utilization_ratio", "Utilization at which self-hosting costs what the "
                                      "API costs: cost per 1M at 100% / API blended price. Above 1: never cheaper.",
                                      labels=api_ids)
        for f in snap.models:
            for c in f.apis:
                key = [f.model.engine, f.model.model, c.api, c.tier]
                equivalent.add_metric(key + [currency], c.equivalent_spend)
                if c.price_per_million is not None:
                    blended.add_metric(key + [currency], c.price_per_million)
                if c.breakeven_utilization is not None:
                    breakeven.add_metric(key, c.breakeven_utilization)
        yield from (prices, equivalent, blended, breakeven)
        yield from self._capacity_families(snap, currency)
        yield from self._owned_families(snap, currency)

    def _capacity_families(self, snap: Snapshot, currency: str):
        ids = ["engine", "model"]
        savings = GaugeMetricFamily(P + "api_savings", "API-equivalent spend minus self-hosted spend of the engine since "
                                    "start; negative when the API would have been cheaper.",
                                    labels=["engine", "api", "tier", "currency"])
        capacity = GaugeMetricFamily(P + "capacity_tokens_per_second", "Engine throughput at saturation: configured from a "
                                     "benchmark, or the observed peak of the windowed throughput.", labels=["engine", "source"])
        full = GaugeMetricFamily(P + "cost_per_million_tokens_at_full_utilization", "Cost per 1M tokens if the engine ran "
                                 "at capacity all the time: the figure published analyses quote.", labels=ids + ["currency"])
        utilization = GaugeMetricFamily(P + "utilization_ratio", "Tokens per second over capacity, over the live window.",
                                        labels=ids)
        per_token = GaugeMetricFamily(P + "energy_per_token_joules", "Energy of the engine's GPUs (and its share of the "
                                      "overhead) per token, over the live window.", labels=ids)
        capacities: dict[str, tuple[float, str]] = {}
        for f in snap.models:
            key = [f.model.engine, f.model.model]
            if f.model.capacity:
                capacities[f.model.engine] = (f.model.capacity, f.model.capacity_source)
            if f.cost_per_million_full is not None:
                full.add_metric(key + [currency], f.cost_per_million_full)
            if f.utilization is not None:
                utilization.add_metric(key, f.utilization)
            if f.energy_per_token_joules is not None:
                per_token.add_metric(key, f.energy_per_token_joules)
        for engine, (value, source) in sorted(capacities.items()):
            capacity.add_metric([engine, source], value)
        for (engine, api, tier), value in sorted(engine_savings(snap).items()):
            savings.add_metric([engine, api, tier, currency], value)
        yield from (savings, capacity, full, utilization, per_token)

    def _owned_families(self, snap: Snapshot, currency: str):
        payback = GaugeMetricFamily(P + "payback_months", "Owned hardware: months until the capex is paid back by not "
                                    "paying the API, at the live window's rates. Absent if it never is.", labels=["api", "tier"])
        for (api, tier), months in snap.payback_months.items():
            if months is not None:
                payback.add_metric([api, tier], months)
        energy = CounterMetricFamily(P + "engine_energy_joules", "Energy of the engine's GPUs plus its share of the "
                                     "overhead watts.", labels=["engine"])
        idle = CounterMetricFamily(P + "idle_spend", "Spend allocated to the engine while it produced no tokens (or "
                                   "did not answer).", labels=["engine", "currency"])
        co2e = CounterMetricFamily(P + "co2e_grams", "Emissions of GPU + overhead energy times PUE at the configured grid "
                                   "intensity, grams CO2-equivalent.")
        s = snap.spend
        if s is not None:
            for engine, joules in sorted(s.engine_energy_joules.items()):
                energy.add_metric([engine], joules)
            for engine, value in sorted(s.idle_spend.items()):
                idle.add_metric([engine, currency], value)
            if s.co2e_grams is not None:
                co2e.add_metric([], s.co2e_grams)
        yield from (payback, energy, idle, co2e)


def _with_pod_labels(row, pods: dict[str, tuple[str, str]]):
    """A discovered engine's series gets `namespace` and `pod` (functions of `engine`: no new series)."""
    names, values, value = row
    labels = dict(zip(names, values, strict=False))
    engine = labels.get("engine") or (labels.get("name") if labels.get("source") == "engine" else None)
    if engine not in pods:
        return row
    return names + ("namespace", "pod"), values + tuple(pods[engine]), value
