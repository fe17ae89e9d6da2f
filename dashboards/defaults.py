"""House defaults for the llm-cost-exporter dashboards.

Everything a dashboard file would otherwise repeat lives here: the `datasource` variable and the
node/engine kind/model/api filters, the site's scope (`Scope`: the job selector and cluster labels of
rules/config.yaml, in every query), the datasource reference every panel and query uses, the units,
the panel sizes and the grid layout, the schema version. A dashboard file is a function of the
scope that lists questions, each answered by a few panels:

    def dashboard(s: Scope):
        ...
        question("What does a million tokens cost us?", [
            stat("Self-hosted $/1M tokens", q(f"sum{s.by()}(increase({s.m('llmcost_spend_total')}[$__range]))"),
                 unit=CURRENCY, description="..."),
        ])

Only React panel types are built (timeseries, stat, gauge, bargauge, table). Every builder takes
`unit` and `description` as required keyword arguments, so no panel ships without them.

grafanalib 0.7.1 provides Dashboard, Template, TimeSeries, Stat and Table in their React form; its
GaugePanel and BarGauge still write the Grafana 6 `options.fieldOptions` layout (unit outside
`fieldConfig`), so `Gauge` and `BarGauge` below are small `Panel` subclasses that write the React
layout. `PromTarget` writes a Prometheus query the way current Grafana saves one.
"""

from __future__ import annotations

import re
import string

import attr
from grafanalib import core

from rules.generate import Q, RulesConfig, on

# Grafana 9.1+ dashboard model: datasource references are objects; nothing older is targeted.
SCHEMA_VERSION = 37

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Units (Grafana unit ids). Money is in the exporter's configured currency (the `currency` label);
# the bundled catalogs are in USD, so the panels say USD.
CURRENCY = "currencyUSD"
WATT = "watt"
JOULE = "joule"
RATIO = "percentunit"
TOKENS_PER_SECOND = "suffix: tok/s"
TIMES = "suffix:×"
COUNT = "short"
REQUESTS_PER_SECOND = "reqps"

# Panel sizes (grid units: 24 columns; one row is 30 px).
SIZES = {
    "stat": (4, 4),
    "gauge": (6, 7),
    "bargauge": (12, 7),
    "timeseries": (12, 9),
    "table": (24, 7),
}
GRID_WIDTH = 24

# Label matchers of the template variables. `instance` is the scrape target (one exporter per node);
# `model` and `api` exist only on the families that carry them, `engine_kind` only on
# llmcost_engine_info (Scope.of_kinds joins it to an engine's series).
NODE = 'instance=~"$node"'
ENGINE_KIND = 'engine_kind=~"$engine_kind"'
MODEL = 'model=~"$model"'
API = 'api=~"$api"'


# ---------------------------------------------------------------------------------------------
# Template variables


@attr.s
class Variable(core.Template):
    """grafanalib's Template, written as current Grafana saves it (no interval-only keys; `All`
    preselected for multi-value variables; `definition` shown in the variable editor)."""

    description = attr.ib(default=None)

    def to_json_data(self):
        data = super().to_json_data()
        data["description"] = self.description
        for key in ("auto", "auto_count", "auto_min", "tagValuesQuery", "tagsQuery", "useTags"):
            data.pop(key)
        if self.type == "query":
            data["definition"] = self.query
        if self.includeAll:
            data["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        elif self.type == "datasource":
            data["current"] = {}  # Grafana selects the default Prometheus datasource
        return data


def query_variable(name: str, label: str, query: str, description: str) -> Variable:
    return Variable(name=name, label=label, query=query, dataSource=DATASOURCE, type="query",
                    multi=True, includeAll=True, allValue=".*", regex="", sort=1,
                    refresh=core.REFRESH_ON_TIME_RANGE_CHANGE, description=description)


DATASOURCE_VARIABLE = Variable(name="datasource", label="Data source", query="prometheus", type="datasource",
                               regex="", refresh=core.REFRESH_ON_DASHBOARD_LOAD,
                               description="The Prometheus that scrapes the exporters.")


# ---------------------------------------------------------------------------------------------
# The site's scope: its job selector and cluster labels


class Scope:
    """What a site selects, from the rules' config (rules/config.yaml, `--config` overlays, `--set`
    overrides; read by rules.generate.load_config), so that the rules and the dashboards see the same
    series:

    - `selector` goes into every metric selector (`s.m(name)`) and every variable's query;
    - with `cluster_labels`, the first one gets a `$cluster` variable that every selector filters on
      (`cluster=~"$cluster"`), every aggregation and vector match keeps them all (`s.by(...)`,
      `s.on(...)`), as every level of the rules does, and legends name the cluster; without, none
      of that is there.
    """

    def __init__(self, config: RulesConfig):
        self._rules = Q(config)
        self.chargeback_window = config.chargeback.window  # names the chargeback rules (dashboards/chargeback.py)
        self.cluster_labels = list(config.cluster_labels)
        first = self.cluster_labels[0] if self.cluster_labels else None
        self._cluster = (f'{first}=~"$cluster"',) if first else ()
        self.cluster_variable = first and query_variable(
            "cluster", "Cluster", f"label_values({self._rules.sel('llmcost_build_info')}, {first})",
            f"Clusters: the {first} label of the exporters' series.")
        self.node_variable = query_variable(
            "node", "Node", f"label_values({self.m('llmcost_build_info', node=False)}, instance)",
            "Exporters (one per GPU node or sidecar), by scrape target.")
        self.engine_kind_variable = query_variable(
            "engine_kind", "Engine kind", f"label_values({self.m('llmcost_engine_info')}, engine_kind)",
            "Kinds of the engines on the selected nodes (vllm, sglang, ...: the engine map each one is read with, "
            "configured or detected; llmcost_engine_info). Per-engine and per-model figures cover the engines of "
            "the selected kinds.")
        self.model_variable = query_variable(
            "model", "Model", f"label_values({self.m('llmcost_tokens_total')}, model)",
            "Models served on the selected nodes. Per-engine figures (spend, capacity, energy) cover every "
            "engine serving a selected model.")
        self.api_variable = query_variable(
            "api", "API", f"label_values({self.m('llmcost_api_price_per_million_tokens', node=False)}, api)",
            "APIs the engines are compared with (catalog names).")

    def recorded(self, rule: str, *matchers: str) -> str:
        """A selector of a cluster-level recording rule (no job or node label: the rules aggregate them
        away), filtered by the cluster variable and `matchers`."""
        parts = [*self._cluster, *matchers]
        return f"{rule}{{{','.join(parts)}}}" if parts else rule

    def m(self, metric: str, *matchers: str, node: bool = True) -> str:
        """A selector of the site's series filtered by the cluster and node variables and any further
        matchers: m(name, MODEL)."""
        return self._rules.sel(metric, *self._cluster, *((NODE,) if node else ()), *matchers)

    def by(self, *labels: str) -> str:
        """The grouping of an aggregation, cluster labels first: f"sum{s.by('api')}(x)" is
        `sum by (cluster, api) (x)`, or `sum(x)` with neither."""
        kept = self.cluster_labels + list(labels)
        return f" by ({', '.join(kept)}) " if kept else ""

    def on(self, *labels: str) -> str:
        """A vector match on the cluster labels and `labels`."""
        return on(self.cluster_labels + list(labels))

    def of_kinds(self, expr: str) -> str:
        """Keep the series of engines of the selected kinds, each with its `engine_kind` label.

        An engine's series carry `engine`, not its kind: they are joined to llmcost_engine_info (one
        series of value 1 per engine) on the node and the engine, so the values are unchanged.
        """
        return (f"(({expr}) * {self.on('instance', 'engine')} group_left (engine_kind) "
                f"{self.m('llmcost_engine_info', ENGINE_KIND)})")

    def of_selected_engines(self, expr: str) -> str:
        """Keep the series of engines of the selected kinds that serve a selected model.

        Spend, capacity, energy and idle spend are per engine (no `model` label): an engine's spend is
        not split between its models, so the model filter selects whole engines.
        """
        return self.of_kinds(f"({expr}) and {self.on('instance', 'engine')} {self.m('llmcost_tokens_total', MODEL)}")

    def legend(self, text: str) -> str:
        """A legend that names the cluster, where there are cluster labels."""
        return f"{text} ({{{{{self.cluster_labels[0]}}}}})" if text and self.cluster_labels else text


# ---------------------------------------------------------------------------------------------
# Queries


@attr.s
class PromTarget:
    """A Prometheus query against the `datasource` variable."""

    expr = attr.ib(validator=attr.validators.instance_of(str))
    legendFormat = attr.ib(default="")
    instant = attr.ib(default=False)
    format = attr.ib(default="time_series")
    refId = attr.ib(default="")

    def __attrs_post_init__(self):
        if not self.expr.strip():
            raise ValueError("empty PromQL expression")

    def to_json_data(self):
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "exemplar": False,
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legendFormat,
            "range": not self.instant,
            "refId": self.refId,
        }


def q(expr: str, legend: str = "") -> PromTarget:
    """One query; `legend` is a Grafana legend format such as "{{engine}} @ {{instance}}"."""
    return PromTarget(expr=" ".join(expr.split()), legendFormat=legend)


def _targets(targets, instant: bool, fmt: str = "time_series") -> list[PromTarget]:
    if not targets:
        raise ValueError("a panel needs at least one query")
    return [attr.evolve(t, refId=string.ascii_uppercase[i], instant=instant, format=fmt)
            for i, t in enumerate(targets)]


def thresholds(*steps) -> list[dict]:
    """thresholds("green", (0.8, "red")): a base colour, then (value, colour) steps."""
    base, *rest = steps
    return [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in rest]


NEUTRAL = thresholds("blue")
GAIN = thresholds("red", (0, "green"))  # negative is bad (savings)


def _checked(title: str, unit: str, description: str) -> None:
    if not title or not unit or not description or not description.strip():
        raise ValueError(f"panel {title!r}: title, unit and description are required")


# ---------------------------------------------------------------------------------------------
# Panels


@attr.s
class _ReactValuePanel(core.Panel):
    """Shared fields of the React gauge and bar gauge (grafanalib's own write the pre-React layout)."""

    unit = attr.ib(default="")
    min = attr.ib(default=None)
    max = attr.ib(default=None)
    decimals = attr.ib(default=None)
    panel_type = ""
    display_options: dict = {}

    def to_json_data(self):
        return self.panel_json({
            "fieldConfig": {"defaults": {"color": {"mode": "thresholds"}, "decimals": self.decimals, "mappings": [],
                                         "max": self.max, "min": self.min, "unit": self.unit},
                            "overrides": []},
            "options": {**self.display_options,
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
            "type": self.panel_type,
        })


@attr.s
class Gauge(_ReactValuePanel):
    """React gauge panel."""

    panel_type = "gauge"
    display_options = {"orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}


@attr.s
class BarGauge(_ReactValuePanel):
    """React bar gauge panel."""

    panel_type = "bargauge"
    display_options = {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True}


def _common(title, description):
    return dict(title=title, description=" ".join(description.split()), dataSource=DATASOURCE,
                maxDataPoints=None)


def timeseries(title: str, *targets: PromTarget, unit: str, description: str, width: int | None = None,
               height: int | None = None, min: int | None = None, bars: bool = False, stack: bool = False,
               legend_calcs=("lastNotNull", "mean", "max"), min_step: str | None = None):
    """Values over the dashboard's time range (range queries); `stack` stacks the series (parts of a whole);
    `min_step`: Grafana's "Min interval", the smallest step the panel asks for (values that change
    only that often need no finer one)."""
    _checked(title, unit, description)
    stacking = {"group": "A", "mode": "normal"} if stack else {}
    panel = core.TimeSeries(**_common(title, description), targets=_targets(targets, instant=False), unit=unit,
                            valueMin=min, drawStyle="bars" if bars else "line", fillOpacity=60 if bars else 10,
                            lineWidth=1, showPoints="never", spanNulls=False, tooltipMode="multi", stacking=stacking,
                            legendDisplayMode="table", legendPlacement="bottom", legendCalcs=list(legend_calcs),
                            thresholds=NEUTRAL, interval=min_step)
    return _sized(panel, "timeseries", width, height)


def stat(title: str, *targets: PromTarget, unit: str, description: str, width: int | None = None,
         height: int | None = None, steps: list[dict] = NEUTRAL, decimals: int | None = None):
    """One number per series, from an instant query at the end of the range."""
    _checked(title, unit, description)
    panel = core.Stat(**_common(title, description), targets=_targets(targets, instant=True), format=unit,
                      thresholds=steps, color={"mode": "thresholds"}, graphMode="none", colorMode="value",
                      reduceCalc="lastNotNull", noValue=None, decimals=decimals, textMode="auto")
    return _sized(panel, "stat", width, height)


def gauge(title: str, *targets: PromTarget, unit: str, description: str, width: int | None = None,
          height: int | None = None, min: float | None = 0, max: float | None = 1, steps: list[dict] = NEUTRAL):
    """A dial per series, from an instant query (ratios: 0 to 1)."""
    _checked(title, unit, description)
    panel = Gauge(**_common(title, description), targets=_targets(targets, instant=True), unit=unit, min=min,
                  max=max, thresholds=steps)
    return _sized(panel, "gauge", width, height)


def bargauge(title: str, *targets: PromTarget, unit: str, description: str, width: int | None = None,
             height: int | None = None, min: float | None = 0, max: float | None = None,
             steps: list[dict] = NEUTRAL):
    """A bar per series, from an instant query."""
    _checked(title, unit, description)
    panel = BarGauge(**_common(title, description), targets=_targets(targets, instant=True), unit=unit, min=min,
                     max=max, thresholds=steps)
    return _sized(panel, "bargauge", width, height)


def column(name: str, target: PromTarget, unit: str) -> tuple[str, PromTarget, str]:
    """One value column of a table: its header, its query (instant, one row per label set), its unit."""
    return name, target, unit


def table(title: str, *columns: tuple[str, PromTarget, str], unit: str, description: str,
          width: int | None = None, height: int | None = None, hide=("Time", "job")):
    """Instant queries joined on their labels (Grafana's merge transformation), one column each.

    Every query must aggregate to the same label set (e.g. `max by (instance, engine, model)`) so
    the rows line up. `unit` is the default; each column carries its own unit as an override.
    """
    _checked(title, unit, description)
    targets = _targets([t for _, t, _ in columns], instant=True, fmt="table")
    names = {f"Value #{t.refId}": name for (name, _, _), t in zip(columns, targets)}
    overrides = [{"matcher": {"id": "byName", "options": name},
                  "properties": [{"id": "unit", "value": column_unit}]}
                 for name, _, column_unit in columns]
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {h: True for h in hide}, "indexByName": {},
                                       "renameByName": names}},
    ]
    panel = core.Table(**_common(title, description), targets=targets, unit=unit, overrides=overrides,
                       transformations=transformations, thresholds=NEUTRAL, filterable=True)
    return _sized(panel, "table", width, height)


def _sized(panel, kind: str, width: int | None, height: int | None):
    w, h = SIZES[kind]
    return attr.evolve(panel, gridPos=core.GridPos(h=height or h, w=width or w, x=0, y=0))


# ---------------------------------------------------------------------------------------------
# Layout and the dashboard


@attr.s(frozen=True)
class Question:
    text = attr.ib()
    panels = attr.ib()


def question(text: str, panels: list) -> Question:
    """A question the dashboard answers, and the panels that answer it (laid out left to right)."""
    return Question(text, list(panels))


def layout(questions: list[Question]) -> list:
    """Place panels left to right, wrapping at 24 columns; each question starts a new band."""
    placed, y = [], 0
    for item in questions:
        x, band = 0, 0
        for panel in item.panels:
            pos = panel.gridPos
            if x + pos.w > GRID_WIDTH:
                x, y, band = 0, y + band, 0
            placed.append(attr.evolve(panel, gridPos=core.GridPos(h=pos.h, w=pos.w, x=x, y=y)))
            x, band = x + pos.w, max(band, pos.h)
        y += band
    return placed


def _legends(panel, scope: Scope):
    return attr.evolve(panel, targets=[attr.evolve(t, legendFormat=scope.legend(t.legendFormat)) for t in panel.targets])


_UID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def dashboard(*, scope: Scope, uid: str, title: str, description: str, questions: list[Question],
              variables: list[Variable], time_from: str = "now-6h") -> core.Dashboard:
    """A house dashboard: fixed uid, `datasource` variable first, then the scope's `cluster` variable
    (if any), shared crosshair, tagged and linked to the other llm-cost-exporter dashboards."""
    if not _UID.match(uid):
        raise ValueError(f"dashboard uid {uid!r}: lowercase letters, digits and '-', at most 40 characters")
    return core.Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["llm-cost-exporter", "llm"],
        timezone="browser",
        time=core.Time(time_from, "now"),
        refresh="1m",
        schemaVersion=SCHEMA_VERSION,
        graphTooltip=core.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=core.Templating(list=[DATASOURCE_VARIABLE, *filter(None, [scope.cluster_variable]), *variables]),
        links=[{"asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
                "tags": ["llm-cost-exporter"], "targetBlank": False, "title": "llm-cost-exporter",
                "type": "dashboards"}],
        panels=layout([question(item.text, [_legends(panel, scope) for panel in item.panels]) for item in questions]),
    ).auto_panel_ids()
