"""llm-cost-exporter: live self-hosted cost per million tokens versus API prices."""

__version__ = "0.1.0"
