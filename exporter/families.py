"""Gauge and counter families that keep their series as rows and build the library's samples
only when asked.

A scrape built ~230 `Sample`s (a dict of labels and a namedtuple each) that the render cache
(exporter/web/linecache.py) then only looked up by name and labels (bench/README.md). These are
prometheus_client's own GaugeMetricFamily and CounterMetricFamily (same constructor, same
`add_metric`, same samples, for every reader of `samples`: the library's encoders, its WSGI app,
`get_sample_value`), whose `add_metric` appends a `(label names, label values, value)` row; the
render cache reads the rows, and `samples` is built from them on first access, by the library's
Sample type as its own `add_metric` builds it.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily as _LibraryCounter
from prometheus_client.core import GaugeMetricFamily as _LibraryGauge
from prometheus_client.samples import Sample

Row = tuple  # (label names, label values, value): one series


class _Rows:
    """The rows half: `rows` is None once `samples` was assigned or read (then the samples are the truth)."""

    _labelnames: tuple
    name: str
    sample_suffix = ""  # the sample name is the family's name plus this

    def _start(self) -> None:
        self.rows: list[Row] | None = []
        self._samples: list | None = None

    @property
    def samples(self) -> list:
        if self._samples is None:  # from now on the samples are the truth: whoever asked may change them
            self._samples, self.rows = [self.sample(row) for row in self.rows or ()], None
        return self._samples

    @samples.setter
    def samples(self, samples: list) -> None:
        self._samples, self.rows = samples, None

    def sample(self, row: Row) -> Sample:
        """The library's sample of one row, as its add_metric builds it."""
        names, values, value = row
        return Sample(self.name + self.sample_suffix, dict(zip(names, values, strict=False)), value, None)  # as the library zips

    def replace_rows(self, rows: list[Row]) -> None:
        self.rows, self._samples = rows, None


class GaugeMetricFamily(_Rows, _LibraryGauge):
    def __init__(self, name: str, documentation: str, value: float | None = None, labels=None, unit: str = ""):
        super().__init__(name, documentation, None, labels, unit)
        _constant(self, value, labels)

    def add_metric(self, labels, value: float, timestamp=None) -> None:
        if timestamp is not None or self.rows is None:  # the library's own sample (the samples are the truth)
            _LibraryGauge.add_metric(self, labels, value, timestamp)
        else:
            self.rows.append((self._labelnames, tuple(labels), value))


class CounterMetricFamily(_Rows, _LibraryCounter):
    sample_suffix = "_total"

    def __init__(self, name: str, documentation: str, value: float | None = None, labels=None, unit: str = ""):
        super().__init__(name, documentation, None, labels, None, unit)
        _constant(self, value, labels)

    def add_metric(self, labels, value: float, created=None, timestamp=None, exemplar=None) -> None:
        if created is not None or timestamp is not None or exemplar is not None or self.rows is None:
            _LibraryCounter.add_metric(self, labels, value, created, timestamp, exemplar)
        else:
            self.rows.append((self._labelnames, tuple(labels), value))


def _constant(family, value: float | None, labels) -> None:
    """The rows start empty (Metric.__init__ assigned `samples = []`); a family given a value has that
    one series, as the library's constructor gives it."""
    if labels is not None and value is not None:
        raise ValueError("Can only specify at most one of value and labels.")
    family._start()
    if value is not None:
        family.add_metric([], value)
