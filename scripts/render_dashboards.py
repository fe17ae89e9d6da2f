"""Render each committed Grafana dashboard as a PNG from its own queries against a real Prometheus.

No Grafana server runs here, so this draws every panel of dashboards/json/*.json with matplotlib:
the panel's PromQL (template variables substituted) goes through the Prometheus HTTP API, a
timeseries panel becomes a line chart over the range, the other panel types show the instant
values. It is a faithful picture of what the queries return, not of Grafana's styling.

    python scripts/render_dashboards.py --prometheus.url=http://localhost:9090 --range=30m --output-dir=docs/img
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboards.generate import substitute  # noqa: E402
from exporter.report import PrometheusAPI  # noqa: E402

VARIABLES = {"node": ".*", "engine_kind": ".*", "model": ".*", "api": ".*", "datasource": "prometheus"}


def legend(fmt: str, labels: dict) -> str:
    text = fmt or ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return text[:60]


def queries(panel: dict) -> list[tuple[str, str]]:
    return [(t.get("expr", ""), t.get("legendFormat", "")) for t in panel.get("targets", []) if t.get("expr")]


def draw_panel(ax, panel: dict, api: PrometheusAPI, start: float, end: float, step: float, variables: dict) -> None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    ax.set_title(f"{panel.get('title', '')}" + (f"  [{unit}]" if unit else ""), fontsize=8, loc="left")
    ax.tick_params(labelsize=6)
    if panel.get("type") == "timeseries":
        for expr, fmt in queries(panel):
            for labels, points in api.query_range(substitute(expr, variables), start, end, step):
                if points:
                    ax.plot([p[0] - end for p in points], [p[1] for p in points], label=legend(fmt, labels), linewidth=1)
        ax.set_xlabel("seconds before end", fontsize=6)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=5, loc="best")
        return
    rows = []
    for expr, fmt in queries(panel):
        for labels, value in api.query(substitute(expr, variables), end):
            rows.append((legend(fmt, labels), value))
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=9, color="grey")
        return
    if panel.get("type") == "bargauge" and len(rows) > 1:
        ax.axis("on")
        ax.barh([r[0] for r in rows][:12], [r[1] for r in rows][:12])
        return
    text = "\n".join((f"{name}: " if name else "") + f"{value:,.4g}" for name, value in rows[:10])
    size = 14 if len(rows) == 1 and panel.get("type") in ("stat", "gauge") else 6
    ax.text(0.02, 0.95, text, ha="left", va="top", fontsize=size, family="monospace", transform=ax.transAxes)


def render(dashboard: dict, api: PrometheusAPI, start: float, end: float, path: pathlib.Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, height * 0.42), dpi=90)
    fig.suptitle(f"{dashboard.get('title')} — rendered from the dashboard's queries against a real Prometheus "
                 f"(not Grafana), last {int(end - start)} s", fontsize=10)
    step = max((end - start) / 120, 1.0)
    for panel in panels:
        g = panel["gridPos"]
        ax = fig.add_axes([g["x"] / 24 + 0.01, 1 - (g["y"] + g["h"]) / height * 0.94 - 0.02,
                           g["w"] / 24 - 0.02, g["h"] / height * 0.94 - 0.04])
        draw_panel(ax, panel, api, start, end, step, VARIABLES)
    fig.savefig(path)
    plt.close(fig)
    return len(panels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus.url", dest="url", default="http://localhost:9090")
    parser.add_argument("--range", dest="range_s", type=float, default=1800.0, help="seconds before now")
    parser.add_argument("--output-dir", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args(argv)
    api = PrometheusAPI(args.url, timeout=10)
    end = time.time()
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted((ROOT / "dashboards" / "json").glob("*.json")):
        dashboard = json.loads(source.read_text())
        path = out / f"dashboard-{source.stem}.png"
        count = render(dashboard, api, end - args.range_s, end, path)
        print(f"{path}: {count} panels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
