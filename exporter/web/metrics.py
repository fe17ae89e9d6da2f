"""The metrics path, answered by prometheus_client's own WSGI app (make_wsgi_app): the format the
scraper's Accept header asks for (OpenMetrics or the text format), gzip when its Accept-Encoding
allows it (Prometheus asks for gzip unless its scrape config turns compression off), and
`?name[]=` filtering are the library's."""

from __future__ import annotations

from prometheus_client import make_wsgi_app


def render(registry, path: str, query: str, accept: str | None,
           accept_encoding: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the library's app for a GET of `path?query`, called with the few
    environ keys it reads. Always GET: the app answers HEAD with 405, and the server answers HEAD
    itself, with the GET's headers and no body."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
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
