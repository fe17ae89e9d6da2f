"""LLM cost overview: what a million tokens really costs to self-host, against the API.

Money figures that depend on spend (self-hosted $/1M, spend, savings) are per engine: an engine's
spend is not split between its models, so the model filter selects the engines serving the chosen
models, with all their tokens. The engine kind filter selects engines by the kind
llmcost_engine_info gives them (vllm, sglang, ...). The per-day panels read the recording rules'
hourly increases (a day of raw scrapes is too slow to read at every step of a fleet's panel); every
other query uses only raw exporter metrics, so it works against a Prometheus without the rules.
"""

from __future__ import annotations

from dashboards.defaults import (
    API, COUNT, CURRENCY, GAIN, JOULE, MODEL, RATIO, TIMES, TOKENS_PER_SECOND, Scope, bargauge, column,
    dashboard as house_dashboard, gauge, q, question, stat, table, thresholds, timeseries,
)

UID = "llmcost-overview"
DAY_STEP = "1h"  # a rolling day's sum of hourly increases changes once an hour
PER_MODEL = ("instance", "engine", "engine_kind", "model")  # rows of the tables: the kind joined (Scope.of_kinds)


def dashboard(s: Scope):
    spend = s.m("llmcost_engine_spend_total")
    tokens = s.m("llmcost_tokens_total")  # all models of an engine: the engine's spend buys all of them
    api_equivalent = s.m("llmcost_api_equivalent_spend_total", API)
    per_engine = s.on("instance", "engine")
    engine_capacity = f'max{s.by("instance", "engine")}({s.m("llmcost_capacity_tokens_per_second")})'
    full = f'max{s.by("instance", "engine")}({s.m("llmcost_cost_per_million_tokens_at_full_utilization")})'
    # Each model's tokens/s priced at each API's price for that model's traffic mix, per second.
    api_rate = (f'{s.m("llmcost_api_blended_price_per_million_tokens", API)} '
                f'* {s.on("instance", "engine", "model")} group_left {s.m("llmcost_tokens_per_second")}')

    # One engine on every node it spans: all nodes' spend, then over the leader's tokens (rules/README.md).
    across_nodes = (f"1e6 * sum{s.by('engine')}(rate({spend}[$__rate_interval])) "
                    f"/ {s.on('engine')} group_right () "
                    f"(sum{s.by('engine', 'engine_kind')}({s.of_kinds(f'rate({tokens}[$__rate_interval])')}) > 0) "
                    f"and {s.on('engine')} {s.m('llmcost_tokens_total', MODEL)}")

    def per_model(op: str, expr: str, *labels: str) -> str:
        """`op` by node, engine, engine kind, model (and `labels`) over the engines of the selected kinds."""
        return f"{op}{s.by(*PER_MODEL, *labels)}({s.of_kinds(expr)})"

    breakeven = per_model("max", s.m("llmcost_breakeven_utilization_ratio", MODEL, API), "api")

    # Who pays for the GPUs: each engine's share of its node's GPUs (and how it was found), the rest.
    per_share = ("instance", "engine", "engine_kind", "method")  # rows of the GPU share table
    gpu_share = f'max{s.by(*per_share)}({s.of_selected_engines(s.m("llmcost_engine_gpu_share_ratio"))})'
    unallocated_share = (f"0 * {gpu_share} + {s.on('instance')} group_left "
                         f'max{s.by("instance")}({s.m("llmcost_unallocated_gpu_share_ratio")})')
    unallocated_spend = s.m("llmcost_unallocated_spend_total")

    def by_direction(direction: str) -> str:
        return per_model("max", s.m("llmcost_cost_per_million_tokens_by_direction", MODEL, f'direction="{direction}"'),
                         "method")
    # The engine's utilization over each of its models' break-even utilizations, one per API.
    over_breakeven = (f'sum{s.by("instance", "engine")}({s.m("llmcost_utilization_ratio")}) '
                      f"/ {per_engine} group_right {breakeven}")

    def api_tokens(window: str) -> str:
        """Tokens of the selected engines, once per API each engine is compared with (label `api`)."""
        return (f"sum{s.by('instance', 'engine', 'model')}(increase({tokens}[{window}])) "
                f"* {s.on('instance', 'engine', 'model')} group_right () "
                f"(0 * {s.of_selected_engines(api_equivalent)} + 1)")

    # Per day: the recorded hourly increases summed over the day (24 samples a series, not a day of
    # scrapes: docs/scaling.md), at a step of at least an hour (DAY_STEP).
    day_spend = f"sum_over_time({s.m('engine:llmcost_engine_spend:increase1h')}[1d])"
    day_api = f"sum_over_time({s.m('engine_model_api:llmcost_api_equivalent_spend:increase1h', API)}[1d])"

    def savings(api_total: str, spend_total: str) -> str:
        """API-equivalent spend minus self-hosted spend of the same engines, by API."""
        return (f"sum{s.by('api')}("
                f"sum{s.by('instance', 'engine', 'api')}({s.of_selected_engines(api_total)}) "
                f"- {per_engine} group_left "
                f"sum{s.by('instance', 'engine')}({spend_total}))")

    return house_dashboard(
        scope=s,
        uid=UID,
        title="LLM cost: self-hosted vs API",
        description="What a million tokens costs to self-host, live, against the APIs it replaces "
                    "(llm-cost-exporter).",
        variables=[s.node_variable, s.engine_kind_variable, s.model_variable, s.api_variable],
        questions=[
            question("What does a million tokens cost us, and what would the API charge?", [
                stat("Self-hosted $/1M tokens",
                     q(f"sum{s.by()}({s.of_selected_engines(f'increase({spend}[$__range])')}) "
                       f"/ (sum{s.by()}({s.of_selected_engines(f'increase({tokens}[$__range])')}) > 0) * 1e6"),
                     unit=CURRENCY, description="""
                     What a million tokens actually cost over the dashboard's time range, allocation basis
                     (idle time is paid for): increase of llmcost_engine_spend_total over the range divided by
                     the increase of llmcost_tokens_total (input + output) of the same engines, × 10⁶. Engines
                     serving the selected models, on the selected nodes; empty while no tokens flowed."""),
                stat("$/1M at 100% utilization, now",
                     q(f"sum{s.by()}({s.of_selected_engines(f'{full} * {per_engine} {engine_capacity}')}) "
                       f"/ sum{s.by()}({s.of_selected_engines(f'{engine_capacity} and {per_engine} {full}')})"),
                     unit=CURRENCY, description="""
                     The figure published analyses quote: what a million tokens would cost if the engines
                     ran at capacity all the time, now. Each engine's
                     llmcost_cost_per_million_tokens_at_full_utilization (its spend rate over the exporter's
                     live window / (capacity × 3600) × 10⁶), averaged over the selected engines weighted by
                     llmcost_capacity_tokens_per_second. The gap to the actual figure is the price of idle
                     capacity."""),
                stat("API price for our traffic",
                     q(f"sum{s.by('api')}({s.of_selected_engines(f'increase({api_equivalent}[$__range])')}) "
                       f"/ (sum{s.by('api')}({api_tokens('$__range')}) > 0) * 1e6", "{{api}}"),
                     unit=CURRENCY, width=6, description="""
                     What each API would charge per million tokens of our actual traffic mix (input, cached
                     input and output at its list prices) over the range: increase of
                     llmcost_api_equivalent_spend_total divided by the increase of llmcost_tokens_total of
                     the engines compared with that API, × 10⁶. Compare with the self-hosted $/1M."""),
                stat("Projected monthly cost",
                     q(f'sum{s.by()}({s.m("llmcost_hourly_cost")}) * 730'),
                     unit=CURRENCY, description="""
                     What the selected nodes cost per month at the current rate: sum of llmcost_hourly_cost
                     (all cost components of each node, allocation basis, unallocated GPUs included) × 730
                     hours. Not filtered by engine kind or model."""),
                stat("Projected monthly API bill",
                     q(f"sum{s.by('api')}({s.of_selected_engines(api_rate)}) * 3600 * 730 / 1e6", "{{api}}"),
                     unit=CURRENCY, width=6, description="""
                     What each API would bill per month for the current traffic of the selected engines:
                     llmcost_api_blended_price_per_million_tokens (the API's price for each model's traffic
                     mix) × llmcost_tokens_per_second (live window) × 3600 × 730 hours / 10⁶, summed over
                     models. Compare with the projected monthly cost."""),
                timeseries("$/1M tokens: actual vs at 100% utilization vs API",
                           q(f"sum{s.by('instance', 'engine')}({s.of_selected_engines(f'rate({spend}[$__rate_interval])')}) "
                             f"/ (sum{s.by('instance', 'engine')}(rate({tokens}[$__rate_interval])) > 0) * 1e6",
                             "actual · {{engine}} @ {{instance}}"),
                           q(s.of_selected_engines(full), "at 100% · {{engine}} @ {{instance}}"),
                           q(f"sum{s.by('instance', 'engine', 'api')}"
                             f"({s.of_selected_engines(f'rate({api_equivalent}[$__rate_interval])')}) "
                             f"/ {per_engine} group_left () "
                             f"(sum{s.by('instance', 'engine')}(rate({tokens}[$__rate_interval])) > 0) * 1e6",
                             "{{api}} · {{engine}} @ {{instance}}"),
                           unit=CURRENCY, width=24, description="""
                           Cost per million tokens per engine, interval by interval ($__rate_interval).
                           Actual: rate of llmcost_engine_spend_total / rate of llmcost_tokens_total (input +
                           output) × 10⁶, allocation basis, absent while no tokens flow. At 100%:
                           llmcost_cost_per_million_tokens_at_full_utilization, the engine's spend rate over
                           the exporter's live window / (capacity × 3600) × 10⁶. API: rate of
                           llmcost_api_equivalent_spend_total / rate of llmcost_tokens_total × 10⁶, the API's
                           price for this engine's traffic mix. Actual below an API line: self-hosting is
                           cheaper than that API. The exporter's own live figure is
                           llmcost_cost_per_million_tokens (see the per-model table)."""),
                timeseries("$/1M tokens of each engine across its nodes (multi-node engines)",
                           q(across_nodes, "{{engine}} ({{engine_kind}})"),
                           unit=CURRENCY, width=24, description="""
                           Cost per million tokens of each engine over every node it spans: a LeaderWorkerSet
                           group or Ray cluster books the GPUs of its workers' nodes to its leader's engine, and
                           only the leader's node counts its tokens. Rate of llmcost_engine_spend_total summed
                           over all selected nodes, per engine, / rate of llmcost_tokens_total of that engine ×
                           10⁶, as the recording rule cluster_engine:llmcost_cost_per_million_tokens computes it.
                           Select every node the engine spans (All) for its whole spend. For a one-node engine,
                           the same as the per-node actual figure above."""),
            ]),
            question("How much have we spent, and what would the API have billed?", [
                stat("Self-hosted spend",
                     q(f"sum{s.by()}({s.of_selected_engines(f'increase({spend}[$__range])')})"),
                     unit=CURRENCY, description="""
                     Spend allocated to the selected engines over the time range: increase of
                     llmcost_engine_spend_total (instance price and request fees, or amortization + energy
                     + fixed costs for owned hardware, split by the GPUs each engine holds)."""),
                stat("API-equivalent spend",
                     q(f"sum{s.by('api')}({s.of_selected_engines(f'increase({api_equivalent}[$__range])')})", "{{api}}"),
                     unit=CURRENCY, width=6, description="""
                     What each API would have billed for the same tokens over the time range: increase of
                     llmcost_api_equivalent_spend_total (uncached input, cached input and output tokens at
                     the API's list prices) of the selected engines."""),
                stat("Savings vs API",
                     q(savings(f"increase({api_equivalent}[$__range])", f"increase({spend}[$__range])"), "{{api}}"),
                     unit=CURRENCY, width=6, steps=GAIN, description="""
                     API-equivalent spend minus self-hosted spend of the same engines over the time range,
                     per API: increase of llmcost_api_equivalent_spend_total minus the increase of
                     llmcost_engine_spend_total, matched per node and engine. Negative (red): the API would
                     have been cheaper."""),
                stat("Node spend by component",
                     q(f'sum{s.by("component")}(increase({s.m("llmcost_spend_total")}[$__range]))', "{{component}}"),
                     unit=CURRENCY, width=8, description="""
                     Everything the selected nodes cost over the time range, by component (instance,
                     requests; or amortization, energy, fixed): increase of llmcost_spend_total. Includes
                     GPUs no engine holds, so it can exceed the self-hosted spend. Not filtered by engine kind or model."""),
                timeseries("Spend per day: self-hosted vs API-equivalent",
                           q(f"sum{s.by()}({s.of_selected_engines(day_spend)})", "self-hosted"),
                           q(f"sum{s.by('api')}({s.of_selected_engines(day_api)})", "{{api}} equivalent"),
                           unit=CURRENCY, min=0, min_step=DAY_STEP, description="""
                           Spend in the 24 hours before each point (rolling day): the recording rules' hourly
                           increases of llmcost_engine_spend_total of the selected engines, and of
                           llmcost_api_equivalent_spend_total per API for the same engines, summed over the
                           day (engine:llmcost_engine_spend:increase1h, ...; needs the rule file). One point an
                           hour. Counters start at 0 when an exporter starts, so the first day reads low."""),
                timeseries("Savings per day vs each API",
                           q(savings(day_api, day_spend), "vs {{api}}"),
                           unit=CURRENCY, min_step=DAY_STEP, description="""
                           API-equivalent spend minus self-hosted spend in the 24 hours before each point,
                           per API: the hourly increases of llmcost_api_equivalent_spend_total minus those of
                           llmcost_engine_spend_total (recording rules), summed over the day, matched per node
                           and engine. One point an hour. Below 0: the API would have been cheaper that day."""),
            ]),
            question("Are we busy enough to beat the API?", [
                gauge("Utilization now",
                      q(s.of_selected_engines(f'sum{s.by("instance", "engine")}({s.m("llmcost_utilization_ratio")})'),
                        "{{engine}} @ {{instance}}"),
                      unit=RATIO, height=9, description="""
                      Share of each engine's capacity in use over the exporter's live window: sum over the
                      engine's models of llmcost_utilization_ratio (tokens per second / capacity). Above 100%
                      when the configured capacity is below the real peak."""),
                bargauge("Utilization ÷ break-even",
                         q(over_breakeven, "{{model}} ({{engine_kind}}) vs {{api}} @ {{instance}}"),
                         unit=TIMES, width=6, height=9, steps=thresholds("red", (1, "green")), description="""
                         How far above (green, ≥ 1×) or below (red) break-even each model runs, per API: the
                         engine's utilization (sum of llmcost_utilization_ratio) divided by
                         llmcost_breakeven_utilization_ratio (cost per 1M at 100% / the API's blended price).
                         At 1× self-hosting costs what the API costs; below it the API is cheaper."""),
                timeseries("Utilization vs break-even utilization",
                           q(s.of_selected_engines(f'sum{s.by("instance", "engine")}({s.m("llmcost_utilization_ratio")})'),
                             "utilization · {{engine}} @ {{instance}}"),
                           q(s.of_kinds(s.m("llmcost_breakeven_utilization_ratio", MODEL, API)),
                             "break-even vs {{api}} · {{model}} @ {{instance}}"),
                           unit=RATIO, min=0, description="""
                           Utilization (sum over the engine's models of llmcost_utilization_ratio: tokens per
                           second over capacity, live window) against the utilization at which self-hosting
                           costs what each API costs (llmcost_breakeven_utilization_ratio = cost per 1M at 100%
                           / the API's blended price). Utilization above a break-even line: self-hosting is
                           cheaper than that API. A break-even above 100% means this hardware never beats it."""),
            ]),
            question("What does each model cost, and against which API?", [
                table("Per model",
                      column("tok/s", q(per_model("max", s.m("llmcost_tokens_per_second", MODEL))), TOKENS_PER_SECOND),
                      column("utilization", q(per_model("max", s.m("llmcost_utilization_ratio", MODEL))), RATIO),
                      column("$/1M actual", q(per_model("max", s.m("llmcost_cost_per_million_tokens", MODEL))), CURRENCY),
                      column("$/1M at 100%",
                             q(per_model("max", s.m("llmcost_cost_per_million_tokens_at_full_utilization", MODEL))),
                             CURRENCY),
                      column("J/token", q(per_model("max", s.m("llmcost_energy_per_token_joules", MODEL))), JOULE),
                      column("tokens in range",
                             q(per_model("sum", f'increase({s.m("llmcost_tokens_total", MODEL)}[$__range])')), COUNT),
                      unit=COUNT, height=8, description="""
                      One row per model (with its engine's kind), as the exporter computes it over its live
                      window: throughput
                      (llmcost_tokens_per_second), utilization (llmcost_utilization_ratio), cost per 1M tokens
                      actual (llmcost_cost_per_million_tokens: the engine's spend / its tokens × 10⁶, every
                      model of an engine gets the engine's figure) and at 100% utilization
                      (llmcost_cost_per_million_tokens_at_full_utilization), energy per token
                      (llmcost_energy_per_token_joules); and tokens over the time range (increase of
                      llmcost_tokens_total)."""),
                table("Per model and API",
                      column("API $/1M for this mix",
                             q(per_model("max", s.m("llmcost_api_blended_price_per_million_tokens", MODEL, API), "api")),
                             CURRENCY),
                      column("break-even utilization", q(breakeven), RATIO),
                      column("utilization ÷ break-even", q(over_breakeven), TIMES),
                      column("API-equivalent spend in range",
                             q(per_model("sum", f'increase({s.m("llmcost_api_equivalent_spend_total", MODEL, API)}[$__range])',
                                         "api")),
                             CURRENCY),
                      unit=CURRENCY, width=16, height=8, description="""
                      One row per model and compared API: the API's price per 1M tokens for this model's
                      traffic mix since the exporter started (llmcost_api_blended_price_per_million_tokens),
                      the break-even utilization (llmcost_breakeven_utilization_ratio: cost per 1M at 100% /
                      that price), the engine's utilization over it (above 1×: self-hosting is cheaper), and
                      what the API would have billed over the time range (increase of
                      llmcost_api_equivalent_spend_total)."""),
                table("API list prices",
                      column("$/1M tokens",
                             q(f'max{s.by("api", "direction")}({s.m("llmcost_api_price_per_million_tokens", API)})'),
                             CURRENCY),
                      unit=CURRENCY, width=8, height=8, description="""
                      The catalog list price per million tokens of each compared API, by direction (input,
                      cached_input, output): llmcost_api_price_per_million_tokens. The blended price per
                      model weights these by the model's actual traffic."""),
            ]),
            question("Who pays for the GPUs?", [
                table("GPU share per engine",
                      column("GPU share", q(gpu_share), RATIO),
                      column("unallocated share of the node", q(unallocated_share), RATIO),
                      unit=RATIO, width=12, height=8, description="""
                      One row per engine (with its kind) and the method its share was found by: the share of
                      its node's GPUs it holds now (llmcost_engine_gpu_share_ratio; method exclusive,
                      replica, mig, hami, podresources, config or even: see docs/metrics.md), and the share of
                      that node's GPUs no engine holds (llmcost_unallocated_gpu_share_ratio, 1 − the engines'
                      shares), whose cost is never spread over the engines. Engines serving the selected
                      models."""),
                bargauge("GPU spend in range: engines vs unallocated",
                         q(f"sum{s.by('instance', 'engine', 'engine_kind')}"
                           f"({s.of_selected_engines(f'increase({spend}[$__range])')})",
                           "{{engine}} ({{engine_kind}}) @ {{instance}}"),
                         q(f"sum{s.by('instance')}(increase({unallocated_spend}[$__range]))",
                           "unallocated @ {{instance}}"),
                         unit=CURRENCY, height=8, description="""
                         Who paid for the GPUs over the time range: increase of llmcost_engine_spend_total per
                         engine (its share of the node's cost), and of llmcost_unallocated_spend_total per node
                         (the GPU fractions no engine holds: idle GPUs, free MIG slices and replicas). On a
                         node, the engines' spend plus the unallocated spend is its whole spend
                         (llmcost_spend_total). The unallocated bar is not filtered by engine kind or model."""),
                timeseries("GPU spend per hour: engines vs unallocated (stacked)",
                           q(f"sum{s.by('instance', 'engine', 'engine_kind')}"
                             f"({s.of_selected_engines(f'rate({spend}[$__rate_interval])')}) * 3600",
                             "{{engine}} ({{engine_kind}}) @ {{instance}}"),
                           q(f"sum{s.by('instance')}(rate({unallocated_spend}[$__rate_interval])) * 3600",
                             "unallocated @ {{instance}}"),
                           unit=CURRENCY, width=24, min=0, stack=True, description="""
                           Spend per hour, stacked, interval by interval ($__rate_interval): rate of
                           llmcost_engine_spend_total per engine and of llmcost_unallocated_spend_total per node,
                           × 3600. With every engine selected, the stack of a node is its whole spend per hour
                           (rate of llmcost_spend_total × 3600); the unallocated band is what the GPUs no engine
                           holds cost. The
                           unallocated series is not filtered by engine kind or model."""),
                table("$/1M tokens: input vs output per model",
                      column("$/1M input", q(by_direction("input")), CURRENCY),
                      column("$/1M output", q(by_direction("output")), CURRENCY),
                      unit=CURRENCY, width=12, height=8, description="""
                      One row per model (with its engine's kind) and the method its spend was split into
                      prefill and decode by: engine_time (the engine's own prefill and decode time counters)
                      or ratio (attribution.prefill_token_weight). Cost per million input tokens (the
                      model's prefill spend / its input tokens, cached included) and per million output
                      tokens (its decode spend / its output tokens) over the exporter's live window:
                      llmcost_cost_per_million_tokens_by_direction. An estimate; empty for a direction
                      while none of its tokens flow."""),
                bargauge("Prefix cache savings in range",
                         q(per_model("sum", f'increase({s.m("llmcost_cache_savings_total", MODEL)}[$__range])'),
                           "{{model}} ({{engine_kind}}) @ {{instance}}"),
                         unit=CURRENCY, height=8, description="""
                         What the prefix cache saved each model over the time range: increase of
                         llmcost_cache_savings_total (new cached input tokens × the model's prefill spend per
                         computed input token). An estimate of the prefill work the engine did not pay for;
                         0 while nothing is cached."""),
                bargauge("Model spend in range: prefill vs decode",
                         q(per_model("sum", f'increase({s.m("llmcost_model_spend_total", MODEL)}[$__range])', "phase"),
                           "{{model}} · {{phase}} ({{engine_kind}}) @ {{instance}}"),
                         unit=CURRENCY, height=9, description="""
                         Each engine's spend over the time range split among its models (by token-weighted
                         work) and each model's into prefill and decode (by the engine's own time counters,
                         else attribution.prefill_token_weight): increase of llmcost_model_spend_total. Over an
                         engine's models and phases it adds up to the engine's spend. An estimate."""),
                timeseries("GPU utilization per engine",
                           q(f'max{s.by("instance", "engine", "engine_kind")}'
                             f'({s.of_selected_engines(s.m("llmcost_engine_gpu_utilization_ratio"))})',
                             "{{engine}} ({{engine_kind}}) @ {{instance}}"),
                           unit=RATIO, min=0, description="""
                           How busy the GPUs each engine holds are: llmcost_engine_gpu_utilization_ratio, the
                           busy share of each of its GPUs weighted by the fraction of it the engine holds. No
                           line for an engine that holds only MIG devices (they report no utilization); a GPU
                           shared by time-slicing or MIG reports the whole GPU's busy share, not the engine's
                           own. Compare with the token utilization above: busy GPUs at low token utilization
                           point to a capacity set too high."""),
            ]),
        ],
    )
