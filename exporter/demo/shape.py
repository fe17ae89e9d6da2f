"""The rest of a real engine's exposition, for the simulated servers: every family the engine
emits besides the ones the simulator computes, from a shape written by scripts/engine-shape.py
out of a real fixture (its names, HELP, label sets and buckets as the engine served them).

Values grow with the server's finished requests at the fixture's rate per request: counters by
their value per request, histograms by their count per request, each bucket at the fixture's
share of the count (so buckets stay cumulative and every series only grows); gauges keep the
fixture's value. The point is realistic size and shape (benchmarks, the demo), not realistic
latencies.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

SHAPES = pathlib.Path(__file__).parent / "shapes"


class EngineShape:
    def __init__(self, kind: str):
        data = json.loads((SHAPES / f"{kind}.json").read_text())
        self.model_label, self.rank_label = data["model_label"], data["rank_label"]
        self.families = data["families"]

    def render(self, model: str, requests_per_rank: dict[str, int], created: float):
        """Metric families for one model; requests_per_rank: rank label value -> finished requests
        (one entry, any key, for an engine without a rank label)."""
        for spec in self.families:
            ranks = requests_per_rank if spec["per_rank"] and self.rank_label else {"": sum(requests_per_rank.values())}
            names = [self.model_label] + ([self.rank_label] if ranks.keys() != {""} else []) + spec["labels"]
            family = _new_family(spec, names)
            for rank, requests in ranks.items():
                for series in spec["series"]:
                    values = [model] + ([rank] if rank else []) + [series["labels"].get(k, "") for k in spec["labels"]]
                    _add(family, spec["type"], dict(zip(names, values, strict=True)), series, requests, created)
            yield family


def _new_family(spec: dict, labels: list[str]) -> Any:  # one of the three *MetricFamily classes
    kind = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}[spec["type"]]
    return kind(spec["name"], spec["help"], labels=labels)


def _add(family: Any, kind: str, labels: dict[str, str], series: dict, requests: int, created: float) -> None:
    values = list(labels.values())
    if kind == "gauge":
        family.add_metric(values, series["value"])
    elif kind == "counter":
        family.add_metric(values, series["per_request"] * requests, created=created)
    else:
        count = round(series["count_per_request"] * requests)
        buckets = [(le, round(share * count)) for le, share in series["buckets"]]
        family.add_metric(values, buckets, sum_value=series["mean"] * count)
        family.add_sample(family.name + "_created", labels, created)
