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

Relative paths are relative to the file's directory. Unknown keys are errors. Every error names
its key (`tls_server_config.key_file: ...`); the CLI prints that one line and exits 2.

Where Python's ssl module cannot do what Go's crypto/tls does, we refuse rather than weaken:
`RequestClientCert` and `RequireAnyClientCert` (accept a client certificate without verifying
it) are rejected; `curve_preferences` with one curve restricts the handshake to it, with several
it leaves OpenSSL's default groups (which include all four Go curves) and says so in the log.
`http2` is accepted and ignored: this server speaks HTTP/1.1.

The file and the files it names are checked for changes at most once a second
(WebConfigWatcher): rotated certificates and changed users apply to new connections without a
restart, and a broken edit keeps the last good configuration, logged once.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field

import yaml

from exporter.units import parse_duration

log = logging.getLogger("exporter.web")

MAX_FILE_BYTES = 1024 * 1024  # a web config, a certificate or a key larger than this is not one

_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences")
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's tls.CipherSuites() (the secure list exporter-toolkit accepts) -> OpenSSL names. TLS 1.3
# suites are not configurable in Go either: accepted, no effect.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None, "TLS_AES_256_GCM_SHA384": None, "TLS_CHACHA20_POLY1305_SHA256": None,
}
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# exporter-toolkit's list; None: any value.
_HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
            "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None, "Content-Security-Policy": None}
_BCRYPT = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_BCRYPT_ANYWHERE = re.compile(r"\$2[abxy]?\$\d\d\$")


class WebConfigError(Exception):
    """An invalid web config: the message names the key (never a secret's value)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


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


# -- loading --------------------------------------------------------------------------------


def load(path: str) -> WebConfig:
    """Read and validate the file, and build the TLS context. Raises WebConfigError."""
    text = _read(path, "web.config.file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:  # no snippet of the text: it may hold a hash or an inline key
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise WebConfigError("web.config.file", f"not valid YAML{where}: {getattr(err, 'problem', None) or 'syntax error'}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError("web.config.file", "the top level must be a mapping")
    _no_unknown(raw, _TOP_KEYS, "")
    base = os.path.dirname(os.path.abspath(path))
    files = [os.path.abspath(path)]
    tls, sans = _tls(_mapping(raw, "tls_server_config"), base, files)
    http = _mapping(raw, "http_server_config")
    _no_unknown(http, ("http2", "headers"), "http_server_config")
    if "http2" in http and not isinstance(http["http2"], bool):
        raise WebConfigError("http_server_config.http2", f"got {_show(http['http2'])}, allowed: true, false")
    headers = _headers(http.get("headers"))
    return WebConfig(path=path, tls=tls, client_allowed_sans=sans, headers=headers,
                     users=_users(raw.get("basic_auth_users")), rate_limit=_rate_limit(raw.get("rate_limit")),
                     files=tuple(files))


def _read(path: str, key: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise WebConfigError(key, f"cannot read {_show(path)}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise WebConfigError(key, f"{_show(path)} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WebConfigError(key, f"{_show(path)} is not UTF-8 text") from None


def _mapping(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(key, f"got {_show(value)}, allowed: a mapping")
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
        raise WebConfigError(f"{path}.{key}", f"got {_show(value)}, allowed: a string")
    return value


def _strings(raw: dict, key: str, path: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WebConfigError(f"{path}.{key}", f"got {_show(value)}, allowed: a list of strings")
    return value


def _tls(raw: dict, base: str, files: list[str]) -> tuple[ssl.SSLContext | None, frozenset[str]]:
    p = "tls_server_config"
    _no_unknown(raw, _TLS_KEYS, p)
    s = {k: _string(raw, k, p) for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
                                         "client_ca_file", "min_version", "max_version")}
    sans = _strings(raw, "client_allowed_sans", p)
    ciphers = _strings(raw, "cipher_suites", p)
    curves = _strings(raw, "curve_preferences", p)
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{p}.prefer_server_cipher_suites", f"got {_show(prefer)}, allowed: true, false")
    if not any(s[k] for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")):
        if sans or ciphers or curves or s["min_version"] or s["max_version"]:
            raise WebConfigError(f"{p}.cert_file", "required: TLS options are set but no certificate")
        return None, frozenset()
    for inline, file in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if s[inline] and s[file]:
            raise WebConfigError(f"{p}.{inline}", f"set either {inline} or {file}, not both")
    if not (s["cert"] or s["cert_file"]):
        raise WebConfigError(f"{p}.cert_file", "required: missing one of cert or cert_file")
    if not (s["key"] or s["key_file"]):
        raise WebConfigError(f"{p}.key_file", "required: missing one of key or key_file")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = s[key] or default
        if name not in _VERSIONS:
            raise WebConfigError(f"{p}.{key}", f"got {_show(name)}, allowed: {', '.join(_VERSIONS)}")
        versions[key] = _VERSIONS[name]
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError(f"{p}.min_version", f"got {s['min_version']}, allowed: at most max_version")
    try:
        context.minimum_version, context.maximum_version = versions["min_version"], versions["max_version"]
    except (ValueError, ssl.SSLError) as err:
        raise WebConfigError(f"{p}.min_version", f"not supported by this OpenSSL: {err}") from None

    cert_file = os.path.join(base, s["cert_file"]) if s["cert_file"] else None
    key_file = os.path.join(base, s["key_file"]) if s["key_file"] else None
    cert_pem = _read(cert_file, f"{p}.cert_file") if cert_file else s["cert"]
    key_pem = _read(key_file, f"{p}.key_file") if key_file else s["key"]
    files += [f for f in (cert_file, key_file) if f]
    _load_chain(context, cert_pem, key_pem, p, "cert_file" if cert_file else "cert")

    auth = s["client_auth_type"] or "NoClientCert"
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(f"{p}.client_auth_type", f"got {auth}: accepting client certificates without verifying "
                             "them is not supported; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(f"{p}.client_auth_type", f"got {_show(auth)}, allowed: {', '.join(_CLIENT_AUTH)}")
    context.verify_mode = _CLIENT_AUTH[auth]
    ca_file = os.path.join(base, s["client_ca_file"]) if s["client_ca_file"] else None
    ca_pem = _read(ca_file, f"{p}.client_ca_file") if ca_file else s["client_ca"]
    if ca_file:
        files.append(ca_file)
    ca_key = f"{p}.client_ca_file" if ca_file else f"{p}.client_ca"
    if ca_pem and auth == "NoClientCert":
        raise WebConfigError(ca_key, "client CAs are set but client_auth_type is NoClientCert")
    if auth != "NoClientCert":
        if not ca_pem:
            raise WebConfigError(f"{p}.client_ca_file", f"required when client_auth_type is {auth}")
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as err:
            raise WebConfigError(ca_key, f"no usable CA certificate: {err}"[:200]) from None
    if sans and auth != "RequireAndVerifyClientCert":
        raise WebConfigError(f"{p}.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")

    for i, name in enumerate(ciphers):
        if name not in _CIPHERS:
            raise WebConfigError(f"{p}.cipher_suites[{i}]", f"got {_show(name)}, allowed: {', '.join(_CIPHERS)}")
    openssl = [_CIPHERS[c] for c in ciphers if _CIPHERS[c]]
    if openssl:
        try:
            context.set_ciphers(":".join(openssl))
        except ssl.SSLError as err:
            raise WebConfigError(f"{p}.cipher_suites", f"none usable with this OpenSSL: {err}") from None
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    for i, name in enumerate(curves):
        if name not in _CURVES:
            raise WebConfigError(f"{p}.curve_preferences[{i}]", f"got {_show(name)}, allowed: {', '.join(_CURVES)}")
    if len(curves) == 1:
        context.set_ecdh_curve(_CURVES[curves[0]])
    elif curves:
        log.info("tls_server_config.curve_preferences lists %d curves: Python's ssl sets one or none, so OpenSSL's "
                 "default groups apply (they include %s)", len(curves), ", ".join(_CURVES))
    context.options |= ssl.OP_NO_COMPRESSION
    return context, frozenset(sans)


def _load_chain(context: ssl.SSLContext, cert_pem: str, key_pem: str, p: str, cert_key: str) -> None:
    """load_cert_chain() reads files only: inline PEM goes through an anonymous memory file (no
    disk, so a read-only root filesystem is fine) or, failing that, a private temporary file."""
    with _pem_file(cert_pem) as cert_path, _pem_file(key_pem) as key_path:
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as err:
            raise WebConfigError(f"{p}.{cert_key}", f"certificate and key do not load as a pair: {err.reason or err}") from None
        except (OSError, ValueError) as err:
            raise WebConfigError(f"{p}.{cert_key}", f"certificate and key do not load: {type(err).__name__}") from None


class _pem_file:  # noqa: N801 (a context manager used like a function)
    def __init__(self, pem: str):
        self.pem = pem.encode()
        self.fd = None
        self.path = None

    def __enter__(self) -> str:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("pem", 0)
            os.write(self.fd, self.pem)
            return f"/proc/self/fd/{self.fd}"
        handle, self.path = tempfile.mkstemp(prefix="llmcost-pem-")  # mode 0600
        with os.fdopen(handle, "wb") as f:
            f.write(self.pem)
        return self.path

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
        if self.path is not None:
            os.unlink(self.path)


def _headers(raw) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError("http_server_config.headers", f"got {_show(raw)}, allowed: a mapping")
    out = {}
    for name, value in raw.items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise WebConfigError(key, f"this header cannot be configured, allowed: {', '.join(_HEADERS)}")
        if value is None or value == "":
            continue
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise WebConfigError(key, f"got {_show(value)}, allowed: a one-line string")
        if _HEADERS[name] and value not in _HEADERS[name]:
            raise WebConfigError(key, f"got {_show(value)}, allowed: {', '.join(_HEADERS[name])}")
        out[name] = value
    return out


def _users(raw) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError("basic_auth_users", f"got a {type(raw).__name__}, allowed: a mapping of user to bcrypt hash")
    users = {}
    for user, hashed in raw.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(key, "allowed: a non-empty user name without ':'")
        # Never echo the value: it is a secret.
        match = _BCRYPT.match(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise WebConfigError(key, "not a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31; e.g. htpasswd -nBC 10 \"\")")
        users[user] = hashed.encode()
    return users


def _rate_limit(raw) -> tuple[float, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WebConfigError("rate_limit", f"got {_show(raw)}, allowed: a mapping with interval and burst")
    _no_unknown(raw, ("interval", "burst"), "rate_limit")
    interval = parse_go_duration(raw.get("interval", 0), "rate_limit.interval")
    burst = raw.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError("rate_limit.burst", f"got {_show(burst)}, allowed: a whole number >= 0")
    if interval == 0:
        return None  # exporter-toolkit: interval 0 disables the limiter
    if burst == 0:
        raise WebConfigError("rate_limit.burst", "got 0, allowed: at least 1 when interval is set (0 refuses everything)")
    return interval, burst


def parse_go_duration(value, key: str) -> float:
    """'100ms', '1m30s', 0 -> seconds, as Go's time.ParseDuration."""
    if value == 0:
        return 0.0
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return parse_duration(value)
    except ValueError:
        raise WebConfigError(key, f"got {_show(value)}, allowed: a duration such as '100ms', '1s', '1m30s'") from None


def _show(value) -> str:
    """A value for an error message, unless it may be a secret put in the wrong place (a PEM
    block, a bcrypt hash, anything multi-line): those are never echoed."""
    if isinstance(value, str) and ("-----BEGIN" in value or "\n" in value or _BCRYPT_ANYWHERE.search(value)):
        return "<a value not shown: it may be a secret>"
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- reloading ------------------------------------------------------------------------------


class WebConfigWatcher:
    """The current WebConfig, reloaded when the file or a file it names changes (checked at most
    once per CHECK_EVERY_S). Turning TLS on or off needs a restart: such an edit is refused."""

    CHECK_EVERY_S = 1.0

    def __init__(self, path: str):
        self.current = load(path)  # at startup, errors are fatal (exit 2)
        self._stamp = _stamp(self.current.files)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._last_error: str | None = None

    def get(self) -> WebConfig:
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY_S:
            return self.current
        with self._lock:
            if now - self._checked < self.CHECK_EVERY_S:
                return self.current
            self._checked = now
            stamp = _stamp(self.current.files)
            if stamp == self._stamp:
                return self.current
            try:
                fresh = load(self.current.path)
                if (fresh.tls is None) != (self.current.tls is None):
                    raise WebConfigError("tls_server_config", "TLS cannot be turned on or off while running; restart")
            except WebConfigError as err:
                if str(err) != self._last_error:
                    log.error("web config not reloaded, keeping the last good one: %s", err)
                    self._last_error = str(err)
                self._stamp = stamp  # one attempt per change, not one per second
                return self.current
            self.current, self._stamp, self._last_error = fresh, _stamp(fresh.files), None
            log.info("web config reloaded path=%s tls=%s basic_auth_users=%d", fresh.path, fresh.tls is not None,
                     len(fresh.users))
            return self.current


def _stamp(files) -> tuple:
    out = []
    for path in files:
        try:
            st = os.stat(path)
            out.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((path, None))
    return tuple(out)


# -- basic auth -----------------------------------------------------------------------------

# bcrypt of 'fakepassword' (as exporter-toolkit): unknown users cost as much as known ones, so
# timing does not tell which users exist; a match on it never authenticates.
_DUMMY_HASH = b"$2b$10$1P0ykcrrZ4ktgxsr9oTzZOVL3tgKb.vBaBJjt.cnrgPVqgDDNZ5Me"


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes. bcrypt is slow on purpose (~60 ms at
    cost 10), so results are cached, like exporter-toolkit does; the cache key is an HMAC under a
    per-process random key of (user, hash, password), so no password is kept in memory, and a
    changed hash never matches an old entry. One bcrypt at a time, so a flood of wrong passwords
    costs one core at most."""

    CACHE_SIZE = 128

    def __init__(self):
        self._key = os.urandom(32)
        self._cache: collections.OrderedDict[bytes, bool] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()
        self.bcrypt_calls = 0  # for tests: how often the slow path ran

    def check(self, users: dict[str, bytes], header: str | None) -> str | None:
        """The authenticated user name, or None."""
        credentials = _parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        hashed = users.get(user)
        known = hashed is not None
        hashed = hashed or _DUMMY_HASH
        key = hmac.new(self._key, b"\0".join((user.encode(), hashed, password)), hashlib.sha256).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            import bcrypt  # imported only when basic auth is configured

            with self._bcrypt:
                self.bcrypt_calls += 1
                try:
                    cached = bcrypt.checkpw(password, hashed)
                except ValueError:  # a password over 72 bytes, or a hash bcrypt will not read
                    cached = False
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > self.CACHE_SIZE:
                    self._cache.popitem(last=False)
        return user if cached and known else None


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
