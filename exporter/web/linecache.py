"""The exposition's text, with what does not change between scrapes kept from the last one.

Most of a scrape's render was prometheus_client's encoder escaping and joining the same label text
again (bench/README.md). Here each family's header lines and each sample's `name{labels} ` are
rendered once by the library's own encoder (the one content negotiation chose, on a registry of
that one family) and kept while the series lasts; a scrape then only formats the values, with the
library's floatToGoString. The bytes are the library's by construction, and tests/test_linecache.py
compares them over changing snapshots in both formats.

The collector's families (exporter/families.py) hold their series as `(label names, label values,
value)` rows: for those the cache keys each series by its rows' labels, never building the library's
samples, and keeps the family's whole text (header and lines) while its rows are unchanged, so a
family whose values did not move since the last scrape costs one list comparison.

Whatever this does not model (timestamps, exemplars, native histograms, the text format's
`_created`/`_gsum`/`_gcount` gauges) is rendered by the library itself, whole.
"""

from __future__ import annotations

import copy
import threading

from prometheus_client.utils import floatToGoString

# The text format moves these samples into gauges of their own after the family's samples.
_TEXT_MOVED = ("_created", "_gsum", "_gcount")
_VALUES_KEPT = 10_000  # value texts kept before starting afresh
_ENCODINGS_KEPT = 4  # content types with a cache at once; a scraper that varies its Accept costs at most this


class _Families:
    """A collector of already-collected families, for the library's encoders."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


class _Encoding:
    """The cache of one encoder (one content type): header text per family and line prefix per
    series, both as rendered by the last scrape that saw them."""

    def __init__(self, encoder, text_format: bool):
        self.encoder, self.text_format = encoder, text_format
        self.eof = self._library([]).decode()  # "# EOF\n" for OpenMetrics, "" for the text format
        self.headers: dict = {}
        self.prefixes: dict = {}  # (sample name, label items) -> `name{labels} `, of library families
        self.families: dict = {}  # (family name, type) -> _FamilyText, of row families (exporter.families)

    def _library(self, families) -> bytes:
        return self.encoder(_Families(families))

    def header(self, metric) -> str:
        key = (metric.name, metric.type, metric.documentation, metric.unit)
        text = self.headers.get(key)
        if text is None:
            text = self._library([_alone(metric, [])]).decode()[:-len(self.eof) or None]
        return text

    def prefix(self, metric, sample, value: str, header: str | None = None) -> str | None:
        """`name{labels} ` of one sample, or None where the library's line is not that plus the value.
        `header`: the family's header text, where the caller has it."""
        header = self.header(metric) if header is None else header
        line = self._library([_alone(metric, [sample])]).decode()[len(header):-len(self.eof) or None]
        if not line.endswith(" " + value + "\n"):
            return None
        return line[:-len(value) - 1]


def _alone(metric, samples):
    """The family with only these samples (the same class, name, HELP, type and unit)."""
    alone = copy.copy(metric)
    alone.samples = samples
    return alone


class _FamilyText:
    """A row family's text (header and sample lines) as the last scrape rendered it, and each series' prefix."""

    __slots__ = ("documentation", "unit", "header", "rows", "text", "prefixes", "zero")

    def __init__(self, metric, header: str, rows: list, text: str, prefixes: dict, zero: bool):
        self.documentation, self.unit, self.header = metric.documentation, metric.unit, header
        self.rows, self.text, self.prefixes, self.zero = rows, text, prefixes, zero


class LineCache:
    """Renders a registry as an encoder of prometheus_client would, reusing the text of unchanged
    families and series. Safe to share between the server's threads: each render builds new maps
    from the old ones and installs them when done (a lost race only costs a re-render)."""

    def __init__(self):
        self._encodings: dict[str, _Encoding] = {}
        self._lock = threading.Lock()
        # floatToGoString of values seen lately: equal non-zero numbers have the same text
        self._values: dict = {}

    def encode(self, registry, encoder, content_type: str) -> bytes:
        families = list(registry.collect())
        encoding = self._encoding(encoder, content_type)
        headers: dict = {}
        seen = _Seen()
        out = []
        if len(self._values) > _VALUES_KEPT:
            self._values.clear()
        for metric in families:
            rows = getattr(metric, "rows", None)  # exporter.families: the series as rows, no samples built
            if rows is None:
                header = encoding.header(metric)
                headers[(metric.name, metric.type, metric.documentation, metric.unit)] = header
                out.append(header)
            text = self._rows(encoding, metric, rows, seen) if rows is not None else \
                self._samples(encoding, metric, seen)
            if text is None:  # a line this cache does not model: the library renders it all
                return encoder(_Families(families))
            out.append(text)
        out.append(encoding.eof)
        # only what this scrape saw: gone series go
        encoding.headers, encoding.prefixes, encoding.families = headers, seen.prefixes, seen.families
        return "".join(out).encode("utf-8")

    def _value(self, number) -> str:
        value = self._values.get(number) if number else None  # zero: not looked up, its sign matters
        if value is None:
            value = self._values[number] = floatToGoString(number)
        return value

    def _rows(self, encoding: _Encoding, metric, rows: list, seen: _Seen) -> str | None:
        """A row family's header and lines: the last scrape's text where its rows are equal (and hold
        no zero, whose sign `==` does not see), else each row's kept prefix and its value's text."""
        key = (metric.name, metric.type)  # what its sample names follow from
        last = encoding.families.get(key)
        if last is not None and last.documentation == metric.documentation and last.unit == metric.unit:
            header = last.header
            if not last.zero and last.rows == rows:
                seen.families[key] = last
                return last.text
        else:
            header = encoding.header(metric)
        known = last.prefixes if last is not None else {}
        prefixes: dict = {}
        parts: list[str] = []
        zero = False
        for row in rows:
            names, values, number = row
            if number is None:
                return None
            zero = zero or not number
            value = self._value(number)
            prefix = known.get((names, values)) or encoding.prefix(metric, metric.sample(row), value, header)
            if prefix is None:
                return None
            prefixes[(names, values)] = prefix
            parts += (prefix, value, "\n")
        text = header + "".join(parts)
        seen.families[key] = _FamilyText(metric, header, list(rows), text, prefixes, zero)
        return text

    def _samples(self, encoding: _Encoding, metric, seen: _Seen) -> str | None:
        """A library family's lines: each sample's kept `name{labels} ` and its value's text."""
        known = encoding.prefixes
        moved = {metric.name + s for s in _TEXT_MOVED} if encoding.text_format else ()
        parts: list[str] = []
        for sample in metric.samples:
            name, labels, number, timestamp, exemplar, native = sample
            if number is None or timestamp is not None or exemplar is not None or native is not None \
                    or name in moved:  # a line that is not `name{labels} value` in the family's place
                return None
            value = self._value(number)
            key = (name, tuple(labels.items()))
            prefix = known.get(key) or encoding.prefix(metric, sample, value)
            if prefix is None:
                return None
            seen.prefixes[key] = prefix
            parts += (prefix, value, "\n")
        return "".join(parts)

    def _encoding(self, encoder, content_type: str) -> _Encoding:
        with self._lock:
            encoding = self._encodings.get(content_type)
            if encoding is None:
                if len(self._encodings) >= _ENCODINGS_KEPT:
                    self._encodings.pop(next(iter(self._encodings)))
                encoding = _Encoding(encoder, not content_type.startswith("application/openmetrics-text"))
                self._encodings[content_type] = encoding
            return encoding


class _Seen:
    """What one scrape rendered, to be kept for the next."""

    def __init__(self):
        self.prefixes: dict = {}
        self.families: dict[tuple, _FamilyText] = {}
