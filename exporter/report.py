"""`llm-cost-exporter report`: what a period really cost per 1M tokens against the API, from Prometheus.

Queries the exporter's series over [start, end] (instant queries at `end`, range `[Ns]`), so it
works across nodes and exporter restarts like any PromQL. Only urllib and json: nothing to install
unless `--output` asks for a chart (matplotlib, imported lazily).

Sample output, from the demo (see docs/cost-model.md for the formulas):

    llm-cost-exporter report 2026-11-23T07:28:35Z to 2026-11-23T07:29:03Z (28s), Prometheus http://127.0.0.1:38047

    ENGINE    MODEL                             TOKENS  UTILIZATION  GPU BUSY  ACTUAL/1M  AT 100%/1M  SELF-HOSTED  API          API/1M  API-EQUIVALENT  SAVINGS
    llama-8b  meta-llama/Llama-3.1-8B-Instruct   1.02M        24.0%     36.5%     $1.299      $0.328        $1.32  gpt-4o       $4.094           $4.17    $2.85
                                                                                                                   gpt-4o-mini  $0.246          $0.250   -$1.07
    qwen-32b  Qwen/Qwen2.5-32B-Instruct           275k        21.6%     36.5%     $4.820      $1.125        $1.32  gpt-4o       $4.094           $1.12  -$0.199
                                                                                                                   gpt-4o-mini  $0.246          $0.067   -$1.26
    ...
    meta-llama/Llama-3.1-8B-Instruct on llama-8b: self-hosting saved $2.85 vs gpt-4o ($1.299/1M vs $4.094/1M)
    meta-llama/Llama-3.1-8B-Instruct on llama-8b: the API would have been $1.07 cheaper (gpt-4o-mini $0.246/1M vs ...)
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone

from exporter import units

PREFIX = "llm-cost-exporter report: "
MIN_STEP = 15.0  # a typical scrape interval: finer steps only repeat samples
CHART_POINTS = 200
MAX_POINTS = 11_000  # Prometheus' limit of points per series in one range query


class ReportError(Exception):
    """Ends the report with one line on stderr and exit status 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus.url", dest="prometheus_url", metavar="URL", default="http://localhost:9090",
                        help="Prometheus server that scrapes the exporters")
    parser.add_argument("--start", metavar="TIME", default="now-24h",
                        help="start of the period: RFC3339 (2024-05-01T00:00:00Z), Unix seconds, or now-DURATION")
    parser.add_argument("--end", metavar="TIME", default="now", help="end of the period, in the same forms as --start")
    parser.add_argument("--step", metavar="DURATION", default="auto",
                        help=f"chart resolution: a duration (30s, 5m) or auto (range/{CHART_POINTS}, at least {MIN_STEP:g}s)")
    parser.add_argument("--output", metavar="PNG", default=None,
                        help="also write a PNG chart of actual vs 100%% utilization vs API cost per 1M tokens")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0, help="seconds to wait for each Prometheus query")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-cost-exporter report", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Real cost per 1M tokens over a period, against the API, from Prometheus.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        start, end, step = resolve_period(args.start, args.end, args.step, time.time())
        prometheus = PrometheusAPI(args.prometheus_url, args.timeout)
        report = collect(prometheus, start, end)
        if args.output:  # before printing, so a failed chart leaves only the error line
            write_chart(prometheus, report, step, args.output)
        print(render(report))
        if args.output:
            print(f"\nchart: {args.output}")
    except ReportError as err:
        return _fail(str(err))
    except Exception as err:  # noqa: BLE001 - a CLI answers with one line, never a traceback
        return _fail(f"unexpected {type(err).__name__}: {err}")
    return 0


def _fail(message: str) -> int:
    print(PREFIX + " ".join(message.split()), file=sys.stderr)
    return 1


# --- times and durations ---------------------------------------------------------------------

def parse_duration(text: str) -> float:
    """Prometheus-style duration (90s, 1h30m, 7d) in seconds."""
    try:
        return units.parse_duration(text)
    except ValueError:
        raise ReportError(f"cannot read duration {text!r}: use e.g. 30s, 5m, 1h30m, 7d") from None


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
    raise ReportError(f"cannot read time {text!r}: use RFC3339 (2024-05-01T00:00:00Z), Unix seconds, or now-24h")


def resolve_period(start: str, end: str, step: str, now: float) -> tuple[float, float, float]:
    t0, t1 = parse_time(start, now), parse_time(end, now)
    if t1 <= t0:
        raise ReportError(f"--end ({_iso(t1)}) must be after --start ({_iso(t0)})")
    if step == "auto":
        return t0, t1, max(MIN_STEP, (t1 - t0) / CHART_POINTS)
    try:
        seconds = float(step)
    except ValueError:
        seconds = parse_duration(step)
    if not seconds > 0:
        raise ReportError(f"--step must be positive, got {step!r}")
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


# --- Prometheus HTTP API ---------------------------------------------------------------------

class PrometheusAPI:
    def __init__(self, url: str, timeout: float):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ReportError(f"--prometheus.url {url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float) -> list[tuple[dict, float]]:
        """Instant vector at `at`: (labels, value) per series."""
        data = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[dict, list[tuple[float, float]]]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        data = self._get("/api/v1/query_range", params)
        return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data["result"]]

    def _get(self, path: str, params: dict) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            # Prometheus answers bad queries with 400/422 and an error JSON worth showing.
            raise ReportError(f"Prometheus at {self.url} answered HTTP {err.code}{_api_error(err)}") from None
        except urllib.error.URLError as err:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:  # timeouts and resets while reading
            raise ReportError(f"cannot reach Prometheus at {self.url}: {err or type(err).__name__}") from None
        try:
            payload = json.loads(body)
            if payload["status"] != "success":
                raise ReportError(f"Prometheus at {self.url}: {payload.get('errorType')}: {payload.get('error')}")
            return payload["data"]
        except (ValueError, KeyError, TypeError):
            raise ReportError(f"{self.url}{path} did not answer with Prometheus API JSON: is it a Prometheus server?") from None


def _api_error(err: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(err.read())
        return f": {payload['errorType']}: {payload['error']}"
    except Exception:  # noqa: BLE001 - a proxy's HTML error page: the status says enough
        return ""


# --- the report: queries at `end` over [start, end] -------------------------------------------

@dataclass
class ApiLine:
    api: str
    equivalent: float  # what the API would have billed for this model's traffic
    price_per_million: float | None  # equivalent / tokens: the API's price for this traffic mix
    savings: float | None  # equivalent - self-hosted share; negative: the API was cheaper


@dataclass
class ModelLine:
    engine: str
    model: str
    tokens: float
    utilization: float | None
    full_per_million: float | None  # the published-analysis figure: cost at 100% utilization
    actual_per_million: float | None  # engine spend / engine tokens; None while no tokens flowed
    self_hosted: float | None  # the model's share of its engine's spend, by tokens
    apis: list[ApiLine] = field(default_factory=list)


@dataclass
class Report:
    url: str
    start: float
    end: float
    currency: str
    gpu_busy: float | None
    models: list[ModelLine]


def collect(prometheus: PrometheusAPI, start: float, end: float) -> Report:
    r = promql_range(end - start)

    def by(expr: str, *labels: str) -> dict[tuple, float]:
        return {tuple(m.get(k, "") for k in labels): v for m, v in prometheus.query(expr, end)}

    tokens = by(f"sum by (engine, model) (increase(llmcost_tokens_total[{r}]))", "engine", "model")
    if not tokens:
        raise ReportError(f"no llmcost_tokens_total series in {prometheus.url} between {_iso(start)} and {_iso(end)} "
                          "(increase() needs two samples): is it scraping llm-cost-exporter, and was it running then?")
    spend = by(f"sum by (engine, currency) (increase(llmcost_engine_spend_total[{r}]))", "engine", "currency")
    equivalent = by(f"sum by (engine, model, api, currency) (increase(llmcost_api_equivalent_spend_total[{r}]))",
                    "engine", "model", "api", "currency")
    full = by(f"avg by (engine, model) (avg_over_time(llmcost_cost_per_million_tokens_at_full_utilization[{r}]))",
              "engine", "model")
    utilization = by(f"avg by (engine, model) (avg_over_time(llmcost_utilization_ratio[{r}]))", "engine", "model")
    gpu_busy = by(f"avg(avg_over_time(llmcost_gpu_utilization_ratio[{r}]))")
    currencies = {k[-1] for k in spend} | {k[-1] for k in equivalent}
    if len(currencies) > 1:
        raise ReportError(f"spend is in several currencies ({', '.join(sorted(currencies))}); the report does not convert")
    engine_spend = {engine: value for (engine, _), value in spend.items()}
    models = [_model_line(key, tokens, engine_spend, full, utilization, equivalent) for key in sorted(tokens)]
    return Report(prometheus.url, start, end, currencies.pop() if currencies else "USD", gpu_busy.get(()), models)


def _model_line(key, tokens, engine_spend, full, utilization, equivalent) -> ModelLine:
    engine, model = key
    siblings = [v for (e, _), v in tokens.items() if e == engine]
    engine_tokens = sum(siblings)
    spend = engine_spend.get(engine)
    share = None
    if spend is not None:
        # An engine's spend prices all its models alike; an idle engine still cost money, split evenly.
        share = spend * tokens[key] / engine_tokens if engine_tokens > 0 else spend / len(siblings)
    line = ModelLine(engine, model, tokens[key], utilization.get(key), full.get(key),
                     spend / engine_tokens * 1e6 if spend is not None and engine_tokens > 0 else None, share)
    for (e, m, api, _), value in sorted(equivalent.items()):
        if (e, m) == key:
            price = value / tokens[key] * 1e6 if tokens[key] > 0 else None
            line.apis.append(ApiLine(api, value, price, value - share if share is not None else None))
    return line


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
           "API", "API/1M", "API-EQUIVALENT", "SAVINGS")
_LEFT = {"ENGINE", "MODEL", "API"}


def render(report: Report) -> str:
    c = report.currency
    rows = []
    for m in report.models:
        model_cells = [m.engine, m.model, _count(m.tokens), _percent(m.utilization), _percent(report.gpu_busy),
                       _money(m.actual_per_million, c, True), _money(m.full_per_million, c, True), _money(m.self_hosted, c)]
        for i, a in enumerate(m.apis or [None]):
            api_cells = ["-"] * 4 if a is None else [a.api, _money(a.price_per_million, c, True), _money(a.equivalent, c),
                                                     _money(a.savings, c)]
            # Further APIs of the same model: leave the model's cells blank so the rows read as a group.
            rows.append((model_cells if i == 0 else [""] * len(model_cells)) + api_cells)
    lines = [f"llm-cost-exporter report {_iso(report.start)} to {_iso(report.end)} ({_human_duration(report.end - report.start)}),"
             f" Prometheus {report.url}", ""]
    lines += _table(COLUMNS, rows)
    lines += ["", "ACTUAL: spend while the GPUs were held (idle included) / tokens. AT 100%: the figure published analyses "
              "quote. GPU BUSY: NVML, all GPUs.", ""]
    lines += verdicts(report)
    return "\n".join(lines)


def _table(headers, rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(v).ljust(w) if h in _LEFT else str(v).rjust(w)
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
        raise ReportError(f"--step {_human_duration(step)} gives {period / step:,.0f} points over {_human_duration(period)}, "
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
