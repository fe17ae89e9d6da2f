"""Generate the committed dashboard JSON from the grafanalib sources.

    python -m dashboards.generate            # rewrite dashboards/json/<uid>.json
    python -m dashboards.generate --check    # exit 1 if the committed JSON differs
    python -m dashboards.generate --config site.yaml --output-dir site-dashboards/

The dashboards read the rules' config (rules/config.yaml, through rules.generate.load_config, with
the same `--config FILE` overlays and `--set KEY=VALUE` overrides): its `selector` is in every
query, and its `cluster_labels` add a `$cluster` variable and keep the cluster in every
aggregation (defaults.Scope). One overlay, given to both generators, retargets rules and dashboards.

The output is deterministic (sorted keys, indent 2, UTF-8, trailing newline), so a regenerated
file is byte-equal to the committed one unless a source changed.

For tests that run the dashboards' queries against a real Prometheus:

    for uid, title, expr in panel_queries():
        prometheus.query(substitute(expr, ALL))
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

if __package__ in (None, ""):  # run as a file: python dashboards/generate.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from grafanalib._gen import DashboardEncoder  # noqa: E402

from dashboards import chargeback, cost_overview, utilization_energy  # noqa: E402
from dashboards.defaults import Scope  # noqa: E402
from rules.generate import RulesConfig, add_config_arguments, config_or_exit, load_config  # noqa: E402

SOURCES = (cost_overview, utilization_energy, chargeback)
JSON_DIR = pathlib.Path(__file__).resolve().parent / "json"

# Every cluster, node, engine kind, model and API ("All" in Grafana sends the allValue, `.*`).
ALL = {"cluster": ".*", "node": ".*", "engine_kind": ".*", "model": ".*", "api": ".*"}

# Grafana's built-in variables, as a panel a few hundred pixels wide over the last hour sees them.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


def render(dashboard) -> str:
    """The dashboard's JSON text, exactly as committed."""
    return json.dumps(dashboard.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2,
                      ensure_ascii=False) + "\n"


def generated(config: RulesConfig | None = None) -> dict[str, str]:
    """File name (`<uid>.json`) -> JSON text, for every dashboard source; `config` defaults to
    rules/config.yaml."""
    scope = Scope(config or load_config())
    files = {}
    for source in SOURCES:
        board = source.dashboard(scope)
        name = f"{board.uid}.json"
        if name in files:
            raise ValueError(f"two dashboards share the uid {board.uid!r}")
        files[name] = render(board)
    return files


def differences(directory: pathlib.Path = JSON_DIR, config: RulesConfig | None = None) -> list[str]:
    """What differs between the sources and the JSON in `directory` (empty: up to date)."""
    wanted = generated(config)
    problems = []
    for name, text in sorted(wanted.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{path}: differs from its source")
    for path in sorted(directory.glob("*.json")):
        if path.name not in wanted:
            problems.append(f"{path}: no source generates it")
    return problems


def write(directory: pathlib.Path = JSON_DIR, config: RulesConfig | None = None) -> list[pathlib.Path]:
    """Write every dashboard and remove JSON that no source generates any more."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = generated(config)
    for path in directory.glob("*.json"):
        if path.name not in wanted:
            path.unlink()
    written = []
    for name, text in sorted(wanted.items()):
        path = directory / name
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


def dashboards_json(config: RulesConfig | None = None) -> list[dict]:
    """The generated dashboards as Grafana dashboard models (parsed JSON)."""
    return [json.loads(text) for _, text in sorted(generated(config).items())]


def panels(dashboard: dict) -> list[dict]:
    """Every panel of a dashboard model, including those nested in collapsed rows."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_queries(config: RulesConfig | None = None) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL expr) for every query of every panel, in dashboard order."""
    return [(board["uid"], panel["title"], target["expr"])
            for board in dashboards_json(config)
            for panel in panels(board)
            for target in panel.get("targets", [])]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


def substitute(expr: str, variables: dict) -> str:
    """Replace Grafana variables ($node, ${node}, ${node:regex}, [[node]], $__rate_interval, ...) in `expr`.

    `variables` maps names (with or without the `$`) to values; Grafana's built-ins default to
    BUILTINS (1m intervals, a 1h range) unless given. A string value is used as it is (so `.*`
    selects everything); a list becomes a regex alternation of its escaped items, as Grafana
    formats a multi-value variable for Prometheus. A variable without a value raises KeyError.
    """
    values = dict(BUILTINS)
    values.update({name.lstrip("$"): value for name, value in variables.items()})

    def value_of(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        value = values[name]
        if isinstance(value, (list, tuple)):
            # Regex-escaped, then escaped again for the PromQL string literal ("a\\.b").
            return "(" + "|".join(re.escape(str(v)).replace("\\", "\\\\") for v in value) + ")"
        return str(value)

    return _VARIABLE.sub(value_of, expr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dashboards.generate",
                                     description="Generate dashboards/json/<uid>.json from the grafanalib sources.")
    add_config_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the committed JSON differs from the sources")
    parser.add_argument("--output-dir", type=pathlib.Path, default=JSON_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    config = config_or_exit(parser, args)
    if args.check:
        problems = differences(args.output_dir, config)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python -m dashboards.generate", file=sys.stderr)
            return 1
        return 0
    for path in write(args.output_dir, config):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
