"""The render cache (exporter/web/linecache.py) gives the library's bytes: rendered with one cache
over a sequence of snapshots (series appearing, disappearing, changing labels and values, label
values and HELP needing escaping, names the legacy charset does not allow), in every format
content negotiation can pick, each body equals prometheus_client's own encoder's. The row
families the collector builds (exporter/families.py), whose lines the cache renders from their
rows and keeps whole while the rows are unchanged, are swept the same way, against the library's
own families built by the same calls."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                            InfoMetricFamily, SummaryMetricFamily)
from prometheus_client.samples import Exemplar

from conftest import make_config, run_for
from exporter import families as rows
from exporter.web import metrics
from exporter.web.linecache import LineCache
from test_fuzz import run_cases

ACCEPTS = [
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",  # Prometheus 2.x, with ours added
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "",
]
NAMES = ["llmcost_spend", "llmcost_gpu_power_watts", "llmcost_tokens", "a", "x_y", "dotted.name", "é_name"]
LABELS = ["engine", "model", "gpu", "le_x", "odd.label", "währung"]
label_values = st.one_of(st.sampled_from(["vllm", "meta-llama/Llama-3.1-8B-Instruct", "", 'a"b', "a\\b", "a\nb",
                                          "\\n", "é", "😀", "{}", ","]), st.text(max_size=5))
values = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e15, 1e16, 9007199254740993.0, 1e-300, math.inf, -math.inf,
                                    math.nan, 123456789.123, 2.0 ** 53]),
                   st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10 ** 18))
helps = st.one_of(st.sampled_from(["Spend.", "", 'quote " here', "back\\slash", "new\nline"]), st.text(max_size=8))
series = st.lists(st.tuples(st.dictionaries(st.sampled_from(LABELS), label_values, max_size=3), values), max_size=4)
KINDS = ["gauge", "counter", "counter_created", "histogram", "summary", "info", "unit", "timestamp", "exemplar",
         "row_gauge", "row_counter", "row_unit", "row_timestamp", "row_counter_created"]
family = st.tuples(st.sampled_from(NAMES), st.sampled_from(KINDS), helps, series)
snapshots = st.lists(st.lists(family, max_size=6), min_size=1, max_size=4)


def build(name, kind, help_text, samples, library=False):
    """One family of the kind, with the samples as its series. `row_*`: exporter.families' row family,
    or with `library` the library's own family built by the same calls."""
    if kind.startswith("row_"):
        return build_rows(name, kind[4:], help_text, samples, library)
    labelnames = sorted({k for labels, _ in samples for k in labels})

    def values_of(labels):
        return [labels.get(k, "") for k in labelnames]

    if kind in ("gauge", "unit", "timestamp"):
        f = GaugeMetricFamily(name, help_text, labels=labelnames, unit="seconds" if kind == "unit" else "")
        for labels, value in samples:
            f.add_metric(values_of(labels), value, timestamp=1.5 if kind == "timestamp" else None)
    elif kind.startswith("counter") or kind == "exemplar":
        f = CounterMetricFamily(name, help_text, labels=labelnames)
        for labels, value in samples:
            f.add_metric(values_of(labels), value, created=2.0 if kind == "counter_created" else None)
            if kind == "exemplar":
                f.samples[-1] = f.samples[-1]._replace(exemplar=Exemplar({"trace_id": "1"}, 1.0))
    elif kind == "histogram":
        f = HistogramMetricFamily(name, help_text, labels=labelnames)
        for labels, value in samples:
            f.add_metric(values_of(labels), [("1.0", 1.0), ("+Inf", 2.0)], sum_value=value)
    elif kind == "summary":
        f = SummaryMetricFamily(name, help_text, labels=labelnames)
        for labels, value in samples:
            f.add_metric(values_of(labels), count_value=3, sum_value=value)
    else:
        f = InfoMetricFamily(name, help_text, labels=labelnames)
        for labels, _ in samples:
            f.add_metric(values_of(labels), {"version": "1"})
    return f


def build_rows(name, kind, help_text, samples, library):
    gauge, counter = (GaugeMetricFamily, CounterMetricFamily) if library else (rows.GaugeMetricFamily,
                                                                            rows.CounterMetricFamily)
    labelnames = sorted({k for labels, _ in samples for k in labels})
    if not labelnames and len(samples) == 1 and kind in ("gauge", "counter"):  # the constructor's own series
        return (gauge if kind == "gauge" else counter)(name, help_text, value=samples[0][1])
    if kind.startswith("counter"):
        f = counter(name, help_text, labels=labelnames)
        for labels, value in samples:
            f.add_metric([labels.get(k, "") for k in labelnames], value, created=2.0 if kind == "counter_created" else None)
        return f
    f = gauge(name, help_text, labels=labelnames, unit="seconds" if kind == "unit" else "")
    for labels, value in samples:
        f.add_metric([labels.get(k, "") for k in labelnames], value, timestamp=1.5 if kind == "timestamp" else None)
    return f


class Snapshot:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def check(case):
    caches = {accept: LineCache() for accept in ACCEPTS}
    for snapshot in case:
        for accept, cache in caches.items():
            encoder, content_type = choose_encoder(accept)
            # fresh families each time: a row family read by the library's encoder keeps to its samples
            ours = Snapshot([build(*spec) for spec in snapshot])
            library = Snapshot([build(*spec, library=True) for spec in snapshot])
            assert cache.encode(ours, encoder, content_type) == encoder(library), (accept, snapshot)


@pytest.mark.slow  # 300 cases of up to 4 snapshots x 9 formats: 3-7 s here
def test_the_cache_renders_the_librarys_bytes_over_changing_snapshots():
    assert run_cases(300, snapshots, check) >= 300


def test_one_cache_across_formats_keeps_each_formats_own_text():
    cache = LineCache()
    registry = Snapshot([build("llmcost_spend", "counter", "Spend.", [({"engine": 'a"b'}, 1.0)])])
    for accept in ACCEPTS * 2:
        encoder, content_type = choose_encoder(accept)
        assert cache.encode(registry, encoder, content_type) == encoder(registry)


def test_the_exporters_scrapes_are_the_librarys(clock, vllm, exporter_for):
    """The real collector over a minute of sampling, through metrics.render with and without the
    cache, at every step (series appear as the engine's first tokens and the windows fill)."""
    exporter = exporter_for(make_config([("vllm", vllm().url, {})], apis=["gpt-4o-mini", "gpt-4o"]))
    cache = LineCache()
    for _ in range(12):
        run_for(clock, exporter, 5)
        for accept in ACCEPTS:
            for encoding in (None, "gzip"):
                cached = metrics.render(exporter.registry, "/metrics", "", accept, encoding, cache)
                library = metrics.render(exporter.registry, "/metrics", "", accept, encoding)
                assert cached[:2] == library[:2]
                if encoding is None:
                    assert cached[2] == library[2]
    filtered = metrics.render(exporter.registry, "/metrics", "name[]=llmcost_build_info", ACCEPTS[0], None, cache)
    assert filtered == metrics.render(exporter.registry, "/metrics", "name[]=llmcost_build_info", ACCEPTS[0], None)


def counting(library):
    """The library's encoder, and a list that grows by one at each call of it (a cache miss)."""
    calls: list[int] = []

    def encoder(registry):
        calls.append(1)
        return library(registry)

    return encoder, calls


def test_only_new_text_goes_through_the_library_and_gone_series_are_forgotten():
    library, content_type = choose_encoder(ACCEPTS[0])
    encoder, calls = counting(library)
    cache = LineCache()

    def render(*series):
        calls.clear()
        registry = Snapshot([build("llmcost_spend", "gauge", "Spend.", [({"engine": e}, v) for e, v in series])])
        assert cache.encode(registry, encoder, content_type) == library(registry)
        return len(calls)

    assert render(("a", 1.0), ("b", 2.0)) >= 2  # the family's header and each series once
    assert render(("a", 3.0), ("b", 4.0)) == 0  # values change, text kept
    assert render(("a", 5.0), ("c", 6.0)) == 1  # c is new
    assert render(("a", 5.0), ("b", 6.0)) == 1  # b was gone for a scrape, so forgotten


def test_a_row_familys_text_is_kept_while_its_rows_are_unchanged():
    library, content_type = choose_encoder(ACCEPTS[0])
    encoder, calls = counting(library)
    cache = LineCache()

    def render(*series):
        calls.clear()
        ours = Snapshot([build("llmcost_spend", "row_gauge", "Spend.", [({"engine": e}, v) for e, v in series])])
        expected = library(Snapshot([build("llmcost_spend", "row_gauge", "Spend.", [({"engine": e}, v) for e, v in series],
                                           library=True)]))
        assert cache.encode(ours, encoder, content_type) == expected
        assert ours.families[0].rows is not None  # rendered from its rows: no sample was built
        return len(calls)

    assert render(("a", 1.0), ("b", 2.0)) >= 2
    assert render(("a", 1.0), ("b", 2.0)) == 0
    assert render(("a", 3.0), ("b", 4.0)) == 0
    assert render(("a", 3.0), ("c", 4.0)) == 1


@pytest.mark.parametrize("kind", ["gauge", "row_gauge"])
def test_values_of_equal_numbers_and_of_signed_zeros(kind):
    """A row family's whole text is kept while its rows are equal, and 0.0 == -0.0: a zero must not
    bring back the other zero's text."""
    cache = LineCache()
    encoder, content_type = choose_encoder(ACCEPTS[5])
    for value in (0.0, -0.0, 0, 1, 1.0, True, 2 ** 53 + 1, float(2 ** 53 + 1), -0.0, math.nan, 1e16, 10 ** 16, 0.0):
        series = [({"engine": "x"}, value), ({"engine": "y"}, -value)]
        registry = Snapshot([build("a", kind, "", series)])
        assert cache.encode(registry, encoder, content_type) == encoder(Snapshot([build("a", kind, "", series, True)])), value


def test_a_row_family_is_the_librarys_family():
    """Same constructor and add_metric calls: equal families (name, HELP, type, unit, samples), and a
    row family whose samples were read or assigned keeps to them."""
    for ours, library in ((rows.GaugeMetricFamily, GaugeMetricFamily), (rows.CounterMetricFamily, CounterMetricFamily)):
        a, b = ours("x_total", "Help.", labels=["engine", "model"]), library("x_total", "Help.", labels=["engine", "model"])
        for f in (a, b):
            f.add_metric(["e", "m"], 1.5)
            f.add_metric(("e", "n"), 0)
        assert a == b and a.rows is None  # read by ==
        a.add_metric(["e", "o"], 2.0)
        b.add_metric(["e", "o"], 2.0)
        assert a == b
        assert ours("y", "Help.", value=3.0) == library("y", "Help.", value=3.0)
        with pytest.raises(ValueError):
            ours("y", "Help.", value=3.0, labels=["a"])


def test_a_row_family_that_changes_type_or_help_keeps_no_stale_text():
    """The kept lines belong to a family's name and type (a counter's samples end in _total), its
    header to its HELP and unit too."""
    cache = LineCache()
    encoder, content_type = choose_encoder(ACCEPTS[0])
    for kind, help_text in (("row_gauge", "A."), ("row_counter", "A."), ("row_counter", "B."), ("row_gauge", "B."),
                            ("row_unit", "B."), ("row_gauge", "B.")):
        series = [({"engine": "x"}, 1.0)]
        ours = Snapshot([build("llmcost_spend", kind, help_text, series)])
        assert cache.encode(ours, encoder, content_type) == encoder(
            Snapshot([build("llmcost_spend", kind, help_text, series, library=True)])), (kind, help_text)
