"""HTTP GET of an engine's /metrics with an overall deadline and a body-size cap.

urllib's timeout bounds each socket operation, not the whole response, so a server that drips
one byte a second would hold us forever; we read in chunks and check a deadline between them.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

# What Prometheus itself sends: prefer OpenMetrics, accept the classic text format.
ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
_CHUNK = 64 * 1024


class FetchError(Exception):
    """A failed fetch; `reason` is a short, bounded label value for the error counter."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def fetch(url: str, timeout: float, max_bytes: int) -> tuple[str, str]:
    """Returns (content_type, body text). Raises FetchError."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "llm-cost-exporter"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            body = _read_capped(response, deadline, max_bytes)
    except FetchError:
        raise
    except urllib.error.HTTPError as err:
        raise FetchError("http_status", f"HTTP {err.code} from {url}") from None
    except (socket.timeout, TimeoutError):
        raise FetchError("timeout", f"no answer from {url} within {timeout:g}s") from None
    except (urllib.error.URLError, ConnectionError, OSError) as err:
        detail = getattr(err, "reason", err)
        if isinstance(detail, (socket.timeout, TimeoutError)):
            raise FetchError("timeout", f"no answer from {url} within {timeout:g}s") from None
        raise FetchError("connection", f"{url}: {detail}") from None
    try:
        return content_type, body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("parse", f"{url}: body is not UTF-8") from None


def _read_capped(response, deadline: float, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"body of {declared} bytes exceeds the {max_bytes} byte cap")
    chunks, size = [], 0
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
