"""exporter.verdict: each statement of a landing-page row from the figures of one window only
(docs/cost-model.md, "Verdicts: one window per statement"). The figures are built with the cost
model's own functions, as snapshot.py builds them, so the identities are the model's, not restated."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exporter import costmodel, verdict
from exporter.engines.source import ModelTotals
from exporter.snapshot import ApiComparison, ModelFigures
from plugins.profiles import examples

MODEL = ModelTotals("e", "m", tokens={"input": 0.0, "output": 0.0}, cached_input_tokens=0.0, requests={}, gauges={},
                    window=None, api_equivalent={}, capacity=None, capacity_source="configured")


def row(hourly: float, capacity: float, load: float, api_price: float, spent: float = 10.0, equivalent: float = 5.0):
    """One model alone on its engine over a live window at `load`, as snapshot._figures computes it."""
    rate = capacity * load
    full = costmodel.cost_per_million_at_full_utilization(hourly, capacity)
    actual = costmodel.cost_per_million(hourly / 3600.0, rate)  # one second's spend over its tokens
    f = ModelFigures(MODEL, rate, actual, full, costmodel.utilization(rate, capacity),
                     phase_spend={"prefill": spent / 4, "decode": spent * 3 / 4})
    return f, ApiComparison("api", equivalent, api_price, costmodel.breakeven_utilization(full, api_price))


@given(hourly=st.floats(0.1, 100), capacity=st.floats(10, 1e5), load=st.floats(0.001, 1.0), price=st.floats(0.01, 100))
@settings(max_examples=examples(300), deadline=None)
def test_the_live_verdict_is_the_rows_cost_against_the_api_and_agrees_with_break_even(hourly, capacity, load, price):
    f, c = row(hourly, capacity, load, price)
    v = verdict.live(f, c)
    assert v.cheaper == (f.cost_per_million <= c.price_per_million)
    assert v.difference == pytest.approx(c.price_per_million - f.cost_per_million)
    # the same statement by load, away from the tie: actual = full / utilization, break-even = full / price
    assume(abs(f.utilization / c.breakeven_utilization - 1) > 1e-9)
    assert v.cheaper == (f.utilization >= c.breakeven_utilization)
    # unreachable only where the hardware loses at every load up to its capacity, so never beside a green verdict
    assert verdict.unreachable(f, c) == (c.breakeven_utilization > 1)
    assert not (verdict.unreachable(f, c) and v.cheaper)


def test_the_since_start_verdict_is_the_models_spend_against_its_api_equivalent():
    f, c = row(4.0, 500.0, 0.62, 4.09, spent=9.0, equivalent=1.15)
    since = verdict.since_start(f, c)
    assert (since.window, since.self_hosted, since.api, since.cheaper) == ("since start", 9.0, 1.15, False)
    assert since.difference == pytest.approx(-7.85)
    assert verdict.live(f, c).cheaper  # the row: green live, red since start, each its own window
    # an engine with pods on other nodes: this node's spend is not the model's, so nothing is said
    assert verdict.since_start(f, c, partial=True).cheaper is None


def test_no_figures_no_verdict():
    f, c = row(4.0, 500.0, 0.5, 4.0)
    blank = ModelFigures(MODEL)
    assert verdict.live(blank, c).cheaper is None and verdict.live(blank, c).difference is None
    assert verdict.since_start(blank, c).cheaper is None  # before the model's first tick
    assert verdict.monthly(blank, c, 730.0) is None
    assert verdict.live(f, ApiComparison("api", 0.0, None, None)).cheaper is None


def test_unreachable_is_not_said_while_the_load_exceeds_the_configured_capacity():
    f, c = row(4.0, 500.0, 1.5, 1.5)  # capacity understated: 150% "utilization"
    assert c.breakeven_utilization > 1 and verdict.live(f, c).cheaper
    assert not verdict.unreachable(f, c)


def test_the_month_is_the_live_rates_held_for_hours_per_month():
    f, c = row(4.0, 500.0, 0.5, 4.09)
    month = verdict.monthly(f, c, 730.0)
    tokens = 250.0 * 730 * 3600  # tokens/s held for a month
    assert month.self_hosted == pytest.approx(4.0 * 730)  # one model alone on its node: the node's month
    assert month.api == pytest.approx(tokens * 4.09 / 1e6)
    assert month.saving == pytest.approx(month.api - month.self_hosted)
