"""LLM utilization and energy: why a million tokens costs what it costs.

Idle capacity is the main reason self-hosted tokens cost more than the headline figure; this
dashboard shows how much of the capacity is used, what the GPUs draw, what the energy costs, and
what is paid while nothing is produced. Per-engine figures (capacity, engine energy, idle spend)
cover the engines of the selected kinds serving the selected models, per-model figures the
selected models on engines of the selected kinds; GPU figures are per node.
"""

from __future__ import annotations

from dashboards.defaults import (
    COUNT, CURRENCY, JOULE, MODEL, RATIO, REQUESTS_PER_SECOND, TOKENS_PER_SECOND, WATT, Scope, bargauge,
    dashboard as house_dashboard, gauge, q, question, stat, thresholds, timeseries,
)

UID = "llmcost-utilization-energy"
PER_MODEL = ("instance", "engine", "engine_kind", "model")  # the kind joined (Scope.of_kinds)
BUSY = thresholds("blue", (0.8, "orange"), (0.95, "red"))


def dashboard(s: Scope):
    engine_tokens = s.m("llmcost_tokens_total")  # all models of an engine: its energy and spend cover all of them
    capacity = s.m("llmcost_capacity_tokens_per_second")
    engine_energy = s.m("llmcost_engine_energy_joules_total")
    gpu_energy = s.m("llmcost_gpu_energy_joules_total")
    overhead_energy = s.m("llmcost_overhead_energy_joules_total")
    energy_cost = s.m("llmcost_energy_cost_total")
    spend = s.m("llmcost_engine_spend_total")
    idle = s.m("llmcost_idle_spend_total")
    requests = s.m("llmcost_requests_total", MODEL)
    return house_dashboard(
        scope=s,
        uid=UID,
        title="LLM cost: utilization and energy",
        description="How much of the GPU capacity the engines use, what it draws and what idle time costs "
                    "(llm-cost-exporter).",
        variables=[s.node_variable, s.engine_kind_variable, s.model_variable],
        questions=[
            question("How much of our capacity do we use?", [
                gauge("Utilization now",
                      q(s.of_selected_engines(f'sum{s.by("instance", "engine")}({s.m("llmcost_utilization_ratio")})'),
                        "{{engine}} @ {{instance}}"),
                      unit=RATIO, height=6, steps=BUSY, description="""
                      Share of each engine's capacity in use over the exporter's live window: sum over the
                      engine's models of llmcost_utilization_ratio (tokens per second / capacity). The lower it
                      is, the further the real cost per token is above the 100%-utilization figure."""),
                stat("Throughput now",
                     q(f'sum{s.by()}({s.of_kinds(s.m("llmcost_tokens_per_second", MODEL))})'),
                     unit=TOKENS_PER_SECOND, height=6, description="""
                     Input + output tokens per second of the selected models over the exporter's live
                     window: llmcost_tokens_per_second, summed. Utilization is this over the capacity."""),
                stat("Capacity",
                     q(f"sum{s.by()}({s.of_selected_engines(capacity)})"),
                     unit=TOKENS_PER_SECOND, height=6, description="""
                     Tokens per second the selected engines sustain at saturation, summed:
                     llmcost_capacity_tokens_per_second (configured from a benchmark, else the observed peak
                     of the windowed throughput)."""),
                stat("GPU busy now",
                     q(f'avg{s.by("instance")}({s.m("llmcost_gpu_utilization_ratio")})', "{{instance}}"),
                     unit=RATIO, height=6, steps=BUSY, width=6, description="""
                     Average share of time a kernel was running, over the GPUs of each node:
                     llmcost_gpu_utilization_ratio from NVML. A GPU can be busy while producing few tokens;
                     token utilization is the figure that sets the cost."""),
                stat("Requests in flight",
                     q(f'sum{s.by()}({s.of_kinds(s.m("llmcost_requests_running", MODEL))})', "running"),
                     q(f'sum{s.by()}({s.of_kinds(s.m("llmcost_requests_waiting", MODEL))})', "waiting"),
                     unit=COUNT, height=6, description="""
                     Requests the selected models' engines are running and queueing now:
                     llmcost_requests_running and llmcost_requests_waiting, summed. Waiting requests mean the
                     engines are at capacity."""),
                timeseries("Throughput vs capacity",
                           q(f'sum{s.by("instance", "engine", "engine_kind")}'
                             f'({s.of_kinds(s.m("llmcost_tokens_per_second", MODEL))})',
                             "tokens/s · {{engine}} ({{engine_kind}}) @ {{instance}}"),
                           q(f"max{s.by('instance', 'engine', 'source')}({s.of_selected_engines(capacity)})",
                             "capacity ({{source}}) · {{engine}} @ {{instance}}"),
                           unit=TOKENS_PER_SECOND, min=0, description="""
                           Input + output tokens per second of the selected models per engine over the
                           exporter's live window (llmcost_tokens_per_second) against the engine's capacity
                           (llmcost_capacity_tokens_per_second, configured or observed). The gap is idle
                           capacity that is paid for."""),
                timeseries("Utilization by model",
                           q(s.of_kinds(s.m("llmcost_utilization_ratio", MODEL)),
                             "{{model}} · {{engine}} ({{engine_kind}}) @ {{instance}}"),
                           unit=RATIO, min=0, description="""
                           Each model's share of its engine's capacity over the exporter's live window:
                           llmcost_utilization_ratio = llmcost_tokens_per_second / capacity. An engine's models
                           sum to the engine's utilization."""),
                timeseries("GPU busy ratio",
                           q(s.m("llmcost_gpu_utilization_ratio"), "GPU {{gpu}} @ {{instance}}"),
                           unit=RATIO, min=0, width=24, height=7, description="""
                           Share of time a kernel was running on each GPU (llmcost_gpu_utilization_ratio,
                           sampled from NVML). Busy GPUs with low token utilization point at small batches or
                           long prompts, not at spare capacity."""),
            ]),
            question("What do the GPUs draw?", [
                timeseries("Power per GPU vs limit",
                           q(s.m("llmcost_gpu_power_watts"), "GPU {{gpu}} @ {{instance}}"),
                           q(s.m("llmcost_gpu_power_limit_watts"), "limit GPU {{gpu}} @ {{instance}}"),
                           unit=WATT, min=0, description="""
                           Power draw of each GPU (llmcost_gpu_power_watts, sampled from NVML) against its
                           enforced power limit (llmcost_gpu_power_limit_watts)."""),
                bargauge("Power as share of limit",
                         q(f'{s.m("llmcost_gpu_power_watts")} / {s.m("llmcost_gpu_power_limit_watts")}',
                           "GPU {{gpu}} @ {{instance}}"),
                         unit=RATIO, max=1, width=6, height=9, steps=BUSY, description="""
                         Each GPU's power draw now as a share of its enforced limit:
                         llmcost_gpu_power_watts / llmcost_gpu_power_limit_watts."""),
                timeseries("Power by engine",
                           q(f"sum{s.by('instance', 'engine')}"
                             f"({s.of_selected_engines(f'rate({engine_energy}[$__rate_interval])')})",
                             "{{engine}} @ {{instance}}"),
                           q(f"sum{s.by('instance')}(rate({gpu_energy}[$__rate_interval]))", "all GPUs @ {{instance}}"),
                           q(f"sum{s.by('instance')}(rate({overhead_energy}[$__rate_interval]))",
                             "rest of the box @ {{instance}}"),
                           unit=WATT, min=0, width=6, height=9, legend_calcs=("mean",), description="""
                           Average power over each interval, from the energy counters (joules per second =
                           watts): rate of llmcost_engine_energy_joules_total per engine (its GPUs plus its
                           share of the overhead), of llmcost_gpu_energy_joules_total for all GPUs of the node,
                           and of llmcost_overhead_energy_joules_total (configured overhead watts)."""),
            ]),
            question("How much energy, at what cost, per token?", [
                stat("GPU energy",
                     q(f"sum{s.by()}(increase({gpu_energy}[$__range]))", "GPUs"),
                     q(f"sum{s.by()}(increase({overhead_energy}[$__range]))", "rest of the box"),
                     unit=JOULE, width=8, description="""
                     Energy used over the time range on the selected nodes: increase of
                     llmcost_gpu_energy_joules_total (NVML energy counter, or integrated power) for all GPUs,
                     and of llmcost_overhead_energy_joules_total (configured overhead watts × time). Before
                     PUE."""),
                stat("Energy cost",
                     q(f"sum{s.by()}(increase({energy_cost}[$__range]))"),
                     unit=CURRENCY, width=8, description="""
                     Cost of that energy over the time range: increase of llmcost_energy_cost_total ((GPU +
                     overhead energy) × PUE × electricity price). In cloud mode for information only: the
                     instance price already includes it. Empty without an electricity price."""),
                stat("Energy per token",
                     q(f"sum{s.by()}({s.of_selected_engines(f'increase({engine_energy}[$__range])')}) "
                       f"/ (sum{s.by()}({s.of_selected_engines(f'increase({engine_tokens}[$__range])')}) > 0)"),
                     unit=JOULE, width=8, description="""
                     Joules per token over the time range for the selected engines: increase of
                     llmcost_engine_energy_joules_total (the engines' GPUs plus their share of the overhead)
                     divided by the increase of llmcost_tokens_total (input + output) of the same engines.
                     Idle power is included, so it falls as utilization rises."""),
                timeseries("Energy per token by model",
                           q(s.of_kinds(s.m("llmcost_energy_per_token_joules", MODEL)),
                             "{{model}} · {{engine}} ({{engine_kind}}) @ {{instance}}"),
                           unit=JOULE, min=0, description="""
                           Joules per token over the exporter's live window (llmcost_energy_per_token_joules):
                           the engine's energy divided by its tokens; every model of an engine gets the
                           engine's figure. Absent while no tokens flow."""),
                timeseries("Energy cost per hour",
                           q(f"sum{s.by('instance')}(rate({energy_cost}[$__rate_interval])) * 3600", "{{instance}}"),
                           unit=CURRENCY, min=0, description="""
                           Energy cost rate per node, as an hourly figure: rate of llmcost_energy_cost_total ×
                           3600 ((GPU + overhead energy) × PUE × electricity price)."""),
            ]),
            question("What do we pay for while idle?", [
                stat("Idle spend",
                     q(f"sum{s.by()}({s.of_selected_engines(f'increase({idle}[$__range])')})"),
                     unit=CURRENCY, height=7, description="""
                     Spend of the selected engines over the time range accrued while they produced no tokens
                     (or did not answer): increase of llmcost_idle_spend_total, a part of
                     llmcost_engine_spend_total."""),
                stat("Idle share of spend",
                     q(f"sum{s.by()}({s.of_selected_engines(f'increase({idle}[$__range])')}) "
                       f"/ sum{s.by()}({s.of_selected_engines(f'increase({spend}[$__range])')})"),
                     unit=RATIO, height=7, steps=thresholds("green", (0.25, "orange"), (0.5, "red")),
                     description="""
                     Share of the selected engines' spend over the time range paid while they produced no
                     tokens: increase of llmcost_idle_spend_total / increase of llmcost_engine_spend_total."""),
                timeseries("Idle share of spend over time",
                           q(f"sum{s.by('instance', 'engine')}({s.of_selected_engines(f'rate({idle}[$__rate_interval])')}) "
                             f"/ sum{s.by('instance', 'engine')}(rate({spend}[$__rate_interval]))",
                             "{{engine}} @ {{instance}}"),
                           unit=RATIO, min=0, width=16, height=7, description="""
                           Share of each engine's spend accrued while it produced no tokens, interval by
                           interval: rate of llmcost_idle_spend_total / rate of llmcost_engine_spend_total."""),
            ]),
            question("How loaded are the engines?", [
                timeseries("Requests running and waiting",
                           q(f'sum{s.by(*PER_MODEL)}({s.of_kinds(s.m("llmcost_requests_running", MODEL))})',
                             "running · {{model}} ({{engine_kind}}) @ {{instance}}"),
                           q(f'sum{s.by(*PER_MODEL)}({s.of_kinds(s.m("llmcost_requests_waiting", MODEL))})',
                             "waiting · {{model}} ({{engine_kind}}) @ {{instance}}"),
                           unit=COUNT, min=0, width=8, description="""
                           Requests each engine is running (llmcost_requests_running) and queueing
                           (llmcost_requests_waiting), per model, as sampled from the engine's /metrics.
                           A queue that grows means the engine is at capacity."""),
                timeseries("Finished requests per second",
                           q(f"sum{s.by(*PER_MODEL, 'finished_reason')}"
                             f"({s.of_kinds(f'rate({requests}[$__rate_interval])')})",
                             "{{finished_reason}} · {{model}} ({{engine_kind}}) @ {{instance}}"),
                           unit=REQUESTS_PER_SECOND, min=0, width=8, description="""
                           Requests finished per second by reason (vLLM: stop, length, abort; `unknown` where
                           the engine reports none, as SGLang): rate of llmcost_requests_total."""),
                timeseries("KV-cache usage",
                           q(s.of_kinds(s.m("llmcost_kv_cache_usage_ratio", MODEL)),
                             "{{model}} · {{engine}} ({{engine_kind}}) @ {{instance}}"),
                           unit=RATIO, min=0, width=8, description="""
                           Share of the KV cache in use per engine and model (llmcost_kv_cache_usage_ratio,
                           averaged over the engine's cores). Near 100% the engine queues or preempts
                           requests: a sign of real saturation."""),
            ]),
        ],
    )
