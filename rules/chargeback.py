"""The chargeback rule group: each gateway's per-team tokens priced at our live $/token per model.

Generated into its own group (`llm-cost-exporter.chargeback`) by rules/generate.py from the
`chargeback` key of rules/config.yaml. The join happens in PromQL, never in the exporter, so
team labels exist only in these recording rules, bounded to the top N teams + `other`, plus one
`unattributed` row per model: the model's spend that no gateway team accounts for. Over the teams,
`other` and `unattributed`, a model's chargeback adds up to its spend exactly (docs/chargeback.md).

Rules, all over `chargeback.window` (W), each keeping the cluster labels:

    model:llmcost_price_per_token:ratio_rateW           model, direction (input|output), currency
    team_model:llmcost_chargeback_spend:rateW           team (top N | other | unattributed), model, currency
    team_api:llmcost_chargeback_api_equivalent_spend:rateW   team (top N | other), api, currency
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GROUP = "chargeback"
TEAM = "team"  # the one label the rules give the chargeback unit, whatever the gateway calls it
OTHER, UNATTRIBUTED = "other", "unattributed"
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class Gateway:
    """One gateway's per-team token counters: metric names and labels as the gateway serves them."""

    input: str  # counter of input (prompt) tokens, cached ones included
    output: str  # counter of output (generated) tokens
    cached_input: str | None = None  # counter of cached input tokens (a subset of input); API-equivalent only
    team_label: str  # the label naming the team (LiteLLM: team_alias, team, api_key_alias, user, end_user)
    model_label: str = "model"
    selector: str | None = None  # extra matchers for this gateway's series (e.g. job="litellm")
    # Team values that name no team (LiteLLM writes "None" when a key has no team), besides an empty
    # or missing label: their tokens are left to the unattributed row instead of becoming a team.
    no_team_values: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ChargebackConfig:
    enabled: bool
    window: str  # a range: the rules' rate window and the dashboards' integration step
    top_teams: int  # teams kept by name (by spend, cluster-wide, at each evaluation); the rest are `other`
    gateways: dict[str, Gateway]
    model_aliases: dict[str, str]  # gateway model name -> engine model name (llmcost_* `model`)
    apis: list[str]  # APIs whose price each team's tokens are also shown at (catalog names)


def check(c: ChargebackConfig, error) -> None:
    """What the types cannot say; `error(key, value, allowed)` raises."""
    if c.top_teams < 1:
        error("chargeback.top_teams", c.top_teams, "a whole number >= 1")
    for name, g in c.gateways.items():
        key = f"chargeback.gateways.{name}"
        if not _LABEL.match(name):
            error(key, name, "a gateway name of letters, digits and _")
        for attr in ("input", "output", "cached_input"):
            value = getattr(g, attr)
            if value is not None and not _METRIC.match(value):
                error(f"{key}.{attr}", value, "a Prometheus metric name")
        for attr in ("team_label", "model_label"):
            if not _LABEL.match(getattr(g, attr)):
                error(f"{key}.{attr}", getattr(g, attr), "a Prometheus label name")
    for alias, model in c.model_aliases.items():
        if not alias or not model:
            error(f"chargeback.model_aliases.{alias}", model, "a non-empty engine model name")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Rules:
    """The PromQL of the chargeback group for one config; `sel` and `by` come from rules/generate.py."""

    def __init__(self, c: ChargebackConfig, exporter_sel, cluster: list[str]):
        self.c, self.sel, self.cluster, self.w = c, exporter_sel, list(cluster), c.window
        self.price = f"model:llmcost_price_per_token:ratio_rate{self.w}"
        self.spend = f"team_model:llmcost_chargeback_spend:rate{self.w}"
        self.api = f"team_api:llmcost_chargeback_api_equivalent_spend:rate{self.w}"

    def by(self, *labels: str) -> str:
        return f"by ({', '.join(self.cluster + list(labels))})"

    def on(self, *labels: str) -> str:
        return f"on ({', '.join(self.cluster + list(labels))})"

    # --- gateway tokens, per team, model and direction ------------------------------------------

    def _gateway(self, g: Gateway, metric: str, direction: str) -> str:
        excluded = "|".join(["", *(re.escape(v) for v in g.no_team_values)])
        matchers = [m for m in (g.selector, f"{g.team_label}!~{_quote(excluded)}") if m]
        expr = f"rate({metric}{{{','.join(matchers)}}}[{self.w}])"
        if g.team_label != TEAM:
            expr = f'label_replace({expr}, "{TEAM}", "$1", "{g.team_label}", "(.*)")'
        if g.model_label != "model":
            expr = f'label_replace({expr}, "model", "$1", "{g.model_label}", "(.*)")'
        for alias, model in sorted(self.c.model_aliases.items()):
            # Anchored: only a model named exactly `alias` is renamed to the engine's name.
            expr = f'label_replace({expr}, "model", {_quote(model)}, "model", {_quote(re.escape(alias))})'
        return f'label_replace(sum {self.by(TEAM, "model")} ({expr}), "direction", "{direction}", "", "")'

    def tokens(self, directions=("input", "output")) -> str:
        """Tokens/s per team, model and direction, over every gateway (`or` of their selections)."""
        parts = []
        for _, g in sorted(self.c.gateways.items()):
            names = {"input": g.input, "output": g.output, "cached_input": g.cached_input}
            parts += [self._gateway(g, names[d], d) for d in directions if names[d]]
        return "sum " + self.by(TEAM, "model", "direction") + " (\n" + "\n or\n".join(parts) + "\n)"

    def raw_spend(self) -> str:
        """currency/s per team and model: tokens/s x $/token of that model and direction."""
        return (f"sum {self.by(TEAM, 'model', 'currency')} (\n{self.tokens()}\n"
                f"* {self.on('model', 'direction')} group_left (currency)\n{self.price}\n)")

    def kept(self) -> str:
        """The top N teams by spend (all models), the set every bounded rule keeps by name."""
        per = f" by ({', '.join(self.cluster)})" if self.cluster else ""  # the top N of each cluster
        return f"topk{per} ({self.c.top_teams}, sum {self.by(TEAM)} (\n{self.raw_spend()}\n))"

    def bounded(self, expr: str, keep: list[str]) -> str:
        """`expr` (per team) with teams outside the top N summed into one `other` row."""
        kept = self.kept()
        return (f"sum {self.by(TEAM, *keep)} (\n(\n{expr}\n)\nand {self.on(TEAM)}\n{kept}\n)\nor\n"
                f'label_replace(sum {self.by(*keep)} (\n(\n{expr}\n)\nunless {self.on(TEAM)}\n{kept}\n), '
                f'"{TEAM}", "{OTHER}", "", "")')

    # --- the rules ------------------------------------------------------------------------------

    def model_spend(self) -> str:
        return f"sum {self.by('model', 'currency')} (rate({self.sel('llmcost_model_spend_total')}[{self.w}]))"

    def price_rule(self) -> str:
        """$/token per model and direction, cluster-wide: prefill spend / input tokens (cached ones
        included, as the exporter's by-direction price), decode spend / output tokens."""
        parts = []
        for phase, direction in (("prefill", "input"), ("decode", "output")):
            spend = f"rate({self.sel('llmcost_model_spend_total', f'phase={_quote(phase)}')}[{self.w}])"
            tokens = f"rate({self.sel('llmcost_tokens_total', f'direction={_quote(direction)}')}[{self.w}])"
            parts.append(f'label_replace(\n  sum {self.by("model", "currency")} ({spend})\n  / {self.on("model")} group_left ()\n'
                         f'  (sum {self.by("model")} ({tokens}) > 0),\n  "direction", "{direction}", "", ""\n)')
        return "\nor\n".join(parts)

    def unattributed(self) -> str:
        """A model's spend no team accounts for: its spend minus the gateways' teams' (every team,
        kept or not), so teams + other + unattributed = the model's spend. Negative when the gateways
        counted more tokens than the engines did."""
        return (f'label_replace(\n{self.model_spend()}\n- {self.on("model", "currency")}\n'
                f'(sum {self.by("model", "currency")} (\n{self.raw_spend()}\n))\nor\n{self.model_spend()},\n'
                f'"{TEAM}", "{UNATTRIBUTED}", "", "")')

    def api_prices(self, api: str) -> str:
        """$/token of one API by direction, such that input x p_input + cached x p_cached_input + output x
        p_output is what it bills: gateways count cached tokens in `input` too, so theirs is the discount."""
        def price(direction: str) -> str:
            return self.sel("llmcost_api_price_per_million_tokens", f"api={_quote(api)}", f"direction{direction}")
        m = f"max {self.by('api', 'direction', 'currency')}"
        io, cached, full = price('=~"input|output"'), price('="cached_input"'), price('="input"')
        return (f"{m} ({io})\nor\n{m} ({cached})\n"
                f"- {self.on('api', 'currency')} group_left ()\nmax {self.by('api', 'currency')} ({full})")

    def api_equivalent(self) -> str:
        """What each team's tokens would have cost at each API of `chargeback.apis` (one selection per API:
        PromQL has no cross join of teams and APIs)."""
        # Only models our engines serve (they have a price): the API-equivalent of self-hosted traffic.
        tokens = f"(\n(\n{self.tokens(('input', 'output', 'cached_input'))}\n)\nand {self.on('model')}\n{self.price}\n)"
        per_api = [f"sum {self.by(TEAM, 'api', 'currency')} (\n{tokens}\n* {self.on('direction')} group_left (api, currency)\n"
                   f"(1e-6 * (\n{self.api_prices(api)}\n))\n)" for api in self.c.apis]
        return self.bounded("\nor\n".join(per_api), ["api", "currency"])

    def rules(self) -> list[dict]:
        if not self.c.enabled or not self.c.gateways:
            return []
        return [
            {"record": self.price, "expr": self.price_rule()},
            # One rule (promtool refuses two of one name): the teams, `other`, and `unattributed`.
            {"record": self.spend, "expr": f"{self.bounded(self.raw_spend(), ['model', 'currency'])}\nor\n{self.unattributed()}"},
        ] + ([{"record": self.api, "expr": self.api_equivalent()}] if self.c.apis else [])
