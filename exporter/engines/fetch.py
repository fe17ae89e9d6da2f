"""HTTP GET of an engine's /metrics with an overall deadline and a body-size cap.

urllib's timeout bounds each socket operation, not the whole response, so a server that drips
one byte a second would hold us forever; we read in chunks and check a deadline between them.
Redirects are not followed and no proxy from the environment is used: the engine is a local
endpoint named in the config, and a node agent should not be steered elsewhere. Header size and
count are bounded by http.client (64 KiB a line, 100 headers).
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

# The classic text format only. prometheus_client servers (vLLM's Python frontend) serve
# OpenMetrics whenever the Accept header mentions it, whatever its q-value, and their OpenMetrics
# is inconsistent for names with ':' (prometheus/client_python#1177; exporter/engines/parse.py).
# Servers that speak only OpenMetrics (vLLM's Rust frontend) still send it, labelled as such.
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
_CHUNK = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx becomes an HTTPError: reason http_status


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def redact(url: str) -> str:
    """The URL without user:password@, for logs and error details."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class FetchError(Exception):
    """A failed fetch; `reason` is a short, bounded label value for the error counter."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def fetch(url: str, timeout: float, max_bytes: int) -> tuple[str, str]:
    """Returns (content_type, body text). Raises FetchError."""
    deadline = time.monotonic() + timeout
    shown = redact(url)
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "llm-cost-exporter"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            body = _read_capped(response, deadline, max_bytes)
    except FetchError:
        raise
    except urllib.error.HTTPError as err:
        raise FetchError("http_status", f"HTTP {err.code} from {shown}") from None
    except TimeoutError:
        raise FetchError("timeout", f"no answer from {shown} within {timeout:g}s") from None
    except (urllib.error.URLError, ConnectionError, OSError) as err:
        detail = getattr(err, "reason", err)
        if isinstance(detail, (socket.timeout, TimeoutError)):
            raise FetchError("timeout", f"no answer from {shown} within {timeout:g}s") from None
        raise FetchError("connection", f"{shown}: {detail}") from None
    except http.client.HTTPException as err:  # not HTTP at all, header too long, body cut short
        raise FetchError("protocol", f"{shown}: not a valid HTTP response: {type(err).__name__}") from None
    except (ValueError, OverflowError) as err:  # a URL urllib cannot use (bad port, ...)
        raise FetchError("connection", f"{shown}: {type(err).__name__}: {err}"[:300]) from None
    try:
        return content_type, body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("parse", f"{shown}: body is not UTF-8") from None


def _read_capped(response, deadline: float, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"body of {declared} bytes exceeds the {max_bytes} byte cap")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError("timeout", "body not complete before the deadline")
        chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too_large", f"body exceeds the {max_bytes} byte cap")
        chunks.append(chunk)
