"""Reset-aware totals and the sliding window, including property tests."""

from hypothesis import given
from hypothesis import strategies as st

from exporter.series import ResetAwareTotals, SlidingWindow


def test_first_reading_is_a_baseline():
    totals = ResetAwareTotals()
    assert totals.update({("m", "in"): 500.0}) == {("m", "in"): 0.0}
    assert totals.update({("m", "in"): 520.0}) == {("m", "in"): 20.0}
    assert totals.totals == {("m", "in"): 20.0}


def test_restart_counts_new_values_and_no_phantom():
    totals = ResetAwareTotals()
    totals.update({("m", "in"): 500.0, ("m", "out"): 100.0})
    totals.update({("m", "in"): 600.0, ("m", "out"): 150.0})
    # Restart: "in" went down; "out" happens to be above its old value but restarted too.
    totals.update({("m", "in"): 30.0, ("m", "out"): 160.0})
    assert totals.totals == {("m", "in"): 130.0, ("m", "out"): 210.0}
    assert totals.resets == 1


def test_new_series_after_baseline_counts_from_zero():
    totals = ResetAwareTotals()
    totals.update({("a",): 10.0})
    totals.update({("a",): 10.0, ("b",): 7.0})
    assert totals.totals[("b",)] == 7.0


readings = st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                    st.floats(min_value=0, max_value=1e12, allow_nan=False), min_size=1),
                    min_size=1, max_size=40)


@given(readings)
def test_totals_never_decrease_whatever_the_engine_reports(sequence):
    totals = ResetAwareTotals()
    previous: dict = {}
    for raw in sequence:
        deltas = totals.update({(k,): v for k, v in raw.items()})
        assert all(d >= 0 for d in deltas.values())
        for key, value in previous.items():
            assert totals.totals[key] >= value
        previous = dict(totals.totals)


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
