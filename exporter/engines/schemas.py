"""The engine map: declarative descriptions of each inference server's metric names
(engines.yaml beside this file, plus a config file's `engine_maps:`), read by one generic parser.

Each quantity lists candidate sample names in order of preference (newest engine version first);
the first one present in a scrape wins. Names are matched exactly, sample by sample, and only in
families of the right type: never by a `_total` suffix, because vLLM's
`vllm:iteration_tokens_total` is a histogram, and never on `_created` samples.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from exporter.validation import InputError, build, load_mapping

MAP_FILE = Path(__file__).with_name("engines.yaml")
AUTO = "auto"
# prefill_seconds, decode_seconds: the engine's own per-request time in each phase (the _sum of its
# histograms), for the split of a model's spend into phases (exporter.modelsplit).
COUNTERS = ("input_tokens", "output_tokens", "cached_input_tokens", "prefill_seconds", "decode_seconds")
GAUGES = ("requests_running", "requests_waiting", "kv_cache_usage_ratio")


class EngineMapError(InputError):
    """An invalid engine map entry: `KEY: got VALUE, allowed: WHAT`."""


@dataclass(frozen=True)
class Candidate:
    sample: str  # the sample's name as served, `_total` or `_sum` included
    match: dict[str, str] = field(default_factory=dict)  # label filters, e.g. {source: local_cache_hit}
    histogram_sum: bool = False  # the _sum of a histogram (an engine with no counter for it)
    fallback: bool = False  # an estimate (prefix-cache hits), used only where nothing better is served


@dataclass(frozen=True)
class Requests:
    sample: str
    reason_label: str | None = None


@dataclass(frozen=True)
class EngineSchema:
    kind: str
    counters: dict[str, tuple[Candidate, ...]]
    gauges: dict[str, tuple[Candidate, ...]]
    model_label: str = ""  # "": one model per server
    requests: Requests | None = None
    input_includes_cached: bool = True
    description: str = ""
    source: str = ""
    path: str = "/metrics"
    port: int = 0
    sum_over: tuple[str, ...] = ()

    @property
    def request_reason_label(self) -> str | None:
        return self.requests.reason_label if self.requests else None


@dataclass(frozen=True)
class _MapEntry:
    """One engine as written in engines.yaml or engine_maps: (candidates may be plain names)."""
    counters: dict[str, list[Candidate]]
    description: str = ""
    source: str = ""
    model_label: str | None = None
    sum_over: list[str] = field(default_factory=list)
    input_includes_cached: bool = True
    requests: Requests | None = None
    gauges: dict[str, list[Candidate]] = field(default_factory=dict)
    path: str = "/metrics"
    port: int = 0


def parse_maps(raw: dict, where: str = "engine_maps", error=EngineMapError) -> dict[str, EngineSchema]:
    """Engine maps from their YAML form: kind -> EngineSchema. Raises `error` naming the key."""
    if not isinstance(raw, dict):
        raise error(where, f"got {type(raw).__name__}, allowed: a mapping of engine kind to its map")
    maps = {}
    for kind, entry in raw.items():
        key = f"{where}.{kind}"
        if not isinstance(kind, str) or not kind or kind == AUTO:
            raise error(key, f"got {kind!r}, allowed: an engine kind name other than {AUTO!r}")
        maps[kind] = _schema(kind, build(_MapEntry, _candidates_as_mappings(entry), key, error), key, error)
    return maps


def _candidates_as_mappings(entry):
    """Plain sample names become {sample: name}, so one typed builder reads both forms."""
    if not isinstance(entry, dict):
        return entry
    out = dict(entry)
    for section in ("counters", "gauges"):
        quantities = out.get(section)
        if isinstance(quantities, dict):
            out[section] = {q: [{"sample": c} if isinstance(c, str) else c for c in cs] if isinstance(cs, list) else cs
                            for q, cs in quantities.items()}
    return out


def _schema(kind: str, entry: _MapEntry, key: str, error) -> EngineSchema:
    for section, allowed in (("counters", COUNTERS), ("gauges", GAUGES)):
        for quantity, candidates in getattr(entry, section).items():
            if quantity not in allowed:
                raise error(f"{key}.{section}.{quantity}", f"unknown quantity, allowed: {', '.join(allowed)}")
            if not candidates:
                raise error(f"{key}.{section}.{quantity}", "got [], allowed: one or more candidate samples")
    for needed in ("input_tokens", "output_tokens"):
        if needed not in entry.counters:
            raise error(f"{key}.counters.{needed}", "required key is missing")
    return EngineSchema(
        kind=kind, counters={q: tuple(c) for q, c in entry.counters.items()},
        gauges={q: tuple(c) for q, c in entry.gauges.items()}, model_label=entry.model_label or "",
        requests=entry.requests, input_includes_cached=entry.input_includes_cached, description=entry.description,
        source=entry.source, path=entry.path, port=entry.port, sum_over=tuple(entry.sum_over))


@functools.lru_cache(maxsize=1)
def bundled() -> dict[str, EngineSchema]:
    """The maps shipped in engines.yaml (a broken file is a bug of ours: it raises)."""
    return parse_maps(load_mapping(str(MAP_FILE), "engines.yaml", EngineMapError), "engines.yaml")


def all_maps(overrides: dict[str, EngineSchema] | None = None) -> dict[str, EngineSchema]:
    """The bundled maps with a config's own over them (an override of a bundled kind keeps its
    place in the detection order; new kinds are tried after the bundled ones)."""
    return {**bundled(), **(overrides or {})}


def detect(found_samples: set[str], maps: dict[str, EngineSchema]) -> EngineSchema | None:
    """The map whose input and output token samples are served: the first with both, else the
    first with one of them (an engine that has served no output yet may not show that counter)."""
    best, best_score = None, 0
    for schema in maps.values():
        score = sum(any(_served(c.sample, found_samples) for c in schema.counters[q])
                    for q in ("input_tokens", "output_tokens"))
        if score > best_score:
            best, best_score = schema, score
    return best


def _served(sample: str, found: set[str]) -> bool:
    return sample in found or sample.replace(":", "_") in found  # OpenMetrics underscores escaping

