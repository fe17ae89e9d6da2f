#!/usr/bin/env python3
"""Write the shape of a real engine exposition (exporter/demo/shapes/*.json) for the demo's
simulated servers: every family the engine emits besides those the simulator computes itself,
with its type, HELP, label sets, histogram buckets, and its values per finished request.

    .venv/bin/python scripts/engine-shape.py vllm
    .venv/bin/python scripts/engine-shape.py sglang

The sources are real fixtures (tests/data/engines/SOURCES.md says how each was produced); the
simulators then serve the same families and buckets at the same sizes, with values that grow with
their own request counts (issue 16: benchmarks on realistic pages).
"""

from __future__ import annotations

import json
import pathlib
import sys

from prometheus_client.parser import text_string_to_metric_families

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENGINES = {
    # kind: (fixture, model label, rank label, the requests counter, families the simulator computes)
    "vllm": ("vllm/v1-0.33.0-dp2-text-0.0.4.txt", "model_name", "engine", "vllm:request_success",
             {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prompt_tokens",
              "vllm:generation_tokens", "vllm:prompt_tokens_cached", "vllm:request_success",
              "vllm:iteration_tokens_total"}),
    "sglang": ("sglang/0.5.23-tokenizer-collector-multiproc-text-0.0.4.txt", "model_name", None, "sglang:num_requests",
               {"sglang:prompt_tokens", "sglang:generation_tokens", "sglang:cached_tokens", "sglang:num_requests"}),
}


def shape(kind: str) -> dict:
    fixture, model_label, rank_label, requests_name, computed = ENGINES[kind]
    families = list(text_string_to_metric_families((ROOT / "tests" / "data" / "engines" / fixture).read_text()))
    requests = sum(s.value for f in families if f.name == requests_name for s in f.samples if s.name.endswith("_total"))
    skip = {model_label, rank_label, "le"}
    out = []
    for family in families:
        if family.name in computed or family.name.endswith("_created") or family.name.split("_")[0] in ("python", "process"):
            continue
        series: dict[tuple, dict] = {}
        for sample in family.samples:
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in skip))
            entry = series.setdefault(key, {"labels": dict(key), "value": 0.0, "count": 0.0, "sum": 0.0, "buckets": {}})
            suffix = sample.name[len(family.name):]
            if suffix == "_bucket":
                entry["buckets"][sample.labels["le"]] = entry["buckets"].get(sample.labels["le"], 0.0) + sample.value
            elif suffix in ("_count", "_sum"):
                entry[suffix[1:]] += sample.value
            else:
                entry["value"] += sample.value
        out.append({"name": family.name, "type": family.type, "help": family.documentation,
                    "labels": sorted({k for key in series for k, _ in key}),
                    "per_rank": any(rank_label in s.labels for s in family.samples),
                    "series": [_per_request(family.type, e, requests) for e in series.values()]})
    return {"kind": kind, "source": f"tests/data/engines/{fixture}", "model_label": model_label, "rank_label": rank_label,
            "fixture_requests": requests, "families": out}


def _per_request(kind: str, entry: dict, requests: float) -> dict:
    if kind == "gauge":
        return {"labels": entry["labels"], "value": entry["value"]}
    if kind == "histogram":
        count = entry["count"]
        return {"labels": entry["labels"], "count_per_request": count / requests,
                "mean": entry["sum"] / count if count else 0.0,
                "buckets": [[le, n / count if count else (1.0 if le == "+Inf" else 0.0)] for le, n in entry["buckets"].items()]}
    return {"labels": entry["labels"], "per_request": entry["value"] / requests}


def main() -> int:
    for kind in sys.argv[1:] or sorted(ENGINES):
        path = ROOT / "exporter" / "demo" / "shapes" / f"{kind}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(shape(kind), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
