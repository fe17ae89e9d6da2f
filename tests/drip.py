"""A hostile HTTP peer for the deadline tests: it answers with a valid response, but drips one
part of it a byte at a time, so that every single read succeeds and the whole never arrives in
time. The same drip serves a fake engine (DrippingServer) and the fake API server
(tests/test_kubernetes.py's FakeApiServer, `fail[...] = ("drip", phase)`).

Phases: "status" (the status line on), "headers" (the headers on), "chunk_size" (a chunked body
whose last chunk-size line is dripped: 40 leading zeros, valid hex), "body" (the body, after a
Content-Length head). Each exchange's length is measured from the peer's side: from the request
to the moment the client closes its socket.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PHASES = ("status", "headers", "chunk_size", "body")
EVERY_S = 0.5  # a byte every half second, as in the issue: any per-read timeout above it never trips


def response_parts(phase: str, status: int, content_type: str, body: bytes) -> tuple[bytes, bytes]:
    """(sent at once, dripped): together a complete, valid HTTP/1.1 response."""
    status_line = f"HTTP/1.1 {status} Dripping\r\n".encode()
    if phase == "chunk_size":
        head = f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        first_chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n"
        return status_line + head + first_chunk, b"0" * 40 + b"\r\n\r\n"
    head = f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    at_once = {"status": b"", "headers": status_line, "body": status_line + head}[phase]
    return at_once, (status_line + head + body)[len(at_once):]


def send_dripping(connection: socket.socket, phase: str, status: int, content_type: str, body: bytes,
                  every: float = EVERY_S) -> float | None:
    """Send the response, its `phase` a byte every `every` seconds, until it is all sent or the
    client closes. Returns the seconds until the client closed (None if it never did)."""
    started = time.monotonic()
    at_once, dripped = response_parts(phase, status, content_type, body)
    try:
        connection.sendall(at_once)
        for i in range(len(dripped)):
            connection.sendall(dripped[i:i + 1])
            readable, _, _ = select.select([connection], [], [], every)
            if readable and not connection.recv(1, socket.MSG_PEEK):  # EOF: the client gave up
                return time.monotonic() - started
    except OSError:  # reset by the client
        return time.monotonic() - started
    return None


class DrippingServer:
    """A real HTTP server on 127.0.0.1 that drips `phase` of every answer a byte every `every`
    seconds (None: answers at once).
    `exchanges` holds how long each dripped exchange lasted, seen from here."""

    def __init__(self, body: bytes = b"# nothing here\n", content_type: str = "text/plain; version=0.0.4",
                 phase: str | None = "headers", every: float = EVERY_S):
        self.body, self.content_type, self.phase, self.every = body, content_type, phase, every
        self.exchanges: list[float | None] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests += 1
                phase = server.phase
                if phase is None:
                    self.connection.sendall(b"".join(response_parts("body", 200, server.content_type, server.body)))
                    return
                server.exchanges.append(send_dripping(self.connection, phase, 200, server.content_type, server.body,
                                                      server.every))
                self.close_connection = True

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
