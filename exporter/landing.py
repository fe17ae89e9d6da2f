"""The landing page at /: the current figures, readable at a glance, refreshed every 5 s."""

from __future__ import annotations

import html

from exporter import __version__


def _fmt(value, spec=",.2f", none="–") -> str:
    return none if value is None else format(value, spec)


def render(snap, config, telemetry_path: str) -> str:
    currency = html.escape(config.pricing.currency)
    spend = snap.spend
    model_rows = "".join(
        f"<tr><td>{html.escape(f.model.engine)}</td><td class=model>{html.escape(f.model.model)}</td>"
        f"<td class=num data-metric=tokens_per_second>{_fmt(f.tokens_per_second, ',.1f')}</td>"
        f"<td class=num data-metric=cost_per_million_tokens>{_fmt(f.cost_per_million, ',.4f')}</td>"
        f"<td class=num>{_fmt(sum(f.model.tokens.values()), ',.0f')}</td>"
        f"<td class=num>{_fmt(spend.engines.get(f.model.engine) if spend else None, ',.4f')}</td></tr>"
        for f in snap.models) or "<tr><td colspan=6>no engine has answered yet</td></tr>"
    gpu_rows = "".join(
        f"<tr><td>{g.index}</td><td>{html.escape(g.name)}</td><td>{'up' if g.up else 'DOWN'}</td>"
        f"<td class=num>{_fmt(g.power_watts, ',.0f')}</td><td class=num>{_fmt(g.power_limit_watts, ',.0f')}</td>"
        f"<td class=num>{_fmt(None if g.utilization_ratio is None else g.utilization_ratio * 100, '.0f')}</td>"
        f"<td class=num>{_fmt(g.energy_joules / 3.6e6, ',.3f')}</td></tr>"
        for g in snap.gpus) or "<tr><td colspan=7>no GPU source</td></tr>"
    health_rows = "".join(
        f"<tr><td>{html.escape(h.source)}</td><td>{html.escape(h.name)}</td><td>{'up' if h.up else 'DOWN'}</td>"
        f"<td>{html.escape(h.reason or '')}</td></tr>" for h in snap.health)
    hourly = _fmt(spend.hourly_cost if spend else None, ',.3f')
    total = _fmt(sum(spend.components.values()) if spend else None, ',.4f')
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>
<title>llm-cost-exporter</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}} h1{{font-size:1.4em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{border:1px solid #ccc;padding:.3em .7em}}
th{{background:#f3f3f3;text-align:left}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
.big{{font-size:1.3em;font-weight:600}}
</style></head><body>
<h1>llm-cost-exporter {__version__}</h1>
<p>Mode <b>{html.escape(config.pricing.mode)}</b>. Node cost now <span class=big id=hourly>{hourly}</span> {currency}/h;
spent since start <span class=big id=spend>{total}</span> {currency}. Live window {snap.window_s:g} s.
Metrics at <a href="{html.escape(telemetry_path)}">{html.escape(telemetry_path)}</a>.</p>
<h2>Models</h2>
<table id=models><tr><th>engine</th><th>model</th><th>tokens/s</th><th>{currency} per 1M tokens (actual)</th>
<th>tokens since start</th><th>engine spend ({currency})</th></tr>{model_rows}</table>
<h2>GPUs</h2>
<table id=gpus><tr><th>gpu</th><th>name</th><th>state</th><th>power W</th><th>limit W</th><th>busy %</th><th>energy kWh</th></tr>{gpu_rows}</table>
<h2>Sources</h2>
<table id=sources><tr><th>source</th><th>name</th><th>state</th><th>last error</th></tr>{health_rows}</table>
</body></html>
"""
