"""The Prometheus rules: rules/generate.py and its config (importable: the dashboards share the loader)."""
