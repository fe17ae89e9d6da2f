"""The state file loader, fuzzed (hypothesis; the profiles and run_cases of tests/test_fuzz.py).

Property: whatever the file holds (a real state document with 1-3 keys set to any JSON value,
NaN and Infinity included, deleted or wrapped; any JSON document of version 1; any bytes),
Storage.load returns SavedTotals whose every number is finite, from 0 to 2^53, or None with the
file set aside (or kept, for a valid file of another configuration); an exporter then starts on
it, samples, and exposes finite, non-negative counters. Nothing raises.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
from hypothesis import strategies as st
from plugins.profiles import examples
from test_fuzz import run_cases

from exporter.app import Exporter
from exporter.clock import ManualClock
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.gpu.simulated import SimulatedNVML
from exporter.state_schema import MAX_NUMBER
from exporter.storage import FILE_NAME, Storage

pytestmark = pytest.mark.slow  # 3,000 cases under the ci profile

MODEL = "m"
START = 1_700_000_000.0


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(a real state document of a minute's run, its config, a vLLM for the exporters to scrape)."""
    from conftest import make_config, run_for

    clock = ManualClock(START)
    workload = Workload(clock, 1000.0)
    workload.set_constant_load(0.5)
    server = SimulatedVllm(workload, MODEL).start()
    config = make_config([("vllm", server.url, {})], apis=["gpt-4o-mini"])
    directory = tmp_path_factory.mktemp("state")
    store = Storage(str(directory), clock=clock)
    exporter = Exporter(config, clock=clock, nvml_backend=SimulatedNVML(clock, count=2), storage=store)
    exporter.sample_all()
    run_for(clock, exporter, 60)
    assert store.save()
    document = json.loads((directory / FILE_NAME).read_text())
    yield document, config, clock.now()
    server.stop()


def _paths(value, prefix=()) -> list[tuple]:
    """Every key and index path in a JSON document, shortened lists kept whole."""
    out = [prefix] if prefix else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        out.extend(_paths(child, (*prefix, key)))
    return out


leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.text(max_size=6),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([10**400, -1, -0.0, 1e308, MAX_NUMBER, MAX_NUMBER * 2, "1.0", "NaN", 0, 1.5]))
json_values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=10)


def _mutations(document):
    paths = _paths(document)
    path = st.sampled_from(paths)
    return st.lists(st.one_of(st.tuples(st.just("set"), path, json_values), st.tuples(st.just("delete"), path),
                              st.tuples(st.just("wrap"), path), st.tuples(st.just("extra"), path, json_values)),
                    min_size=1, max_size=3)


def _apply(document, mutations) -> dict:
    document = json.loads(json.dumps(document))
    for kind, path, *value in mutations:
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            if kind == "set":
                parent[key] = value[0]
            elif kind == "delete":
                del parent[key]
            elif kind == "wrap":
                parent[key] = [parent[key]]
            elif isinstance(parent[key], dict):
                parent[key]["unknown"] = value[0]
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the path
    return document


def _numbers(value):
    """Every number in what the loader returned, but under keys the fuzzer added ("unknown": the
    schema ignores extra keys of a fixed mapping, nothing reads them)."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key != "unknown":
                yield from _numbers(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from _numbers(child)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


class Checker:
    def __init__(self, saved, directory):
        self.document, self.config, self.saved_at = saved
        self.directory = directory
        self.path = directory / FILE_NAME
        self.restored = self.refused = 0

    def __call__(self, raw: bytes) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir()
        self.path.write_bytes(raw)
        clock = ManualClock(self.saved_at + 5.0)
        store = Storage(str(self.directory), clock=clock)
        loaded = store.load(self.config.pricing.mode, self.config.pricing.currency)
        if loaded is None:
            self.refused += 1
            aside = [p for p in self.directory.iterdir() if p.name.startswith(FILE_NAME + ".bad-")]
            assert (len(aside) == 1 and not self.path.exists()) or (not aside and self.path.exists())
            return
        self.restored += 1
        for number in _numbers([loaded.accountant, loaded.gpus, loaded.engines]):
            assert math.isfinite(number) and 0 <= number <= MAX_NUMBER, number
        exporter = Exporter(self.config, clock=clock, nvml_backend=SimulatedNVML(clock, count=2),
                            storage=Storage(str(self.directory), clock=clock))
        exporter.sample_all()
        clock.advance(5.0)
        exporter.sample_all()
        for family in exporter.registry.collect():
            if family.type == "counter":
                for sample in family.samples:
                    assert math.isfinite(sample.value) and sample.value >= 0, sample


def test_fuzz_state_documents_around_a_real_one(saved, tmp_path):
    check = Checker(saved, tmp_path / "state")
    document = saved[0]
    cases = _mutations(document).map(lambda m: json.dumps(_apply(document, m)).encode())
    assert run_cases(2000, cases, check) >= examples(2000)
    assert check.restored and check.refused  # both outcomes were reached
    check(json.dumps(document).encode())
    assert check.restored >= 2  # the real document itself restores


def test_fuzz_state_files_of_any_json_or_bytes(saved, tmp_path):
    check = Checker(saved, tmp_path / "state")
    versioned = st.dictionaries(st.sampled_from(["version", "clean", "accountant", "gpus", "engines", "x"]),
                                json_values, max_size=6).map(lambda d: {**d, "version": 1})
    cases = st.one_of(versioned.map(lambda d: json.dumps(d).encode()), json_values.map(lambda v: json.dumps(v).encode()),
                      st.binary(max_size=200))
    assert run_cases(1000, cases, check) >= examples(1000)
    assert check.refused >= examples(1000)
