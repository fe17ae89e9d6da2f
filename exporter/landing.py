"""The landing page at /: "is self-hosting paying off right now?" at a glance, refreshed every 5 s.

Every figure comes from the same snapshot as /metrics; cells carry data-metric attributes naming
the metric they show, so a browser test can check them against /metrics. An engine's kind (the
engine_kind label of llmcost_engine_info) is shown beside its name, in cells marked data-kind.
Who pays for the GPUs: each engine's share of them with the method that produced it, the GPUs (or
parts of GPUs) it holds and its spend, and the unallocated part as its own row.

One window per statement (exporter.verdict): each model and API row shows its live-window figures
with the live verdict, its since-start spend with the since-start verdict, and the month projected
at the live rates, each group headed by its window; a break-even above 100% is called unreachable.
"""

from __future__ import annotations

import html
from fractions import Fraction

from exporter import __version__, verdict


def _fmt(value, spec=",.2f", none="–") -> str:
    return none if value is None else format(value, spec)


def _cell(value, spec, metric: str, **labels) -> str:
    attrs = "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in labels.items())
    return f'<td class=num data-metric="{metric}"{attrs}>{_fmt(value, spec)}</td>'


def api_label(api: str, tier: str) -> str:
    """An API as the page names it, with the price tier it is compared at: "gpt-4o (batch)";
    plain for the standard tier. HTML-escaped, carrying the tier in data-tier."""
    shown = html.escape(api) if tier == "standard" else f"{html.escape(api)} ({html.escape(tier)})"
    return f'<span class=api data-tier="{html.escape(tier)}">{shown}</span>'


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 and seconds % 3600 == 0 else (
        f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s")


def _verdict_cell(v: verdict.Verdict, api: str, currency: str, unreachable: bool = False, breakeven=None) -> str:
    """One statement over one window, from the cells of its own group of the row."""
    attrs = f'data-verdict="{v.window}" data-cheaper="{"" if v.cheaper is None else str(v.cheaper).lower()}"'
    if v.cheaper is None:
        why = "no tokens in the live window" if v.window == "live" else "not known on this node yet"
        return f"<td class=verdict {attrs}>{why}</td>"
    diff = v.difference or 0.0
    if v.window == "live":
        pct = f" ({abs(diff) / v.api:.0%})" if v.api else ""
        if v.cheaper:
            text = f"self-hosting cheaper by {abs(diff):,.2f} {currency}/1M{pct}"
        elif unreachable:
            text = f"{api} cheaper at any load"
        else:
            when = "" if breakeven is None else f"; self-hosting wins above {breakeven * 100:.1f}% utilization"
            text = f"{api} cheaper by {abs(diff):,.2f} {currency}/1M{when}"
    else:
        text = (f"self-hosting saved {diff:,.2f} {currency}" if v.cheaper
                else f"{api} would have cost {-diff:,.2f} {currency} less")
    # api is HTML already (api_label) and currency escaped by render(); the rest are numbers.
    return f'<td class=verdict {attrs}><span class={"good" if v.cheaper else "bad"}>{text}</span></td>'


def _breakeven_cell(f, c, ids) -> str:
    cell = _cell(None if c.breakeven_utilization is None else c.breakeven_utilization * 100, ",.1f",
                 "llmcost_breakeven_utilization_ratio", **ids)
    if verdict.unreachable(f, c):
        cell = cell.replace("</td>", "<br><span class=bad data-unreachable>unreachable at any load</span></td>")
    return cell


def _kind_cell(engine: str, kinds: dict[str, str]) -> str:
    kind = html.escape(kinds.get(engine, ""))
    return f'<td class=kind data-kind="{kind}" data-engine="{html.escape(engine)}">{kind}</td>'


def _api_cells(f, c, currency: str, partial: bool, hours_per_month: float) -> str:
    """The columns of one (model, API) pair: live, since start, and the month at live rates."""
    ids = {"engine": f.model.engine, "model": f.model.model, "api": c.api, "tier": c.tier}
    api = api_label(c.api, c.tier)  # HTML: the API and the tier it is compared at
    live, since = verdict.live(f, c), verdict.since_start(f, c, partial)
    month = verdict.monthly(f, c, hours_per_month)
    return (f"<td>{api}</td>"
            + _cell(c.price_per_million, ",.4f", "llmcost_api_blended_price_per_million_tokens", **ids)
            + _breakeven_cell(f, c, ids)
            + _verdict_cell(live, api, currency, verdict.unreachable(f, c), c.breakeven_utilization)
            + _cell(since.self_hosted, ",.4f", "llmcost_model_spend_total", engine=f.model.engine, model=f.model.model)
            + _cell(c.equivalent_spend, ",.4f", "llmcost_api_equivalent_spend_total", **ids)
            + _verdict_cell(since, api, currency)
            + f"<td class=num data-projection=self_hosted>{_fmt(month and month.self_hosted, ',.0f')}</td>"
            + f"<td class=num data-projection=api>{_fmt(month and month.api, ',.0f')}</td>")


def _model_rows(snap, currency: str, kinds: dict[str, str], hours_per_month: float) -> str:
    rows = []
    partial = snap.info.spanning_other_nodes if snap.info else frozenset()
    for f in snap.models:
        m = f.model
        ids = {"engine": m.engine, "model": m.model}
        head = (f"<td>{html.escape(m.engine)}</td>{_kind_cell(m.engine, kinds)}"
                f"<td class=model>{html.escape(m.model)}</td>"
                + _cell(f.tokens_per_second, ",.1f", "llmcost_tokens_per_second", **ids)
                + _cell(None if f.utilization is None else f.utilization * 100, ".1f", "llmcost_utilization_ratio", **ids)
                + _cell(f.cost_per_million, ",.4f", "llmcost_cost_per_million_tokens", **ids)
                + _cell(f.cost_per_million_full, ",.4f", "llmcost_cost_per_million_tokens_at_full_utilization", **ids))
        for i, c in enumerate(f.apis or [None]):
            first = head if i == 0 else "<td></td>" * 7
            if c is None:
                rows.append(f"<tr>{first}<td colspan=9>no API compared</td></tr>")
            else:
                rows.append(f"<tr>{first}{_api_cells(f, c, currency, m.engine in partial, hours_per_month)}</tr>")
    return "".join(rows) or "<tr><td colspan=16>no engine has answered yet</td></tr>"


def _held(fractions: dict[int, float]) -> str:
    """GPU index -> fraction held, in words: "0, 1", "3/7 of 2", "–"."""
    parts = []
    for index, fraction in sorted(fractions.items()):
        if fraction <= 1e-9:
            continue
        near = Fraction(fraction).limit_denominator(64)
        whole = abs(fraction - 1.0) <= 1e-9
        part = f"{near} of " if abs(float(near) - fraction) <= 1e-9 else f"{fraction:.1%} of "
        parts.append(f"{'' if whole else part}{index}")
    return ", ".join(parts) or "–"


def _share_rows(snap, kinds: dict[str, str]) -> str:
    spend = snap.spend
    if spend is None:
        return ""
    rows = [f"<tr><td>{html.escape(engine)}</td>{_kind_cell(engine, kinds)}<td>{_held(spend.held.get(engine, {}))}</td>"
            + _cell(ratio * 100, ".1f", "llmcost_engine_gpu_share_ratio", engine=engine, method=method)
            + f"<td class=method>{html.escape(method)}</td>"
            + _cell(spend.engines.get(engine), ",.4f", "llmcost_engine_spend_total", engine=engine) + "</tr>"
            for engine, (ratio, method) in sorted(spend.shares.items())]
    rows.append(f"<tr class=unallocated><td>unallocated</td><td></td><td>{_held(spend.unallocated_gpus)}</td>"
                + _cell(spend.unallocated_share * 100, ".1f", "llmcost_unallocated_gpu_share_ratio")
                + "<td>held by no engine</td>" + _cell(spend.unallocated, ",.4f", "llmcost_unallocated_spend_total") + "</tr>")
    return "".join(rows)


def _models_table(snap, currency: str, kinds: dict[str, str], hours_per_month: float) -> str:
    """The per model and API table; each group of columns, its verdict included, says its window."""
    live = f"live window (last {_duration(snap.window_s)})"
    return f"""<table id=models>
<tr><th rowspan=2>engine</th><th rowspan=2>kind</th><th rowspan=2>model</th><th colspan=4 data-window=live>{live}</th>
<th rowspan=2>API</th><th colspan=3 data-window=live>{live}: against the API</th>
<th colspan=3 data-window="since start">since start</th>
<th colspan=2 data-window=projection>per month at the live window's rates ({currency}, {hours_per_month:g} h)</th></tr>
<tr><th>tokens/s</th><th>utilization %</th><th>{currency}/1M actual</th><th>{currency}/1M at 100%</th>
<th>API {currency}/1M for this traffic</th><th>break-even utilization %</th><th>verdict, live window</th>
<th>self-hosted spend {currency}</th><th>API-equivalent {currency}</th><th>verdict, since start</th>
<th>self-hosted</th><th>API</th></tr>
{_model_rows(snap, currency, kinds, hours_per_month)}</table>"""


def _simulated(config) -> str:
    """The demo (and any node on the simulated GPU backend) says so before any figure."""
    if config.gpu.backend != "simulated":
        return ""
    return ("<p id=simulated><b>Simulated</b>: these GPUs are simulated (<code>gpu.backend: simulated</code>; "
            "the demo simulates its engines and clock too). The figures show how the exporter works, "
            "not what a real node costs.</p>")


def render(snap, config, telemetry_path: str) -> str:
    currency = html.escape(config.pricing.currency)
    spend = snap.spend
    gpu_rows = "".join(
        f"<tr><td>{g.index}</td><td>{html.escape(g.name)}{f' (MIG: {len(g.mig)} devices)' if g.mig else ''}</td><td>{'up' if g.up else 'DOWN'}</td>"
        f"<td class=num>{_fmt(g.power_watts, ',.0f')}</td><td class=num>{_fmt(g.power_limit_watts, ',.0f')}</td>"
        f"<td class=num>{_fmt(None if g.utilization_ratio is None else g.utilization_ratio * 100, '.0f')}</td>"
        f"<td class=num>{_fmt(g.energy_joules / 3.6e6, ',.3f')}</td></tr>"
        for g in snap.gpus) or "<tr><td colspan=7>no GPU source</td></tr>"
    kinds = {e.name: e.kind for e in snap.engines}
    health_rows = "".join(
        f"<tr><td>{html.escape(h.source)}</td><td>{html.escape(h.name)}</td>"
        + (_kind_cell(h.name, kinds) if h.source == "engine" else "<td></td>")
        + f"<td>{'up' if h.up else 'DOWN'}</td><td>{html.escape(h.reason or '')}</td></tr>" for h in snap.health)
    hourly = _fmt(spend.hourly_cost if spend else None, ',.3f')
    hourly_cost = spend.hourly_cost if spend else None  # None: no price for this node
    monthly = _fmt(None if hourly_cost is None else hourly_cost * config.pricing.hours_per_month, ',.0f')
    total = _fmt(sum(spend.components.values()) if spend else None, ',.4f')
    payback = "".join(f"<li>payback against {api_label(api, tier)}: {_fmt(months, ',.1f', 'never')} months</li>"
                      for (api, tier), months in snap.payback_months.items())
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>
<title>llm-cost-exporter</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}} h1{{font-size:1.4em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{border:1px solid #ccc;padding:.3em .6em}}
th{{background:#f3f3f3;text-align:left}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
.big{{font-size:1.3em;font-weight:600}} #simulated{{background:#fff3cd;border:1px solid #e0b000;padding:.4em .8em}}
#models{{font-size:.92em}} .verdict{{min-width:11em}} .good{{color:#176f2c;font-weight:600}} .bad{{color:#b3261e;font-weight:600}}
</style></head><body>
<h1>llm-cost-exporter {__version__}</h1>{_simulated(config)}
<p>Mode <b>{html.escape(config.pricing.mode)}</b>. Node cost now <span class=big id=hourly>{hourly}</span> {currency}/h;
spent since start <span class=big id=spend>{total}</span> {currency}; at the current hourly cost,
<span id=monthly>{monthly}</span> {currency} a month ({config.pricing.hours_per_month:g} h). Live window {_duration(snap.window_s)}.
Metrics at <a href="{html.escape(telemetry_path)}">{html.escape(telemetry_path)}</a>.</p>
<ul>{payback}</ul>
<h2>Is self-hosting paying off?</h2>
{_models_table(snap, currency, kinds, config.pricing.hours_per_month)}
<h2>Who pays for the GPUs</h2>
<table id=shares><tr><th>engine</th><th>kind</th><th>GPUs held</th><th>share of the node's GPUs %</th><th>method</th>
<th>spend since start {currency}</th></tr>{_share_rows(snap, kinds)}</table>
<h2>GPUs</h2>
<table id=gpus><tr><th>gpu</th><th>name</th><th>state</th><th>power W</th><th>limit W</th><th>busy %</th><th>energy kWh</th></tr>{gpu_rows}</table>
<h2>Sources</h2>
<table id=sources><tr><th>source</th><th>name</th><th>kind</th><th>state</th><th>last error</th></tr>{health_rows}</table>
</body></html>
"""
