"""One HTTP GET bounded as a whole: connect, TLS handshake, request, status line, headers,
chunk-size lines and body all end by one deadline, however slowly the peer drips them.

http.client, urllib and urllib3 give each socket operation its own timeout, so a peer sending a
byte every half second never trips it and holds the caller for as long as it likes. Here every
connect, send and recv is given what is left of the deadline as its socket timeout, and fails
once nothing is left: the exchange ends by the deadline plus one scheduling delay. (Name
resolution is the resolver's, bounded by its own timeout in resolv.conf, not by the peer.)

No redirect is followed and no proxy is used: the caller names the host it means. Header lines
and counts are bounded by http.client (64 KiB a line, 100 headers); the body by `max_bytes`.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

ERROR_BODY_BYTES = 64 * 1024  # a non-2xx body is read only for its message: the rest is dropped
_CHUNK = 64 * 1024


class DeadlineExceededError(TimeoutError):
    """The exchange did not end by its deadline."""


class BodyTooLargeError(Exception):
    def __init__(self, max_bytes: int, declared: str | None = None):
        self.max_bytes = max_bytes
        size = f"body of {declared} bytes" if declared else "body"
        super().__init__(f"{size} exceeds the {max_bytes} byte cap")


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; raises DeadlineExceededError once none are."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError(f"not complete within {self.seconds:g}s")
        return left


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes  # a 2xx body whole (or BodyTooLargeError); any other, its first ERROR_BODY_BYTES

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def get(url: str, timeout: float, max_bytes: int, headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> Response:
    """GET `url`, all of it within `timeout` seconds. Credentials in the URL go as basic auth.

    Raises DeadlineExceededError (a TimeoutError), BodyTooLargeError, OSError (connection, TLS),
    http.client.HTTPException (not a valid HTTP response) or ValueError (a URL it cannot use)."""
    deadline = Deadline(timeout)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    connection: _Connection
    if parts.scheme == "https":
        connection = _TLSConnection(parts.hostname, parts.port, deadline, ssl_context or _default_context(),
                                    server_hostname)
    else:
        connection = _Connection(parts.hostname, parts.port, deadline)
    sent = dict(headers or {})
    if parts.username is not None:
        userinfo = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        sent["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
    response = None
    try:
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=sent)
        response = connection.getresponse()
        ok = 200 <= response.status < 300
        body = _read_body(response, max_bytes if ok else min(max_bytes, ERROR_BODY_BYTES), strict=ok)
        return Response(response.status, response.reason, response.headers, body)
    finally:
        if response is not None:
            response.close()
        connection.close()


@functools.cache
def _default_context() -> ssl.SSLContext:
    """The system's CAs, loaded once (a few ms each time otherwise); a context is thread-safe."""
    return ssl.create_default_context()


def _read_body(response: http.client.HTTPResponse, cap: int, strict: bool) -> bytes:
    """The body up to `cap` bytes: past it, BodyTooLargeError when `strict`, else cut there."""
    declared = response.headers.get("Content-Length")
    if strict and declared and declared.isdigit() and int(declared) > cap:
        raise BodyTooLargeError(cap, declared)
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(_CHUNK):
        size += len(chunk)
        if size > cap:
            if strict:
                raise BodyTooLargeError(cap)
            chunks.append(chunk[:len(chunk) - (size - cap)])
            return b"".join(chunks)
        chunks.append(chunk)
    if response.length:  # read1 ends quietly where the peer closed early: a cut body is no body
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    return b"".join(chunks)


class _Connection(http.client.HTTPConnection):
    """http.client's request writing and response parsing, over a socket that keeps the deadline."""

    def __init__(self, host: str, port: int | None, deadline: Deadline):
        super().__init__(host, port)
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = _DeadlineSocket(self._open(), self._deadline)

    def _open(self) -> socket.socket:
        return _connect(self.host, self.port, self._deadline)


class _TLSConnection(_Connection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int | None, deadline: Deadline, context: ssl.SSLContext,
                 server_hostname: str | None):
        super().__init__(host, port, deadline)
        self._context, self._server_hostname = context, server_hostname or host

    def _open(self) -> socket.socket:
        raw = super()._open()
        try:
            raw.settimeout(self._deadline.remaining())  # the handshake as a whole (CPython's ssl keeps one deadline)
            return self._context.wrap_socket(raw, server_hostname=self._server_hostname)
        except BaseException:
            raw.close()
            raise


def _connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to the first address that answers, all addresses within the deadline."""
    last: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            raise  # the deadline passed: no time for another address
        except OSError as err:
            sock.close()
            last = err
    raise last or OSError(f"no address for {host}")


class _DeadlineSocket:
    """The socket as http.client uses it (sendall, makefile, close); every send and recv is given
    what is left of the deadline. As with socket.makefile, closing it while its file is open (the
    connection does once it knows the response ends the connection) leaves the file readable:
    the socket closes with the last of the two."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self._sock, self._deadline = sock, deadline
        self._open_files = 0
        self._closed = False

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._sock.settimeout(self._deadline.remaining())
            view = view[self._sock.send(view):]

    def recv_into(self, buffer) -> int:
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)

    def makefile(self, *_args, **_kwargs) -> io.BufferedReader:
        self._open_files += 1
        return io.BufferedReader(_DeadlineReader(self))

    def file_closed(self) -> None:
        self._open_files -= 1
        if self._closed and not self._open_files:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if not self._open_files:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.file_closed()
        super().close()
