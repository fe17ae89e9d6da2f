"""The metrics path's one header of our own (exporter/web/metrics.py): where the scraper accepts
OpenMetrics without naming an escaping scheme, we ask prometheus_client for allow-utf-8 names,
which must give the very bytes of the default underscores scheme, because every name we expose is
a legacy-valid one."""

import gzip

import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from conftest import make_config, run_for
from exporter.web import metrics

PROMETHEUS_2_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                       "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.fixture
def registry(clock, vllm, exporter_for):
    exporter = exporter_for(make_config([("vllm", vllm().url, {})], apis=["gpt-4o-mini", "gpt-4o"]))
    run_for(clock, exporter, 60)
    return exporter.registry


@pytest.mark.parametrize("accept,expected", [
    ("application/openmetrics-text;version=1.0.0", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"),
    ("application/openmetrics-text; version=1.0.0; escaping=underscores",
     "application/openmetrics-text; version=1.0.0; escaping=underscores"),
    ("text/plain;version=0.0.4", "text/plain;version=0.0.4"),
    ("application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
     "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,text/plain;q=0.5"),
])
def test_only_openmetrics_ranges_without_a_scheme_get_allow_utf8(accept, expected):
    assert metrics.unescaped_names(accept) == expected


def test_prometheus_2_gets_the_bytes_of_the_default_escaping(registry):
    status, headers, body = metrics.render(registry, "/metrics", "", PROMETHEUS_2_ACCEPT, None)
    assert status == 200 and dict(headers)["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body == openmetrics_latest(registry)  # underscores, the library's default
    assert b"llmcost_spend_total" in body


def test_a_named_scheme_is_served_as_named(registry):
    accept = "application/openmetrics-text;version=1.0.0;escaping=underscores"
    _, headers, body = metrics.render(registry, "/metrics", "", accept, None)
    assert dict(headers)["Content-Type"].endswith("escaping=underscores") and body == openmetrics_latest(registry)


def test_gzip_and_name_filter_stay_the_librarys(registry):
    _, headers, body = metrics.render(registry, "/metrics", "name[]=llmcost_build_info", PROMETHEUS_2_ACCEPT, "gzip")
    assert dict(headers)["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")] == ["llmcost_build_info"]
