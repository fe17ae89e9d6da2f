"""HTTP endpoints: the metrics path, a landing page at /, and /healthz."""

from __future__ import annotations

import functools
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics

from exporter import landing

log = logging.getLogger("exporter.web")


def parse_listen_address(address: str) -> tuple[str, int]:
    """':9848', '0.0.0.0:9848', '[::1]:9848' -> (host, port). Raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not a listen address (host:port): {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _fast(encoder, content_type):
    """prometheus_client's OpenMetrics encoder, under the default `underscores` name escaping, escapes
    every sample name character by character in Python: a third of a scrape's time (bench/README.md).
    For legacy-valid names, which all of ours are, `allow-utf-8` renders the same bytes with
    str.replace, so the answer (and its Content-Type) stays what the scraper asked for."""
    if isinstance(encoder, functools.partial) and encoder.func is openmetrics.generate_latest \
            and encoder.keywords.get("escaping") == openmetrics.UNDERSCORES:
        encoder = functools.partial(encoder.func, *encoder.args, **{**encoder.keywords, "escaping": openmetrics.ALLOWUTF8})
    return encoder, content_type


class _Handler(BaseHTTPRequestHandler):
    server_version = "llm-cost-exporter"
    exporter = None
    telemetry_path = "/metrics"

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == self.telemetry_path:
            encoder, content_type = _fast(*choose_encoder(self.headers.get("Accept", "")))
            self._send(200, content_type, encoder(self.exporter.registry))
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/":
            page = landing.render(self.exporter.snapshot(), self.exporter.config, self.telemetry_path)
            self._send(200, "text/html; charset=utf-8", page.encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # access logs only at debug level
        log.debug("%s " + fmt, self.client_address[0], *args)


class WebServer:
    def __init__(self, exporter, listen_address: str, telemetry_path: str = "/metrics"):
        host, port = parse_listen_address(listen_address)
        handler = type("Handler", (_Handler,), {"exporter": exporter, "telemetry_path": telemetry_path})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
