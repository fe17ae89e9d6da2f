"""The metrics path, answered by prometheus_client's own WSGI app (make_wsgi_app): the format the
scraper's Accept header asks for (OpenMetrics or the text format), gzip when its Accept-Encoding
allows it (Prometheus asks for gzip unless its scrape config turns compression off), and
`?name[]=` filtering are the library's.

One request header is ours: where the scraper accepts OpenMetrics without naming a name-escaping
scheme (Prometheus 2.x), we ask the library for `escaping=allow-utf-8`. Every name we expose is a
legacy-valid Prometheus name, so the body is byte for byte the one of the default `underscores`
scheme (tests/test_web_security.py compares them), but the library renders it with str.replace
instead of checking every sample name character by character: a third of a scrape
(bench/README.md). A scraper that names a scheme gets exactly that scheme."""

from __future__ import annotations

from prometheus_client import make_wsgi_app


def render(registry, path: str, query: str, accept: str | None,
           accept_encoding: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the library's app for a GET of `path?query`, called with the few
    environ keys it reads. Always GET: the app answers HEAD with 405, and the server answers HEAD
    itself, with the GET's headers and no body."""
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
