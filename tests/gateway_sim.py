"""A simulated LiteLLM proxy /metrics for the chargeback tests: LiteLLM's real names, HELP texts and
label set (read from the exposition recorded from the real library, tests/data/gateways/litellm/),
with token counts that split the demo's own tokens between teams.

Each scrape reads the exporter's token counters from the test's Prometheus (their raw samples, with
the timestamps Prometheus scraped them at) and serves each team's fraction of them *at those
timestamps*: the gateway's series are then the engine's, sample for sample, times the fraction, as
if every request had passed through the gateway. Fractions that add up to less than 1 leave the rest
to no team; a team named "None" is what LiteLLM serves for a key without a team. The demo serves
each model from one engine, so each model has one token series to mirror."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily

FIXTURE = Path(__file__).resolve().parent / "data" / "gateways" / "litellm" / "litellm-1.110.2.prom"
FAMILIES = {  # LiteLLM family -> (exporter counter, its matchers)
    "litellm_input_tokens_metric": ("llmcost_tokens_total", 'direction="input"'),
    "litellm_output_tokens_metric": ("llmcost_tokens_total", 'direction="output"'),
    "litellm_input_cached_tokens_metric": ("llmcost_cached_input_tokens_total", ""),
}


def recorded_labels(family: str) -> tuple[str, list[str]]:
    """HELP text and label names of a family, as the real LiteLLM served them."""
    text = FIXTURE.read_text()
    help_text = re.search(rf"^# HELP {family}_total (.*)$", text, re.M).group(1)
    sample = re.search(rf"^{family}_total\{{(.*?)\}} ", text, re.M).group(1)
    return help_text, re.findall(r'(\w+)="', sample)


class SimulatedLiteLLM:
    def __init__(self, prometheus, split: dict[str, dict[str, float]], gateway_names: dict[str, str]):
        """split: engine model -> {team alias: fraction}; gateway_names: engine model -> the name the
        gateway calls it by (an alias the rules' model_aliases must map back)."""
        self.prometheus, self.split, self.names = prometheus, split, gateway_names
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        handler = type("Handler", (_Handler,), {"gateway": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def describe(self):
        return []

    def collect(self):
        for family, (metric, matchers) in FAMILIES.items():
            help_text, labels = recorded_labels(family)
            out = CounterMetricFamily(family, help_text, labels=labels)
            for series in self.prometheus.query(f"{metric}{{job=\"llmcost\"{',' + matchers if matchers else ''}}}[15s]"):
                model = series["metric"]["model"]
                t, value = series["values"][-1]
                for team, fraction in self.split.get(model, {}).items():
                    values = {name: "" for name in labels}
                    values.update(model=self.names.get(model, model), team_alias=team, team=f"id-{team}",
                                  api_key_alias=f"{team}-key", hashed_api_key=f"h-{team}", user="None",
                                  end_user="None", user_email="None", api_provider="hosted_vllm")
                    values = {k: v for k, v in values.items() if k in labels}
                    out.add_metric([values[name] for name in labels], float(value) * fraction, timestamp=float(t))
            yield out


class _Handler(BaseHTTPRequestHandler):
    gateway: SimulatedLiteLLM

    def do_GET(self):  # noqa: N802
        body = generate_latest(self.gateway.registry)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
