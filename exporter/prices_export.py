"""`llm-cost-exporter prices export`: our trailing-window $/token per model, in the formats gateways read.

LiteLLM, Langfuse and OpenLIT price a self-hosted model at $0 or at a rate someone typed in. This
writes the real one, from Prometheus (every node's exporter, across restarts), over a trailing
window (default 7d): per model, cluster-wide,

    input  $/token = increase(llmcost_model_spend_total{phase="prefill"}[W]) / increase(llmcost_tokens_total{direction="input"}[W])
    output $/token = increase(llmcost_model_spend_total{phase="decode"}[W])  / increase(llmcost_tokens_total{direction="output"}[W])

on the allocation basis (idle time paid for). A cached input token gets the input price: the
input price is already the prefill spend over all input tokens, cached ones included, so a gateway
that counts cache hits bills the same total as one that does not (docs/chargeback.md).

Formats (`--format`):
  litellm   model cost map entries (`litellm.register_model`, `model_cost_map` JSON, proxy `model_info`):
            {"hosted_vllm/<model>": {"input_cost_per_token", "output_cost_per_token",
            "cache_read_input_token_cost", "litellm_provider", "mode"}}
  langfuse  model definitions for Langfuse's POST /api/public/models: a list of {modelName,
            matchPattern, startDate, unit: "TOKENS", pricingTiers: [one default tier, prices {input,
            output}]}; a new startDate on each export, so Langfuse keeps the old price for older
            generations
  openlit   OpenLIT's pricing JSON (`openlit.init(pricing_json=...)`): {"chat": {<model>:
            {"promptPrice", "completionPrice"}}}, USD per 1,000 tokens
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass

from exporter import promapi
from exporter import report as base

PREFIX = "llm-cost-exporter prices export: "
FORMATS = ("litellm", "langfuse", "openlit")


@dataclass(frozen=True)
class ModelPrice:
    model: str
    input: float  # currency per token, cached input included
    output: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    promapi.add_arguments(parser)  # --prometheus.url, tenant, bearer token, basic auth, --timeout
    parser.add_argument("--format", choices=FORMATS, required=True, help="the file format of the gateway that reads it")
    parser.add_argument("--window", metavar="DURATION", default="7d", help="trailing window the prices are averaged over")
    parser.add_argument("--output", metavar="FILE", default="-", help="where to write it (- for stdout)")
    parser.add_argument("--litellm.provider", dest="provider", default="hosted_vllm",
                        help="LiteLLM provider prefix of the model keys (the one your proxy routes to)")
    parser.add_argument("--at", metavar="TIME", default="now",
                        help="end of the window: RFC3339, Unix seconds, or now-DURATION (also the Langfuse startDate)")


def run(args: argparse.Namespace) -> int:
    try:
        now = base.parse_time(args.at, time.time())
        prices = collect(base.connect(args), args.window, now)
        text = render(args.format, prices, now, args.provider)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
    except base.UsageError as err:
        return base._fail(str(err), 2, PREFIX)
    except (base.ReportError, promapi.QueryError) as err:
        return base._fail(str(err), 1, PREFIX)
    except OSError as err:
        return base._fail(f"cannot write {args.output}: {err.strerror or err}", 1, PREFIX)
    return 0


def collect(prometheus: promapi.PrometheusAPI, window: str, now: float) -> list[ModelPrice]:
    w = base.promql_range(base.parse_duration(window))

    def per_model(expr: str) -> dict[tuple[str, str], float]:
        return {(m.get("model", ""), m.get("currency", "")): v for m, v in prometheus.query(expr, now)}

    spend = {phase: per_model(f'sum by (model, currency) (increase(llmcost_model_spend_total{{phase="{phase}"}}[{w}]))')
             for phase in ("prefill", "decode")}
    tokens = {d: {m: v for (m, _), v in per_model(f'sum by (model) (increase(llmcost_tokens_total{{direction="{d}"}}[{w}]))').items()}
              for d in ("input", "output")}
    currencies = {c for by_model in spend.values() for (_, c) in by_model}
    if not currencies:
        raise base.ReportError(f"no llmcost_model_spend_total series in {prometheus.url} over the last {window}: "
                               "is it scraping llm-cost-exporter?")
    if currencies != {"USD"}:
        raise base.ReportError(f"spend is in {', '.join(sorted(currencies))}; LiteLLM, Langfuse and OpenLIT price in USD "
                               "and nothing is converted")
    prices = []
    for (model, _), prefill in sorted(spend["prefill"].items()):
        decode = spend["decode"].get((model, "USD"))
        n_in, n_out = tokens["input"].get(model, 0.0), tokens["output"].get(model, 0.0)
        if decode is None or n_in <= 0 or n_out <= 0:
            continue  # no traffic in one direction: no price to tell, rather than an infinite one
        prices.append(ModelPrice(model, prefill / n_in, decode / n_out))
    if not prices:
        raise base.ReportError(f"no model served both input and output tokens over the last {window}")
    return prices


def render(fmt: str, prices: list[ModelPrice], now: float, provider: str = "hosted_vllm") -> str:
    return json.dumps(_RENDER[fmt](prices, now, provider), indent=2, sort_keys=False) + "\n"


def litellm(prices: list[ModelPrice], now: float, provider: str) -> dict:
    return {f"{provider}/{p.model}": {"input_cost_per_token": p.input, "output_cost_per_token": p.output,
                                      "cache_read_input_token_cost": p.input, "litellm_provider": provider,
                                      "mode": "chat"} for p in prices}


def langfuse(prices: list[ModelPrice], now: float, provider: str) -> list[dict]:
    start = base._iso(now)  # from now on; Langfuse keeps the earlier definitions for earlier generations
    # One default tier (Langfuse's current form; the flat inputPrice/outputPrice are deprecated there).
    return [{"modelName": p.model, "matchPattern": f"(?i)^({re.escape(p.model)})$", "startDate": start,
             "unit": "TOKENS", "pricingTiers": [{"name": "Standard", "isDefault": True, "priority": 0, "conditions": [],
                                                 "prices": {"input": p.input, "output": p.output}}]} for p in prices]


def openlit(prices: list[ModelPrice], now: float, provider: str) -> dict:
    return {"chat": {p.model: {"promptPrice": p.input * 1000, "completionPrice": p.output * 1000} for p in prices}}


_RENDER = {"litellm": litellm, "langfuse": langfuse, "openlit": openlit}
