"""A fleet's history with known totals, for `report` at scale (bench/report_scale.py) and in the
tests (tests/test_report_backends.py): what a long-running Prometheus would hold after the
exporters and the project's rules ran for days.

Per node: 2 engines (the same configured names on every node, as a DaemonSet's config gives), 3
models each, 3 compared APIs. Rates are constant within each hour, vary by node, engine, model and
hour of day, so every total has a closed form (`expected`). Two shapes of the same history:

- `recorded`: the rules' hourly series (`engine_model:llmcost_tokens:increase1h`, ...), one sample
  per hour at the end of the hour it covers (what a rule group evaluated every hour writes);
- `raw`: the exporter's counters and gauges at a scrape step.

Either is written as VictoriaMetrics import lines (`/api/v1/import`) or as OpenMetrics text for
`promtool tsdb create-blocks-from openmetrics`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

ENGINES = {"vllm-llama": 1800.0, "vllm-qwen": 700.0}  # engine -> capacity tokens/s on one node
MODELS = ("base", "chat", "code")
APIS = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6), "claude-haiku": (0.8, 4.0)}  # $/1M input, output
INPUT_SHARE = 0.75
ENGINE_HOURLY = {"vllm-llama": 4.10, "vllm-qwen": 2.05}  # each engine's spend per hour on one node
UNALLOCATED_HOURLY = 1.3
HOUR = 3600


@dataclass(frozen=True)
class Fleet:
    nodes: int
    hours: int
    end: int  # Unix seconds, on the hour: the last hour ends here

    @property
    def start(self) -> int:
        return self.end - self.hours * HOUR


def instance(n: int) -> str:
    return f"gpu-node-{n:04d}:9848"


def load(n: int, engine: str, model: int, hour: int) -> float:
    """Utilization of the engine's capacity by one model in one hour: a day shape, per node."""
    day = 1.0 if 8 <= hour % 24 < 20 else 0.35
    return day * (0.04 + 0.01 * ((n * 7 + model * 3 + len(engine)) % 9))


def tokens(n: int, engine: str, model: int, hour: int) -> float:
    return round(load(n, engine, model, hour) * ENGINES[engine] * HOUR)


def model_weights(n: int, engine: str, hour: int) -> list[float]:
    """How the engine's spend splits over its models (the exporter's token-weighted work): output
    tokens weigh 3x, so a model's share is not its share of tokens."""
    return [tokens(n, engine, m, hour) * (INPUT_SHARE + 3 * (1 - INPUT_SHARE)) * (1 + 0.1 * m) for m in range(len(MODELS))]


def api_equivalent(n: int, engine: str, model: int, hour: int, api: str) -> float:
    price_in, price_out = APIS[api]
    t = tokens(n, engine, model, hour)
    return (t * INPUT_SHARE * price_in + t * (1 - INPUT_SHARE) * price_out) / 1e6


def gpu_busy(n: int, engine: str, hour: int) -> float:
    return min(1.0, 0.1 + sum(load(n, engine, m, hour) for m in range(len(MODELS))))


def hourly(fleet: Fleet, n: int, h: int) -> Iterator[tuple[str, dict, float]]:
    """(recorded name, labels, value) of node n in hour h (0 = the fleet's first hour)."""
    node = {"job": "llmcost", "instance": instance(n)}
    hour = (fleet.start // HOUR + h) % 24
    yield "instance:llmcost_spend:increase1h", {**node, "currency": "USD"}, sum(ENGINE_HOURLY.values()) + UNALLOCATED_HOURLY
    yield "instance:llmcost_unallocated_spend:increase1h", {**node, "currency": "USD"}, UNALLOCATED_HOURLY
    for engine, capacity in ENGINES.items():
        e = {**node, "engine": engine}
        spend = ENGINE_HOURLY[engine]
        weights = model_weights(n, engine, hour)
        yield "engine:llmcost_engine_spend:increase1h", {**e, "currency": "USD"}, spend
        yield "engine:llmcost_capacity_tokens_per_second:max1h", e, capacity
        yield "engine:llmcost_engine_gpu_utilization:avg1h", e, gpu_busy(n, engine, hour)
        for m, model in enumerate(MODELS):
            em = {**e, "model": model}
            yield "engine_model:llmcost_tokens:increase1h", em, tokens(n, engine, m, hour)
            yield "engine_model:llmcost_model_spend:increase1h", {**em, "currency": "USD"}, spend * weights[m] / sum(weights)
            for api in APIS:
                yield ("engine_model_api:llmcost_api_equivalent_spend:increase1h", {**em, "api": api, "currency": "USD"},
                       api_equivalent(n, engine, m, hour, api))


RAW_NAMES = {  # recorded name -> (raw metric, kind, extra labels per series)
    "instance:llmcost_spend:increase1h": ("llmcost_spend_total", "counter", [{"component": "instance"}]),
    "instance:llmcost_unallocated_spend:increase1h": ("llmcost_unallocated_spend_total", "counter", [{}]),
    "engine:llmcost_engine_spend:increase1h": ("llmcost_engine_spend_total", "counter", [{}]),
    "engine:llmcost_capacity_tokens_per_second:max1h": ("llmcost_capacity_tokens_per_second", "gauge",
                                                                   [{"source": "configured"}]),
    "engine:llmcost_engine_gpu_utilization:avg1h": ("llmcost_engine_gpu_utilization_ratio", "gauge", [{}]),
    "engine_model:llmcost_tokens:increase1h": ("llmcost_tokens_total", "counter",
                                               [{"direction": "input"}, {"direction": "output"}]),
    "engine_model:llmcost_model_spend:increase1h": ("llmcost_model_spend_total", "counter",
                                                    [{"phase": "prefill"}, {"phase": "decode"}]),
    "engine_model_api:llmcost_api_equivalent_spend:increase1h": ("llmcost_api_equivalent_spend_total", "counter", [{}]),
}
SPLIT = {"input": INPUT_SHARE, "output": 1 - INPUT_SHARE, "prefill": 0.3, "decode": 0.7}


def recorded(fleet: Fleet, n: int) -> Iterator[tuple[dict, list[int], list[float]]]:
    """Node n's recorded series: (labels with __name__, timestamps ms, values)."""
    series: dict[tuple, tuple[dict, list[int], list[float]]] = {}
    for h in range(fleet.hours):
        t = (fleet.start + (h + 1) * HOUR) * 1000
        for name, labels, value in hourly(fleet, n, h):
            key = (name, *labels.values())
            entry = series.setdefault(key, ({"__name__": name, **labels}, [], []))
            entry[1].append(t)
            entry[2].append(value)
    yield from series.values()


def raw(fleet: Fleet, n: int, step: int) -> Iterator[tuple[dict, list[int], list[float]]]:
    """Node n's exporter series at a scrape step: counters growing linearly within each hour."""
    per_hour = [list(hourly(fleet, n, h)) for h in range(fleet.hours)]
    for i, (name, labels, _) in enumerate(per_hour[0]):
        metric, kind, splits = RAW_NAMES[name]
        for extra in splits:
            part = next((SPLIT[v] for v in extra.values() if v in SPLIT), 1.0)
            stamps, values, total = [], [], 0.0
            for h, rows in enumerate(per_hour):
                value = rows[i][2]
                for s in range(0, HOUR, step):
                    stamps.append((fleet.start + h * HOUR + s) * 1000)
                    values.append(value if kind == "gauge" else total + value * part * s / HOUR)
                total += value * part
            if kind == "counter":
                stamps.append(fleet.end * 1000)
                values.append(total)
            yield {"__name__": metric, **labels, **extra}, stamps, values


def import_lines(series: Iterator[tuple[dict, list[int], list[float]]]) -> Iterator[bytes]:
    """VictoriaMetrics' JSON line format (/api/v1/import)."""
    for labels, stamps, values in series:
        yield (json.dumps({"metric": labels, "values": values, "timestamps": stamps}, separators=(",", ":")) + "\n").encode()


def openmetrics(series: Iterator[tuple[dict, list[int], list[float]]]) -> Iterator[str]:
    """OpenMetrics text for promtool (seconds); the caller writes `# EOF` after all series."""
    for labels, stamps, values in series:
        name = labels["__name__"]
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
        for t, v in zip(stamps, values, strict=True):
            yield f"{name}{{{label_text}}} {v!r} {t / 1000:.3f}\n"


@dataclass
class Row:
    tokens: float
    self_hosted: float
    capacity_seconds: float
    engine_spend: float
    equivalent: dict[str, float]

    @property
    def full_per_million(self) -> float:
        return self.engine_spend / self.capacity_seconds * 1e6

    @property
    def utilization(self) -> float:
        return self.tokens / (self.capacity_seconds * self.self_hosted / self.engine_spend)

    @property
    def actual_per_million(self) -> float:
        return self.self_hosted / self.tokens * 1e6


def expected(fleet: Fleet, first_hour: int = 0, hours: int | None = None) -> dict[tuple[str, str], Row]:
    """The report's rows in closed form over hours [first_hour, first_hour + hours) of the fleet."""
    span = range(first_hour, first_hour + (fleet.hours - first_hour if hours is None else hours))
    # Every rate depends on the hour of day only: sum over 24 of them, each times its count.
    of_day = Counter((fleet.start // HOUR + h) % 24 for h in span)
    rows = {}
    for engine, capacity in ENGINES.items():
        model_spend = [0.0] * len(MODELS)
        for n in range(fleet.nodes):
            for hour, count in of_day.items():
                weights = model_weights(n, engine, hour)
                for m in range(len(MODELS)):
                    model_spend[m] += count * ENGINE_HOURLY[engine] * weights[m] / sum(weights)
        for m, model in enumerate(MODELS):
            cells = [(n, hour, count) for n in range(fleet.nodes) for hour, count in of_day.items()]
            rows[(engine, model)] = Row(
                tokens=sum(count * tokens(n, engine, m, hour) for n, hour, count in cells),
                self_hosted=model_spend[m], capacity_seconds=capacity * HOUR * len(span) * fleet.nodes,
                engine_spend=ENGINE_HOURLY[engine] * len(span) * fleet.nodes,
                equivalent={api: sum(count * api_equivalent(n, engine, m, hour, api) for n, hour, count in cells)
                            for api in APIS})
    return rows
