"""What one row of the landing page concludes, one window per statement (docs/cost-model.md#verdicts).

A row compares one model with one API. Each statement uses only figures of one window, and only
figures the row itself shows, so a verdict can never contradict the cells beside it:

- live: the live window's $/1M actual against the API's $/1M for this model's traffic;
- since start: the API-equivalent spend since start against the model's own spend since start;
- per month: the live window's rates over `pricing.hours_per_month` (a projection, not a bill).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter import costmodel
from exporter.snapshot import ApiComparison, ModelFigures


@dataclass(frozen=True)
class Verdict:
    """Self-hosted against the API over one window; `cheaper` None when that window says nothing."""
    window: str  # "live" | "since start"
    self_hosted: float | None  # live: $/1M actual; since start: the model's spend
    api: float | None  # live: the API's $/1M for this traffic; since start: its API-equivalent spend
    cheaper: bool | None  # self-hosting cheaper than the API (a tie counts as not dearer)

    @property
    def difference(self) -> float | None:
        """API minus self-hosted: what self-hosting saves (negative: what it costs more)."""
        if self.self_hosted is None or self.api is None:
            return None
        return self.api - self.self_hosted


def _verdict(window: str, self_hosted: float | None, api: float | None) -> Verdict:
    cheaper = None if self_hosted is None or api is None else self_hosted <= api
    return Verdict(window, self_hosted, api, cheaper)


def live(f: ModelFigures, c: ApiComparison) -> Verdict:
    return _verdict("live", f.cost_per_million, c.price_per_million)


def model_spend(f: ModelFigures) -> float | None:
    """The model's spend since start (both phases: llmcost_model_spend_total), None before its first tick."""
    return sum(f.phase_spend.values()) if f.phase_spend else None


def since_start(f: ModelFigures, c: ApiComparison, partial: bool = False) -> Verdict:
    """`partial`: the engine also runs on other nodes, so this node's spend is not the model's."""
    return _verdict("since start", None if partial else model_spend(f), c.equivalent_spend)


def unreachable(f: ModelFigures, c: ApiComparison) -> bool:
    """Break-even above 100%: the hardware cannot beat this API at any load up to its capacity.
    Not said while the live load is above the capacity (understated capacity): the row's own
    $/1M could then beat the API, and the page would contradict itself."""
    over = f.utilization is not None and f.utilization > 1.0
    return c.breakeven_utilization is not None and c.breakeven_utilization > 1.0 and not over


@dataclass(frozen=True)
class Monthly:
    """The live window's rates held for a month: tokens/s x $/1M x seconds per month."""
    self_hosted: float
    api: float

    @property
    def saving(self) -> float:
        return self.api - self.self_hosted


def monthly(f: ModelFigures, c: ApiComparison, hours_per_month: float) -> Monthly | None:
    if f.tokens_per_second is None or f.cost_per_million is None or c.price_per_million is None:
        return None
    tokens = f.tokens_per_second * hours_per_month * costmodel.SECONDS_PER_HOUR / costmodel.PER_MILLION
    return Monthly(tokens * f.cost_per_million, tokens * c.price_per_million)
