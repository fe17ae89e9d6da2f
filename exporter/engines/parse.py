"""Turn one engine /metrics body into per-model readings, using an EngineSchema.

Only the lines the engine map reads are parsed (exporter/engines/select.py), after every line
passed a structural check: a garbled scrape changes nothing. Auto-detection and error messages
parse everything, by the parser the Content-Type names (OpenMetrics for vLLM's Rust frontend, the
classic text format otherwise).

Names are matched with ':' and '_' as one: OpenMetrics "underscores" escaping turns
`vllm:prompt_tokens_total` into `vllm_prompt_tokens_total`. prometheus_client 0.22+ escapes the
sample lines but not `# TYPE` (prometheus/client_python#1177), which its own OpenMetrics parser
then rejects; such a body, if complete (it ends with `# EOF`), is read again with the text parser,
where its samples are untyped, which counters accept. An OpenMetrics body without `# EOF` is
truncated and always rejected: a cut-off counter would read as a reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.engines import select
from exporter.engines.schemas import Candidate, EngineSchema

_COUNTER_TYPES = ("counter", "unknown", "untyped")
_HISTOGRAM_TYPES = ("histogram", "summary", "gaugehistogram", "unknown", "untyped")
_GAUGE_TYPES = ("gauge", "unknown", "untyped")
CACHED_PART = ("__part", "cached")  # marks cached tokens added to input_tokens ("__" names are no engine's)
UNKNOWN_MODEL = "unknown"


class ParseError(Exception):
    reason = "parse"


class UnknownEngineError(ParseError):
    reason = "unknown_engine"


SeriesLabels = tuple[tuple[str, str], ...]  # a series' labels but the model's (and the reason's), sorted


@dataclass
class ModelReading:
    """One model's samples in one scrape. Counters stay per series (every rank, source, ...): they
    are summed only after each series' resets are accounted for (exporter.series)."""
    series: dict[tuple[str, str, SeriesLabels], float] = field(default_factory=dict)  # (kind, quantity, labels)
    created: dict[tuple[str, str, SeriesLabels], float] = field(default_factory=dict)  # its _created, where exposed
    gauges: dict[str, float] = field(default_factory=dict)
    rejected: int = 0  # series whose value is not a finite count (NaN, inf, negative): left out
    cached_estimated: bool = False  # cached input from prefix-cache hits, not per-request counts

    @property
    def counters(self) -> dict[str, float]:
        """Token counters summed over the model's series."""
        return _sum_by_quantity(self.series, "counter")

    @property
    def requests(self) -> dict[str, float]:
        """Finished requests by reason, summed over the model's series."""
        return _sum_by_quantity(self.series, "requests")


def _sum_by_quantity(series: dict, kind: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (k, quantity, _), value in series.items():
        if k == kind:
            out[quantity] = out.get(quantity, 0.0) + value
    return out


def is_openmetrics(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/openmetrics-text"


def parse_exposition(content_type: str, text: str, schema: EngineSchema, selective: bool = True) -> dict[str, ModelReading]:
    """Per-model readings. `selective=False` parses every line instead of only those the map reads
    (the same readings, slower: the benchmark's and the tests' reference)."""
    names = _wanted_samples(schema)
    found = _parse_selected(content_type, text, names) if selective else _parse_samples(content_type, text, names)
    readings = _Readings(schema)
    readings.read_counters(found)
    readings.read_gauges(found)
    readings.read_requests(found)
    if not any(r.counters for r in readings.models.values()):
        wanted = [c.sample for q in ("input_tokens", "output_tokens") for c in schema.counters[q]]
        raise ParseError(f"no {schema.kind} token counters ({', '.join(wanted)}) in the exposition; "
                         f"it serves {describe_families(content_type, text)}")
    # The KV-cache usage is a ratio per engine core: average, do not sum, across the engine label.
    _average_kv(found, schema, readings.models)
    return readings.models


class _Readings:
    """The per-model readings of one exposition, filled from the samples the schema names."""

    def __init__(self, schema: EngineSchema):
        self.schema = schema
        self.models: dict[str, ModelReading] = {}

    def model(self, labels) -> ModelReading:
        name = labels.get(self.schema.model_label) if self.schema.model_label else None
        return self.models.setdefault(name or UNKNOWN_MODEL, ModelReading())

    def add_counter(self, kind: str, quantity: str, labels: dict, value: float, created: float | None,
                    *skip: str) -> None:
        reading = self.model(labels)
        if not math.isfinite(value) or value < 0:  # one impossible series is left out, not the scrape
            reading.rejected += 1
            return
        key = (kind, quantity, _series_labels(labels, self.schema.model_label, *skip))
        reading.series[key] = reading.series.get(key, 0.0) + value
        if created is not None:
            reading.created[key] = created

    def read_counters(self, found) -> None:
        for quantity, candidates in self.schema.counters.items():
            winner, rows = _first_present(found, candidates)
            for labels, value, created in rows:
                self.add_counter("counter", quantity, labels, value, created)
                if quantity == "cached_input_tokens":
                    self.model(labels).cached_estimated = bool(winner and winner.fallback)
                    if not self.schema.input_includes_cached:  # input = prompt (uncached only) + cached
                        marked = {**labels, CACHED_PART[0]: CACHED_PART[1]}
                        self.add_counter("counter", "input_tokens", marked, value, created)

    def read_gauges(self, found) -> None:
        for quantity, candidates in self.schema.gauges.items():
            for labels, value, _ in _first_present(found, candidates, gauges=True)[1]:
                if math.isfinite(value):
                    reading = self.model(labels)
                    reading.gauges[quantity] = reading.gauges.get(quantity, 0.0) + value

    def read_requests(self, found) -> None:
        if not self.schema.requests:
            return
        reason_label = self.schema.request_reason_label or ""
        for labels, value, created in _first_present(found, (Candidate(self.schema.requests.sample),))[1]:
            self.add_counter("requests", labels.get(reason_label, "") or "unknown", labels, value, created, reason_label)


def _series_labels(labels: dict, *skip: str) -> SeriesLabels:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in skip))


def _parse_samples(content_type: str, text: str, wanted: dict[str, str]) -> dict[str, list[tuple]]:
    """The wanted samples, by the parser the Content-Type names; an OpenMetrics body that
    prometheus_client cannot read (vLLM's escaped names) is read again as text."""
    try:
        return _collect(parse_openmetrics if is_openmetrics(content_type) else parse_text, text, wanted)
    except Exception as err:  # the parsers raise ValueError, IndexError, ... on bad input
        if not (is_openmetrics(content_type) and _complete_openmetrics(text)):
            raise ParseError(f"unparseable exposition: {type(err).__name__}: {err}"[:300]) from None
        try:
            return _collect(parse_text, text, wanted)
        except Exception:
            raise ParseError(f"unparseable exposition: {type(err).__name__}: {err}"[:300]) from None


def _parse_selected(content_type: str, text: str, wanted: dict[str, str]) -> dict[str, list[tuple]]:
    """The wanted samples, parsed from only their own lines (exporter/engines/select.py). Those
    lines are read with the text parser whatever the format: it reads OpenMetrics' samples too,
    and the strict OpenMetrics parser would refuse a histogram family cut down to its _sum."""
    if is_openmetrics(content_type) and not _complete_openmetrics(text):
        raise ParseError("unparseable exposition: OpenMetrics without # EOF (truncated)")
    samples, families = select.served_names(set(wanted))
    try:
        return _collect(parse_text, select.select_lines(text, samples, families), wanted)
    except Exception as err:  # GarbledError, or what the parser raises (ValueError, IndexError, ...)
        raise ParseError(f"unparseable exposition: {type(err).__name__}: {err}"[:300]) from None


def _collect(parser, text: str, wanted: dict[str, str]) -> dict[str, list[tuple[str, dict, float, float | None]]]:
    """schema name -> (family type, labels, value, created) of every wanted sample. `created`
    is the series' `_created` sample where the engine exposes one (prometheus_client does: inside
    the counter's family in OpenMetrics, as a gauge family of its own in the text format)."""
    families = list(parser(text))
    created = {(s.name[:-len("_created")], _frozen(s.labels)): s.value
               for family in families for s in family.samples if s.name.endswith("_created")}
    found: dict[str, list[tuple[str, dict, float, float | None]]] = {}
    for family in families:
        for sample in family.samples:
            name = wanted.get(sample.name)
            if name is not None:
                born = created.get((_stem(sample.name), _frozen(sample.labels)))
                found.setdefault(name, []).append((family.type, sample.labels, sample.value, born))
    return found


def _stem(sample_name: str) -> str:
    """The name a counter's or histogram's _created sample is built on: x_total and x_sum -> x."""
    for suffix in ("_total", "_sum"):
        if sample_name.endswith(suffix):
            return sample_name[:-len(suffix)]
    return sample_name


def _frozen(labels: dict) -> frozenset:
    return frozenset(labels.items())


def _complete_openmetrics(text: str) -> bool:
    return text.rstrip("\n").rsplit("\n", 1)[-1].strip() == "# EOF"


def _wanted_samples(schema: EngineSchema) -> dict[str, str]:
    """Sample name as served (schema name, or with ':' escaped to '_') -> schema name."""
    names = {c.sample for cs in (*schema.counters.values(), *schema.gauges.values()) for c in cs}
    if schema.requests:
        names.add(schema.requests.sample)
    return {**{n.replace(":", "_"): n for n in names}, **{n: n for n in names}}


def _first_present(found, candidates: tuple[Candidate, ...], gauges: bool = False):
    """(the candidate that matched, its rows (labels, value, created)); (None, []) if none did."""
    for candidate in candidates:
        types = _GAUGE_TYPES if gauges else _HISTOGRAM_TYPES if candidate.histogram_sum else _COUNTER_TYPES
        rows = [(labels, value, created) for ftype, labels, value, created in found.get(candidate.sample, ())
                if ftype in types and all(labels.get(k) == v for k, v in candidate.match.items())]
        if rows:
            return candidate, rows
    return None, []


def _average_kv(found, schema, models) -> None:
    candidates = schema.gauges.get("kv_cache_usage_ratio")
    if not candidates:
        return
    counts: dict[str, int] = {}
    for labels, value, _ in _first_present(found, candidates, gauges=True)[1]:
        if math.isfinite(value):
            name = labels.get(schema.model_label) or UNKNOWN_MODEL
            counts[name] = counts.get(name, 0) + 1
    for name, n in counts.items():
        models[name].gauges["kv_cache_usage_ratio"] /= n


def sample_names(content_type: str, text: str) -> set[str]:
    """Every sample name the exposition serves (what auto-detection matches engine maps against)."""
    names: set[str] = set()
    try:
        for family in (parse_openmetrics if is_openmetrics(content_type) else parse_text)(text):
            names.update(s.name for s in family.samples)
    except Exception:  # unparseable: no names, and the scrape's own parse reports why
        if is_openmetrics(content_type) and _complete_openmetrics(text):
            return sample_names("text/plain", text)
    return names


def describe_families(content_type: str, text: str, limit: int = 12) -> str:
    """'N samples: a, b, ...' for an error message: what the endpoint serves instead."""
    names = sorted(sample_names(content_type, text))
    if not names:
        return "no Prometheus samples"
    shown = ", ".join(names[:limit])
    return f"{len(names)} sample names: {shown}" + (", ..." if len(names) > limit else "")
