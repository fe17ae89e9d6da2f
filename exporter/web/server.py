"""The HTTP server: the metrics path, a landing page at /, and /healthz.

It answers HTTP/1.0, one request per connection (http.server's default), to GET and HEAD on every
path (HEAD: the GET's status and headers, no body); other methods get http.server's 501 and
unknown paths a 404. The metrics path is prometheus_client's own exposition (exporter.web.metrics:
content negotiation, gzip, `name[]`), rendered through one LineCache per server. What is ours is what bounds a client and what the web config
(exporter.web.config, the exporter-toolkit format) adds to every endpoint:

- at most MAX_CONNECTIONS connections at once, MAX_CONNECTIONS_PER_CLIENT from one client (its
  IPv4 address or IPv6 /64); more are closed at accept (exporter.web.limits);
- one deadline, READ_TIMEOUT_S from the start of the connection's thread, for the TLS handshake
  and the whole request head together (a client dripping one header byte at a time is cut off at
  the deadline, not after each byte); the request line and headers are capped by http.server
  (64 KiB a line, 100 headers), request bodies are never read, and the heads of all connections
  together by a memory budget (exporter.web.limits.HeadBudget; 431 when it is spent);
- the TLS handshake runs in the connection's own thread, so a silent client never blocks the
  accept loop;
- TLS, basic auth, then the rate limit (a request that fails authentication spends no token),
  and the extra response headers of the web config, read once per connection from the
  WebConfigWatcher.

A connection's slot and its head memory are given back in a `finally`, whatever was raised.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from exporter import landing
from exporter.web import limits, metrics
from exporter.web.auth import BasicAuth
from exporter.web.linecache import LineCache
from exporter.web.prerender import PreRender
from exporter.web.ratelimit import TokenBucket

log = logging.getLogger("exporter.web")

READ_TIMEOUT_S = 10.0
TEXT = "text/plain; charset=utf-8"
_HTTP_METHODS = (b"GET ", b"HEAD", b"POST", b"PUT ", b"DELET", b"OPTIO", b"PATCH", b"CONNE", b"TRACE")
# What Go's server answers, to help whoever tries http:// on an https:// port.
_PLAIN_HTTP_TO_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")


def parse_listen_address(address: str) -> tuple[str, int]:
    """':9848', '0.0.0.0:9848', '[::1]:9848' -> (host, port). Raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not a listen address (host:port): {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _text(status: int, body: bytes, *headers: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", TEXT), *headers], body)


class _HeadReader(io.RawIOBase):
    """The socket's reads, each given only what is left of one deadline for the whole head and
    only as many bytes as the connection's head allowance has room for."""

    def __init__(self, sock, deadline: float, allowance: limits.HeadAllowance):
        self._sock, self._deadline, self._allowance = sock, deadline, allowance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received before the deadline")
        room = self._allowance.room(len(buffer))
        self._sock.settimeout(remaining)
        count = self._sock.recv_into(memoryview(buffer)[:room])
        self._allowance.spent(count)
        return count


class _Handler(BaseHTTPRequestHandler):
    server_version = "llm-cost-exporter"
    sys_version = ""  # no Python version in the Server header
    server: _Server
    exporter: Any = None  # set on the per-server subclass: the Exporter (registry, snapshot(), config)
    telemetry_path = "/metrics"
    timeout = READ_TIMEOUT_S

    def setup(self):
        super().setup()
        deadline = self.server.connection_started() + self.server.read_timeout
        reader = _HeadReader(self.connection, deadline, self.server.head_allowance())
        plain, self.rfile = self.rfile, io.BufferedReader(reader, 64 * 1024)
        plain.close()

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._answer()

    def do_HEAD(self):  # noqa: N802
        self._answer()  # _send() leaves the body out

    def _answer(self) -> None:
        self.connection.settimeout(self.server.read_timeout)  # writes: the usual per-operation timeout
        self._send(self._refusal() or self._route())

    def _refusal(self) -> Response | None:
        """401 without valid credentials, then 429 over the rate limit, on every path; else None.
        Authentication first: a request that fails it spends none of the scraper's rate limit."""
        config = self.server.connection_config()
        if config is None:
            return None
        auth = self.server.basic_auth
        if config.auth and (auth is None or auth.check(config.users, self.headers.get("Authorization")) is None):
            log.debug("unauthorized request from %s for %s", self.client_address[0], self.path.split("?", 1)[0])
            return _text(401, b"Unauthorized\n", ("WWW-Authenticate", 'Basic realm="llm-cost-exporter", charset="UTF-8"'))
        if not self.server.rate_allows(config):
            return _text(429, b"Too Many Requests\n")
        return None

    def _route(self) -> Response:
        path, _, query = self.path.partition("?")
        if path == self.telemetry_path:
            return Response(*metrics.render(self.exporter.registry, path, query, self.headers.get("Accept"),
                                            self.headers.get("Accept-Encoding"), self.server.line_cache,
                                            self.server.ahead))
        if path == "/healthz":
            return _text(200, b"ok\n")
        if path == "/":
            page = landing.render(self.exporter.snapshot(), self.exporter.config, self.telemetry_path)
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], page.encode())
        return _text(404, b"not found\n")

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def end_headers(self):
        config = self.server.connection_config()
        for name, value in (config.headers.items() if config is not None else ()):
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, fmt, *args):  # access logs only at debug level; never a header
        log.debug("%s " + fmt, self.client_address[0], *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, web_config, slots: limits.ConnectionSlots, read_timeout: float):
        self.web_config = web_config  # WebConfigWatcher or None
        self.read_timeout = read_timeout
        self.slots = slots
        self.line_cache = LineCache()  # the text of unchanged series, kept between scrapes
        self.ahead: PreRender | None = None  # set by WebServer where the exporter reports its changes
        self.head_budget = limits.HeadBudget()
        self._local = threading.local()
        self._bucket = TokenBucket()
        # Whenever there is a web config: a reload may add basic_auth_users (bcrypt loads on first use).
        self.basic_auth = BasicAuth() if web_config is not None else None
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves its own FQDN, which hangs where DNS does; we need no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    # -- per connection -------------------------------------------------------------------

    def process_request(self, request, client_address):
        client = limits.client_of(client_address[0])
        refused = self.slots.acquire(client)
        if refused is not None:
            log.debug("connection from %s refused: %s", client, refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread could be started: give the slot back
            self.slots.release(client)
            raise

    def process_request_thread(self, request, client_address):
        allowance = limits.HeadAllowance(self.head_budget)
        try:
            self._serve(request, client_address, allowance)
        finally:  # whatever was raised: a slot kept here is a connection refused for good
            allowance.close()
            self.slots.release(limits.client_of(client_address[0]))

    def _serve(self, request, client_address, allowance: limits.HeadAllowance) -> None:
        self._local.started = time.monotonic()
        self._local.allowance, self._local.config = allowance, None
        conn = request
        try:
            request.settimeout(self.read_timeout)
            self._local.config = self.web_config.get() if self.web_config is not None else None
            if self._local.config is not None and self._local.config.tls is not None:
                conn = self._handshake(request, client_address, self._local.config)
            if conn is not None:
                self.finish_request(conn, client_address)
        except Exception as err:  # a client's broken connection is its problem, not a log line
            log.debug("connection from %s failed: %s", client_address[0], type(err).__name__)
        finally:
            self.shutdown_request(conn if conn is not None else request)

    def handle_error(self, request, client_address):
        """socketserver prints a traceback here (no thread could be started): one line instead."""
        log.warning("connection from %s not served: %s", client_address[0], sys.exc_info()[1])

    def _handshake(self, sock, client_address, config):
        """The TLS socket, or None (the plain socket is then closed by the caller)."""
        tls = None
        try:
            if sock.recv(5, socket.MSG_PEEK).startswith(_HTTP_METHODS):
                sock.sendall(_PLAIN_HTTP_TO_TLS)
                return None
            tls = config.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.settimeout(max(self._local.started + self.read_timeout - time.monotonic(), 0.01))
            tls.do_handshake()
            _check_sans(tls, config.client_allowed_sans)
            return tls
        except (OSError, ssl.SSLError, ValueError) as err:
            log.debug("TLS handshake with %s failed: %s", client_address[0], getattr(err, "reason", None) or err)
            if tls is not None:
                tls.close()
            return None

    def connection_started(self) -> float:
        return getattr(self._local, "started", time.monotonic())

    def connection_config(self):
        return getattr(self._local, "config", None)

    def head_allowance(self) -> limits.HeadAllowance:
        return self._local.allowance

    def rate_allows(self, config) -> bool:
        return config.rate_limit is None or self._bucket.take(*config.rate_limit)


def _check_sans(tls: ssl.SSLSocket, allowed: frozenset[str]) -> None:
    """client_allowed_sans: the verified client certificate must name one of them."""
    if allowed:
        cert = tls.getpeercert() or {}
        sans = {str(entry[1]) for entry in cert.get("subjectAltName", ())}
        if not sans & allowed:
            raise ssl.SSLError("client certificate has no allowed SAN")


class WebServer:
    """The exporter's HTTP server on `listen_address` (host:port; port 0 picks one), started in a
    daemon thread by start(). web_config: a WebConfigWatcher, or None for plain HTTP to anyone."""

    def __init__(self, exporter, listen_address: str, telemetry_path: str = "/metrics", web_config=None,
                 max_connections: int = limits.MAX_CONNECTIONS, read_timeout: float = READ_TIMEOUT_S,
                 max_connections_per_client: int = limits.MAX_CONNECTIONS_PER_CLIENT):
        host, port = parse_listen_address(listen_address)
        handler = type("Handler", (_Handler,), {"exporter": exporter, "telemetry_path": telemetry_path})
        server_class = type("Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        slots = limits.ConnectionSlots(max_connections, min(max_connections_per_client, max_connections))
        self.httpd = server_class((host, port), handler, web_config, slots, read_timeout)
        # Bodies rendered ahead by the jobs, where the exporter says when its state changes.
        if hasattr(exporter, "exposition_key"):
            self.httpd.ahead = PreRender(exporter.registry, exporter.exposition_key, exporter.exposition_steady_until,
                                         exporter.clock.now, self.httpd.line_cache)
            exporter.on_change(self.httpd.ahead.refresh)
        self._exporter = exporter
        self.tls = web_config is not None and web_config.current.tls is not None
        # No poll interval: the loop sleeps in select() until a connection comes (no idle wake-ups);
        # stop() wakes it with one of its own.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": None},
                                        name="web", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            stopping = threading.Thread(target=self.httpd.shutdown, name="web-stop", daemon=True)
            stopping.start()
            for _ in range(40):  # until the loop has seen the request (a wake-up may come first); 2 s at most
                self._wake_loop()
                stopping.join(0.05)
                if not stopping.is_alive():
                    break
        self.httpd.server_close()
        if self.httpd.ahead is not None:
            self._exporter.off_change(self.httpd.ahead.refresh)

    def _wake_loop(self) -> None:
        """Connect to ourselves, so the loop's select() returns and it sees shutdown()."""
        host, port = self.httpd.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        with contextlib.suppress(OSError):  # the loop is gone already, or the address is unreachable
            socket.create_connection((host, port), timeout=0.5).close()
