"""The simulated engines serve pages shaped like the real ones (issue 16): every family and
histogram bucket of the real fixture they were shaped from, at about its size, with every
counter and bucket only growing."""

from __future__ import annotations

import pathlib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.sglang_server import SimulatedSglang
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload

DATA = pathlib.Path(__file__).parent / "data" / "engines"
CASES = {  # simulator, its options, the real page it must look like
    "vllm dp2": (SimulatedVllm, {"data_parallel": 2}, DATA / "vllm" / "v1-0.33.0-dp2-text-0.0.4.txt"),
    "sglang": (SimulatedSglang, {}, DATA / "sglang" / "0.5.23-tokenizer-collector-multiproc-text-0.0.4.txt"),
}


def shape(text: str) -> dict[str, tuple[str, tuple]]:
    """family -> (type, the bucket bounds of its first series)."""
    out = {}
    for family in text_string_to_metric_families(text):
        first = next((s.labels for s in family.samples if s.name.endswith("_bucket")), None)
        bounds = tuple(s.labels["le"] for s in family.samples if s.name.endswith("_bucket") and
                       {k: v for k, v in s.labels.items() if k != "le"} == {k: v for k, v in (first or {}).items() if k != "le"})
        out[family.name] = (family.type, bounds)
    return out


def counters(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if f.type in ("counter", "histogram") and not s.name.endswith("_created")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_simulated_page_has_every_family_and_bucket_of_the_real_one_at_its_size(case, clock):
    simulator, options, real = CASES[case]
    workload = Workload(clock, 1000.0)
    workload.set_constant_load(0.5)
    clock.advance(600)
    server = simulator(workload, "org/model", **options).start()
    try:
        first = urllib.request.urlopen(server.url, timeout=5).read().decode()
        clock.advance(600)
        second = urllib.request.urlopen(server.url, timeout=5).read().decode()
    finally:
        server.stop()
    real_text = real.read_text()
    real_shape, served = shape(real_text), shape(second)
    missing = sorted(set(real_shape) - set(served))
    assert not missing, missing
    assert {name: served[name] for name in real_shape} == real_shape  # same types, same buckets
    assert 0.7 < len(second) / len(real_text) < 1.3, (len(second), len(real_text))
    before, after = counters(first), counters(second)
    assert all(after[key] >= value for key, value in before.items()), "a series went down"
    assert sum(after.values()) > sum(before.values())  # and they grow with the requests
