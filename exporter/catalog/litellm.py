"""Import API prices from LiteLLM's `model_prices_and_context_window.json`.

That file maps a model name to an entry priced per token, for example

    "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                    "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai",
                    "mode": "chat", ...}

plus a `sample_spec` key that documents the fields and is not a model. `convert` turns the
entries of the selected modes (and providers) into ApiPrice per 1M tokens, with the tiers LiteLLM
prices by a key suffix (`input_cost_per_token_batches`, `_flex`, `_priority`), the long-context
prices (`input_cost_per_token_above_200k_tokens`, ...) and the cache write
(`cache_creation_input_token_cost`); an entry it cannot read is skipped with a reason, never
fatal. `dump_catalog` writes them in the apis.yaml format.

    python -m exporter.catalog.litellm model_prices_and_context_window.json --output apis.yaml \
        --provider openai --provider anthropic
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal

import yaml

from exporter.catalog import ApiPrice, LongContextPrice, TierPrice

SOURCE = "LiteLLM model_prices_and_context_window.json"
DOC_KEY = "sample_spec"  # LiteLLM's field documentation, not a model

# LiteLLM's field names (see its sample_spec)
INPUT, OUTPUT, CACHED = "input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost"
CACHE_WRITE = "cache_creation_input_token_cost"
PROVIDER, MODE = "litellm_provider", "mode"
TIER_SUFFIXES = {"batch": "_batches", "flex": "_flex", "priority": "_priority"}  # our tier -> LiteLLM's key suffix
LONG_CONTEXT = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")  # e.g. _above_200k_tokens

DEFAULT_HEADER = ("API model prices in USD per 1,000,000 tokens, converted from LiteLLM's per-token prices\n"
                  "by `llm-cost-exporter catalog import-litellm`. Check them against the providers' pages.")


@dataclass
class ImportResult:
    imported: list[ApiPrice]
    skipped: list[tuple[str, str]]  # (model name, reason) for every entry not imported
    # names among `skipped` left out only because their mode or provider was not selected:
    # expected by the thousand in the real file, so counted but not listed one by one
    filtered: set[str] = field(default_factory=set)


def convert(data: dict, providers: set[str] | None = None, modes=("chat",), checked: str | None = None,
            source: str = SOURCE) -> ImportResult:
    """ApiPrice for every entry of `data` in one of `modes` (and `providers`, when given)."""
    checked = checked or datetime.date.today().isoformat()
    result = ImportResult([], [])
    for name, entry in data.items():
        if name == DOC_KEY:
            continue
        if not isinstance(entry, dict):
            result.skipped.append((name, f"not an object (got {type(entry).__name__})"))
            continue
        mode, provider = entry.get(MODE), entry.get(PROVIDER)
        if not (isinstance(mode, str) and mode in modes):
            result.skipped.append((name, f"mode {mode}" if mode is not None else "no mode"))
            result.filtered.add(name)
            continue
        if providers and not (isinstance(provider, str) and provider in providers):
            result.skipped.append((name, f"provider {provider}"))
            result.filtered.add(name)
            continue
        try:
            price = _price(name, entry, checked, source)
        except ValueError as err:
            result.skipped.append((name, str(err)))
            continue
        provider = provider if isinstance(provider, str) and provider else "unknown"
        result.imported.append(dataclasses.replace(price, provider=provider))
    return result


def _price(name: str, entry: dict, checked: str, source: str) -> ApiPrice:
    """The standard prices and every tier of one entry; ValueError names a bad key."""
    input_price, output_price = _per_million(entry, INPUT, True), _per_million(entry, OUTPUT, True)
    assert input_price is not None and output_price is not None  # required: raised above otherwise
    tiers: dict = {tier: _tier(entry, suffix, checked, source) for tier, suffix in TIER_SUFFIXES.items()}
    thresholds = sorted(int(m.group(1)) for key in entry if (m := LONG_CONTEXT.match(key)))
    if thresholds:  # the lowest threshold where LiteLLM lists several
        suffix = f"_above_{thresholds[0]}k_tokens"
        tier = _tier(entry, suffix, checked, source)
        tiers["long_context"] = tier and LongContextPrice(**_fields(tier), threshold_tokens=thresholds[0] * 1000)
    return ApiPrice(name, input_price, output_price, _per_million(entry, CACHED, False),
                    _per_million(entry, CACHE_WRITE, False), **tiers, source=source, checked=checked)


def _tier(entry: dict, suffix: str, checked: str, source: str) -> TierPrice | None:
    """A tier's prices, from the keys with `suffix`; None unless both input and output are priced."""
    input_price, output_price = _per_million(entry, INPUT + suffix, False), _per_million(entry, OUTPUT + suffix, False)
    cached, write = _per_million(entry, CACHED + suffix, False), _per_million(entry, CACHE_WRITE + suffix, False)
    if input_price is None or output_price is None:
        return None
    return TierPrice(input_price, output_price, cached, write, source=source, checked=checked)


def _fields(tier: TierPrice) -> dict:
    return {f.name: getattr(tier, f.name) for f in dataclasses.fields(tier)}


def _per_million(entry: dict, key: str, required: bool) -> float | None:
    if key not in entry or entry[key] is None:
        if required:
            raise ValueError(f"missing {key}")
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} is not a number (got {value!r:.40})")
    try:
        per_million = float(value) * 1e6
    except OverflowError:  # an integer beyond float range
        per_million = math.inf
    if not math.isfinite(per_million) or per_million < 0:
        raise ValueError(f"{key} must be a finite number >= 0 (got {value!r:.40})")
    # 6 significant digits drop float noise: 4e-07 * 1e6 is 0.39999999999999997
    return float(f"{per_million:.6g}")


def dump_catalog(prices: list[ApiPrice], header: str | None = None) -> str:
    """YAML text in the apis.yaml format, loadable with exporter.catalog.load_apis(path)."""
    lines = [f"# {line}" if line else "#" for line in (header or DEFAULT_HEADER).splitlines()]
    lines += ["", "apis:" if prices else "apis: {}"]
    for price in prices:
        lines += [f"  {_string(price.name)}:", f"    provider: {_word(price.provider)}"]
        lines += _prices(price, "    ")
        for tier in price.tiers()[1:]:
            lines += [f"    {tier}:", *_prices(getattr(price, tier), "      ")]
    return "\n".join(lines) + "\n"


def _prices(price, pad: str) -> list[str]:
    """The price lines of an entry or a tier; optional keys only where set."""
    lines = [f"{pad}threshold_tokens: {price.threshold_tokens}"] if isinstance(price, LongContextPrice) else []
    lines += [f"{pad}input_per_million: {_number(price.input_per_million)}",
              f"{pad}output_per_million: {_number(price.output_per_million)}",
              f"{pad}cached_input_per_million: {_number(price.cached_input_per_million)}"]
    if price.cache_write_per_million is not None:
        lines.append(f"{pad}cache_write_per_million: {_number(price.cache_write_per_million)}")
    return lines + [f"{pad}source: {_string(price.source)}", f"{pad}checked: {_string(price.checked)}"]


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid double-quoted YAML scalar


def _word(text: str) -> str:
    """A plain scalar where YAML reads it back as the same string (openai), else quoted."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", text) and yaml.safe_load(text) == text:
        return text
    return _string(text)


def _number(value: float | None) -> str:
    if value is None:
        return "null"
    # plain decimal notation: PyYAML reads an exponent without a dot ("1e-05") as a string
    text = format(Decimal(repr(float(value))), "f")
    return text if "." in text else text + ".0"


def import_file(json_path: str, output_path: str | None, providers=None) -> ImportResult:
    """Convert `json_path` and write the catalog to `output_path` (stdout when None). Nothing is
    written when nothing was imported, so a bad input never empties an existing catalog.
    Raises ImportFailedError when the file is unreadable, not JSON or not a JSON object."""
    try:
        with open(json_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as err:
        raise ImportFailedError(f"cannot read {json_path!r}: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise ImportFailedError(f"{json_path!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ImportFailedError(f"{json_path!r} is not a JSON object of model entries (got {type(data).__name__})")
    result = convert(data, set(providers) if providers else None)
    if result.imported:
        text = dump_catalog(result.imported)
        if output_path is None:
            sys.stdout.write(text)
        else:
            try:
                with open(output_path, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as err:
                raise ImportFailedError(f"cannot write {output_path!r}: {err.strerror or err}") from None
    return result


class ImportFailedError(Exception):
    """The input file cannot be used at all (or the output cannot be written): one line for the user."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="llm-cost-exporter catalog import-litellm",
        description="Convert LiteLLM's model_prices_and_context_window.json into an API price catalog "
                    "(the apis.yaml format) of its chat models.")
    parser.add_argument("file", metavar="FILE", help="LiteLLM's model_prices_and_context_window.json")
    parser.add_argument("--output", metavar="PATH", default=None, help="write the catalog here (default: stdout)")
    parser.add_argument("--provider", metavar="NAME", action="append", default=None,
                        help="keep only this litellm_provider (repeatable), e.g. openai, anthropic, gemini "
                             "(default: all providers)")
    args = parser.parse_args(argv)
    try:
        result = import_file(args.file, args.output, args.provider)
    except ImportFailedError as err:
        print(f"llm-cost-exporter: catalog import-litellm: {err}", file=sys.stderr)
        return 1
    print(f"imported {len(result.imported)}, skipped {len(result.skipped)}", file=sys.stderr)
    for name, reason in result.skipped:
        if name not in result.filtered:
            print(f"skipped {name}: {reason}", file=sys.stderr)
    if result.filtered:
        print(f"({len(result.filtered)} of the skipped are outside the selected modes and providers, not listed)",
              file=sys.stderr)
    if not result.imported:
        print(f"llm-cost-exporter: catalog import-litellm: nothing imported from {args.file!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
