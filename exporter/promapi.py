"""The one client of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`) for the CLIs
that read Prometheus (`report`, and what builds on it): Prometheus itself, VictoriaMetrics, and the
scale-out fronts (Thanos, Mimir, Cortex) that need a tenant header, a bearer token or basic auth.

Only urllib and json. Secrets come from files or environment variables, never from flags (a flag
shows in `ps`), and never appear in a message: the URL is printed without its user information.
Redirects are not followed, so credentials never travel to a host the user did not name.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

TOKEN_ENV = "LLMCOST_PROMETHEUS_BEARER_TOKEN"
PASSWORD_ENV = "LLMCOST_PROMETHEUS_PASSWORD"
TENANT_HEADER = "X-Scope-OrgID"  # Mimir, Cortex, Loki, Thanos receive: the tenant of the query


class QueryError(Exception):
    """The server could not be reached or answered with something other than a result."""


class ConnectionConfigError(QueryError):
    """The flags or files that say how to connect are wrong: a usage error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus.url", dest="prometheus_url", metavar="URL", default="http://localhost:9090",
                        help="Prometheus-API endpoint: Prometheus, VictoriaMetrics (http://vm:8428), Thanos Query, "
                             "Mimir (http://mimir/prometheus); user:password@ in the URL is taken as basic auth")
    parser.add_argument("--prometheus.tenant", dest="prometheus_tenant", metavar="ID", default=None,
                        help=f"send {TENANT_HEADER}: ID (Mimir, Cortex, multi-tenant Thanos)")
    parser.add_argument("--prometheus.bearer-token-file", dest="prometheus_bearer_token_file", metavar="FILE",
                        default=None, help=f"send Authorization: Bearer <the file's content>; or set {TOKEN_ENV}")
    parser.add_argument("--prometheus.username", dest="prometheus_username", metavar="USER", default=None,
                        help="basic auth user name")
    parser.add_argument("--prometheus.password-file", dest="prometheus_password_file", metavar="FILE", default=None,
                        help=f"basic auth password, read from FILE; or set {PASSWORD_ENV}")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0,
                        help="seconds to wait for each query")


@dataclass(frozen=True)
class Credentials:
    tenant: str | None = None
    bearer_token: str | None = None
    basic: tuple[str, str] | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.tenant:
            headers[TENANT_HEADER] = self.tenant
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.basic:
            pair = ":".join(self.basic).encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def describe(self) -> str:
        """What is sent, without the secrets: for the report's header line."""
        parts = [f"tenant {self.tenant}"] if self.tenant else []
        if self.bearer_token:
            parts.append("bearer token")
        elif self.basic:
            parts.append(f"basic auth as {self.basic[0]}")
        return ", ".join(parts)


def _read_secret(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as err:
        raise ConnectionConfigError(f"{flag}: cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConnectionConfigError(f"{flag}: {path} is not UTF-8 text") from None
    if not secret or "\n" in secret:
        raise ConnectionConfigError(f"{flag}: {path} must hold one non-empty line") from None
    return secret


def credentials(args: argparse.Namespace, url_userinfo: tuple[str, str] | None,
                environ: os._Environ | dict | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV) or None
    if args.prometheus_bearer_token_file:
        token = _read_secret(args.prometheus_bearer_token_file, "--prometheus.bearer-token-file")
    basic = url_userinfo
    if args.prometheus_username is not None:
        password = env.get(PASSWORD_ENV)
        if args.prometheus_password_file:
            password = _read_secret(args.prometheus_password_file, "--prometheus.password-file")
        if password is None:
            raise ConnectionConfigError(f"--prometheus.username needs --prometheus.password-file or {PASSWORD_ENV}")
        basic = (args.prometheus_username, password)
    elif args.prometheus_password_file:
        raise ConnectionConfigError("--prometheus.password-file needs --prometheus.username")
    if token and basic:
        raise ConnectionConfigError("a bearer token and basic auth were both given: choose one "
                                    f"(--prometheus.bearer-token-file or {TOKEN_ENV}; --prometheus.username or user@ in the URL)")
    return Credentials(args.prometheus_tenant or None, token, basic)


def split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user information (safe to print), and the user and password it held."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionConfigError(f"--prometheus.url {_redact(url)!r} is not an http:// or https:// URL")
    userinfo = None
    if parts.username is not None:
        userinfo = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")).rstrip("/"), userinfo


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


def connect(args: argparse.Namespace, environ: dict | None = None) -> PrometheusAPI:
    """The client the flags of `add_arguments` describe."""
    url, userinfo = split_url(args.prometheus_url)
    return PrometheusAPI(url, args.timeout, credentials(args, userinfo, environ))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


class PrometheusAPI:
    def __init__(self, url: str, timeout: float, creds: Credentials | None = None):
        self.url = url.rstrip("/")  # without user information: printable
        self.timeout = timeout
        self.credentials = creds or Credentials()
        self._opener = urllib.request.build_opener(_NoRedirect)

    def query(self, expr: str, at: float) -> list[tuple[dict, float]]:
        """Instant vector at `at`: (labels, value) per series."""
        data = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[dict, list[tuple[float, float]]]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        data = self._get("/api/v1/query_range", params)
        return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data["result"]]

    def _get(self, path: str, params: dict) -> dict:
        request = urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}",
                                         headers=self.credentials.headers())
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise QueryError(f"{self.url} answered HTTP {err.code}{_api_error(err)}{_hint(err.code)}") from None
        except urllib.error.URLError as err:
            raise QueryError(f"cannot reach {self.url}: {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:  # timeouts and resets while reading
            raise QueryError(f"cannot reach {self.url}: {err or type(err).__name__}") from None
        try:
            payload = json.loads(body)
            if payload["status"] != "success":
                raise QueryError(f"{self.url}: {payload.get('errorType')}: {payload.get('error')}")
            return payload["data"]
        except (ValueError, KeyError, TypeError):
            raise QueryError(f"{self.url}{path} did not answer with Prometheus API JSON: "
                             "is it a Prometheus-API endpoint?") from None


def _api_error(err: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(err.read())
        return f": {payload['errorType']}: {payload['error']}"
    except Exception:  # noqa: BLE001 - a proxy's HTML or plain-text error page: the status says enough
        return ""


def _hint(code: int) -> str:
    if code in (401, 403):
        return (f" (authentication: --prometheus.tenant, --prometheus.bearer-token-file or {TOKEN_ENV}, "
                "--prometheus.username with --prometheus.password-file)")
    if 300 <= code < 400:
        return " (a redirect, not followed so that credentials stay with the host named: use the final URL)"
    return ""
