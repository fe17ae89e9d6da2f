"""The metrics path, answered with prometheus_client's own steps (those of its make_wsgi_app): the
format the scraper's Accept header asks for (OpenMetrics or the text format, choose_encoder), gzip
when its Accept-Encoding allows it (Prometheus asks for gzip unless its scrape config turns
compression off), and `?name[]=` filtering (restricted_registry). The body is the library
encoder's, rendered through the server's LineCache (exporter/web/linecache.py), which keeps the
text of each series between scrapes: the same bytes for a quarter of the render time (bench/README.md).

One request header is ours: where the scraper accepts OpenMetrics without naming a name-escaping
scheme (Prometheus 2.x), we ask the library for `escaping=allow-utf-8`. Every name we expose is a
legacy-valid Prometheus name, so the body is byte for byte the one of the default `underscores`
scheme (tests/test_web_metrics.py compares them), but the library renders a new series' text with
str.replace instead of checking every name character by character. A scraper that names a scheme
gets exactly that scheme."""

from __future__ import annotations

import gzip
from urllib.parse import parse_qs

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.web.linecache import LineCache
from exporter.web.prerender import PreRender, Variant


def render(registry, path: str, query: str, accept: str | None, accept_encoding: str | None,
           cache: LineCache | None = None, ahead: PreRender | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a GET of `path?query`. With a cache (the server keeps one), the
    library's own steps of its WSGI app (choose_encoder, `name[]`, gzip_accepted) around a
    LineCache render, same bytes, or the body `ahead` rendered after the last change where it is
    current; without one, the library's app itself."""
    if cache is not None:
        return _cached(registry, query, accept, accept_encoding, cache, ahead)
    return _library(registry, path, query, accept, accept_encoding)


def _cached(registry, query: str, accept: str | None, accept_encoding: str | None,
            cache: LineCache, ahead: PreRender | None) -> tuple[int, list[tuple[str, str]], bytes]:
    encoder, content_type = choose_encoder(unescaped_names(accept) if accept is not None else "")
    variant = Variant(content_type, gzip_accepted(accept_encoding or ""))
    headers = [("Content-Type", content_type)] + ([("Content-Encoding", "gzip")] if variant.gzipped else [])
    params = parse_qs(query) if query else {}
    if "name[]" in params:  # filtered: never kept
        registry = registry.restricted_registry(params["name[]"])
    elif ahead is not None:
        body = ahead.get(variant, encoder)
        if body is not None:
            return 200, headers, body
    body = cache.encode(registry, encoder, content_type)
    return 200, headers, gzip.compress(body) if variant.gzipped else body


def _library(registry, path: str, query: str, accept: str | None,
             accept_encoding: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """The library's app, called with the few environ keys it reads. Always GET: the app answers
    HEAD with 405, and the server answers HEAD itself, with the GET's headers and no body."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
    if accept is not None:
        environ["HTTP_ACCEPT"] = unescaped_names(accept)
    if accept_encoding is not None:
        environ["HTTP_ACCEPT_ENCODING"] = accept_encoding
    started = []

    def start_response(status: str, headers: list, exc_info=None):
        started.append((int(status.split(" ", 1)[0]), list(headers)))

    chunks = make_wsgi_app(registry)(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):  # PEP 3333: the server closes what the app returned
            chunks.close()
    status, headers = started[-1]
    return status, headers, body


def unescaped_names(accept: str) -> str:
    """`accept` with `escaping=allow-utf-8` added to each OpenMetrics media range that names no
    escaping scheme."""
    ranges = []
    for media_range in accept.split(","):
        params = [p.strip() for p in media_range.split(";")]
        if params[0] == "application/openmetrics-text" and not any(p.startswith("escaping=") for p in params[1:]):
            media_range += ";escaping=allow-utf-8"
        ranges.append(media_range)
    return ",".join(ranges)
