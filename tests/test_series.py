"""Per-series totals (exporter.series.SeriesTotals) and the sliding window.

The property tests drive SeriesTotals with generated multi-rank, multi-model engines whose ranks
serve, restart (some restarts masked: the counter is back above its old value by the next
scrape), vanish and come back, and appear after the baseline. Two references:
- the ground truth, the tokens every rank really served after the baseline scrape: with `_created`
  exposed, the totals equal it exactly, masked resets included;
- without `_created`, a reference implementation of Prometheus' counter semantics, written here
  independently: the totals equal it exactly, and equal the truth whenever no reset was masked.
"""


import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.series import MAX_COUNT, SeriesTotals, SlidingWindow
from plugins.profiles import examples

QUANTITIES = ("input_tokens", "output_tokens")


def key(model="m", quantity="input_tokens", rank="0", kind="counter"):
    return (model, kind, quantity, (("engine", rank),))


def test_first_reading_is_a_baseline():
    totals = SeriesTotals()
    assert totals.update({key(): 500.0}) == {key()[:3]: 0.0}
    assert totals.update({key(): 520.0}) == {key()[:3]: 20.0}
    assert totals.totals == {key()[:3]: 20.0}


def test_one_rank_restarting_changes_only_its_own_series():
    """The shape that re-added a model's whole lifetime: rank 1 restarts, rank 0 goes on."""
    totals = SeriesTotals()
    totals.update({key(rank="0"): 10_000.0, key(rank="1"): 10_000.0})
    totals.update({key(rank="0"): 10_800.0, key(rank="1"): 780.0})
    assert totals.totals[key()[:3]] == 800.0 + 780.0 and totals.resets == 1


def test_a_restart_hidden_by_another_ranks_growth_is_still_seen():
    """Rank 1 restarts while rank 0 grows past the old sum: summed first, the restart was missed."""
    totals = SeriesTotals()
    totals.update({key(rank="0"): 1_000.0, key(rank="1"): 5_000.0})
    totals.update({key(rank="0"): 12_000.0, key(rank="1"): 200.0})
    assert totals.totals[key()[:3]] == 11_000.0 + 200.0


def test_a_vanished_rank_never_recounts_the_others():
    """Data-parallel scale-down: rank 1 disappears; rank 0's lifetime must not be counted again."""
    totals = SeriesTotals()
    totals.update({key(rank="0"): 7_000.0, key(rank="1"): 3_000.0})
    totals.update({key(rank="0"): 7_100.0})
    totals.update({key(rank="0"): 7_300.0, key(rank="1"): 3_050.0})  # back: only its growth
    assert totals.totals[key()[:3]] == 300.0 + 50.0 and totals.resets == 0


def test_a_request_counter_going_down_by_one_adds_its_new_value_only():
    totals = SeriesTotals()
    requests = key(quantity="stop", kind="requests")
    totals.update({key(): 1e9, requests: 10.0})
    deltas = totals.update({key(): 1e9 + 300.0, requests: 9.0})
    assert deltas == {key()[:3]: 300.0, requests[:3]: 9.0}


def test_a_series_born_after_the_baseline_counts_in_full_unless_created_before_it():
    totals = SeriesTotals()
    totals.update({key(rank="0"): 10.0}, now=100.0)
    totals.update({key(rank="0"): 10.0, key(rank="1"): 7.0, key(rank="2"): 50.0},
                  created={key(rank="1"): 150.0, key(rank="2"): 20.0}, now=200.0)
    assert totals.totals[key()[:3]] == 7.0  # rank 2 predates our baseline: its 50 are not ours


def test_a_recreated_series_resets_even_when_its_value_went_up():
    totals = SeriesTotals()
    totals.update({key(): 100.0}, created={key(): 10.0}, now=50.0)
    totals.update({key(): 300.0}, created={key(): 60.0}, now=100.0)  # restarted at 60, served 300 since
    assert totals.totals[key()[:3]] == 300.0 and totals.resets == 1


def test_an_overflowing_sum_is_refused_and_counted():
    totals = SeriesTotals()
    totals.update({key(rank="0"): 0.0, key(rank="1"): 0.0})
    totals.update({key(rank="0"): 1e308, key(rank="1"): 1e308})
    assert totals.totals[key()[:3]] == 0.0 and totals.overflows == 2  # each past what a float counts by ones


def test_a_total_may_reach_2_to_the_53_and_not_pass_it():
    """Past 2^53 a float no longer counts by ones, and a saved total past it is refused at the next
    start: the running count stops there instead (counted as an overflow)."""
    totals = SeriesTotals()
    totals.update({key(rank="0"): 0.0, key(rank="1"): 0.0})
    totals.update({key(rank="0"): MAX_COUNT - 10, key(rank="1"): 10.0})
    assert totals.totals[key()[:3]] == MAX_COUNT and totals.overflows == 0
    totals.update({key(rank="0"): MAX_COUNT - 10, key(rank="1"): 12.0})
    assert totals.totals[key()[:3]] == MAX_COUNT and totals.overflows == 1


def test_state_round_trip_continues():
    totals = SeriesTotals()
    totals.update({key(): 5.0}, now=1.0)
    totals.update({key(): 8.0}, now=2.0)
    again = SeriesTotals()
    again.restore(totals.state())
    assert again.update({key(): 10.0}, now=3.0) == {key()[:3]: 2.0} and again.totals[key()[:3]] == 5.0


# -- the property: generated engines against the truth and against Prometheus' semantics ----------

_action = st.sampled_from(["serve", "serve", "serve", "restart", "restart_masked", "hide", "show", "idle"])


@st.composite
def engines(draw):
    """(ranks, steps): per step and rank an action and what it serves (two models, two quantities)."""
    ranks = draw(st.integers(1, 3))
    born = [0] + [draw(st.integers(0, 6)) for _ in range(ranks - 1)]  # rank r appears at step born[r]
    steps = draw(st.integers(1, 12))
    plan = [[(draw(_action), draw(st.integers(0, 500))) for _ in range(ranks)] for _ in range(steps)]
    return born, plan


def run_engine(born, plan):
    """Yields (exposition, created, truth so far, masked so far) per step, step 0 the baseline.
    The truth is what was served after the baseline, less what no scraper could ever see: what a
    rank served since it was last exposed, when it restarts before it is exposed again. A reset is
    masked when a rank restarted since its series were last exposed and one of them is not below
    its last exposed value: its value alone cannot tell."""
    counters: dict[int, dict[tuple, float]] = {}
    created: dict[int, float] = {}
    shown = {r: True for r in range(len(born))}
    last_exposed: dict[int, dict[tuple, float]] = {}
    restarted: set[int] = set()
    unseen: dict[int, dict[tuple, float]] = {}  # served since last exposed, by rank
    truth: dict[tuple, float] = {}
    masked = False

    def serve(rank, amount, step):
        for i, quantity in enumerate(QUANTITIES):
            counters[rank][("a", quantity)] += amount + i
            if step > 0:
                truth[("a", quantity)] = truth.get(("a", quantity), 0.0) + amount + i
                unseen.setdefault(rank, {})[("a", quantity)] = unseen.get(rank, {}).get(("a", quantity), 0.0) + amount + i

    for step in range(len(plan) + 1):
        for rank, first in enumerate(born):
            if first == step:
                counters[rank], created[rank] = {("a", q): 0.0 for q in QUANTITIES}, float(step)
                serve(rank, 100 * (rank + 1), step)
        for rank, (action, amount) in enumerate(plan[step - 1] if step else ()):
            if rank not in counters:
                continue
            if action in ("restart", "restart_masked"):
                before = max(counters[rank].values())
                for k, lost in unseen.pop(rank, {}).items():  # never exposed before the restart
                    truth[k] -= lost
                counters[rank] = {k: 0.0 for k in counters[rank]}
                created[rank] = step - 0.5
                restarted.add(rank)
                serve(rank, before + amount if action == "restart_masked" else amount, step)
            elif action == "serve":
                serve(rank, amount, step)
            elif action in ("hide", "show"):
                shown[rank] = action == "show"
        exposition, births = {}, {}
        for rank, values in counters.items():
            if not shown[rank]:
                continue
            if rank in restarted and rank in last_exposed:
                masked = masked or any(values[k] >= last_exposed[rank][k] for k in values)
            restarted.discard(rank)
            unseen.pop(rank, None)
            last_exposed[rank] = dict(values)
            for (model, quantity), value in values.items():
                series = (model, "counter", quantity, (("engine", str(rank)),))
                exposition[series], births[series] = value, created[rank]
        observable = dict(truth)  # what hidden ranks served meanwhile shows when they are back
        for served in unseen.values():
            for k, amount in served.items():
                observable[k] -= amount
        yield exposition, births, observable, masked


def prometheus_reference(readings):
    """Prometheus' counter semantics, independently: baseline first; per series, growth since it
    was last seen, or its whole value after a decrease; a series new after the baseline in full."""
    last: dict[tuple, float] = {}
    totals: dict[tuple, float] = {}
    for step, reading in enumerate(readings):
        for series, value in reading.items():
            if step == 0:
                totals.setdefault(series[:3], 0.0)
            elif series not in last:
                totals[series[:3]] = totals.get(series[:3], 0.0) + value
            else:
                grew = value - last[series]
                totals[series[:3]] = totals.get(series[:3], 0.0) + (grew if grew >= 0 else value)
            last[series] = value
    return totals


def _by_quantity(totals):
    return {(m, q): v for (m, _, q), v in totals.items() if v}


@pytest.mark.slow  # 2,000 generated engines
@given(engines())
@settings(max_examples=examples(2000))
def test_with_created_the_totals_are_the_tokens_really_served(engine):
    totals = SeriesTotals()
    for step, (exposition, created, truth, _) in enumerate(run_engine(*engine)):
        totals.update(exposition, created, now=float(step))
        assert _by_quantity(totals.totals) == {k: v for k, v in truth.items() if v}


@pytest.mark.slow
@given(engines())
@settings(max_examples=examples(2000))
def test_without_created_the_totals_follow_prometheus_semantics(engine):
    totals, readings = SeriesTotals(), []
    for step, (exposition, _, truth, masked) in enumerate(run_engine(*engine)):
        readings.append(exposition)
        deltas = totals.update(exposition, now=float(step))
        assert all(d >= 0 for d in deltas.values())
        assert totals.totals == {k: v for k, v in prometheus_reference(readings).items()}
        if not masked:
            assert _by_quantity(totals.totals) == {k: v for k, v in truth.items() if v}


def test_window_span_and_interpolation():
    window = SlidingWindow(60.0)
    for t in range(0, 200, 10):
        window.add(float(t), t * 2.0)
    t0, v0, t1, v1 = window.span(190.0)
    assert (t0, t1) == (130.0, 190.0) and (v1 - v0) / (t1 - t0) == 2.0
    assert window.value_at(135.0) == 270.0
    assert window.value_at(10.0) is None  # trimmed


def test_window_needs_two_samples():
    window = SlidingWindow(60.0)
    window.add(0.0, 1.0)
    assert window.span(0.0) is None
