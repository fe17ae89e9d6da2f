"""`llm-cost-exporter report --by=team`: what each team's self-hosted tokens cost over a period.

Reads the chargeback recording rules (rules/chargeback.py; docs/chargeback.md), never the gateways'
raw per-team series: teams are the top N the rules keep, `other` and `unattributed`, and they add up
to the models' spend. A rule's rate averaged over the period, times the period, is the period's
amount (`avg_over_time(rule[P]) * P`). Sample output, from the chargeback test:

    llm-cost-exporter report --by=team 2026-12-01T12:30:00Z to 2026-12-01T12:30:40Z (40s), Prometheus http://127.0.0.1:39745

    TEAM          MODEL                              SPEND   SHARE
    support       Qwen/Qwen2.5-32B-Instruct         $0.012   36.0%
    ...
    unattributed  Qwen/Qwen2.5-32B-Instruct         $0.005   14.4%
    TOTAL                                           $0.034  100.0%

    TEAM     API          API-EQUIVALENT  SAVINGS
    search   gpt-4o       $0.018          $0.009
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from exporter import promapi
from exporter import report as base

UNATTRIBUTED = "unattributed"


@dataclass
class TeamReport:
    url: str
    start: float
    end: float
    currency: str
    spend: dict[tuple[str, str], float]  # (team, model) -> spend over the period
    api: dict[tuple[str, str], float]  # (team, api) -> API-equivalent over the period


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`report`'s options for the team view (the rest are report.add_arguments')."""
    parser.add_argument("--by", choices=("model", "team"), default="model",
                        help="rows per engine and model, or per team from the chargeback rules (docs/chargeback.md)")
    parser.add_argument("--chargeback.window", dest="chargeback_window", metavar="DURATION", default="5m",
                        help="the chargeback rules' window (rules/config.yaml chargeback.window): names the rules read")


def run(args: argparse.Namespace) -> int:
    try:
        start, end, _ = base.resolve_period(args.start, args.end, "auto", time.time())
        prometheus = base.connect(args)  # report's --prometheus.* flags: tenant, bearer token, basic auth
        print(render(collect(prometheus, start, end, args.chargeback_window)))
    except base.UsageError as err:
        return base._fail(str(err), 2)
    except (base.ReportError, promapi.QueryError) as err:
        return base._fail(str(err))
    except Exception as err:  # noqa: BLE001 - a CLI answers with one line, never a traceback
        return base._fail(f"unexpected {type(err).__name__}: {err}")
    return 0


def collect(prometheus: promapi.PrometheusAPI, start: float, end: float, window: str) -> TeamReport:
    base.parse_duration(window)  # a readable error for a bad --chargeback.window
    r = base.promql_range(end - start)
    seconds = max(1, round(end - start))

    def amounts(rule: str, *labels: str) -> dict[tuple, float]:
        expr = f"sum by ({', '.join(labels)}) (avg_over_time({rule}[{r}])) * {seconds}"
        return {tuple(m.get(k, "") for k in labels): v for m, v in prometheus.query(expr, end)}

    spend = amounts(f"team_model:llmcost_chargeback_spend:rate{window}", "team", "model", "currency")
    if not spend:
        raise base.ReportError(f"no team_model:llmcost_chargeback_spend:rate{window} series in {prometheus.url} "
                               f"between {base._iso(start)} and {base._iso(end)}: are the chargeback rules loaded "
                               "(rules/config.yaml chargeback), with this --chargeback.window?")
    api = amounts(f"team_api:llmcost_chargeback_api_equivalent_spend:rate{window}", "team", "api", "currency")
    currencies = {k[-1] for k in spend} | {k[-1] for k in api}
    if len(currencies) > 1:
        raise base.ReportError(f"spend is in several currencies ({', '.join(sorted(currencies))}); the report does not convert")
    return TeamReport(prometheus.url, start, end, currencies.pop(),
                      {k[:2]: v for k, v in spend.items()}, {k[:2]: v for k, v in api.items()})


def _order(team: str, totals: dict[str, float]) -> tuple:
    """Biggest teams first; `other` and `unattributed` last, so the named teams read as a ranking."""
    return (team == UNATTRIBUTED, team == "other", -totals.get(team, 0.0), team)


def render(report: TeamReport) -> str:
    c, total = report.currency, sum(report.spend.values())
    per_team: dict[str, float] = {}
    for (team, _), value in report.spend.items():
        per_team[team] = per_team.get(team, 0.0) + value
    rows = [[team, model, base._money(value, c), base._percent(value / total if total else None)]
            for (team, model), value in sorted(report.spend.items(), key=lambda kv: (_order(kv[0][0], per_team), kv[0][1]))]
    rows.append(["TOTAL", "", base._money(total, c), base._percent(1.0 if total else None)])
    lines = [f"llm-cost-exporter report --by=team {base._iso(report.start)} to {base._iso(report.end)} "
             f"({base._human_duration(report.end - report.start)}), Prometheus {report.url}", ""]
    lines += _table(("TEAM", "MODEL", "SPEND", "SHARE"), rows, left=2)
    if report.api:
        api_rows = [[team, api, base._money(value, c), base._money(value - per_team.get(team, 0.0), c)]
                    for (team, api), value in sorted(report.api.items(), key=lambda kv: (_order(kv[0][0], per_team), kv[0][1]))]
        lines += ["", *_table(("TEAM", "API", "API-EQUIVALENT", "SAVINGS"), api_rows, left=2)]
    lines += ["", "SPEND: each team's gateway tokens x the model's live $/token (allocation basis, idle included); "
              "unattributed: the models' spend no gateway team accounts for. SAVINGS: API-equivalent - spend."]
    return "\n".join(lines)


def _table(headers, rows, left: int) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(v).ljust(w) if i < left else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return [line(headers)] + [line(r) for r in rows]
