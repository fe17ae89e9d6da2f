"""The web configuration file that Prometheus exporters share (`--web.config.file`), so the files
people already have for node_exporter work here unchanged:
https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

    tls_server_config:
      cert_file: server.crt              # or cert: <inline PEM>
      key_file: server.key               # or key: <inline PEM>
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt     # or client_ca: <inline PEM>
      client_allowed_sans: [prometheus.monitoring.svc]
      min_version: TLS12
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...             # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
    rate_limit: {interval: 100ms, burst: 10}

This module reads and checks the file (exporter.validation's read_file and parse_yaml: regular
files only, 1 MiB, alias limits, no duplicate keys) and builds a WebConfig; the TLS context comes
from exporter.web.tls. Relative paths are relative to the file's directory. Unknown keys are
errors. Every error names its key (`tls_server_config.key_file: ...`) and never echoes a value
that may be a secret (exporter.web.errors); the CLI prints that one line and exits 2. Whatever
else a section raises (an input no check foresaw) is still a WebConfigError naming that section:
the watcher runs load() on the connection path, where nothing else may escape.
`http2` is accepted and ignored: this server answers HTTP/1.0, one request per connection.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from exporter import validation
from exporter.units import DURATION_EXAMPLES, parse_duration
from exporter.web.errors import WebConfigError
from exporter.web.tls import TLSOptions, server_context

FILE_KEY = "web.config.file"
MAX_FILE_BYTES = validation.MAX_FILE_BYTES

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_STRINGS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
                "min_version", "max_version")
_TLS_LISTS = ("client_allowed_sans", "cipher_suites", "curve_preferences")
_TLS_KEYS = _TLS_STRINGS + _TLS_LISTS + ("prefer_server_cipher_suites",)
_TLS_ANY_CERTIFICATE = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")
# exporter-toolkit's list; None: any value.
_HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
            "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None, "Content-Security-Policy": None}
_BCRYPT = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: ssl.SSLContext | None = None
    client_allowed_sans: frozenset[str] = frozenset()
    headers: dict[str, str] = field(default_factory=dict)
    users: dict[str, bytes] = field(default_factory=dict, repr=False)  # user -> bcrypt hash; a secret, never in a repr
    rate_limit: tuple[float, int] | None = None  # (seconds between requests, burst)
    files: tuple[str, ...] = ()  # everything read, for change detection

    @property
    def auth(self) -> bool:
        return bool(self.users)


def load(path: str) -> WebConfig:
    """Read and validate the file, and build the TLS context. Raises WebConfigError, only."""
    with _section(FILE_KEY):
        raw = _read_mapping(path)
        _no_unknown(raw, _TOP_KEYS, "")
        files = [os.path.abspath(path)]
    tls: ssl.SSLContext | None = None
    sans: frozenset[str] = frozenset()
    with _section("tls_server_config"):
        options = _tls_options(_mapping(raw, "tls_server_config"))
        if options is not None:
            tls, tls_files = server_context(options, os.path.dirname(files[0]))
            files += tls_files
            sans = frozenset(options.client_allowed_sans)
    with _section("http_server_config"):
        headers = _http_server_config(_mapping(raw, "http_server_config"))
    with _section("basic_auth_users"):
        users = _users(raw.get("basic_auth_users"))
    with _section("rate_limit"):
        rate_limit = _rate_limit(raw.get("rate_limit"))
    return WebConfig(path=path, tls=tls, client_allowed_sans=sans, headers=headers, users=users,
                     rate_limit=rate_limit, files=tuple(files))


@contextlib.contextmanager
def _section(key: str):
    """Anything but a WebConfigError raised inside becomes one: a line naming `key` (the exception's
    type, not its text, which may hold a value of the file)."""
    try:
        yield
    except WebConfigError:
        raise
    except Exception as err:
        raise WebConfigError(key, f"cannot be loaded ({type(err).__name__})") from None


def _read_mapping(path: str) -> dict:
    # parse_yaml's errors quote no line of the file: a line here may be a hash or part of a key.
    return validation.load_mapping(path, FILE_KEY, WebConfigError, MAX_FILE_BYTES)


# -- shapes ---------------------------------------------------------------------------------------


def _mapping(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError.got(key, value, "a mapping")
    return value


def _no_unknown(raw: dict, allowed, path: str) -> None:
    for key in sorted(raw, key=str):
        if key not in allowed:
            raise WebConfigError(f"{path}.{key}" if path else str(key), f"unknown key, allowed keys: {', '.join(allowed)}")


def _string(raw: dict, key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebConfigError.got(f"{path}.{key}", value, "a string")
    return value


def _strings(raw: dict, key: str, path: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WebConfigError.got(f"{path}.{key}", value, "a list of strings")
    return tuple(value)


def _bool(raw: dict, key: str, path: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise WebConfigError.got(f"{path}.{key}", value, "true, false")
    return value


# -- sections -------------------------------------------------------------------------------------


def _tls_options(raw: dict) -> TLSOptions | None:
    """The options of tls_server_config, None when it sets no certificate (plain HTTP)."""
    p = "tls_server_config"
    _no_unknown(raw, _TLS_KEYS, p)
    fields: dict[str, Any] = {k: _string(raw, k, p) for k in _TLS_STRINGS}
    fields.update({k: _strings(raw, k, p) for k in _TLS_LISTS})
    options = TLSOptions(**fields, prefer_server_cipher_suites=_bool(raw, "prefer_server_cipher_suites", p, True))
    if any(getattr(options, k) for k in _TLS_ANY_CERTIFICATE):
        for name in ("cert", "key", "client_ca"):
            _one_of(options, name, required=name != "client_ca")
        return options
    if any(getattr(options, k) for k in _TLS_LISTS + ("min_version", "max_version")):
        raise WebConfigError(f"{p}.cert_file", "required: TLS options are set but no certificate")
    return None


def _one_of(options: TLSOptions, name: str, required: bool) -> None:
    """`name` (inline PEM) or `name_file`, not both; one of them if required."""
    inline, file = getattr(options, name), getattr(options, f"{name}_file")
    if inline and file:
        raise WebConfigError(f"tls_server_config.{name}", f"set either {name} or {name}_file, not both")
    if required and not (inline or file):
        raise WebConfigError(f"tls_server_config.{name}_file", f"required: missing one of {name} or {name}_file")


def _http_server_config(raw: dict) -> dict[str, str]:
    """The headers to send; http2 is checked and ignored (HTTP/1.0 here)."""
    _no_unknown(raw, ("http2", "headers"), "http_server_config")
    if "http2" in raw:
        _bool(raw, "http2", "http_server_config", False)
    return _headers(raw.get("headers"))


def _headers(raw) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError.got("http_server_config.headers", raw, "a mapping")
    headers = {name: _header(name, value) for name, value in raw.items()}
    return {name: value for name, value in headers.items() if value is not None}


def _header(name, value) -> str | None:
    """The value to send, None for none; only exporter-toolkit's headers and their values."""
    key = f"http_server_config.headers.{name}"
    if name not in _HEADERS:
        raise WebConfigError(key, f"this header cannot be configured, allowed: {', '.join(_HEADERS)}")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise WebConfigError.got(key, value, "a one-line string")
    allowed = _HEADERS[name]
    if allowed and value not in allowed:
        raise WebConfigError.got(key, value, ", ".join(allowed))
    return value


def _users(raw) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError.got("basic_auth_users", raw, "a mapping of user to bcrypt hash")
    if raw and importlib.util.find_spec("bcrypt") is None:
        raise WebConfigError("basic_auth_users", f"got {len(raw)} user(s), allowed: none, or install bcrypt: "
                             "pip install 'llm-cost-exporter[basic-auth]'")
    return {user: _bcrypt_hash(user, hashed) for user, hashed in raw.items()}


def _bcrypt_hash(user, hashed) -> bytes:
    key = f"basic_auth_users.{user}"
    if not isinstance(user, str) or not user or ":" in user:
        raise WebConfigError(key, "allowed: a non-empty user name without ':'")
    # Never echo the value: it is a secret.
    match = _BCRYPT.match(hashed) if isinstance(hashed, str) else None
    if match is None or not 4 <= int(match.group(1)) <= 31:
        raise WebConfigError(key, "not a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31; e.g. htpasswd -nBC 10 \"\")")
    return hashed.encode()


def _rate_limit(raw) -> tuple[float, int] | None:
    """(seconds per request, burst), or None for no limit (exporter-toolkit: interval 0 disables it)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WebConfigError.got("rate_limit", raw, "a mapping with interval and burst")
    _no_unknown(raw, ("interval", "burst"), "rate_limit")
    interval = _duration(raw.get("interval", 0), "rate_limit.interval")
    burst = raw.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError.got("rate_limit.burst", burst, "a whole number >= 0")
    if interval == 0:
        return None
    if burst == 0:
        raise WebConfigError("rate_limit.burst", "got 0, allowed: at least 1 when interval is set (0 refuses everything)")
    return interval, burst


def _duration(value, key: str) -> float:
    """'100ms', '1m30s' (Go's time.ParseDuration forms, via exporter.units), or 0 -> seconds."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return parse_duration(value)
    except ValueError:
        raise WebConfigError.got(key, value, f"a duration ({DURATION_EXAMPLES})") from None
