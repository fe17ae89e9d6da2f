"""The landing page at /: "is self-hosting paying off right now?" at a glance, refreshed every 5 s.

Every figure comes from the same snapshot as /metrics; cells carry data-metric attributes naming
the metric they show, so a browser test can check them against /metrics. An engine's kind (the
engine_kind label of llmcost_engine_info) is shown beside its name, in cells marked data-kind.
Who pays for the GPUs: each engine's share of them with the method that produced it, the GPUs (or
parts of GPUs) it holds and its spend, and the unallocated part as its own row.
"""

from __future__ import annotations

import html
from fractions import Fraction

from exporter import __version__
from exporter.snapshot import engine_savings


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


def _verdict(saving: float | None, api: str, tier: str, currency: str) -> str:
    if saving is None:
        return ""
    if saving >= 0:
        return f'<span class=good>self-hosting saved {saving:,.2f} {currency} vs {api_label(api, tier)}</span>'
    return f'<span class=bad>{api_label(api, tier)} would have cost {-saving:,.2f} {currency} less</span>'


def _kind_cell(engine: str, kinds: dict[str, str]) -> str:
    kind = html.escape(kinds.get(engine, ""))
    return f'<td class=kind data-kind="{kind}" data-engine="{html.escape(engine)}">{kind}</td>'


def _model_rows(snap, currency: str, kinds: dict[str, str]) -> str:
    rows = []
    savings = engine_savings(snap)
    for f in snap.models:
        m = f.model
        ids = {"engine": m.engine, "model": m.model}
        head = (f"<td>{html.escape(m.engine)}</td>{_kind_cell(m.engine, kinds)}"
                f"<td class=model>{html.escape(m.model)}</td>"
                + _cell(f.tokens_per_second, ",.1f", "llmcost_tokens_per_second", **ids)
                + _cell(None if f.utilization is None else f.utilization * 100, ".1f", "llmcost_utilization_ratio", **ids)
                + _cell(f.cost_per_million, ",.4f", "llmcost_cost_per_million_tokens", **ids)
                + _cell(f.cost_per_million_full, ",.4f", "llmcost_cost_per_million_tokens_at_full_utilization", **ids))
        apis = f.apis or [None]
        for i, c in enumerate(apis):
            first = head if i == 0 else "<td></td>" * 7
            if c is None:
                rows.append(f"<tr>{first}<td colspan=5>no API compared</td></tr>")
                continue
            api_ids = {**ids, "api": c.api, "tier": c.tier}
            rows.append(
                f"<tr>{first}<td>{api_label(c.api, c.tier)}</td>"
                + _cell(c.price_per_million, ",.4f", "llmcost_api_blended_price_per_million_tokens", **api_ids)
                + _cell(None if c.breakeven_utilization is None else c.breakeven_utilization * 100, ",.1f",
                        "llmcost_breakeven_utilization_ratio", **api_ids)
                + _cell(c.equivalent_spend, ",.4f", "llmcost_api_equivalent_spend_total", **api_ids)
                + f"<td>{_verdict(savings.get((m.engine, c.api, c.tier)), c.api, c.tier, currency)}</td></tr>")
    return "".join(rows) or "<tr><td colspan=12>no engine has answered yet</td></tr>"


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
.big{{font-size:1.3em;font-weight:600}} .good{{color:#176f2c;font-weight:600}} .bad{{color:#b3261e;font-weight:600}}
</style></head><body>
<h1>llm-cost-exporter {__version__}</h1>
<p>Mode <b>{html.escape(config.pricing.mode)}</b>. Node cost now <span class=big id=hourly>{hourly}</span> {currency}/h;
spent since start <span class=big id=spend>{total}</span> {currency}. Live window {snap.window_s:g} s.
Metrics at <a href="{html.escape(telemetry_path)}">{html.escape(telemetry_path)}</a>.</p>
<ul>{payback}</ul>
<h2>Is self-hosting paying off?</h2>
<table id=models><tr><th>engine</th><th>kind</th><th>model</th><th>tokens/s</th><th>utilization %</th>
<th>{currency}/1M actual</th><th>{currency}/1M at 100%</th><th>API</th><th>API {currency}/1M</th>
<th>break-even utilization %</th><th>API-equivalent {currency}</th><th>verdict since start</th></tr>{_model_rows(snap, currency, kinds)}</table>
<h2>Who pays for the GPUs</h2>
<table id=shares><tr><th>engine</th><th>kind</th><th>GPUs held</th><th>share of the node's GPUs %</th><th>method</th>
<th>spend since start {currency}</th></tr>{_share_rows(snap, kinds)}</table>
<h2>GPUs</h2>
<table id=gpus><tr><th>gpu</th><th>name</th><th>state</th><th>power W</th><th>limit W</th><th>busy %</th><th>energy kWh</th></tr>{gpu_rows}</table>
<h2>Sources</h2>
<table id=sources><tr><th>source</th><th>name</th><th>kind</th><th>state</th><th>last error</th></tr>{health_rows}</table>
</body></html>
"""
