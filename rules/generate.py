#!/usr/bin/env python3
"""Generate the Prometheus rule file of llm-cost-exporter from rules/config.yaml.

    python rules/generate.py                        # -> rules/llm-cost-exporter.rules.yml
    python rules/generate.py --set cost_alert_for=10m --set windows=[5m,1h] --output my.rules.yml
    python rules/generate.py --config site.yaml     # site.yaml's keys override rules/config.yaml

Output: one recording group per window (`llm-cost-exporter.recording.5m`, ...) and one alert group
(`llm-cost-exporter.alerts`), in plain Prometheus rule-file format; the Helm chart wraps the same
groups in a PrometheusRule. The output depends only on the configuration (deterministic), so the
tests regenerate it and compare it with the committed file. Needs only PyYAML (and the checkout's
exporter/ package: its duration parser and input validation).

The config is also the dashboards' (dashboards/generate.py imports load_config and the CLI options
below): `selector` and `cluster_labels` select and aggregate the same series in both.

Rule names follow `level:metric:operations` (docs: rules/README.md). Levels and the labels they keep,
each after the `cluster_labels` (none by default):

    engine_model_api  job, instance, engine, model, api, tier  an engine is a process on one node
    engine_model      job, instance, engine, model
    engine_api        job, instance, engine, api, tier
    engine            job, instance, engine
    instance_api      job, instance, api, tier               a node (one exporter)
    instance          job, instance
    cluster_engine_model  engine, model                      one engine on every node it spans
    cluster_engine    engine                                 (LeaderWorkerSet, Ray: multi-node)
    model_api         model, api, tier                       cluster-wide: all nodes
    model             model
    api               api, tier
    cluster           (nothing but the cluster labels)

An API is compared at a price tier (`tier`: standard, batch, flex, ...): every `_api` level keeps it
(API_LABELS below), so two engines compared with one API at different tiers never sum into one figure.
Money-valued rules also keep `currency`. Rates are per second (currency/s, tokens/s, J/s = W).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from a checkout: the exporter's parsers and checks
from exporter.units import parse_duration  # noqa: E402
from exporter.validation import InputError, build as build_dataclass, load_mapping, number, parse_yaml  # noqa: E402
from rules import chargeback  # noqa: E402

DEFAULT_CONFIG = HERE / "config.yaml"
DEFAULT_OUTPUT = HERE / "llm-cost-exporter.rules.yml"
GROUP_PREFIX = "llm-cost-exporter"

LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# The labels that tell the compared APIs apart, on every API level (`engine_model_api`, `model_api`, ...):
# one place, so that a further API label (a price tier) is one more name here.
API_LABELS = ["api", "tier"]  # an API and the price tier it is compared at: kept together through every aggregation
RESERVED = ("job", "instance", "engine", "model", *API_LABELS, "currency")
# Every series the rules make (records, and ALERTS with its alertname, alertstate, severity) keeps
# fewer labels than this, __name__ included: room under Mimir's default limit of 30 for the labels a
# remote-write pipeline adds.
MAX_LABELS = 20
# One PromQL label matcher: name, operator, a quoted value ("...", '...' or `...`).
_MATCHER = r"""\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*"""
MATCHERS = re.compile(rf"^{_MATCHER}(?:,{_MATCHER})*,?\s*$")
DURATION_FORMS = "whole numbers of ms, s, m, h, d, w, y: e.g. 30s, 5m, 1h30m, 1d"


class RulesConfigError(InputError):
    """One bad key of the rules config: `[SOURCE: ]KEY: got VALUE, allowed: WHAT`."""


# --- configuration ------------------------------------------------------------------------------


def promql(kind: str):
    """A field kept as PromQL text and checked as such: `duration` (a `for:`), `range` (a range
    selector's duration, > 0), `window` (one of `windows`), `interval` (a group's, > 0, or empty)."""
    return dataclasses.field(metadata={"promql": kind})


@dataclass(frozen=True, kw_only=True)
class RulesConfig:
    """rules/config.yaml. Every key is required there (the file holds the defaults, commented);
    overlays override keys. A `str | None` key may be empty: no matcher, every API."""

    selector: str | None  # PromQL label matchers without braces: every selector of the rules and dashboards
    cluster_labels: list[str]
    windows: list[str]
    fast_interval: str | None = promql("interval")  # empty: Prometheus' global evaluation_interval
    slow_interval: str | None = promql("interval")
    increase_window: str = promql("range")
    runbook_url: str
    alert_labels: dict[str, str]
    disabled_alerts: list[str]
    cost_alert_window: str = promql("window")
    cost_alert_for: str = promql("duration")
    cost_alert_ratio: float = number(exclusive=True)
    cost_alert_min_tokens_per_second: float = number()
    cost_alert_apis: str | None  # a regex on `api`
    cost_alert_severity: str
    breakeven_alert_window: str = promql("window")
    breakeven_alert_for: str = promql("duration")
    breakeven_alert_min_tokens_per_second: float = number()
    breakeven_alert_apis: str | None
    breakeven_alert_severity: str
    idle_alert_window: str = promql("range")
    idle_alert_for: str = promql("duration")
    idle_alert_severity: str
    exporter_down_for: str = promql("duration")
    exporter_down_severity: str
    exporter_absent_for: str = promql("duration")
    exporter_absent_severity: str
    engine_failing_for: str = promql("duration")
    engine_failing_severity: str
    nvml_errors_window: str = promql("range")
    nvml_errors_for: str = promql("duration")
    nvml_errors_ignored_reasons: list[str]
    nvml_errors_severity: str
    gpu_lost_for: str = promql("duration")
    gpu_lost_severity: str
    config_reload_failed_for: str = promql("duration")
    config_reload_failed_severity: str
    price_unknown_for: str = promql("duration")
    price_unknown_severity: str
    chargeback: chargeback.ChargebackConfig  # per-team chargeback from gateway counters (rules/chargeback.py)
    series_budget: float = number(exclusive=True)
    series_budget_for: str = promql("duration")
    series_budget_severity: str


KEYS = [f.name for f in dataclasses.fields(RulesConfig)]


def load_config(path: Path | None = None, overrides: list[str] = ()) -> RulesConfig:
    """rules/config.yaml, then the keys of `path` over it, then `key=value` overrides (YAML values).
    Raises RulesConfigError naming the key, the value, what is allowed and where the value came from."""
    layers = [(str(DEFAULT_CONFIG), _read(DEFAULT_CONFIG, str(DEFAULT_CONFIG)))]
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG:
        layers.append((str(path), _read(Path(path), "--config")))
    layers.append(("--set", _parse_overrides(overrides)))
    merged, origin = {}, {}
    for source, data in layers:
        data = _nested(data, merged, source)
        unknown = sorted(str(k) for k in set(data) - set(KEYS))
        if unknown:
            raise RulesConfigError(unknown[0], f"unknown key, allowed keys: {', '.join(KEYS)}", source=source)
        merged.update(data)
        origin.update(dict.fromkeys(data, source))
    try:
        return from_dict(merged)
    except RulesConfigError as err:
        raise RulesConfigError(err.key, err.problem, source=origin.get(re.split(r"[.\[]", err.key)[0])) from None


def _nested(data: dict, merged: dict, source: str) -> dict:
    """`--set chargeback.top_teams=5`: a dotted key sets one key inside a mapping of the layers below."""
    out = {k: v for k, v in data.items() if "." not in str(k)}
    for key, value in data.items():
        if "." in str(key):
            head, *path, last = str(key).split(".")
            node = out.setdefault(head, _copy(merged.get(head)))
            for part in path:
                node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise RulesConfigError.got(key, value, "a key inside a mapping", source=source)
            node[last] = value
    return out


def _copy(value):
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else ({} if value is None else value)


def _read(path: Path, key: str) -> dict:
    return load_mapping(str(path), key, RulesConfigError)


def _parse_overrides(overrides: list[str]) -> dict:
    error = functools.partial(RulesConfigError, source="--set")
    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RulesConfigError.got("--set", item, "KEY=VALUE (VALUE read as YAML)")
        values[key.strip()] = parse_yaml(text, key.strip(), error) if text.strip() else ""
    return values


def from_dict(data: dict) -> RulesConfig:
    """The typed config: PromQL text checked as PromQL first (build() would only see strings), then the
    types and ranges (validation.build), then what spans keys or needs more than a type."""
    for f in dataclasses.fields(RulesConfig):
        empty_interval = f.metadata.get("promql") == "interval" and data.get(f.name) in (None, "")
        if "promql" in f.metadata and f.name in data and not empty_interval:
            _check_duration(f.name, data[f.name], positive=f.metadata["promql"] != "duration")
    for i, window in enumerate(data["windows"] if isinstance(data.get("windows"), list) else []):
        _check_duration(f"windows[{i}]", window, positive=True)
    # An empty string is no value for the keys that may be empty (YAML `key:` is null already).
    data = {k: None if k in _MAY_BE_EMPTY and isinstance(v, str) and not v.strip() else v for k, v in data.items()}
    config = build_dataclass(RulesConfig, data, "", RulesConfigError)
    _check(config)
    return config


_MAY_BE_EMPTY = {name for name, hint in typing.get_type_hints(RulesConfig).items() if type(None) in typing.get_args(hint)}


def _check_duration(key: str, value, positive: bool) -> None:
    try:
        if isinstance(value, str) and (parse_duration(value, promql=True) > 0 or not positive):
            return
    except ValueError:
        pass
    raise RulesConfigError.got(key, value, f"a PromQL duration{' > 0' if positive else ''} ({DURATION_FORMS})")


def _check(c: RulesConfig) -> None:
    """What the field types cannot say: windows, matchers, regexes, label and alert names."""
    if not c.windows:
        raise RulesConfigError.got("windows", c.windows, "a non-empty list of PromQL durations")
    if len(set(c.windows)) != len(c.windows):
        raise RulesConfigError.got("windows", c.windows, "each window once")
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if f.metadata.get("promql") == "window" and value not in c.windows:
            raise RulesConfigError.got(f.name, value, f"one of windows ({', '.join(c.windows)}); add it there")
    if c.selector is not None and not MATCHERS.match(c.selector):
        raise RulesConfigError.got("selector", c.selector, 'PromQL label matchers without braces, e.g. '
                                   'job=~".*llm-?cost.*" or job="a",env!="dev"; empty: none')
    for key in ("cost_alert_apis", "breakeven_alert_apis"):
        try:
            re.compile(getattr(c, key) or "")
        except re.error as err:
            raise RulesConfigError.got(key, getattr(c, key), f"a regular expression ({err}); empty: every API") from None
    for i, label in enumerate(c.cluster_labels):
        if not LABEL.match(label) or label in RESERVED:
            raise RulesConfigError.got(f"cluster_labels[{i}]", label,
                                       f"a label name other than {', '.join(RESERVED)} (the rules keep those)")
    if len(set(c.cluster_labels)) != len(c.cluster_labels):
        raise RulesConfigError.got("cluster_labels", c.cluster_labels, "each label once")
    if widest_series(c.cluster_labels, c.alert_labels) >= MAX_LABELS:
        room = MAX_LABELS - 1 - widest_series([], {})
        raise RulesConfigError.got("cluster_labels", c.cluster_labels, f"at most {room} labels together with "
                                   f"alert_labels (every series keeps fewer than {MAX_LABELS} labels)")
    _check_increase_window(c)
    for name in c.alert_labels:
        if not LABEL.match(name) or name in ("severity", "alertname"):
            raise RulesConfigError.got(f"alert_labels.{name}", name, "a label name other than severity (it has "
                                       "its own keys) and alertname")
    for i, name in enumerate(c.disabled_alerts):
        if name not in ALERT_NAMES:
            raise RulesConfigError.got(f"disabled_alerts[{i}]", name, ", ".join(ALERT_NAMES))
    _check_duration("chargeback.window", c.chargeback.window, positive=True)

    def bad(key, value, allowed):
        raise RulesConfigError.got(key, value, allowed)
    chargeback.check(c.chargeback, bad)


def _check_increase_window(c: RulesConfig) -> None:
    """Windows longer than increase_window are sums of its increases: whole multiples of it."""
    step = parse_duration(c.increase_window, promql=True)
    for i, w in enumerate(c.windows):
        seconds = parse_duration(w, promql=True)
        if seconds > step and seconds % step:
            raise RulesConfigError.got(f"windows[{i}]", w, f"a whole multiple of increase_window ({c.increase_window}) "
                                       "where longer than it (it is summed from those increases)")


def widest_series(cluster_labels: list[str], alert_labels: dict) -> int:
    """Labels of the widest series the rules make, __name__ included: the cost alert's ALERTS series
    (job, instance, engine, model, the API labels, currency, alertname, alertstate, severity)."""
    return 1 + len(cluster_labels) + 4 + len(API_LABELS) + 1 + 3 + len(alert_labels)


# --- PromQL helpers -----------------------------------------------------------------------------


class Q:
    """PromQL fragments for one configuration."""

    def __init__(self, config: RulesConfig):
        self.selector = (config.selector or "").strip().strip(",")
        self.cluster = list(config.cluster_labels)

    def sel(self, metric: str, *matchers: str) -> str:
        parts = [m for m in (self.selector, *matchers) if m]
        return f"{metric}{{{','.join(parts)}}}" if parts else metric

    def labels(self, level: str) -> list[str]:
        node = self.cluster + ["job", "instance"]
        return {
            "engine_model_api": node + ["engine", "model", *API_LABELS],
            "engine_model": node + ["engine", "model"],
            "engine_api": node + ["engine", *API_LABELS],
            "engine": node + ["engine"],
            "instance_api": node + API_LABELS,
            "instance": node,
            "cluster_engine_model": self.cluster + ["engine", "model"],
            "cluster_engine": self.cluster + ["engine"],
            "model_api": self.cluster + ["model", *API_LABELS],
            "model": self.cluster + ["model"],
            "api": self.cluster + API_LABELS,
            "cluster": self.cluster,
        }[level]


def by(labels: list[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def on(labels: list[str]) -> str:
    return f"on ({', '.join(labels)})"


def agg(op: str, labels: list[str], inner: str) -> str:
    """`sum by (a, b) (inner)`, with a multi-line inner indented."""
    if "\n" in inner:
        return f"{op}{by(labels)} (\n{indent(inner)}\n)"
    return f"{op}{by(labels)} ({inner})"


def indent(text: str, by_: str = "  ") -> str:
    return "\n".join(by_ + line for line in text.splitlines())


def money(labels: list[str]) -> list[str]:
    return labels + ["currency"]


def without_currency(inner: str) -> str:
    """A ratio of two money figures is a plain number: drop the `currency` label."""
    return f"sum without (currency) (\n{indent(inner)}\n)"


# --- recording rules ----------------------------------------------------------------------------


# The exporter's counters the rules read: recorded name -> (counter, level of its first rule). Their
# rates per window, and their increases per increase_window, are recorded at that level first.
COUNTERS = {
    "llmcost_tokens": ("llmcost_tokens_total", "engine_model"),
    "llmcost_engine_spend": ("llmcost_engine_spend_total", "engine"),
    "llmcost_spend": ("llmcost_spend_total", "instance"),
    "llmcost_idle_spend": ("llmcost_idle_spend_total", "engine"),
    "llmcost_api_equivalent_spend": ("llmcost_api_equivalent_spend_total", "engine_model_api"),
    "llmcost_engine_energy_joules": ("llmcost_engine_energy_joules_total", "engine"),
}
MONEY = {"llmcost_engine_spend", "llmcost_spend", "llmcost_idle_spend", "llmcost_api_equivalent_spend"}
CAPACITY = "llmcost_capacity_tokens_per_second"


def first_level(q: Q, name: str) -> list[str]:
    labels = q.labels(COUNTERS[name][1])
    return money(labels) if name in MONEY else labels


def recording_rules(q: Q, w: str, increase_window: str | None = None) -> list[dict]:
    """The rules of one window, in dependency order (a group evaluates its rules in order). With
    `increase_window`, the counters' rates and the capacity come from the recorded increases and
    maxima of that window (increase_rules) instead of the raw series: a 1d window reads 24 hourly
    samples per series, not a day of scrapes."""
    r, rr = f"rate{w}", f"ratio_rate{w}"
    E, EM, EA, EMA = (q.labels(x) for x in ("engine", "engine_model", "engine_api", "engine_model_api"))
    I, IA = q.labels("instance"), q.labels("instance_api")
    M, MA, A, C = (q.labels(x) for x in ("model", "model_api", "api", "cluster"))
    CE, CEM = q.labels("cluster_engine"), q.labels("cluster_engine_model")
    cshare, worker_spend = f"cluster_engine_model:llmcost_engine_share:{rr}", f"cluster_engine:llmcost_worker_spend:{r}"

    tok = {lvl: f"{lvl}:llmcost_tokens:{r}" for lvl in ("engine_model", "engine", "instance", "model", "cluster")}
    share = f"engine_model:llmcost_engine_share:{rr}"
    spend = {"engine": f"engine:llmcost_engine_spend:{r}", "engine_model": f"engine_model:llmcost_engine_spend:{r}",
             "model": f"model:llmcost_engine_spend:{r}", "instance": f"instance:llmcost_spend:{r}",
             "cluster": f"cluster:llmcost_spend:{r}"}
    idle = f"engine:llmcost_idle_spend:{r}"
    eq = {lvl: f"{lvl}:llmcost_api_equivalent_spend:{r}" for lvl in ("engine_model_api", "engine_api", "model_api", "api")}
    cap = {lvl: f"{lvl}:llmcost_capacity_tokens_per_second:max_over_time{w}" for lvl in ("engine", "instance", "model", "cluster")}
    full = {lvl: f"{lvl}:llmcost_cost_per_million_tokens_at_full_utilization:{rr}"
            for lvl in ("engine", "engine_model", "instance", "model", "cluster")}
    price = {lvl: f"{lvl}:llmcost_api_price_per_million_tokens:{rr}" for lvl in ("engine_model_api", "engine_api", "model_api")}
    energy = f"engine:llmcost_engine_energy_joules:{r}"
    ept = {lvl: f"{lvl}:llmcost_energy_per_token_joules:{rr}" for lvl in ("engine", "instance", "model", "cluster")}

    def rate(name: str) -> str:
        if increase_window:
            # The mean hourly increase over the window, per second; hours with no sample do not count.
            seconds = _num(parse_duration(increase_window, promql=True))
            hourly = q.sel(f"{COUNTERS[name][1]}:{name}:increase{increase_window}")
            return f"sum{by(first_level(q, name))} (avg_over_time({hourly}[{w}])) / {seconds}"
        return f"sum{by(first_level(q, name))} (rate({q.sel(COUNTERS[name][0])}[{w}]))"

    def max_capacity() -> str:
        if increase_window:
            return f"max{by(E)} (max_over_time({q.sel(f'engine:{CAPACITY}:max{increase_window}')}[{w}]))"
        return f"max{by(E)} (max_over_time({q.sel(CAPACITY)}[{w}]))"

    def per_model(engine_rule: str, copy: str = "") -> str:
        """Every model of an engine gets the engine's figure (as the exporter's own gauges do)."""
        group = f"group_left ({copy})" if copy else "group_left"
        return f"0 * {tok['engine_model']}\n+ {on(E)} {group}\n{engine_rule}"

    def per_million(numerator: str, denominator: str, match: list[str]) -> str:
        """1e6 x numerator / denominator, absent where the denominator is 0 (no +Inf)."""
        return f"1e6 * {numerator}\n/ {on(match)} group_left ()\n({denominator} > 0)"

    def allocated(copy: str = "") -> str:
        """share x an engine figure: the part of it that goes to each model."""
        return f"{share}\n* {on(E)} group_left{f' ({copy})' if copy else ''}\n"

    rules = [
        # Tokens/s, input + output.
        (tok["engine_model"], rate("llmcost_tokens")),
        (tok["engine"], agg("sum", E, tok["engine_model"])),
        (tok["instance"], agg("sum", I, tok["engine"])),
        (tok["model"], agg("sum", M, tok["engine_model"])),
        (tok["cluster"], agg("sum", C, tok["instance"])),
        # A model's share of its engine: its tokens / the engine's, or 1/models while the engine
        # served none, so an idle replica's spend still lands on the models it serves.
        (share, f"{tok['engine_model']}\n/ {on(E)} group_left ()\n({tok['engine']} > 0)\nor\n"
                f"(0 * {tok['engine_model']} + 1)\n/ {on(E)} group_left\ncount{by(E)} ({tok['engine_model']})"),
        # Spend, currency/s, allocation basis.
        (spend["engine"], rate("llmcost_engine_spend")),
        (spend["engine_model"], allocated("currency") + spend["engine"]),
        # One engine on all the nodes it spans (LeaderWorkerSet, Ray): every node books its GPUs to
        # the leader's engine, only the leader's node counts its tokens; per node first, then summed.
        (f"cluster_engine:llmcost_engine_spend:{r}", agg("sum", money(CE), spend["engine"])),
        (f"cluster_engine:llmcost_tokens:{r}", agg("sum", CE, tok["engine"])),
        (f"cluster_engine_model:llmcost_tokens:{r}", agg("sum", CEM, tok["engine_model"])),
        (cshare, f"cluster_engine_model:llmcost_tokens:{r}\n/ {on(CE)} group_left ()\n(cluster_engine:llmcost_tokens:{r} > 0)"
                 f"\nor\n(0 * cluster_engine_model:llmcost_tokens:{r} + 1)\n/ {on(CE)} group_left\n"
                 f"count{by(CE)} (cluster_engine_model:llmcost_tokens:{r})"),
        # Spend booked on nodes that count none of the engine's tokens: its workers' nodes.
        (worker_spend, agg("sum", money(CE), f"{spend['engine']}\nunless {on(E)}\n{tok['engine']}")),
        # A model's spend on every node: its engines' per node, and their workers' nodes' by its share.
        (spend["model"], agg("sum", money(M), f"{spend['engine_model']}\nor\n{cshare}\n* {on(CE)} group_left (currency)\n"
                                              f"{worker_spend}")),
        (spend["instance"], rate("llmcost_spend")),
        (spend["cluster"], agg("sum", money(C), spend["instance"])),
        # Idle spend: spend while the engine produced no tokens (or did not answer).
        (idle, rate("llmcost_idle_spend")),
        (f"engine:llmcost_idle_spend:{rr}", f"{idle}\n/\n({spend['engine']} > 0)"),
        (f"instance:llmcost_idle_spend:{r}", agg("sum", money(I), idle)),
        (f"cluster:llmcost_idle_spend:{r}", agg("sum", money(C), f"instance:llmcost_idle_spend:{r}")),
        # What the API would have billed for the same tokens, currency/s.
        (eq["engine_model_api"], rate("llmcost_api_equivalent_spend")),
        (eq["engine_api"], agg("sum", money(EA), eq["engine_model_api"])),
        (eq["model_api"], agg("sum", money(MA), eq["engine_model_api"])),
        (eq["api"], agg("sum", money(A), eq["engine_model_api"])),
        # Savings = API-equivalent - self-hosted spend, currency/s; negative: the API is cheaper.
        (f"engine_model_api:llmcost_savings:{r}",
         f"{eq['engine_model_api']}\n- {on(money(EM))} group_left\n{spend['engine_model']}"),
        (f"engine_api:llmcost_savings:{r}", f"{eq['engine_api']}\n- {on(money(E))} group_left\n{spend['engine']}"),
        (f"instance_api:llmcost_savings:{r}", agg("sum", money(IA), f"engine_api:llmcost_savings:{r}")),
        (f"model_api:llmcost_savings:{r}", agg("sum", money(MA), f"engine_model_api:llmcost_savings:{r}")),
        (f"api:llmcost_savings:{r}", agg("sum", money(A), f"engine_api:llmcost_savings:{r}")),
        # Cost per 1M tokens, actual: spend / tokens x 1e6; absent while no tokens flow.
        (f"engine:llmcost_cost_per_million_tokens:{rr}", per_million(spend["engine"], tok["engine"], E)),
        (f"engine_model:llmcost_cost_per_million_tokens:{rr}",
         per_model(f"engine:llmcost_cost_per_million_tokens:{rr}", "currency")),
        (f"instance:llmcost_cost_per_million_tokens:{rr}", per_million(spend["instance"], tok["instance"], I)),
        (f"model:llmcost_cost_per_million_tokens:{rr}", per_million(spend["model"], tok["model"], M)),
        (f"cluster:llmcost_cost_per_million_tokens:{rr}", per_million(spend["cluster"], tok["cluster"], C)),
        (f"cluster_engine:llmcost_cost_per_million_tokens:{rr}", per_million(
            f"cluster_engine:llmcost_engine_spend:{r}", f"cluster_engine:llmcost_tokens:{r}", CE)),
        (f"cluster_engine_model:llmcost_cost_per_million_tokens:{rr}",
         f"0 * cluster_engine_model:llmcost_tokens:{r}\n+ {on(CE)} group_left (currency)\n"
         f"cluster_engine:llmcost_cost_per_million_tokens:{rr}"),
        # Capacity, tokens/s: the highest reported in the window (an observed peak can only grow).
        (cap["engine"], max_capacity()),
        (cap["instance"], agg("sum", I, cap["engine"])),
        (cap["model"], agg("sum", M, allocated() + cap["engine"])),
        (cap["cluster"], agg("sum", C, cap["instance"])),
        # Cost per 1M tokens at 100% utilization: spend / capacity x 1e6.
        (full["engine"], per_million(spend["engine"], cap["engine"], E)),
        (full["engine_model"], per_model(full["engine"], "currency")),
        (full["instance"], per_million(spend["instance"], cap["instance"], I)),
        (full["model"], per_million(spend["model"], cap["model"], M)),
        (full["cluster"], per_million(spend["cluster"], cap["cluster"], C)),
        # Utilization: tokens/s / capacity (a model's share of its engine's capacity).
        (f"engine:llmcost_utilization:{rr}", f"{tok['engine']}\n/\n({cap['engine']} > 0)"),
        (f"engine_model:llmcost_utilization:{rr}", f"{tok['engine_model']}\n/ {on(E)} group_left ()\n({cap['engine']} > 0)"),
        (f"instance:llmcost_utilization:{rr}", f"{tok['instance']}\n/\n({cap['instance']} > 0)"),
        (f"model:llmcost_utilization:{rr}", f"{tok['model']}\n/\n({cap['model']} > 0)"),
        (f"cluster:llmcost_utilization:{rr}", f"{tok['cluster']}\n/\n({cap['cluster']} > 0)"),
        # The API's price per 1M tokens of this traffic (its mix of input, cached input, output).
        (price["engine_model_api"], per_million(eq["engine_model_api"], tok["engine_model"], EM)),
        (price["engine_api"], per_million(eq["engine_api"], tok["engine"], E)),
        # Cluster-wide, only the tokens of the engines compared with that API count.
        (price["model_api"], f"1e6 * {eq['model_api']}\n/\n(\n" + indent(agg(
            "sum", money(MA), f"{tok['engine_model']}\n* {on(EM)} group_right ()\n(0 * {eq['engine_model_api']} + 1)")
            + "\n> 0") + "\n)"),
        # Break-even utilization: cost per 1M at 100% / the API's price; above 1: never cheaper.
        (f"engine_model_api:llmcost_breakeven_utilization:{rr}", without_currency(
            f"{full['engine_model']}\n/ {on(money(EM))} group_right ()\n({price['engine_model_api']} > 0)")),
        (f"engine_api:llmcost_breakeven_utilization:{rr}", without_currency(
            f"{full['engine']}\n/ {on(money(E))} group_right ()\n({price['engine_api']} > 0)")),
        (f"model_api:llmcost_breakeven_utilization:{rr}", without_currency(
            f"{full['model']}\n/ {on(money(M))} group_right ()\n({price['model_api']} > 0)")),
        # Energy: J/s (W) per engine, and J per token.
        (energy, rate("llmcost_engine_energy_joules")),
        (ept["engine"], f"{energy}\n/\n({tok['engine']} > 0)"),
        (f"engine_model:llmcost_energy_per_token_joules:{rr}", per_model(ept["engine"])),
        (ept["instance"], f"{agg('sum', I, energy)}\n/\n({tok['instance']} > 0)"),
        (ept["model"], f"{agg('sum', M, allocated() + energy)}\n/\n({tok['model']} > 0)"),
        (ept["cluster"], f"{agg('sum', C, energy)}\n/\n({tok['cluster']} > 0)"),
    ]
    return [{"record": name, "expr": expr} for name, expr in rules]


def increase_rules(q: Q, w: str) -> list[dict]:
    """Each counter's increase over `w` (an hour by default) and the capacity's maximum, per node and at
    the wider levels. Evaluated once per `w`, so consecutive samples cover consecutive windows: a day's
    or a month's total is the sum of its hours (`sum_over_time(instance:llmcost_spend:increase1h[30d])`),
    and the longer windows' recording groups read these instead of the raw counters (docs/scaling.md).

    Every level here reads the raw counters (a sum of per-series increases, as the per-node record's
    sum would be): vmalert writes records asynchronously, so a rule reading another record of this
    group would find the one of an hour ago, beyond any look-back. Once an hour, that costs little."""
    rules = []
    for name, level in (
            ("llmcost_tokens", "engine_model"), ("llmcost_tokens", "engine"), ("llmcost_tokens", "instance"),
            ("llmcost_tokens", "model"), ("llmcost_tokens", "cluster"),
            ("llmcost_engine_spend", "engine"), ("llmcost_spend", "instance"), ("llmcost_spend", "cluster"),
            ("llmcost_idle_spend", "engine"),
            ("llmcost_api_equivalent_spend", "engine_model_api"), ("llmcost_api_equivalent_spend", "model_api"),
            ("llmcost_api_equivalent_spend", "api"),
            ("llmcost_engine_energy_joules", "engine")):
        labels = money(q.labels(level)) if name in MONEY else q.labels(level)
        rules.append((f"{level}:{name}:increase{w}", f"sum{by(labels)} (increase({q.sel(COUNTERS[name][0])}[{w}]))"))
    # `max1h`, not `max_over_time1h`: that is the 1h window group's record, evaluated every slow_interval.
    rules.append((f"engine:{CAPACITY}:max{w}",
                  f"max{by(q.labels('engine'))} (max_over_time({q.sel(CAPACITY)}[{w}]))"))
    # What `report` reads besides, for long periods (docs/report.md): the exporter's split of an
    # engine's spend over its models, the spend held by no engine, and how busy the engine's GPUs were.
    rules.append((f"engine_model:llmcost_model_spend:increase{w}",
                  f"sum{by(money(q.labels('engine_model')))} (increase({q.sel('llmcost_model_spend_total')}[{w}]))"))
    rules.append((f"instance:llmcost_unallocated_spend:increase{w}",
                  f"sum{by(money(q.labels('instance')))} (increase({q.sel('llmcost_unallocated_spend_total')}[{w}]))"))
    rules.append((f"engine:llmcost_engine_gpu_utilization:avg{w}",
                  f"avg{by(q.labels('engine'))} (avg_over_time({q.sel('llmcost_engine_gpu_utilization_ratio')}[{w}]))"))
    return [{"record": name, "expr": expr} for name, expr in rules]


# --- alerts -------------------------------------------------------------------------------------

ALERT_NAMES = [
    "LLMCostSelfHostingDearerThanAPI",
    "LLMCostUtilizationBelowBreakEven",
    "LLMCostGPUsIdle",
    "LLMCostExporterDown",
    "LLMCostExporterAbsent",
    "LLMCostEngineScrapeFailing",
    "LLMCostNVMLErrors",
    "LLMCostGPULost",
    "LLMCostConfigReloadFailed",
    "LLMCostPriceUnknown",
    "LLMCostSeriesBudgetExceeded",
]


ENGINE_SOURCE = 'source="engine"'


def _num(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


def _api_matcher(regex: str) -> str:
    return f'{{api=~"{regex}"}}' if regex else ""


def _query(template: str, labels: list[str]) -> str:
    """Opens a `{{ with }}` over Prometheus' template `query` of `template`, whose `{}` stands for the
    alert's own series: a matcher per label of `labels` (a `name="value"` item is a fixed matcher)."""
    matchers = ",".join(label if "=" in label else f"{label}=%q" for label in labels)
    args = " ".join(f"$labels.{label}" for label in labels if "=" not in label)
    return "{{ with printf `" + template.replace("{}", "{" + matchers + "}") + "` " + args + " | query }}"


def all_nodes_cost(q: Q, w: str) -> str:
    """Each model's cost per 1M tokens on its engine's node; for an engine with workers on other nodes
    (LeaderWorkerSet, Ray), the cost over all its nodes (cluster_engine_model), on its leader's node."""
    cost = f"engine_model:llmcost_cost_per_million_tokens:ratio_rate{w}"
    return (f"(\n  {cost}\n  unless {on(q.labels('cluster_engine'))} cluster_engine:llmcost_worker_spend:rate{w}\n"
            f"  or\n  0 * {cost}\n  + {on(q.labels('cluster_engine_model'))} group_left\n"
            f"  cluster_engine_model:llmcost_cost_per_million_tokens:ratio_rate{w}\n)")


def alerts(q: Q, c: RulesConfig) -> list[dict]:
    E, EM = q.labels("engine"), q.labels("engine_model")
    node = 'on {{ $labels.instance }} (job {{ $labels.job }})'
    out = []

    w, ratio = c.cost_alert_window, c.cost_alert_ratio
    api_price = f"engine_model_api:llmcost_api_price_per_million_tokens:ratio_rate{w}"
    threshold = api_price + _api_matcher(c.cost_alert_apis)
    if ratio != 1:
        threshold = f"{_num(ratio)} * {threshold}"
    price_query = _query(api_price + "{}", q.labels("engine_model_api")) + '{{ . | first | value | printf "%.4g" }}{{ end }}'
    rate_query = _query(f"engine_model:llmcost_tokens:rate{w}" + "{}", EM) + "{{ . | first | value | humanize }}{{ end }}"
    out.append(_alert(
        c, "LLMCostSelfHostingDearerThanAPI", c.cost_alert_for, c.cost_alert_severity,
        f"(\n{indent(all_nodes_cost(q, w))}\n  > {on(money(EM))} group_right\n"
        f"  {threshold}\n)\nand {on(EM)}\n(engine_model:llmcost_tokens:rate{w} > {_num(c.cost_alert_min_tokens_per_second)})",
        "Self-hosting {{ $labels.model }} costs more per 1M tokens than {{ $labels.api }} ({{ $labels.tier }} tier)",
        "{{ $labels.model }} on engine {{ $labels.engine }} " + node + " cost {{ $value | printf \"%.4g\" }} "
        "{{ $labels.currency }} per 1M tokens over the last " + w + " (allocation basis: idle time included), "
        "while {{ $labels.api }} ({{ $labels.tier }} tier) would have charged " + price_query + " {{ $labels.currency }} per 1M for the same "
        "traffic (" + rate_query + " tokens/s)"
        + (f"; the alert fires above {_num(ratio)} x the API price" if ratio != 1 else "") + "."))

    w = c.breakeven_alert_window
    be = f"engine_api:llmcost_breakeven_utilization:ratio_rate{w}"
    be_query = (_query(be + "{}", q.labels("engine_api")) + '{{ $b := . | first | value }}{{ $b | humanizePercentage }}'
                '{{ if gt $b 1.0 }}, above 100%: this hardware cannot beat {{ $labels.api }} ({{ $labels.tier }} tier) at any '
                'load{{ end }}{{ end }}')
    out.append(_alert(
        c, "LLMCostUtilizationBelowBreakEven", c.breakeven_alert_for, c.breakeven_alert_severity,
        f"(\n  engine:llmcost_utilization:ratio_rate{w}\n  < {on(E)} group_right\n  {be}{_api_matcher(c.breakeven_alert_apis)}\n)\n"
        f"and {on(E)}\n(engine:llmcost_tokens:rate{w} > {_num(c.breakeven_alert_min_tokens_per_second)})",
        "Engine {{ $labels.engine }} runs below the utilization at which it beats {{ $labels.api }} ({{ $labels.tier }} tier)",
        "Engine {{ $labels.engine }} " + node + " ran at {{ $value | humanizePercentage }} of its capacity over the "
        "last " + w + "; to cost no more per token than {{ $labels.api }} ({{ $labels.tier }} tier) it needs " + be_query + "."))

    w = c.idle_alert_window
    paid = f"{agg('sum', money(E), 'rate(' + q.sel('llmcost_engine_spend_total') + f'[{w}])')} * 3600 > 0"
    tokens = f"rate({q.sel('llmcost_tokens_total')}[{w}])"
    # A multi-node engine's worker node has its spend and none of its tokens (docs/kubernetes.md):
    # not idle while the engine's tokens flow on its leader's node.
    worker = f"{paid}\nunless {on(E)}\n{agg('sum', E, tokens)}\nand {on(q.labels('cluster_engine'))}\n" \
             f"{agg('sum', q.labels('cluster_engine'), tokens)} > 0"
    out.append(_alert(
        c, "LLMCostGPUsIdle", c.idle_alert_for, c.idle_alert_severity,
        f"(\n{indent(paid)}\n  unless {on(E)}\n{indent(agg('sum', E, tokens))} > 0\n)\n"
        f"unless {on(E)}\n(\n{indent(worker)}\n)",
        "GPUs of engine {{ $labels.engine }} are paid for but serve no tokens",
        "Engine {{ $labels.engine }} " + node + " has served no tokens for more than " + c.idle_alert_for
        + " while its GPUs cost {{ $value | printf \"%.2f\" }} {{ $labels.currency }} per hour "
        "(allocation basis)."))

    out.append(_alert(
        c, "LLMCostExporterDown", c.exporter_down_for, c.exporter_down_severity,
        f"{q.sel('up')} == 0",
        "llm-cost-exporter on {{ $labels.instance }} is down",
        "Prometheus has failed to scrape llm-cost-exporter at {{ $labels.instance }} (job {{ $labels.job }}) for "
        "more than " + c.exporter_down_for + ": that node's cost, token and GPU figures are missing and its "
        "cost alerts cannot fire."))

    out.append(_alert(
        c, "LLMCostExporterAbsent", c.exporter_absent_for, c.exporter_absent_severity,
        f"absent({q.sel('up')} == 1)",
        "No llm-cost-exporter target is up",
        "For more than " + c.exporter_absent_for + " Prometheus has had no llm-cost-exporter target up ("
        + (f"up{{{q.selector}}}" if q.selector else "up") + "): none is discovered, or all are down. "
        "No cost figures are recorded and no cost alert can fire."))

    errors_query = (_query(f"sort_desc(increase(llmcost_source_errors_total{{}}[{c.engine_failing_for}]))",
                           q.labels("instance") + [ENGINE_SOURCE, "name"])
                    + '; most frequent error: {{ . | first | label "reason" }}{{ end }}')
    out.append(_alert(
        c, "LLMCostEngineScrapeFailing", c.engine_failing_for, c.engine_failing_severity,
        # `engine` as the cost alerts name it, so an inhibition can match them (docs/alerting.md)
        f"""label_replace({q.sel('llmcost_source_up', ENGINE_SOURCE)} == 0, "engine", "$1", "name", "(.*)")""",
        "llm-cost-exporter cannot read engine {{ $labels.name }}",
        "The exporter " + node + " has not been able to read the /metrics of engine {{ $labels.name }} for more "
        "than " + c.engine_failing_for + errors_query + ". Its tokens are not counted while its spend goes on."))

    ignored = "|".join(c.nvml_errors_ignored_reasons)
    matchers = ['source="nvml"'] + ([f'reason!~"{ignored}"'] if ignored else [])
    w = c.nvml_errors_window
    out.append(_alert(
        c, "LLMCostNVMLErrors", c.nvml_errors_for, c.nvml_errors_severity,
        f"sum{by(q.labels('instance') + ['reason'])} (increase({q.sel('llmcost_source_errors_total', *matchers)}[{w}])) > 0",
        "NVML keeps failing on {{ $labels.instance }} ({{ $labels.reason }})",
        "NVML reported {{ $value | humanize }} {{ $labels.reason }} errors in the last " + w + " " + node
        + ", in every " + w + " for more than " + c.nvml_errors_for + ". GPU power, energy and the energy "
        "cost computed from them are incomplete."))

    out.append(_alert(
        c, "LLMCostGPULost", c.gpu_lost_for, c.gpu_lost_severity,
        f"{q.sel('llmcost_gpu_up')} == 0",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} does not answer NVML",
        "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) " + node + " has not answered NVML for more than "
        + c.gpu_lost_for + " (lost, or NVML down on the node). It is still paid for; its power and "
        "energy are not measured."))

    out.append(_alert(
        c, "LLMCostConfigReloadFailed", c.config_reload_failed_for, c.config_reload_failed_severity,
        f"{q.sel('llmcost_config_last_reload_successful')} == 0",
        "llm-cost-exporter on {{ $labels.instance }} runs on an outdated configuration",
        "The exporter " + node + " has rejected its changed configuration file for more than "
        + c.config_reload_failed_for + " (invalid, deleted, unreadable, or a key that needs a restart) and keeps "
        "using the last good one: the prices and engines it applies are not the ones in the file. "
        "Its log names the key."))

    out.append(_alert(
        c, "LLMCostPriceUnknown", c.price_unknown_for, c.price_unknown_severity,
        q.sel("llmcost_pricing_info", 'price_source="unknown"') + " == 1",
        "llm-cost-exporter on {{ $labels.instance }} has no price for its node",
        "The exporter " + node + " has found no hourly price for more than " + c.price_unknown_for
        + ": no configured price, and its node's instance type (from the configuration or the node's labels) "
        "is not in the catalog. Instance spend is not counted, so its cost per token reads too low."))

    out.append(_alert(
        c, "LLMCostSeriesBudgetExceeded", c.series_budget_for, c.series_budget_severity,
        f"{q.sel('scrape_samples_scraped')} > {_num(c.series_budget)}",
        "llm-cost-exporter on {{ $labels.instance }} exposes more series than its budget",
        "The exporter " + node + " has exposed {{ $value | humanize }} series per scrape for more than "
        + c.series_budget_for + ", above the budget of " + _num(c.series_budget) + " per node (series_budget): "
        "more engines, models, APIs or error reasons than planned. Every series is stored, evaluated by the "
        "rules and read by the dashboards on every node; docs/scaling.md has the sizes one Prometheus holds."))

    return [a for a in out if a["alert"] not in c.disabled_alerts]


def _alert(c: RulesConfig, name: str, for_: str, severity: str, expr: str, summary: str, description: str) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **dict(sorted(c.alert_labels.items()))},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{c.runbook_url}#{name.lower()}",
        },
    }


# --- output -------------------------------------------------------------------------------------


def group(name: str, interval: str | None, rules: list[dict]) -> dict:
    return {"name": f"{GROUP_PREFIX}.{name}", **({"interval": interval} if interval else {}), "rules": rules}


def recording_groups(q: Q, c: RulesConfig) -> list[dict]:
    """Fast groups (windows shorter than increase_window, every fast_interval), slow ones (every
    slow_interval) over the raw counters up to increase_window, the increases once per
    increase_window, then the longer windows from those increases."""
    step = parse_duration(c.increase_window, promql=True)
    seconds = {w: parse_duration(w, promql=True) for w in c.windows}
    raw = [group(f"recording.{w}", c.fast_interval if seconds[w] < step else c.slow_interval, recording_rules(q, w))
           for w in c.windows if seconds[w] <= step]
    derived = [group(f"recording.{w}", c.slow_interval, recording_rules(q, w, c.increase_window))
               for w in c.windows if seconds[w] > step]
    increases = group(f"increase.{c.increase_window}", c.increase_window, increase_rules(q, c.increase_window))
    return raw + [increases] + derived


def build(config: RulesConfig) -> dict:
    """Every group, in order; a further group (e.g. chargeback joins) is one more item of this list."""
    q = Q(config)
    groups = [
        *recording_groups(q, config),
        group("alerts", config.fast_interval, alerts(q, config)),
    ]
    charge = chargeback.Rules(config.chargeback, q.sel, q.cluster).rules()
    if charge:
        groups.append(group(chargeback.GROUP, config.fast_interval, charge))
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(config: RulesConfig, overrides: list[str] = (), config_path: Path | None = None) -> str:
    header = [
        "# Prometheus rules of llm-cost-exporter: recording rules per window and the alerts.",
        "# Generated by rules/generate.py from rules/config.yaml; do not edit by hand: change the config",
        "# (or pass --set key=value) and regenerate. Reference: rules/README.md, docs/runbook.md.",
    ]
    if config_path is not None and Path(config_path).resolve() != DEFAULT_CONFIG:
        header.append(f"# Config overlay: {Path(config_path).name}")
    if overrides:
        header.append(f"# Overrides: {' '.join(overrides)}")
    body = yaml.dump(build(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=10_000)
    return "\n".join(header) + "\n" + body


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and `--set KEY=VALUE`: every generator that reads this config takes them (the rules
    and the dashboards), so a site's overlay gives both the same selector and cluster labels."""
    parser.add_argument("--config", type=Path, default=None,
                        help=f"YAML file whose keys override {DEFAULT_CONFIG.relative_to(HERE.parent)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key (VALUE read as YAML); repeat for more keys")


def config_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RulesConfig:
    """The config that add_config_arguments' options select; a bad key exits 2 with one line."""
    try:
        return load_config(args.config, args.overrides)
    except RulesConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="generate.py", description="Generate llm-cost-exporter's Prometheus rule file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the rule file")
    args = parser.parse_args(argv)
    config = config_or_exit(parser, args)
    text = render(config, args.overrides, args.config)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
