"""Declarative maps from an engine's own metric names to what we count.

Each quantity lists candidate sample names in order of preference (newest engine version first);
the first one present in a scrape wins. Names are matched exactly, sample by sample, and only in
families of the right type: never by a `_total` suffix, because vLLM's
`vllm:iteration_tokens_total` is a histogram, and never on `_created` samples.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    sample: str
    match: tuple[tuple[str, str], ...] = ()  # label filters, e.g. (("source", "local_cache_hit"),)


@dataclass(frozen=True)
class EngineSchema:
    kind: str
    model_label: str
    counters: dict[str, tuple[Candidate, ...]]
    gauges: dict[str, tuple[Candidate, ...]]
    requests: Candidate | None = None  # counter of finished requests
    request_reason_label: str | None = None


def _c(*names) -> tuple[Candidate, ...]:
    return tuple(n if isinstance(n, Candidate) else Candidate(n) for n in names)


# vLLM V1 (0.11+) with fall-backs to the V0 names (same token counters, gpu_cache_usage_perc).
VLLM = EngineSchema(
    kind="vllm",
    model_label="model_name",
    counters={
        "input_tokens": _c("vllm:prompt_tokens_total"),
        "output_tokens": _c("vllm:generation_tokens_total"),
        "cached_input_tokens": _c(
            "vllm:prompt_tokens_cached_total",
            Candidate("vllm:prompt_tokens_by_source_total", (("source", "local_cache_hit"),)),
        ),
    },
    gauges={
        "requests_running": _c("vllm:num_requests_running"),
        "requests_waiting": _c("vllm:num_requests_waiting"),
        "kv_cache_usage_ratio": _c("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    },
    requests=Candidate("vllm:request_success_total"),
    request_reason_label="finished_reason",
)

SCHEMAS = {"vllm": VLLM}
