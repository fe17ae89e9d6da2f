"""Parsing vLLM expositions: V1 and V0 names, both formats, the traps."""

import pytest

from exporter.engines.parse import ParseError, parse_exposition
from exporter.engines.schemas import bundled

VLLM = bundled()["vllm"]

V1_TEXT = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1000.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 500.0
# HELP vllm:prompt_tokens_created Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 300.0
vllm:generation_tokens_total{engine="1",model_name="m"} 200.0
# TYPE vllm:prompt_tokens_by_source_total counter
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"} 900.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_cache_hit"} 100.0
vllm:prompt_tokens_by_source_total{engine="1",model_name="m",source="local_cache_hit"} 50.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 7.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 2.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.4
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{engine="0",le="+Inf",model_name="m"} 99999.0
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 99999.0
vllm:iteration_tokens_total_sum{engine="0",model_name="m"} 99999999.0
"""


def test_v1_text_sums_over_engine_label():
    models = parse_exposition("text/plain; version=0.0.4; charset=utf-8", V1_TEXT, VLLM)
    m = models["m"]
    assert m.counters == {"input_tokens": 1500.0, "output_tokens": 500.0, "cached_input_tokens": 150.0}
    assert m.requests == {"stop": 7.0, "length": 2.0}
    assert m.gauges["requests_running"] == 7.0
    assert m.gauges["kv_cache_usage_ratio"] == pytest.approx(0.3)  # averaged, not summed


def test_histogram_named_total_and_created_samples_are_never_counted():
    models = parse_exposition("text/plain", V1_TEXT, VLLM)
    assert 99999.0 not in models["m"].counters.values()
    assert all(v < 1e9 for v in models["m"].counters.values())


def test_cached_total_preferred_over_by_source():
    text = V1_TEXT + '# TYPE vllm:prompt_tokens_cached_total counter\nvllm:prompt_tokens_cached_total{engine="0",model_name="m"} 170.0\n'
    assert parse_exposition("text/plain", text, VLLM)["m"].counters["cached_input_tokens"] == 170.0


def test_openmetrics_is_chosen_by_content_type():
    text = """\
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 10.0
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 4.0
# EOF
"""
    models = parse_exposition("application/openmetrics-text; version=1.0.0; charset=utf-8", text, VLLM)
    assert models["m"].counters == {"input_tokens": 10.0, "output_tokens": 4.0}
    with pytest.raises(ParseError):  # OpenMetrics requires the closing # EOF
        parse_exposition("application/openmetrics-text", text.replace("# EOF\n", ""), VLLM)


def test_v0_names():
    text = """\
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="old"} 20.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="old"} 5.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="old"} 0.5
"""
    m = parse_exposition("text/plain", text, VLLM)["old"]
    assert m.counters == {"input_tokens": 20.0, "output_tokens": 5.0}
    assert m.gauges["kv_cache_usage_ratio"] == 0.5


def test_a_gauge_with_a_counter_name_is_not_a_counter():
    text = "# TYPE vllm:prompt_tokens_total gauge\nvllm:prompt_tokens_total{model_name=\"m\"} 5\n"
    with pytest.raises(ParseError, match="no vllm token counters"):
        parse_exposition("text/plain", text, VLLM)


@pytest.mark.parametrize("body", [
    "<html>502 Bad Gateway</html>",
    "vllm:prompt_tokens_total{model_name=\"m\" 12\n",
    "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"m\"} NaN\n",
    "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"m\"} -4\n",
    "",
])
def test_garbage_raises_parse_error(body):
    with pytest.raises(ParseError):
        parse_exposition("text/plain", body, VLLM)
