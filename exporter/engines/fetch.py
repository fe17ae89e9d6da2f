"""GET of an engine's /metrics: one deadline for the whole exchange and a body-size cap
(exporter.deadline_http), every failure a FetchError with a short reason.

Redirects are not followed and no proxy from the environment is used: the engine is a local
endpoint named in the config, and a node agent should not be steered elsewhere. Credentials in
the URL are sent as basic auth and never shown (redact).
"""

from __future__ import annotations

import http.client
import urllib.parse

from exporter import deadline_http

# The classic text format only. prometheus_client servers (vLLM's Python frontend) serve
# OpenMetrics whenever the Accept header mentions it, whatever its q-value, and their OpenMetrics
# is inconsistent for names with ':' (prometheus/client_python#1177; exporter/engines/parse.py).
# Servers that speak only OpenMetrics (vLLM's Rust frontend) still send it, labelled as such.
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
HEADERS = {"Accept": ACCEPT, "User-Agent": "llm-cost-exporter"}


def redact(url: str) -> str:
    """The URL without user:password@, for logs and error details."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class FetchError(Exception):
    """A failed fetch; `reason` is a short, bounded label value for the error counter."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def fetch(url: str, timeout: float, max_bytes: int) -> tuple[str, str]:
    """Returns (content_type, body text), all within `timeout` seconds. Raises FetchError."""
    shown = redact(url)
    try:
        response = deadline_http.get(url, timeout, max_bytes, HEADERS)
    except TimeoutError:  # the deadline, whatever the step: connect, head, a chunk, the body
        raise FetchError("timeout", f"no complete answer from {shown} within {timeout:g}s") from None
    except deadline_http.BodyTooLargeError as err:
        raise FetchError("too_large", str(err)) from None
    except OSError as err:
        raise FetchError("connection", f"{shown}: {err}"[:300]) from None
    except http.client.HTTPException as err:  # not HTTP at all, header too long, body cut short
        raise FetchError("protocol", f"{shown}: not a valid HTTP response: {type(err).__name__}") from None
    except (ValueError, OverflowError) as err:  # a URL we cannot use (bad port, bad host name)
        raise FetchError("connection", f"{shown}: {type(err).__name__}: {err}"[:300]) from None
    if not response.ok:
        raise FetchError("http_status", f"HTTP {response.status} from {shown}")
    try:
        return response.headers.get("Content-Type", ""), response.body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("parse", f"{shown}: body is not UTF-8") from None

