"""Turn one engine /metrics body into per-model readings, using an EngineSchema.

The parser is chosen by Content-Type (OpenMetrics for vLLM's Rust frontend, the classic text
format otherwise), and the whole body is parsed before anything is used: a garbled scrape changes
nothing.

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

from exporter.engines.schemas import Candidate, EngineSchema

_COUNTER_TYPES = ("counter", "unknown", "untyped")
_GAUGE_TYPES = ("gauge", "unknown", "untyped")
UNKNOWN_MODEL = "unknown"


class ParseError(Exception):
    reason = "parse"


@dataclass
class ModelReading:
    counters: dict[str, float] = field(default_factory=dict)
    requests: dict[str, float] = field(default_factory=dict)  # by finished reason
    gauges: dict[str, float] = field(default_factory=dict)


def is_openmetrics(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/openmetrics-text"


def parse_exposition(content_type: str, text: str, schema: EngineSchema) -> dict[str, ModelReading]:
    found = _parse_samples(content_type, text, _wanted_samples(schema))
    models: dict[str, ModelReading] = {}

    def model(labels) -> ModelReading:
        return models.setdefault(labels.get(schema.model_label) or UNKNOWN_MODEL, ModelReading())

    for quantity, candidates in schema.counters.items():
        for labels, value in _first_present(found, candidates, _COUNTER_TYPES):
            _check_counter(quantity, value)
            reading = model(labels)
            reading.counters[quantity] = reading.counters.get(quantity, 0.0) + value
    for quantity, candidates in schema.gauges.items():
        for labels, value in _first_present(found, candidates, _GAUGE_TYPES):
            if math.isfinite(value):
                reading = model(labels)
                reading.gauges[quantity] = reading.gauges.get(quantity, 0.0) + value
    if schema.requests:
        for labels, value in _first_present(found, (schema.requests,), _COUNTER_TYPES):
            _check_counter("requests", value)
            reason = labels.get(schema.request_reason_label or "", "") or "unknown"
            reading = model(labels)
            reading.requests[reason] = reading.requests.get(reason, 0.0) + value
    if not any(r.counters for r in models.values()):
        raise ParseError(f"no {schema.kind} token counters in the exposition")
    # The KV-cache usage is a ratio per engine core: average, do not sum, across the engine label.
    _average_kv(found, schema, models)
    return models


def _parse_samples(content_type: str, text: str, wanted: dict[str, str]) -> dict[str, list[tuple[str, dict, float]]]:
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


def _collect(parser, text: str, wanted: dict[str, str]) -> dict[str, list[tuple[str, dict, float]]]:
    found: dict[str, list[tuple[str, dict, float]]] = {}
    for family in parser(text):
        for sample in family.samples:
            name = wanted.get(sample.name)
            if name is not None:
                found.setdefault(name, []).append((family.type, sample.labels, sample.value))
    return found


def _complete_openmetrics(text: str) -> bool:
    return text.rstrip("\n").rsplit("\n", 1)[-1].strip() == "# EOF"


def _wanted_samples(schema: EngineSchema) -> dict[str, str]:
    """Sample name as served (schema name, or with ':' escaped to '_') -> schema name."""
    names = {c.sample for cs in (*schema.counters.values(), *schema.gauges.values()) for c in cs}
    if schema.requests:
        names.add(schema.requests.sample)
    return {**{n.replace(":", "_"): n for n in names}, **{n: n for n in names}}


def _first_present(found, candidates: tuple[Candidate, ...], types) -> list[tuple[dict, float]]:
    for candidate in candidates:
        rows = [(labels, value) for ftype, labels, value in found.get(candidate.sample, ())
                if ftype in types and all(labels.get(k) == v for k, v in candidate.match)]
        if rows:
            return rows
    return []


def _check_counter(quantity: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ParseError(f"counter {quantity} has impossible value {value}")


def _average_kv(found, schema, models) -> None:
    candidates = schema.gauges.get("kv_cache_usage_ratio")
    if not candidates:
        return
    counts: dict[str, int] = {}
    for labels, value in _first_present(found, candidates, _GAUGE_TYPES):
        if math.isfinite(value):
            name = labels.get(schema.model_label) or UNKNOWN_MODEL
            counts[name] = counts.get(name, 0) + 1
    for name, n in counts.items():
        models[name].gauges["kv_cache_usage_ratio"] /= n
