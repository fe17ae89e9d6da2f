"""LLM chargeback: what each team's self-hosted tokens cost, and what the API would have charged them.

Reads only the chargeback recording rules (rules/chargeback.py, docs/chargeback.md): each gateway's
per-team tokens priced at the live $/token of the model, the top N teams by name, the rest as
`other`, and per model the spend no gateway team accounts for as `unattributed`, so the teams add
up to the bill. Amounts over the time range are a rule's rate averaged over the range times the
range: `avg_over_time(rule[$__range]) * $__range_s`.
"""

from __future__ import annotations

from dashboards.defaults import (
    CURRENCY, MODEL, RATIO, Scope, bargauge, dashboard as house_dashboard, q, query_variable, question, stat, timeseries,
)

UID = "llmcost-chargeback"


def dashboard(s: Scope):
    w = s.chargeback_window
    spend = f"team_model:llmcost_chargeback_spend:rate{w}"
    api = f"team_api:llmcost_chargeback_api_equivalent_spend:rate{w}"

    unattributed = 'team="unattributed"'

    def in_range(rule: str, *matchers: str) -> str:
        return f"avg_over_time({s.recorded(rule, *matchers)}[$__range]) * $__range_s"

    return house_dashboard(
        scope=s,
        uid=UID,
        title="LLM cost: chargeback per team",
        description="Each team's self-hosted spend from the gateways' per-team tokens and the live $/token, "
                    "the API-equivalent, and the spend no team accounts for (llm-cost-exporter).",
        # Models with chargeback rows (the engines' model names, gateway aliases already mapped).
        variables=[query_variable("model", "Model", f"label_values({s.recorded(spend)}, model)",
                                  "Self-hosted models the chargeback rules price (engine model names).")],
        questions=[
            question("Who spent what on which model?", [
                bargauge("Spend per team and model in range",
                         q(f"sum{s.by('team', 'model')}({in_range(spend, MODEL)})", "{{team}} · {{model}}"),
                         unit=CURRENCY, height=9, description="""
                         Each team's spend on each selected model over the time range: its gateway tokens
                         (input, output) times the model's live $/token (allocation basis, idle time included),
                         from team_model:llmcost_chargeback_spend. Teams beyond the top N are `other`;
                         `unattributed` is the model's spend no gateway team accounts for (tokens with no team,
                         or traffic that bypassed the gateways). The rows add up to the models' spend."""),
                stat("Unattributed share",
                     q(f"sum{s.by()}({in_range(spend, MODEL, unattributed)})\n/\n"
                       f"sum{s.by()}({in_range(spend, MODEL)})"),
                     unit=RATIO, width=6, height=9, description="""
                     Share of the selected models' spend over the time range that no gateway team accounts
                     for: the `unattributed` row over all rows of team_model:llmcost_chargeback_spend. High:
                     traffic bypasses the gateways, or keys without a team."""),
                stat("Spend in range",
                     q(f"sum{s.by()}({in_range(spend, MODEL)})"),
                     unit=CURRENCY, width=6, height=9, description="""
                     The selected models' spend over the time range, all teams, `other` and `unattributed`:
                     the bill the chargeback divides."""),
            ]),
            question("How does each team's spend move?", [
                timeseries("Spend rate per team",
                           q(f"3600 * sum{s.by('team')}({s.recorded(spend, MODEL)})", "{{team}}"),
                           unit=CURRENCY, width=24, min=0, description="""
                           Each team's spend per hour on the selected models, live (the chargeback rules'
                           window): 3600 x team_model:llmcost_chargeback_spend summed over models."""),
            ]),
            question("What would each team have paid the API?", [
                bargauge("API-equivalent per team in range",
                         q(f"sum{s.by('team', 'api')}({in_range(api)})", "{{team}} · {{api}}"),
                         unit=CURRENCY, height=9, description="""
                         What each team's gateway tokens of the self-hosted models would have cost at each API's
                         list prices over the time range (input, cached input and output at their prices):
                         team_api:llmcost_chargeback_api_equivalent_spend. All models, the model filter does
                         not apply. Compare with the team's spend."""),
                bargauge("Savings per team in range",
                         q(f"sum{s.by('team', 'api')}({in_range(api)})\n- {s.on('team')} group_left\n"
                           f"sum{s.by('team')}({in_range(spend)})", "{{team}} vs {{api}}"),
                         unit=CURRENCY, height=9, description="""
                         API-equivalent minus self-hosted spend per team over the time range, all models:
                         positive, self-hosting saved the team money against that API; negative, the API would
                         have been cheaper for its traffic."""),
            ]),
        ],
    )
