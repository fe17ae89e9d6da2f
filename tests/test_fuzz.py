"""Bad input, generated (hypothesis): the engine-metrics path and the config, web config and
scenario loaders (the state loader: tests/test_fuzz_state.py).

Properties: the parser raises nothing but ParseError and never yields a negative or non-finite
counter; an engine fed any sequence of expositions keeps monotonic totals equal to an independent
reference; reading only the lines an engine map uses gives the full parse's readings; each loader
returns its result or raises its own error naming a key, whatever the file holds (huge numbers,
deep nesting, alias bombs, bytes that are not UTF-8). Each test asserts that it ran its number of
cases: 17,500 in the normal run (about 70 s of CPU here); `HYPOTHESIS_PROFILE=long` runs 100 times as many (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import shutil
import threading
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import config as config_module
from exporter import estimate
from exporter import scenario as scenario_module
from exporter.clock import ManualClock
from exporter.config import Config, ConfigError, from_dict, load_bytes
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.engines.parse import ModelReading, ParseError, parse_exposition
from exporter.engines.schemas import bundled

VLLM = bundled()["vllm"]
from exporter.engines.source import EngineSource
from exporter.validation import parse_yaml
from exporter.webconfig import WebConfigError, load as load_web_config
from plugins.profiles import examples

pytestmark = pytest.mark.slow  # 17,500 cases under the ci profile

SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def run_cases(n: int, strategy, check) -> int:
    """Run `check` on examples(n) generated cases (n under the ci profile, tests/plugins/profiles.py);
    returns how many ran (asserted >= examples(n) by the callers)."""
    ran = [0]

    @settings(max_examples=examples(n), suppress_health_check=SUPPRESSED)
    @given(strategy)
    def inner(case):
        ran[0] += 1
        check(case)

    inner()
    return ran[0]


# -- engine expositions ---------------------------------------------------------------------------

NAMES = ["vllm:prompt_tokens", "vllm:generation_tokens", "vllm:prompt_tokens_cached", "vllm:request_success",
         "vllm:prompt_tokens_by_source", "vllm:num_requests_running", "vllm:num_requests_waiting",
         "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:iteration_tokens_total", "vllm_prompt_tokens",
         "vllm_generation_tokens", "process_cpu_seconds", "x"]
TYPES = ["counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset", "gaugehistogram", "bogus"]
SUFFIXES = ["", "_total", "_total", "_created", "_bucket", "_count", "_sum", "_info"]
LABELS = ["model_name", "engine", "finished_reason", "source", "le", "quantile", "x"]
label_values = st.one_of(st.sampled_from(["m", "m2", "stop", "length", "local_cache_hit", "+Inf", "0.5", "", 'a"b',
                                          "a\\b", "a\nb", "é"]), st.text(max_size=6))
values = st.one_of(st.sampled_from(["0", "1", "10", "1.5", "1e15", "NaN", "+Inf", "-Inf", "1e400", "0x10", "", "1_000", "-0",
                                    "-1", "1e-300", "nan", "9007199254740993"]), st.integers(-5, 10**16).map(str))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample_line(parts) -> str:
    name, suffix, labels, value, raw, stamp = parts
    text = ",".join(f'{k}="{v if raw else _escape(v)}"' for k, v in labels)
    return f"{name}{suffix}{{{text}}} {value}{stamp}" if labels or raw else f"{name}{suffix} {value}{stamp}"


line = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES)).map(lambda t: f"# TYPE {t[0]} {t[1]}"),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(SUFFIXES), st.lists(st.tuples(st.sampled_from(LABELS), label_values),
                                                                           max_size=3),
              values, st.booleans(), st.sampled_from(["", "", "", " 1700000000", " 1.7e9", " x"])).map(_sample_line),
    st.sampled_from(["# EOF", "# HELP vllm:prompt_tokens doc", "", "#", "# UNIT vllm:prompt_tokens tokens"]))
expositions = st.tuples(st.sampled_from([TEXT, OPENMETRICS, "", "text/html"]),
                        st.tuples(st.lists(line, max_size=24), st.sampled_from(["\n", "", "\n# EOF\n"]))
                        .map(lambda t: "\n".join(t[0]) + t[1]))


def _real_expositions() -> list[tuple[str, str]]:
    clock = ManualClock()
    workload = Workload(clock, 1000.0)
    workload.set_constant_load(0.6)
    clock.advance(3600)
    server = SimulatedVllm(workload, "meta-llama/Llama-3.1-8B-Instruct", data_parallel=2)  # never started: no socket
    out = []
    for fmt in ("text", "openmetrics"):
        server.format = fmt
        content_type, body = server.exposition()
        out.append((content_type, body.decode()))
    server._httpd.server_close()
    return out


REAL = _real_expositions()


@st.composite
def mutated(draw):
    content_type, body = draw(st.sampled_from(REAL))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        op = draw(st.sampled_from(["cut", "delete", "insert", "replace", "duplicate_line"]))
        if op == "cut":
            body = body[:at]
        elif op == "delete":
            body = body[:at] + body[at + draw(st.integers(1, 40)):]
        elif op == "insert":
            body = body[:at] + draw(st.text(max_size=8)) + body[at:]
        elif op == "replace":
            body = body[:at] + draw(st.sampled_from(["NaN", "-1", "1e400", "{", "}", '"', "\n", " ", "#", "_total", ":"])) \
                + body[at + 1:]
        else:
            lines = body.split("\n")
            i = at % max(len(lines), 1)
            body = "\n".join(lines[:i + 1] + lines[i:])
    return content_type, body


def check_parse(case):
    content_type, body = case
    try:
        full = parse_exposition(content_type, body, VLLM, selective=False)
    except ParseError:
        full = None
    try:
        models = parse_exposition(content_type, body, VLLM)
    except ParseError as err:
        # reading only the used lines refuses what the full parse refuses, or a line with no shape
        # of a sample that prometheus_client's lax text parser let through ('v llm:x{...} 1')
        assert full is None or "GarbledError" in str(err), str(err)
        return
    # where both read it, the readings are the same (the full parse may refuse a body whose unused
    # lines are malformed only in ways the structural check does not look at)
    assert full is None or models == full, (models, full)
    assert isinstance(models, dict) and models
    for name, reading in models.items():
        assert isinstance(name, str) and isinstance(reading, ModelReading)
        for table in (reading.counters, reading.requests):
            assert all(math.isfinite(v) and v >= 0 for v in table.values()), (name, table)
        assert all(math.isfinite(v) for v in reading.gauges.values()), (name, reading.gauges)


def test_fuzz_generated_expositions_parse_or_raise_parse_error():
    assert run_cases(3000, expositions, check_parse) >= examples(3000)


def test_fuzz_mutated_real_expositions_parse_or_raise_parse_error():
    assert run_cases(2500, mutated(), check_parse) >= examples(2500)


def test_fuzz_arbitrary_text_parses_or_raises_parse_error():
    arbitrary = st.tuples(st.sampled_from([TEXT, OPENMETRICS]), st.text(max_size=200))
    assert run_cases(1000, arbitrary, check_parse) >= examples(1000)


# -- engine totals over sequences of expositions --------------------------------------------------

MODELS = ["a", "b", "c"]
COUNTERS = {"input": "vllm:prompt_tokens_total", "output": "vllm:generation_tokens_total"}
readings = st.lists(st.dictionaries(st.tuples(st.sampled_from(MODELS), st.sampled_from(list(COUNTERS))),
                                    st.integers(0, 10**15), min_size=1, max_size=6), min_size=1, max_size=8)


def _render(reading, openmetrics: bool) -> str:
    lines = []
    for direction, sample in COUNTERS.items():
        family = sample.removesuffix("_total")
        lines.append(f"# TYPE {family if openmetrics else sample} counter")
        lines += [f'{sample}{{model_name="{m}",engine="0"}} {v}' for (m, d), v in reading.items() if d == direction]
    return "\n".join(lines) + ("\n# EOF\n" if openmetrics else "\n")


def _reference(sequence):
    """Tokens each (model, direction) should total, with Prometheus' counter semantics series by
    series: the first reading is a baseline; a value below its series' last one means that series
    reset, and its new value is all new; a series first seen later counts in full."""
    last, totals = None, {}
    for reading in sequence:
        if last is None:
            last = dict(reading)
            totals.update({k: 0 for k in reading})
            continue
        for k, v in reading.items():
            previous = last.get(k)
            totals[k] = totals.get(k, 0) + (v if previous is None or v < previous else v - previous)
            last[k] = v
    return totals


def check_totals(case):
    sequence, openmetrics = case
    clock = ManualClock()
    engine = EngineSource(config_module.EngineConfig(url="http://127.0.0.1:9/metrics"), clock, threading.RLock(), 300.0)
    previous: dict = {}
    for reading in sequence:
        clock.advance(5)
        engine.ingest(OPENMETRICS if openmetrics else TEXT, _render(reading, openmetrics))
        assert engine.health.status().up
        now = {(m.model, d): v for m in engine.model_totals() for d, v in m.tokens.items()}
        for key, value in previous.items():
            assert now[key] >= value, (key, value, now[key])  # monotonic, whatever the engine said
        previous = now
    expected = _reference(sequence)
    for (model, direction), value in expected.items():
        assert previous[(model, direction)] == value


def test_fuzz_engine_totals_stay_monotonic_and_exact():
    assert run_cases(1000, st.tuples(readings, st.booleans()), check_totals) >= examples(1000)


# -- the config loader ----------------------------------------------------------------------------

BASE = {"pricing": {"mode": "cloud", "cloud": {"hourly": 3.6}, "energy": {"electricity_per_kwh": 0.2, "pue": 1.2}},
        "gpu": {"backend": "simulated", "interval": "1s"}, "window": "5m", "compare": {"apis": ["gpt-4o-mini"]},
        "engines": [{"name": "a", "url": "http://127.0.0.1:8000/metrics", "interval": "5s", "timeout": "1s",
                     "gpus": [0, 1]}]}


def _paths(cls, prefix="") -> list[str]:
    """Every key path of the config schema (lists at index 0, mappings under 'x')."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path = f"{prefix}.{f.name}" if prefix else f.name
        out.append(path)
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = hint if dataclasses.is_dataclass(hint) else None
        if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
            out += _paths(args[0], f"{path}[0]")
        elif typing.get_origin(hint) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
            out += _paths(args[1], f"{path}.x")
        elif inner is not None:
            out += _paths(inner, path)
    return out


PATHS = _paths(Config)
TOP = {f.name for f in dataclasses.fields(Config)}
anything = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["1s", "500ms", "-1s", "5m", "0s", "4MiB", "cloud", "owned",
                                                            "nvml", "none", "simulated", "http://x:1/metrics", "",
                                                            "gpt-4o", "g5.xlarge", "1e400"]),
                     st.lists(st.integers(-2, 8), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _set(raw, path: str, value) -> None:
    parts = path.replace("[0]", ".[0]").split(".")
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "[0]":
            if not isinstance(node, list):
                return
            if not node:
                node.append({})
            if last:
                node[0] = value
            node = node[0]
            continue
        if not isinstance(node, dict):
            return
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, [] if parts[i + 1] == "[0]" else {})


def _delete(raw, path: str) -> None:
    parts = path.replace("[0]", ".[0]").split(".")
    node = raw
    for part in parts[:-1]:
        node = (node[0] if node else None) if part == "[0]" and isinstance(node, list) else \
            node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


mutation = st.one_of(st.tuples(st.just("set"), st.sampled_from(PATHS), anything),
                     st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
                     st.tuples(st.just("unknown"), st.sampled_from(PATHS + [""]),
                               st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)))  # odd names: the bytes test


def check_config(mutations):
    import copy

    raw = copy.deepcopy(BASE)
    for op, path, value in mutations:
        if op == "set":
            _set(raw, path, value)
        elif op == "delete":
            _delete(raw, path)
        else:
            _set(raw, f"{path}.{value}" if path else value, 1)
    try:
        from_dict(raw, environ={})
    except ConfigError as err:
        key = err.key
        assert key and str(err).startswith(f"{key}: "), str(err)
        # A key of the schema, or one the input has (an unknown key, a value under a mapping).
        assert key.split(".")[0].split("[")[0] in TOP | {"config"} or _present(raw, key), str(err)


def _present(raw, key: str) -> bool:
    node = raw
    for part in key.replace("[", ".[").split("."):
        if part.startswith("[") and isinstance(node, list):
            index = int(part[1:-1])
            if index >= len(node):
                return False
            node = node[index]
        elif isinstance(node, dict) and part in {str(k) for k in node}:
            node = next(v for k, v in node.items() if str(k) == part)
        else:
            return False
    return True


def test_fuzz_config_loader_names_the_key_of_every_rejection():
    assert run_cases(2000, st.lists(mutation, min_size=1, max_size=3), check_config) >= examples(2000)


def check_config_bytes(data):
    try:
        load_bytes(data, "fuzz.yml", environ={})
    except ConfigError as err:
        assert err.key and str(err).startswith(f"{err.key}: ")


def test_fuzz_config_files_of_any_bytes():
    yamlish = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                        st.lists(mutation, max_size=3).map(lambda m: yaml.safe_dump(BASE).encode() + b"\n" + repr(m).encode()),
                        hostile_files([""] + [p for p in PATHS if "[0]" not in p]))
    assert run_cases(1000, yamlish, check_config_bytes) >= examples(1000)


# -- the web config loader ------------------------------------------------------------------------

WEB_KEYS = {"tls_server_config": ["cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file",
                                  "client_ca", "client_allowed_sans", "min_version", "max_version", "cipher_suites",
                                  "prefer_server_cipher_suites", "curve_preferences", "bogus"],
            "http_server_config": ["http2", "headers", "bogus"],
            "basic_auth_users": ["alice", "bob"], "rate_limit": ["interval", "burst", "bogus"], "bogus": ["x"]}
web_values = st.one_of(anything, st.sampled_from(["server.crt", "server.key", "ca.crt", "missing.pem", "TLS12", "TLS13",
                                                  "RequireAndVerifyClientCert", "VerifyClientCertIfGiven",
                                                  "NoClientCert", "RequireAnyClientCert", "CurveP256",
                                                  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "100ms", "1m30s",
                                                  "$2b$04$" + "a" * 53, "nosniff", "deny",
                                                  "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"]),
                       st.lists(st.sampled_from(["X25519", "CurveP384", "prometheus", "TLS_AES_128_GCM_SHA256"]),
                                max_size=3),
                       st.dictionaries(st.sampled_from(["X-Frame-Options", "X-Content-Type-Options", "Server"]),
                                       st.sampled_from(["deny", "nosniff", "x"]), max_size=2))
web_configs = st.dictionaries(st.sampled_from(list(WEB_KEYS)), st.one_of(
    web_values, st.dictionaries(st.sampled_from(sorted({k for ks in WEB_KEYS.values() for k in ks})), web_values,
                                max_size=5)), max_size=4)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    from certs import make_certs

    return os.path.dirname(make_certs(tmp_path_factory.mktemp("fuzzcerts"))["ca.crt"])


def test_fuzz_web_config_loader_names_the_key_of_every_rejection(cert_dir, tmp_path):
    directory = tmp_path / "w"
    shutil.copytree(cert_dir, directory)
    path = directory / "web.yml"

    def check(raw):
        path.write_text(yaml.safe_dump(raw))
        try:
            load_web_config(str(path))
        except WebConfigError as err:
            assert err.key and str(err).startswith(f"{err.key}: "), str(err)
            assert err.key.split(".")[0] in set(WEB_KEYS) | {"web.config"}, str(err)
            assert "$2b$04$" not in str(err) and "-----BEGIN" not in str(err)  # no secret echoed

    assert run_cases(2000, web_configs, check) >= examples(2000)


# Inputs that once escaped the loader's checks with another exception (a ValueError from str() of
# an int over 4,300 digits, a RecursionError), or would cost memory: placed under any key.
huge_numbers = st.integers(4300, 6000).flatmap(lambda n: st.sampled_from(["9" * n, "0x" + "f" * n, "0o" + "7" * n,
                                                                         "-" + "1" * n, "1" * n + ".5", "0b" + "1" * n]))
deep = st.tuples(st.integers(50, 4000), st.sampled_from(["yaml-list", "yaml-map", "json", "block"])).map(
    lambda case: {"yaml-list": "[" * case[0] + "]" * case[0], "yaml-map": "{a: " * case[0] + "1" + "}" * case[0],
                  "json": '{"a": ' * case[0] + "1" + "}" * case[0],
                  "block": "".join(f"\n{'  ' * (i + 2)}k{i}:" for i in range(min(case[0], 400))) + " 1"}[case[1]])
alias_bombs = st.tuples(st.integers(2, 12), st.integers(2, 12)).map(
    lambda wl: "\n  a0: &a0 [x]" + "".join(f"\n  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * wl[0])}]"
                                           for i in range(1, wl[1] + 1)))
hostile_values = st.one_of(huge_numbers, deep, alias_bombs, st.text(max_size=40).map(repr))
WEB_PATHS = [""] + [f"{top}" for top in WEB_KEYS] + [f"{top}.{key}" for top, keys in WEB_KEYS.items() for key in keys]


def _at(path: str, value: str) -> str:
    """`value` (YAML text) under the key path, as block mappings."""
    text = value
    for depth, key in reversed(list(enumerate(path.split(".")))):
        text = f"{'  ' * depth}{key}: {text}" if key else text
        text = text if depth == 0 else "\n" + text
    return text + "\n"


def hostile_files(paths: list[str]):
    """Files with a hostile value under one of the key paths, raw bytes, or both."""
    return st.one_of(
        st.tuples(st.sampled_from(paths), hostile_values).map(lambda pv: _at(*pv).encode()),
        st.binary(max_size=300),  # mostly not UTF-8
        st.tuples(st.sampled_from(paths), hostile_values, st.binary(min_size=1, max_size=8)).map(
            lambda case: _at(case[0], case[1]).encode() + case[2]),
    )


def test_fuzz_web_config_files_that_once_raised_other_exceptions(cert_dir, tmp_path):
    """Huge numbers, deep nesting (YAML and JSON), alias bombs and bytes that are not UTF-8, under
    any key: nothing but a one-line WebConfigError comes out (the watcher runs load() on the
    connection path, where anything else once cost a connection slot)."""
    directory = tmp_path / "w"
    shutil.copytree(cert_dir, directory)
    path = directory / "web.yml"

    def check(data: bytes):
        path.write_bytes(data)
        try:
            load_web_config(str(path))
        except WebConfigError as err:
            assert err.key and "\n" not in str(err) and len(str(err)) < 1000, str(err)[:300]

    assert run_cases(2000, hostile_files(WEB_PATHS), check) >= examples(2000)


# -- the estimate scenario loader --------------------------------------------------------------

EXAMPLE_SCENARIOS = [yaml.safe_load(p.read_text()) for p in sorted((pathlib.Path(__file__).parent.parent / "docs" / "examples").glob("*.yaml"))
                     if "sidecar" not in p.name]
SCENARIO_KEYS = [f.name for f in dataclasses.fields(scenario_module.Scenario) if not f.metadata.get("internal")] + [
    "pricing.mode", "pricing.owned.capex", "pricing.owned.amortization_months", "pricing.energy.electricity_per_kwh",
    "pricing.cloud.hourly", "pricing.cloud.instance_type", "hardware.gpu_count", "hardware.gpu_watts", "batch.prompts",
    "batch.tier", "fine_tuning.epochs", "fine_tuning.base", "compare.apis", "compare.apis.0",
    "catalog.apis", "pricing.energy"]


def _mutate_scenario(base: dict, mutations) -> dict:
    import copy

    scenario = copy.deepcopy(base)
    for op, path, value in mutations:
        *parents, last = path.split(".")
        node = scenario
        for part in parents:
            node = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else \
                node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            if op == "delete":
                node.pop(last, None)
            else:
                node[last] = value
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
    return scenario


def check_scenario(case):
    base, mutations = case
    try:
        figures = estimate.compute(_mutate_scenario(base, mutations))
    except estimate.ScenarioError as err:
        assert err.key and str(err).startswith(f"{err.key}: "), str(err)
        return
    estimate.render_table(figures)  # what the command prints must render too


def test_fuzz_scenario_loader_names_the_key_of_every_rejection():
    scenario_mutation = st.tuples(st.sampled_from(["set", "set", "delete"]), st.sampled_from(SCENARIO_KEYS), anything)
    cases = st.tuples(st.sampled_from(EXAMPLE_SCENARIOS), st.lists(scenario_mutation, min_size=1, max_size=3))
    assert run_cases(2000, cases, check_scenario) >= examples(2000)


def check_scenario_bytes(data):
    try:
        estimate.compute(load_mapping_bytes(data))
    except estimate.ScenarioError as err:
        assert err.key and str(err).startswith(f"{err.key}: ")


def load_mapping_bytes(data: bytes) -> dict:
    loaded = parse_yaml(data, "scenario", estimate.ScenarioError)
    if not isinstance(loaded, dict):
        raise estimate.ScenarioError("scenario", "the top level must be a mapping")
    return loaded


def test_fuzz_scenario_files_of_any_bytes():
    yamlish = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                        st.sampled_from(EXAMPLE_SCENARIOS).map(lambda s: yaml.safe_dump(s).encode()).flatmap(
                            lambda good: st.binary(max_size=40).map(lambda junk: good + junk)),
                        hostile_files([""] + [k for k in SCENARIO_KEYS if not k.startswith("apis.")]))
    assert run_cases(1000, yamlish, check_scenario_bytes) >= examples(1000)
