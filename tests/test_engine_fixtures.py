"""Every engine exposition fixture under tests/data/engines/, end to end through a real exporter.

Each fixture file (found in the directory, so files added later are tested too) is served byte
for byte over loopback HTTP with the Content-Type that tests/data/engines/SOURCES.md records for
it, to an exporter whose engine is `kind: auto`:

- auto-detection picks the engine the fixture's directory names (vllm for vLLM V1 and V0 in every
  format, sglang, lmdeploy, llamacpp);
- after the baseline scrape, a second version of the same exposition is served in which every
  counter sample the engine map names has grown by a known amount per series (only the numeric
  field of those lines is rewritten); the exporter's tokens, cached input tokens and requests per
  model must equal an independent computation from engines.yaml (read here with yaml.safe_load,
  not through exporter code): per quantity, the first candidate the exposition serves, summed
  over its series, with llama.cpp's input = prompt + cached (`input_includes_cached: false`);
- an OpenMetrics fixture (colons kept, or escaped to underscores) counts exactly like its text
  twin.

No real TGI or Dynamo exposition exists here (SOURCES.md, "Engines with no fixture
here"). The histogram-`_sum` mechanics of the TGI and Dynamo maps are checked on SYNTHETIC
expositions rendered by prometheus_client from the maps' own sample names, and llama.cpp's
input = prompt + cached on a SYNTHETIC body in llama-server's hand-written format; neither is a
fixture and neither says anything about the real servers' output beyond the names in the map.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import make_config, value
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.config import from_dict
from exporter.engines.parse import ParseError, parse_exposition
from exporter.engines.schemas import bundled

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "engines"
ENGINE_MAPS = yaml.safe_load((ROOT / "exporter" / "engines" / "engines.yaml").read_text())
UNKNOWN_MODEL = "unknown"  # the model of an engine with no model label (docs/engines.md)
ENGINE = "eng"


# -- the fixtures and their provenance (SOURCES.md) ------------------------------------------------

def fixture_files() -> list[Path]:
    return sorted(p for p in DATA.rglob("*") if p.is_file() and p.parent != DATA and p.suffix != ".md")  # notes are not fixtures


def sources_table() -> dict[str, dict[str, str]]:
    """The rows of SOURCES.md's fixture table, by file path relative to tests/data/engines/."""
    rows, header = {}, None
    for line in (DATA / "SOURCES.md").read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue
        elif header[0] == "file" and "Content-Type" in header:
            rows[cells[0].strip("`")] = {h: c.strip("`") for h, c in zip(header, cells, strict=True)}
    return rows


SOURCES = sources_table()
# Real bodies that serve no token series yet: counted as an unknown engine until they do.
NO_TOKENS_YET = {"dynamo/frontend-1.6.1-no-workers-text.txt": "a Dynamo frontend before any model registered"}
BIG = 100_000  # bytes: Ray's agent serves all of Ray's own metrics too (600 kB): the slow tier reads those
FIXTURES = [pytest.param(p, id=str(p.relative_to(DATA)), marks=[pytest.mark.slow] if p.stat().st_size > BIG else [])
            for p in fixture_files() if str(p.relative_to(DATA)) not in NO_TOKENS_YET]


def served(path: Path) -> tuple[str, str, str]:
    """(expected kind, Content-Type, body) of one fixture; the body is the file's bytes, unchanged."""
    name = str(path.relative_to(DATA))
    assert name in SOURCES, f"{name} has no row in tests/data/engines/SOURCES.md (provenance, Content-Type)"
    row = SOURCES[name]
    data = path.read_bytes()
    assert len(data) == int(row["bytes"]) and hashlib.sha256(data).hexdigest() == row["sha256"], \
        f"{name} differs from the bytes SOURCES.md records"
    body = data.decode("utf-8")
    assert body.encode("utf-8") == data  # what the server sends is the file, byte for byte
    kind = path.relative_to(DATA).parts[0]
    assert kind in ENGINE_MAPS, f"fixture directory {kind!r} is not an engine kind of engines.yaml"
    return kind, row["Content-Type"], body


def test_every_fixture_is_listed_and_every_listed_file_exists():
    files = {str(p.relative_to(DATA)) for p in fixture_files()}
    assert files and files == set(SOURCES)


# -- an exposition's sample lines, read and rewritten with prometheus_client's parser ---------------

def normalized(name: str) -> str:
    return name.replace(":", "_")  # OpenMetrics underscores escaping: one series, either spelling


def parse_line(line: str) -> tuple[str, dict[str, str], float]:
    (family,) = text_string_to_metric_families(line + "\n")
    (sample,) = family.samples
    assert sample.timestamp is None, line
    return sample.name, dict(sample.labels), sample.value


def sample_rows(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [parse_line(line) for line in text.split("\n") if line.strip() and not line.startswith("#")]


def map_samples(engine_map: dict) -> set[str]:
    """Every counter (or histogram _sum) sample the map names, candidates and requests alike."""
    names = {c if isinstance(c, str) else c["sample"] for cs in engine_map["counters"].values() for c in cs}
    if engine_map.get("requests"):
        names.add(engine_map["requests"]["sample"])
    return {normalized(n) for n in names}


def increment(name: str, labels: dict[str, str], requests: bool) -> float:
    """A known growth per series (varied across series), the same whatever the name's escaping."""
    h = zlib.crc32(repr((normalized(name), sorted(labels.items()))).encode())
    return float(1 + h % 29) if requests else float(100 + h % 9_900)


def rewrite(text: str, engine_map: dict, new_value) -> tuple[str, dict[tuple, tuple[float, float]]]:
    """The same exposition with the value of every sample the map names replaced by
    new_value(name, labels, old, is_requests); every other byte unchanged. Returns it and
    (old, new) per series (normalized name, sorted labels)."""
    wanted = map_samples(engine_map)
    requests = normalized(engine_map["requests"]["sample"]) if engine_map.get("requests") else None
    lines, changed = text.split("\n"), {}
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        name, labels, old = parse_line(line)
        if normalized(name) not in wanted:
            continue
        new = new_value(name, labels, old, normalized(name) == requests)
        head, _, number = line.rpartition(" ")
        assert float(number) == old, line  # the value is the line's last field (no timestamp)
        lines[i] = f"{head} {floatToGoString(new)}"
        assert parse_line(lines[i]) == (name, labels, new)
        changed[(normalized(name), tuple(sorted(labels.items())))] = (old, new)
    assert changed, "the exposition serves none of the map's counters"
    return "\n".join(lines), changed


def grow(text: str, engine_map: dict) -> tuple[str, dict[tuple, float]]:
    """Every sample the map names grown by increment(): the text and the growth per series."""
    grown, changed = rewrite(text, engine_map, lambda n, labels, old, req: old + increment(n, labels, req))
    return grown, {key: new - old for key, (old, new) in changed.items()}


# -- the independent expectation: engines.yaml read here, summed series by series ---------------------

def candidates(engine_map: dict, quantity: str) -> list[dict]:
    return [{"sample": c} if isinstance(c, str) else c for c in engine_map["counters"].get(quantity, [])]


def read_series(engine_map: dict, rows) -> list[tuple[str, str, dict[str, str]]]:
    """(quantity, normalized sample name, labels) of every series the exporter must read: per
    counter quantity the first candidate served (its `match` labels applied), and the requests."""
    def series(sample, match=None):
        return [(normalized(name), labels) for name, labels, _ in rows
                if normalized(name) == normalized(sample) and all(labels.get(k) == v for k, v in (match or {}).items())]

    out = []
    for quantity in ("input_tokens", "output_tokens", "cached_input_tokens"):
        for candidate in candidates(engine_map, quantity):
            found = series(candidate["sample"], candidate.get("match"))
            if found:
                out += [(quantity, name, labels) for name, labels in found]
                break
    if engine_map.get("requests"):
        out += [("requests", name, labels) for name, labels in series(engine_map["requests"]["sample"])]
    return out


def model_of(engine_map: dict, labels: dict[str, str]) -> str:
    model_label = engine_map.get("model_label")
    return (labels.get(model_label) or UNKNOWN_MODEL) if model_label else UNKNOWN_MODEL


def expected_totals(engine_map: dict, rows, deltas: dict[tuple, float]) -> dict:
    """What the exporter must count from one scrape to the next, given each series' increase:
    summed over the series read_series() names, llama.cpp's cached tokens added to its input."""
    tokens, cached, requests = {}, {}, {}
    reason_label = (engine_map.get("requests") or {}).get("reason_label")
    for quantity, name, labels in read_series(engine_map, rows):
        inc = deltas[(name, tuple(sorted(labels.items())))]
        model = model_of(engine_map, labels)
        if quantity == "requests":
            key = (model, (labels.get(reason_label) if reason_label else None) or "unknown")
            requests[key] = requests.get(key, 0.0) + inc
        elif quantity == "cached_input_tokens":
            cached[model] = cached.get(model, 0.0) + inc
            if engine_map.get("input_includes_cached", True) is False:  # input = prompt + cached
                tokens[(model, "input")] = tokens.get((model, "input"), 0.0) + inc
        else:
            key = (model, quantity.split("_")[0])
            tokens[key] = tokens.get(key, 0.0) + inc
    for model in {m for m, _ in tokens} | set(cached) | {m for m, _ in requests}:
        for direction in ("input", "output"):
            tokens.setdefault((model, direction), 0.0)
        cached.setdefault(model, 0.0)
    return {"tokens": tokens, "cached": cached, "requests": requests}


def series_group(engine_map: dict, quantity: str, labels: dict[str, str]) -> tuple:
    """A series' group as exporter/series.py defines it: its model and its labels but the
    model's (and, for requests, the finished reason's)."""
    skip = {engine_map.get("model_label")}
    if quantity == "requests":
        skip.add((engine_map.get("requests") or {}).get("reason_label"))
    return model_of(engine_map, labels), tuple(sorted((k, v) for k, v in labels.items() if k not in skip))


def exported(exporter, engine=ENGINE) -> dict:
    """The engine's tokens, cached input tokens and requests per model, as /metrics serves them."""
    out = {"tokens": {}, "cached": {}, "requests": {}}
    for family in exporter.registry.collect():
        for s in family.samples:
            if s.labels.get("engine") != engine:
                continue
            if s.name == "llmcost_tokens_total":
                out["tokens"][(s.labels["model"], s.labels["direction"])] = s.value
            elif s.name == "llmcost_cached_input_tokens_total":
                out["cached"][s.labels["model"]] = s.value
            elif s.name == "llmcost_requests_total":
                out["requests"][(s.labels["model"], s.labels["finished_reason"])] = s.value
    return out


def gauges(exporter, engine=ENGINE) -> dict:
    names = ("llmcost_requests_running", "llmcost_requests_waiting", "llmcost_kv_cache_usage_ratio")
    return {(s.name, s.labels["model"]): s.value for f in exporter.registry.collect() for s in f.samples
            if s.name in names and s.labels.get("engine") == engine}


def auto_exporter(exporter_for, url):
    exporter = exporter_for(make_config([(ENGINE, url, {"kind": "auto"})]))
    exporter.sample_all()
    return exporter


def scrape_twice(dynamic_server, exporter_for, clock, first: str, second: str, content_type: str):
    """An exporter (kind auto) that reads `first` as its baseline, then `second` 5 s later."""
    url = dynamic_server(lambda n: first if n == 1 else second, content_type)
    exporter = auto_exporter(exporter_for, url)
    clock.advance(5)
    exporter.sample_all()
    return exporter


def up(exporter):
    return value(exporter, "llmcost_source_up", source="engine", name=ENGINE)


# -- the fixtures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", FIXTURES)
def test_auto_detection_picks_the_fixtures_engine(path, static_server, exporter_for):
    kind, content_type, body = served(path)
    exporter = auto_exporter(exporter_for, static_server(body, content_type))
    assert exporter.engines[0].kind == kind
    assert up(exporter) == 1
    assert exported(exporter)["tokens"], "no model counted at the baseline"
    assert set(exported(exporter)["tokens"].values()) == {0.0}  # the first scrape is a baseline


@pytest.mark.parametrize("name", sorted(NO_TOKENS_YET))
def test_a_real_body_without_token_series_is_an_unknown_engine_not_a_zero(name, static_server, exporter_for):
    kind, content_type, body = served(DATA / name)
    exporter = auto_exporter(exporter_for, static_server(body, content_type))
    assert exporter.engines[0].kind == "auto" and up(exporter) == 0
    assert value(exporter, "llmcost_source_errors_total", source="engine", name=ENGINE, reason="unknown_engine") == 1


@pytest.mark.parametrize("path", FIXTURES)
def test_growth_of_every_mapped_series_is_counted_exactly(path, dynamic_server, exporter_for, clock):
    kind, content_type, body = served(path)
    grown, growth = grow(body, ENGINE_MAPS[kind])
    exporter = scrape_twice(dynamic_server, exporter_for, clock, body, grown, content_type)
    assert exporter.engines[0].kind == kind and up(exporter) == 1
    want = expected_totals(ENGINE_MAPS[kind], sample_rows(body), growth)
    assert want["tokens"] and any(v > 0 for (_, d), v in want["tokens"].items() if d == "output")
    assert exported(exporter) == want
    assert value(exporter, "llmcost_engine_restarts_total", engine=ENGINE) == 0


@pytest.mark.parametrize("path", FIXTURES)
def test_a_restart_counts_each_series_new_value_and_one_restart_per_series_group(
        path, dynamic_server, exporter_for, clock):
    """The baseline is the grown version; then the fixture itself is served, as if the engine had
    restarted and counted exactly the fixture's values since: every mapped series went down, so
    each counts its whole new value, and llmcost_engine_restarts_total counts one per series group
    (model + labels but the model's and the finished reason's, exporter/series.py)."""
    kind, content_type, body = served(path)
    engine_map = ENGINE_MAPS[kind]
    grown, _ = grow(body, engine_map)
    exporter = scrape_twice(dynamic_server, exporter_for, clock, grown, body, content_type)
    assert exporter.engines[0].kind == kind and up(exporter) == 1
    rows = sample_rows(body)
    since_restart = {(normalized(name), tuple(sorted(labels.items()))): v for name, labels, v in rows}
    assert exported(exporter) == expected_totals(engine_map, rows, since_restart)
    groups = {series_group(engine_map, quantity, labels) for quantity, _, labels in read_series(engine_map, rows)}
    assert value(exporter, "llmcost_engine_restarts_total", engine=ENGINE) == len(groups)


def openmetrics_twins():
    for path in fixture_files():
        text_twin = re.sub(r"openmetrics-[a-z0-9-]+\.txt$", "text-0.0.4.txt", path.name)
        if text_twin != path.name:
            yield pytest.param(path, path.with_name(text_twin), id=str(path.relative_to(DATA)))


@pytest.mark.parametrize("path,text_twin", [pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if p.values[0].stat().st_size > BIG else [])
                                             for p in openmetrics_twins()])
def test_openmetrics_fixture_counts_like_its_text_twin(path, text_twin, dynamic_server, exporter_for, clock):
    """`escaping=underscores` serves vllm_prompt_tokens_total under `# TYPE vllm:prompt_tokens`
    (prometheus/client_python#1177); `allow-utf-8` keeps the colon. Both count like text 0.0.4."""
    results = []
    for fixture in (path, text_twin):
        kind, content_type, body = served(fixture)
        grown, _ = grow(body, ENGINE_MAPS[kind])
        exporter = scrape_twice(dynamic_server, exporter_for, clock, body, grown, content_type)
        assert exporter.engines[0].kind == kind and up(exporter) == 1
        results.append((exported(exporter), gauges(exporter)))
    assert results[0] == results[1]
    assert any(v > 0 for (_, direction), v in results[0][0]["tokens"].items() if direction == "input")


def test_underscores_fixture_really_is_escaped():
    """The twin test above is only worth something if the names really differ on the wire."""
    body = (DATA / "vllm" / "v1-0.33.0-dp2-openmetrics-underscores.txt").read_text()
    names = {name for name, _, _ in sample_rows(body)}
    assert "vllm_prompt_tokens_total" in names and "vllm:prompt_tokens_total" not in names


# -- synthetic expositions: mechanics of the maps, not fixtures ---------------------------------------

def metric_name(sample: str) -> str:
    """prometheus_client's metric name for a map's sample (it adds _sum and _total itself)."""
    return re.sub(r"_(sum|total)$", "", sample)


def test_synthetic_tgi_tokens_counted_from_histogram_sums(dynamic_server, exporter_for, clock):
    """SYNTHETIC, not a fixture: no real TGI exposition exists here. TGI has no token counter; its
    map reads the _sum of the histograms tgi_request_input_length and tgi_request_generated_tokens,
    which grow when a request finishes. Rendered by prometheus_client from the map's names. The
    finished-request counter is left out: whether TGI serves it with a `_total` suffix is not
    verified (docs/research/engine-metrics.md)."""
    tgi = ENGINE_MAPS["tgi"]
    registry = CollectorRegistry()
    (input_sample,) = candidates(tgi, "input_tokens")
    (output_sample,) = candidates(tgi, "output_tokens")
    assert input_sample["histogram_sum"] and output_sample["histogram_sum"]
    buckets = (16, 256, 4096)
    prompt = Histogram(metric_name(input_sample["sample"]), "synthetic", registry=registry, buckets=buckets)
    generated = Histogram(metric_name(output_sample["sample"]), "synthetic", registry=registry, buckets=buckets)
    Gauge(tgi["gauges"]["requests_waiting"][0], "synthetic", registry=registry).set(3)
    for p, g in ((900, 120), (35, 7)):  # before the exporter watched: not counted
        prompt.observe(p)
        generated.observe(g)
    url = dynamic_server(lambda _n: generate_latest(registry).decode(), CONTENT_TYPE_PLAIN_0_0_4)
    exporter = auto_exporter(exporter_for, url)
    assert exporter.engines[0].kind == "tgi"
    for p, g in ((512, 64), (2048, 300), (7, 1)):
        prompt.observe(p)
        generated.observe(g)
    clock.advance(5)
    exporter.sample_all()
    assert exported(exporter) == {"tokens": {(UNKNOWN_MODEL, "input"): 2567.0, (UNKNOWN_MODEL, "output"): 365.0},
                                  "cached": {UNKNOWN_MODEL: 0.0}, "requests": {}}
    assert value(exporter, "llmcost_requests_waiting", engine=ENGINE, model=UNKNOWN_MODEL) == 3


def test_synthetic_dynamo_input_and_cached_from_histogram_sums(dynamic_server, exporter_for, clock):
    """SYNTHETIC, not a fixture: no real Dynamo frontend exposition exists here. Input and cached
    tokens are histograms (`_sum` read), output a counter, requests a counter whose `status` is the
    finished reason; two models, summed over endpoint and request_type. Rendered by
    prometheus_client from the map's own names."""
    dyn = ENGINE_MAPS["dynamo"]
    registry = CollectorRegistry()
    model = [dyn["model_label"]]
    (input_sample,), (cached_sample,) = candidates(dyn, "input_tokens"), candidates(dyn, "cached_input_tokens")
    (output_sample,) = candidates(dyn, "output_tokens")
    assert input_sample["histogram_sum"] and cached_sample["histogram_sum"] and "histogram_sum" not in output_sample
    prompt = Histogram(metric_name(input_sample["sample"]), "synthetic", model, registry=registry)
    cached = Histogram(metric_name(cached_sample["sample"]), "synthetic", model, registry=registry)
    output = Counter(metric_name(output_sample["sample"]), "synthetic", model, registry=registry)
    reason = dyn["requests"]["reason_label"]
    requests = Counter(metric_name(dyn["requests"]["sample"]), "synthetic",
                       model + ["endpoint", "request_type", reason, "error_type"], registry=registry)
    inflight = Gauge(dyn["gauges"]["requests_running"][0], "synthetic", model, registry=registry)

    def finish(name, p, c, o, endpoint="chat_completions", request_type="stream", status="success"):
        prompt.labels(name).observe(p)
        cached.labels(name).observe(c)
        output.labels(name).inc(o)
        requests.labels(name, endpoint, request_type, status, "" if status == "success" else "internal").inc()

    finish("model-a", 1000, 200, 50)  # before the exporter watched: not counted
    finish("model-b", 10, 0, 5)
    inflight.labels("model-a").set(2)
    url = dynamic_server(lambda _n: generate_latest(registry).decode(), CONTENT_TYPE_PLAIN_0_0_4)
    exporter = auto_exporter(exporter_for, url)
    assert exporter.engines[0].kind == "dynamo"
    finish("model-a", 300, 100, 40)
    finish("model-a", 700, 0, 60, endpoint="completions", request_type="unary")
    finish("model-a", 20, 0, 0, status="error")
    finish("model-b", 4000, 3000, 500)
    clock.advance(5)
    exporter.sample_all()
    assert exported(exporter) == {
        "tokens": {("model-a", "input"): 1020.0, ("model-a", "output"): 100.0,
                   ("model-b", "input"): 4000.0, ("model-b", "output"): 500.0},
        "cached": {"model-a": 100.0, "model-b": 3000.0},
        "requests": {("model-a", "success"): 2.0, ("model-a", "error"): 1.0, ("model-b", "success"): 1.0}}
    assert value(exporter, "llmcost_requests_running", engine=ENGINE, model="model-a") == 2


LLAMACPP_SYNTHETIC = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1800
# HELP llamacpp:prompt_seconds_total Prompt process time
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 2.5
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 640
# HELP llamacpp:prompt_tokens_cached_total Number of prompt tokens reused from the cache.
# TYPE llamacpp:prompt_tokens_cached_total counter
llamacpp:prompt_tokens_cached_total 1200
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 0
"""


def test_synthetic_llamacpp_is_detected_and_its_output_counted(dynamic_server, exporter_for, clock):
    """SYNTHETIC, not a fixture: no llama-server body was captured (SOURCES.md). Hand-written in
    llama-server's format (HELP, TYPE, one unlabelled sample per family), names from the map."""
    grown, growth = grow(LLAMACPP_SYNTHETIC, ENGINE_MAPS["llamacpp"])
    exporter = scrape_twice(dynamic_server, exporter_for, clock, LLAMACPP_SYNTHETIC, grown, "text/plain; version=0.0.4")
    assert exporter.engines[0].kind == "llamacpp" and up(exporter) == 1
    tokens = exported(exporter)["tokens"]
    assert tokens[(UNKNOWN_MODEL, "output")] == growth[("llamacpp_tokens_predicted_total", ())]
    assert value(exporter, "llmcost_requests_running", engine=ENGINE, model=UNKNOWN_MODEL) == 1


def test_synthetic_llamacpp_input_is_prompt_plus_cached(dynamic_server, exporter_for, clock):
    """SYNTHETIC, as above. llama.cpp's prompt counter leaves cached tokens out, so input = prompt +
    cached, all on the one model of the server."""
    assert ENGINE_MAPS["llamacpp"]["input_includes_cached"] is False
    grown, growth = grow(LLAMACPP_SYNTHETIC, ENGINE_MAPS["llamacpp"])
    exporter = scrape_twice(dynamic_server, exporter_for, clock, LLAMACPP_SYNTHETIC, grown, "text/plain; version=0.0.4")
    want = expected_totals(ENGINE_MAPS["llamacpp"], sample_rows(LLAMACPP_SYNTHETIC), growth)
    prompt = growth[("llamacpp_prompt_tokens_total", ())]
    cached = growth[("llamacpp_prompt_tokens_cached_total", ())]
    assert want["tokens"][(UNKNOWN_MODEL, "input")] == prompt + cached and len(want["tokens"]) == 2
    assert exported(exporter) == want


def test_synthetic_llamacpp_restart_counts_one_restart(dynamic_server, exporter_for, clock):
    """SYNTHETIC, as above: the grown body, then the original one (a restart). One process whose
    counters all have the same (empty) label set restarts once: one series group reset."""
    grown, _ = grow(LLAMACPP_SYNTHETIC, ENGINE_MAPS["llamacpp"])
    exporter = scrape_twice(dynamic_server, exporter_for, clock, grown, LLAMACPP_SYNTHETIC, "text/plain; version=0.0.4")
    assert exporter.engines[0].kind == "llamacpp"
    assert value(exporter, "llmcost_engine_restarts_total", engine=ENGINE) == 1


# -- no map matches ------------------------------------------------------------------------------------

NODE_EXPORTER_LIKE = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 12345.67
node_cpu_seconds_total{cpu="0",mode="user"} 890.12
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.42
"""


def test_an_endpoint_matching_no_map_is_reported_with_what_it_serves(static_server, exporter_for, caplog):
    caplog.set_level(logging.WARNING)
    exporter = auto_exporter(exporter_for, static_server(NODE_EXPORTER_LIKE))
    assert exporter.engines[0].kind == "auto"  # nothing detected, tried again next time
    assert up(exporter) == 0
    assert value(exporter, "llmcost_source_errors_total", source="engine", name=ENGINE, reason="unknown_engine") == 1
    assert not exported(exporter)["tokens"]
    (line,) = [r.getMessage() for r in caplog.records if "unknown_engine" in r.getMessage()]
    assert "node_cpu_seconds_total" in line and "node_load1" in line


# -- docs/engines.md's engine_maps example ---------------------------------------------------------------

def docs_engine_maps_example() -> str:
    doc = (ROOT / "docs" / "engines.md").read_text()
    section = doc.split("## Adding or overriding a map", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def example_body(engine_map: dict, scale: float = 1.0) -> str:
    """An exposition of the documented example engine: two replicas of model "m", every counter
    candidate, requests by reason, and the gauges."""
    ml, rank = engine_map["model_label"], engine_map["sum_over"][0]
    lines = []
    samples = [c for cs in engine_map["counters"].values() for c in cs] + [engine_map["requests"]["sample"]]
    for i, sample in enumerate(samples):
        lines.append(f"# TYPE {sample} counter")
        reason = f',{engine_map["requests"]["reason_label"]}="stop"' if sample == samples[-1] else ""
        lines += [f'{sample}{{{ml}="m",{rank}="{r}"{reason}}} {scale * (i + 1) * (10 + j)}' for j, r in enumerate("ab")]
    for gauge, *_ in engine_map["gauges"].values():
        lines += [f"# TYPE {gauge} gauge", f'{gauge}{{{ml}="m",{rank}="a"}} 0.5']
    return "\n".join(lines) + "\n"


def test_the_documented_engine_maps_example_loads_and_counts(dynamic_server, exporter_for, clock):
    """The worked example in docs/engines.md (an imaginary engine) is a valid config, detected by
    kind auto after the bundled kinds, and counted like any map."""
    raw = yaml.safe_load(docs_engine_maps_example())
    example = raw["engine_maps"]["example-engine"]
    body = example_body(example)
    grown, growth = grow(body, example)
    url = dynamic_server(lambda n: body if n == 1 else grown)
    raw.update({"pricing": {"mode": "cloud", "cloud": {"hourly": 1.0}}, "gpu": {"backend": "simulated"},
                "engines": [{"name": ENGINE, "url": url, "interval": "5s", "timeout": "1s"}]})
    exporter = exporter_for(from_dict(raw, environ={}))
    exporter.sample_all()
    assert exporter.engines[0].kind == "example-engine"
    clock.advance(5)
    exporter.sample_all()
    want = expected_totals(example, sample_rows(body), growth)
    assert want["cached"]["m"] > 0 and want["requests"][("m", "stop")] > 0
    assert exported(exporter) == want


@pytest.mark.parametrize("kind", ["example-engine", "auto"])
def test_a_reloaded_engine_map_applies_to_the_running_engine(tmp_path, dynamic_server, clock, nvml, kind):
    """The first config's map lacks the cached-token counter; a reload adds it. The first scrape
    after the reload is the new series' baseline (they existed before, unread); they count from then."""
    from exporter.app import Exporter
    from exporter.config import load_file

    raw = yaml.safe_load(docs_engine_maps_example())
    example = raw["engine_maps"]["example-engine"]
    body = example_body(example)
    scrapes = [body, example_body(example, 2.0), example_body(example, 3.0), example_body(example, 4.0)]
    url = dynamic_server(lambda n: scrapes[min(n, 4) - 1])
    raw.update({"pricing": {"mode": "cloud", "cloud": {"hourly": 1.0}}, "gpu": {"backend": "simulated"},
                "engines": [{"name": ENGINE, "url": url, "interval": "5s", "timeout": "1s", "kind": kind}]})
    without_cached = {**example, "counters": {q: c for q, c in example["counters"].items() if q != "cached_input_tokens"}}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({**raw, "engine_maps": {"example-engine": without_cached}}))
    exporter = Exporter(load_file(str(path), environ={}), clock=clock, nvml_backend=nvml, environ={})
    exporter.sample_all()
    clock.advance(5)
    exporter.sample_all()
    assert exported(exporter)["cached"] == {"m": 0.0}
    path.write_text(yaml.safe_dump(raw))
    assert exporter.reloader.reload()[0]
    clock.advance(5)
    exporter.sample_all()
    assert exported(exporter)["cached"]["m"] == 0.0  # the baseline of series read from now on
    clock.advance(5)
    exporter.sample_all()
    cached = example["counters"]["cached_input_tokens"][0]
    third, fourth = ({(name, tuple(sorted(labels.items()))): v for name, labels, v in sample_rows(b)} for b in scrapes[2:])
    assert exported(exporter)["cached"]["m"] == sum(v - third[k] for k, v in fourth.items() if k[0] == cached) > 0


@pytest.mark.parametrize("path", FIXTURES + [pytest.param(DATA / n, id=n) for n in NO_TOKENS_YET])
def test_reading_only_the_used_lines_gives_the_full_parse_readings(path):
    """Issue 16: the engine map's lines are selected before parsing; on every real fixture, with
    every engine map, the readings (or the refusal) are the full parse's, exactly."""
    _, content_type, body = served(path)
    for kind, schema in bundled().items():
        outcomes = []
        for selective in (False, True):
            try:
                outcomes.append(parse_exposition(content_type, body, schema, selective=selective))
            except ParseError as err:
                outcomes.append(type(err))
        assert outcomes[1] == outcomes[0], (kind, outcomes)
