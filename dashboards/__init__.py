"""Grafana dashboards for llm-cost-exporter: grafanalib sources and the JSON they generate.

`python -m dashboards.generate` rewrites `dashboards/json/<uid>.json`; `--check` only compares.
"""
