"""A hostile peer for the deadline tests: it answers with a valid response, but drips one part of
it a byte at a time, so that every single read succeeds and the whole never arrives in time. The
same drip serves a fake engine (DrippingServer) and the fake API server (tests/test_kubernetes.py's
FakeApiServer, `fail[...] = ("drip", phase)`).

HTTP phases: "status" (the status line on), "headers" (the headers on), "chunk_size" (a chunked
body whose last chunk-size line is dripped: 40 leading zeros, valid hex), "body" (the body, after
a Content-Length head). "tls_handshake" drips the server's first TLS record to an https client.
Each exchange's length is measured from the peer's side: from the request to the moment the
client closes its socket.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import time

PHASES = ("status", "headers", "chunk_size", "body")
TLS_HANDSHAKE = "tls_handshake"
EVERY_S = 0.5  # a byte every half second, as in the issue: any per-read timeout above it never trips
# A TLS handshake record header announcing 64 bytes of ServerHello, then the 64 bytes.
_TLS_RECORD = b"\x16\x03\x03\x00\x40" + b"\x02\x00\x00\x3c\x03\x03" + b"\x00" * 58


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
    if phase == TLS_HANDSHAKE:
        return drip(connection, b"", _TLS_RECORD, every)
    return drip(connection, *response_parts(phase, status, content_type, body), every)


def drip(connection: socket.socket, at_once: bytes, dripped: bytes, every: float) -> float | None:
    started = time.monotonic()
    try:
        connection.sendall(at_once)
        for i in range(len(dripped)):
            connection.sendall(dripped[i:i + 1])
            readable, _, _ = select.select([connection], [], [], every)
            if readable and not connection.recv(1):  # EOF (the request was read whole): the client gave up
                return time.monotonic() - started
    except OSError:  # reset by the client (ssl.SSLError included)
        return time.monotonic() - started
    return None


class DrippingServer:
    """A real TCP server on 127.0.0.1 that reads each request (an HTTP GET head, or a TLS
    ClientHello) and drips `phase` of its answer a byte every `every` seconds (None: answers at
    once). `exchanges` holds how long each dripped exchange lasted, seen from here."""

    def __init__(self, body: bytes = b"# nothing here\n", content_type: str = "text/plain; version=0.0.4",
                 phase: str | None = "headers", every: float = EVERY_S):
        self.body, self.content_type, self.phase, self.every = body, content_type, phase, every
        self.exchanges: list[float | None] = []
        self.requests = 0
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                request = b""
                while b"\r\n\r\n" not in request and (chunk := self.request.recv(65536)):
                    request += chunk
                    if server.phase == TLS_HANDSHAKE:
                        break  # a ClientHello, not HTTP
                server.requests += 1
                phase = server.phase
                if phase is None:
                    self.request.sendall(b"".join(response_parts("body", 200, server.content_type, server.body)))
                    return
                server.exchanges.append(send_dripping(self.request, phase, 200, server.content_type, server.body,
                                                      server.every))

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
