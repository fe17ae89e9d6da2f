"""`llm-cost-exporter report`: what a period really cost per 1M tokens against the API, from Prometheus.

Every column comes from the same period [start, end]: instant queries at `end` over a range of
`end - start`, so it works across nodes and exporter restarts like any PromQL, and the columns agree
row by row: ACTUAL/1M = AT 100%/1M / UTILIZATION (docs/cost-model.md, "The report"). For long
periods it reads the hourly recorded series of the project's rules instead of raw counters
(`--source`), and the header says which. Works against any Prometheus-API endpoint (Prometheus,
VictoriaMetrics, Thanos, Mimir), with a tenant header, a bearer token or basic auth (`promapi`).
Only urllib and json: nothing to install unless `--output` asks for a chart (matplotlib, lazily).

Sample output, from the demo:

    llm-cost-exporter report 2026-12-01T12:02:10Z to 2026-12-01T12:02:38Z (28s), http://127.0.0.1:38047
    from raw counters (increase over 28s)

    ENGINE    MODEL                             TOKENS  UTILIZATION  GPU BUSY  ACTUAL/1M  AT 100%/1M  SELF-HOSTED  API          API/1M  BREAK-EVEN  API-EQUIVALENT  SAVINGS
    llama-8b  meta-llama/Llama-3.1-8B-Instruct   1.02M        24.0%     36.5%     $1.299      $0.312        $1.32  gpt-4o       $4.094        7.6%           $4.17    $2.85
                                                                                                                   gpt-4o-mini  $0.246      126.8%          $0.250   -$1.07
    ...
    meta-llama/Llama-3.1-8B-Instruct on llama-8b: self-hosting saved $2.85 vs gpt-4o ($1.299/1M vs $4.094/1M)
    ...
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from exporter import promapi, units
from exporter.promapi import PrometheusAPI

PREFIX = "llm-cost-exporter report: "
MIN_STEP = 15.0  # a typical scrape interval: finer steps only repeat samples
CHART_POINTS = 200
MAX_POINTS = 11_000  # Prometheus' limit of points per series in one range query
RECORDED_FROM = 86400.0  # --source=auto reads the hourly recorded series for periods of a day or more
HOUR = 3600.0


class ReportError(Exception):
    """Ends the report with one line on stderr and exit status 1."""


class UsageError(ReportError):
    """A flag the report cannot use: one line, exit status 2 (as argparse's own errors)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    promapi.add_arguments(parser)
    parser.add_argument("--start", metavar="TIME", default="now-24h",
                        help="start of the period: RFC3339 (2024-05-01T00:00:00Z), Unix seconds, or now-DURATION")
    parser.add_argument("--end", metavar="TIME", default="now", help="end of the period, in the same forms as --start")
    parser.add_argument("--source", choices=("auto", "raw", "recorded"), default="auto",
                        help="raw: increase() over the exporters' counters; recorded: the rules' hourly series "
                             "(*:increase1h, docs/scaling.md); auto: recorded for periods of a day or more where "
                             "they cover the period's start, else raw")
    parser.add_argument("--step", metavar="DURATION", default="auto",
                        help=f"chart resolution: a duration (30s, 5m) or auto (range/{CHART_POINTS}, at least {MIN_STEP:g}s)")
    parser.add_argument("--output", metavar="PNG", default=None,
                        help="also write a PNG chart of actual vs 100%% utilization vs API cost per 1M tokens")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-cost-exporter report", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Real cost per 1M tokens over a period, against the API, from Prometheus.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def connect(args: argparse.Namespace) -> PrometheusAPI:
    """The client of --prometheus.* (for every command that reads Prometheus): usage errors exit 2."""
    try:
        return promapi.connect(args)
    except promapi.ConnectionConfigError as err:
        raise UsageError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    try:
        start, end, step = resolve_period(args.start, args.end, args.step, time.time())
        prometheus = connect(args)
        report = collect(prometheus, start, end, args.source)
        if args.output:  # before printing, so a failed chart leaves only the error line
            write_chart(prometheus, report, step, args.output)
        print(render(report))
        if args.output:
            print(f"\nchart: {args.output}")
    except UsageError as err:
        return _fail(str(err), 2)
    except (ReportError, promapi.QueryError) as err:
        return _fail(str(err))
    except Exception as err:  # noqa: BLE001 - a CLI answers with one line, never a traceback
        return _fail(f"unexpected {type(err).__name__}: {err}")
    return 0


def _fail(message: str, status: int = 1, prefix: str = PREFIX) -> int:
    """One line on stderr, the command's name first; the exit status."""
    print(prefix + " ".join(message.split()), file=sys.stderr)
    return status


# --- times and durations ---------------------------------------------------------------------

def parse_duration(text: str) -> float:
    """Prometheus-style duration (90s, 1h30m, 7d) in seconds."""
    try:
        return units.parse_duration(text)
    except ValueError:
        raise UsageError(f"cannot read duration {text!r}: use e.g. 30s, 5m, 1h30m, 7d") from None


def parse_time(text: str, now: float) -> float:
    """RFC3339, Unix seconds, `now`, or `now-DURATION` / `now+DURATION`."""
    text = text.strip()
    if text.startswith("now"):
        rest = text[3:]
        if not rest:
            return now
        if rest[0] in "+-":
            try:
                return now + (1 if rest[0] == "+" else -1) * parse_duration(rest[1:])
            except ReportError:
                pass
    else:
        try:
            seconds = float(text)
            if math.isfinite(seconds):
                return seconds
        except ValueError:
            pass
        try:
            # Python 3.10 fromisoformat does not take "Z"; RFC3339 without offset is read as UTC.
            moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
        except ValueError:
            pass
    raise UsageError(f"cannot read time {text!r}: use RFC3339 (2024-05-01T00:00:00Z), Unix seconds, or now-24h")


def resolve_period(start: str, end: str, step: str, now: float) -> tuple[float, float, float]:
    t0, t1 = parse_time(start, now), parse_time(end, now)
    if t1 <= t0:
        raise UsageError(f"--end ({_iso(t1)}) must be after --start ({_iso(t0)})")
    if step == "auto":
        return t0, t1, max(MIN_STEP, (t1 - t0) / CHART_POINTS)
    try:
        seconds = float(step)
    except ValueError:
        seconds = parse_duration(step)
    if not seconds > 0:
        raise UsageError(f"--step must be positive, got {step!r}")
    return t0, t1, seconds


def promql_range(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"  # Prometheus 2.42 takes integer durations only


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human_duration(seconds: float) -> str:
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


# --- what is read: the same quantities from raw counters or from the hourly recorded series -------

@dataclass(frozen=True)
class Basis:
    """PromQL for each quantity of the period; `{r}` is the period as a range, `{t}` its seconds.
    The groupings name the labels the report needs and drop the rest, so extra labels (cluster,
    namespace, pod) sum away; `tier` is kept, so an API priced at several tiers is never summed."""
    name: str
    tokens: str
    engine_spend: str
    model_spend: str
    api_equivalent: str
    capacity_seconds: str  # the integral of each engine's capacity (tokens/s) over the period
    gpu_busy: str
    node_spend: str
    unallocated: str


RAW = Basis(
    name="raw counters",
    tokens="sum by (engine, model) (increase(llmcost_tokens_total[{r}]))",
    engine_spend="sum by (engine, currency) (increase(llmcost_engine_spend_total[{r}]))",
    model_spend="sum by (engine, model, currency) (increase(llmcost_model_spend_total[{r}]))",
    api_equivalent="sum by (engine, model, api, tier, currency) (increase(llmcost_api_equivalent_spend_total[{r}]))",
    # Time-weighted per node and engine over all its samples (a reload may change `source`), then summed.
    capacity_seconds="sum by (engine) (sum without (source) (sum_over_time(llmcost_capacity_tokens_per_second[{r}]))"
                     " / sum without (source) (count_over_time(llmcost_capacity_tokens_per_second[{r}]))) * {t}",
    gpu_busy="avg by (engine) (avg_over_time(llmcost_engine_gpu_utilization_ratio[{r}]))",
    node_spend="sum by (currency) (increase(llmcost_spend_total[{r}]))",
    unallocated="sum by (currency) (increase(llmcost_unallocated_spend_total[{r}]))",
)

# The rules' hourly recordings (rules/config.yaml, docs/scaling.md), evaluated once an hour: the sum
# of a period's samples is its increase, each hour counted once, gaps (a node not there) counted as 0.
RECORDED = Basis(
    name="recorded hourly series",
    tokens="sum by (engine, model) (sum_over_time(engine_model:llmcost_tokens:increase1h[{r}]))",
    engine_spend="sum by (engine, currency) (sum_over_time(engine:llmcost_engine_spend:increase1h[{r}]))",
    model_spend="sum by (engine, model, currency) (sum_over_time(engine_model:llmcost_model_spend:increase1h[{r}]))",
    api_equivalent="sum by (engine, model, api, tier, currency)"
                   " (sum_over_time(engine_model_api:llmcost_api_equivalent_spend:increase1h[{r}]))",
    # The hour's highest capacity: a configured one is constant, an observed peak only grows.
    capacity_seconds="sum by (engine) (sum_over_time(engine:llmcost_capacity_tokens_per_second:max1h[{r}])) * 3600",
    gpu_busy="avg by (engine) (avg_over_time(engine:llmcost_engine_gpu_utilization:avg1h[{r}]))",
    node_spend="sum by (currency) (sum_over_time(instance:llmcost_spend:increase1h[{r}]))",
    unallocated="sum by (currency) (sum_over_time(instance:llmcost_unallocated_spend:increase1h[{r}]))",
)
RECORDED_PROBE = "count(last_over_time(engine_model:llmcost_tokens:increase1h[1h]))"
# What the report shows instead where a series is missing (a rule file without that recording, an
# exporter too old to have the metric): said under the header, never silently.
FALLBACKS = {
    "model_spend": "models split their engine's spend by tokens",
    "capacity_seconds": "no UTILIZATION, AT 100% or BREAK-EVEN",
    "gpu_busy": "no GPU BUSY",
    "unallocated": "no unallocated spend in the footer",
}


def series_name(template: str) -> str:
    found = re.search(r"[a-z_]+:llmcost_[a-z_]+:[a-z0-9_]+|llmcost_[a-z_]+", template)
    return found.group(0) if found else template


def choose_basis(prometheus: PrometheusAPI, start: float, end: float, source: str) -> tuple[Basis, str]:
    """The basis and why: recorded series only where they reach back to the period's start."""
    if source == "raw":
        return RAW, "asked for"
    if source == "auto" and end - start < RECORDED_FROM:
        return RAW, f"period under {_human_duration(RECORDED_FROM)}"
    recorded = prometheus.query(RECORDED_PROBE, min(start + HOUR, end))
    if recorded and recorded[0][1] > 0:
        return RECORDED, "asked for" if source == "recorded" else f"period of {_human_duration(RECORDED_FROM)} or more"
    if source == "recorded":
        raise ReportError(f"no recorded hourly series (engine_model:llmcost_tokens:increase1h) in {prometheus.url} "
                          f"in the hour after {_iso(start)}: load the project's rule file, or use --source=raw")
    return RAW, "no recorded hourly series (engine_model:llmcost_tokens:increase1h) at the period's start"


# --- the report ----------------------------------------------------------------------------------

@dataclass
class ApiLine:
    api: str  # the API's name, with its tier where not standard: gpt-4o (batch), as the landing page
    equivalent: float  # what the API would have billed for this model's traffic
    price_per_million: float | None  # equivalent / tokens: the API's price for this traffic mix
    breakeven: float | None  # the utilization at which self-hosting costs what the API does
    savings: float | None  # equivalent - self-hosted share; negative: the API was cheaper


@dataclass
class ModelLine:
    engine: str
    model: str
    tokens: float
    utilization: float | None  # tokens / the capacity-seconds the model's share of spend paid for
    gpu_busy: float | None  # the engine's GPUs (NVML), averaged over the period
    full_per_million: float | None  # the published-analysis figure: the engine's cost at 100% utilization
    actual_per_million: float | None  # self_hosted / tokens; None while no tokens flowed
    self_hosted: float | None  # the model's part of its engine's spend
    apis: list[ApiLine] = field(default_factory=list)


@dataclass
class Totals:
    nodes: float | None
    engines: float
    unallocated: float | None


@dataclass
class Report:
    url: str
    start: float
    end: float
    currency: str
    basis: str
    reason: str
    models: list[ModelLine]
    totals: Totals | None = None
    connection: str = ""
    notes: list[str] = field(default_factory=list)  # what was missing and what the report did instead


@dataclass
class Period:
    """The period's quantities, keyed by the labels each was grouped by."""
    tokens: dict[tuple, float]
    engine_spend: dict[str, float]
    model_spend: dict[tuple, float]
    equivalent: dict[tuple, float]
    capacity_seconds: dict[str, float]
    gpu_busy: dict[str, float]


def collect(prometheus: PrometheusAPI, start: float, end: float, source: str = "auto") -> Report:
    basis, reason = choose_basis(prometheus, start, end, source)
    r, t = promql_range(end - start), max(1, round(end - start))

    def by(template: str, *labels: str) -> dict[tuple, float]:
        expr = template.format(r=r, t=t)
        return {tuple(m.get(k, "") for k in labels): v for m, v in prometheus.query(expr, end)}

    tokens = by(basis.tokens, "engine", "model")
    if not tokens:
        raise ReportError(f"no llmcost_tokens_total series in {prometheus.url} between {_iso(start)} and {_iso(end)} "
                          f"(from {basis.name}; increase() needs two samples): is it scraping llm-cost-exporter, "
                          "and was it running then?")
    spend = by(basis.engine_spend, "engine", "currency")
    model_spend = by(basis.model_spend, "engine", "model", "currency")
    equivalent = by(basis.api_equivalent, "engine", "model", "api", "tier", "currency")
    node_spend, unallocated = by(basis.node_spend, "currency"), by(basis.unallocated, "currency")
    currencies = {k[-1] for k in (*spend, *equivalent, *node_spend)}
    if len(currencies) > 1:
        raise ReportError(f"spend is in several currencies ({', '.join(sorted(currencies))}); the report does not convert")
    period = Period(tokens, {e: v for (e, _), v in spend.items()}, {k[:2]: v for k, v in model_spend.items()},
                    equivalent, {k[0]: v for k, v in by(basis.capacity_seconds, "engine").items()},
                    {k[0]: v for k, v in by(basis.gpu_busy, "engine").items()})
    keys = sorted(set(tokens) | {(e, "") for e in period.engine_spend if e not in {k[0] for k in tokens}})
    models = [line for engine in sorted({k[0] for k in keys}) for line in engine_lines(engine, keys, period)]
    totals = Totals(_one(node_spend), sum(v for v in period.engine_spend.values()), _one(unallocated))
    found = {"model_spend": model_spend, "capacity_seconds": period.capacity_seconds, "gpu_busy": period.gpu_busy,
             "unallocated": unallocated}
    notes = [f"no {series_name(getattr(basis, key))} in the period: {FALLBACKS[key]}"
             for key, values in found.items() if not values]
    return Report(prometheus.url, start, end, currencies.pop() if currencies else "USD", basis.name, reason, models,
                  totals, prometheus.credentials.describe(), notes)


def _one(values: dict[tuple, float]) -> float | None:
    return sum(values.values()) if values else None


def model_shares(engine: str, models: list[str], period: Period) -> dict[str, float]:
    """How the engine's spend splits over its models: as the exporter split it
    (llmcost_model_spend_total: token-weighted work, an estimate), else by tokens, else evenly."""
    for weights in ([period.model_spend.get((engine, m), 0.0) for m in models],
                    [period.tokens.get((engine, m), 0.0) for m in models]):
        total = sum(weights)
        if total > 0:
            return {m: w / total for m, w in zip(models, weights, strict=True)}
    return {m: 1 / len(models) for m in models}


def engine_lines(engine: str, keys: list[tuple], period: Period) -> list[ModelLine]:
    """One line per model of the engine; their SELF-HOSTED sum to the engine's spend exactly."""
    models = [m for e, m in keys if e == engine]
    shares = model_shares(engine, models, period)
    spend = period.engine_spend.get(engine)
    capacity = period.capacity_seconds.get(engine)
    capacity = capacity if capacity is not None and capacity > 0 else None
    full = spend / capacity * 1e6 if spend is not None and capacity else None
    lines = []
    for model in models:
        tokens = period.tokens.get((engine, model), 0.0)
        self_hosted = spend * shares[model] if spend is not None else None
        # The model's tokens over the capacity its share of the spend bought: with one model, tokens /
        # (capacity x period); so that ACTUAL = AT 100% / UTILIZATION holds on every row.
        utilization = tokens / (capacity * shares[model]) if capacity and shares[model] > 0 else None
        actual = self_hosted / tokens * 1e6 if self_hosted is not None and tokens > 0 else None
        line = ModelLine(engine, model, tokens, utilization, period.gpu_busy.get(engine), full, actual, self_hosted)
        for (e, m, api, tier, _), value in sorted(period.equivalent.items()):
            if (e, m) == (engine, model):
                price = value / tokens * 1e6 if tokens > 0 else None
                line.apis.append(ApiLine(f"{api} ({tier})" if tier not in ("", "standard") else api, value, price,
                                         full / price if full is not None and price else None,
                                         value - self_hosted if self_hosted is not None else None))
        lines.append(line)
    return lines


# --- text output -------------------------------------------------------------------------------

def _money(value: float | None, currency: str, per_million: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    digits = 3 if per_million or abs(value) < 1 else 2  # small sums and prices need the extra digit
    amount = f"{abs(value):,.{digits}f}"
    text = f"${amount}" if currency == "USD" else f"{amount} {currency}"
    return ("-" if value < 0 else "") + text


def _count(value: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1%}"


COLUMNS = ("ENGINE", "MODEL", "TOKENS", "UTILIZATION", "GPU BUSY", "ACTUAL/1M", "AT 100%/1M", "SELF-HOSTED",
           "API", "API/1M", "BREAK-EVEN", "API-EQUIVALENT", "SAVINGS")
LEFT = frozenset({"ENGINE", "MODEL", "API"})
NO_TOKENS = "(no tokens)"  # an engine with spend but no token series in the period (e.g. multi-node workers)


def render(report: Report) -> str:
    c = report.currency
    rows = []
    for m in report.models:
        model_cells = [m.engine, m.model or NO_TOKENS, _count(m.tokens), _percent(m.utilization), _percent(m.gpu_busy),
                       _money(m.actual_per_million, c, True), _money(m.full_per_million, c, True), _money(m.self_hosted, c)]
        for i, a in enumerate(m.apis or [None]):
            api_cells = ["-"] * 5 if a is None else [a.api, _money(a.price_per_million, c, True), _percent(a.breakeven),
                                                     _money(a.equivalent, c), _money(a.savings, c)]
            # Further APIs of the same model: leave the model's cells blank so the rows read as a group.
            rows.append((model_cells if i == 0 else [""] * len(model_cells)) + api_cells)
    via = f" ({report.connection})" if report.connection else ""
    lines = [f"llm-cost-exporter report {_iso(report.start)} to {_iso(report.end)} ({_human_duration(report.end - report.start)}),"
             f" {report.url}{via}", f"from {report.basis} ({report.reason})", *report.notes, ""]
    lines += format_table(COLUMNS, rows, LEFT)
    lines += ["", "Every column covers the same period: ACTUAL/1M = AT 100%/1M / UTILIZATION on every row.",
              "ACTUAL: spend while the GPUs were held (idle included) / tokens. AT 100%: the figure published analyses quote. "
              "UTILIZATION: tokens / (capacity x period), of the capacity the model's share of the spend paid for. "
              "GPU BUSY: NVML, the engine's GPUs.", ""]
    if report.totals is not None:
        lines += [_totals_line(report.totals, c), ""]
    lines += verdicts(report)
    return "\n".join(lines)


def _totals_line(totals: Totals, currency: str) -> str:
    return (f"Spend over the period: nodes {_money(totals.nodes, currency)}; engines {_money(totals.engines, currency)}; "
            f"held by no engine {_money(totals.unallocated, currency)}")


def format_table(headers, rows, left=frozenset()) -> list[str]:
    """Columns padded to their widest cell: `left` ones left-aligned, the rest (figures) right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(v).ljust(w) if h in left else str(v).rjust(w)
                         for h, v, w in zip(headers, cells, widths, strict=True)).rstrip()
    return [line(headers)] + [line(r) for r in rows]


def verdicts(report: Report) -> list[str]:
    c, out = report.currency, []
    for m in report.models:
        for a in m.apis:
            subject = f"{m.model} on {m.engine}:"
            if a.savings is None:
                out.append(f"{subject} no self-hosted spend recorded for the engine, no comparison with {a.api}")
            elif a.savings >= 0:
                out.append(f"{subject} self-hosting saved {_money(a.savings, c)} vs {a.api} "
                           f"({_money(m.actual_per_million, c, True)}/1M vs {_money(a.price_per_million, c, True)}/1M)")
            else:
                out.append(f"{subject} the API would have been {_money(-a.savings, c)} cheaper ({a.api} "
                           f"{_money(a.price_per_million, c, True)}/1M vs {_money(m.actual_per_million, c, True)}/1M "
                           f"self-hosted at {_percent(m.utilization)} utilization)")
    return out


# --- chart ---------------------------------------------------------------------------------------

def chart_queries(step: float) -> dict[str, str]:
    w = promql_range(max(300.0, 4 * step))  # rate() needs several scrapes per window
    return {
        "actual": f"sum by (engine) (rate(llmcost_engine_spend_total[{w}]))"
                  f" / sum by (engine) (rate(llmcost_tokens_total[{w}])) * 1e6",
        "full": "avg by (engine, model) (llmcost_cost_per_million_tokens_at_full_utilization)",
        "api": "avg by (engine, model, api) (llmcost_api_blended_price_per_million_tokens)",
    }


def write_chart(prometheus: PrometheusAPI, report: Report, step: float, path: str) -> None:
    try:
        import matplotlib.dates as mdates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("--output needs matplotlib: pip install 'llm-cost-exporter[charts]'") from None
    period = report.end - report.start
    if period / step > MAX_POINTS:  # Prometheus would refuse; say what works instead
        raise UsageError(f"--step {_human_duration(step)} gives {period / step:,.0f} points over {_human_duration(period)}, "
                          f"Prometheus allows {MAX_POINTS:,}: use --step {_human_duration(math.ceil(period / MAX_POINTS))} or more")
    series = {name: prometheus.query_range(expr, report.start, report.end, step) for name, expr in chart_queries(step).items()}
    figure = Figure(figsize=(12, 1.2 + 3.4 * len(report.models)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(report.models), 1, sharex=True, squeeze=False)[:, 0]
    for ax, model in zip(axes, report.models, strict=True):
        _plot_model(ax, model, series, report.currency)
    axes[-1].set_xlabel("time (UTC)")
    axes[-1].set_xlim(datetime.fromtimestamp(report.start, timezone.utc), datetime.fromtimestamp(report.end, timezone.utc))
    locator = mdates.AutoDateLocator(tz=timezone.utc)  # the whole period, even where data is missing
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    figure.suptitle(f"Cost per 1M tokens, {_iso(report.start)} to {_iso(report.end)} "
                    f"(step {_human_duration(step)})", fontsize=13)
    try:
        figure.savefig(path, format="png", dpi=110)
    except OSError as err:
        raise ReportError(f"cannot write {path}: {err.strerror or err}") from None


_API_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _plot_model(ax, model: ModelLine, series: dict, currency: str) -> None:
    def points(values):
        times = [datetime.fromtimestamp(t, timezone.utc) for t, _ in values]
        return times, [v if math.isfinite(v) else math.nan for _, v in values]  # no tokens: a gap, not infinity

    for labels, values in series["actual"]:
        if labels.get("engine") == model.engine:
            ax.plot(*points(values), color="tab:red", linewidth=2.2, label="actual (allocation basis)")
    for labels, values in series["full"]:
        if (labels.get("engine"), labels.get("model")) == (model.engine, model.model):
            ax.plot(*points(values), color="tab:blue", linestyle="--", linewidth=1.8, label="at 100% utilization")
    apis = sorted({labels.get("api", "") for labels, _ in series["api"]})
    for labels, values in sorted(series["api"], key=lambda s: s[0].get("api", "")):
        if (labels.get("engine"), labels.get("model")) == (model.engine, model.model):
            color = _API_COLORS[apis.index(labels.get("api", "")) % len(_API_COLORS)]  # same API, same color everywhere
            ax.plot(*points(values), color=color, linestyle=":", linewidth=2.2, label=f"API {labels.get('api')}")
    ax.set_title(f"{model.model} on {model.engine}: {_percent(model.utilization)} utilization, "
                 f"actual {_money(model.actual_per_million, currency, True)}/1M", fontsize=11, loc="left")
    ax.set_ylabel(f"{currency} per 1M tokens")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # outside: never hides a line


if __name__ == "__main__":
    sys.exit(main())
