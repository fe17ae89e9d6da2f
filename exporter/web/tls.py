"""The TLS context factory: tls_server_config (already type-checked, as TLSOptions) -> ssl.SSLContext.

Go names (versions, client auth types, cipher suites, curves) are mapped to Python's ssl and
OpenSSL's. Where Python's ssl cannot do what Go's crypto/tls does, we refuse rather than weaken:
`RequestClientCert` and `RequireAnyClientCert` (accept a client certificate without verifying it)
are rejected; `curve_preferences` with one curve restricts the handshake to it, with several it
leaves OpenSSL's default groups (which include all four Go curves) and says so in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass

from exporter import validation
from exporter.web.errors import WebConfigError, may_be_secret

log = logging.getLogger("exporter.web")

KEY = "tls_server_config"
MAX_FILE_BYTES = validation.MAX_FILE_BYTES  # a certificate or a key larger than this is not one

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


@dataclass(frozen=True)
class TLSOptions:
    """tls_server_config as written: strings (None where unset) and lists, types already checked."""

    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str | None = None
    min_version: str | None = None
    max_version: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True


def server_context(options: TLSOptions, base: str) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """The server's SSLContext, and the files it read (for change detection). Relative file names
    are relative to `base`. Raises WebConfigError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    files: list[str] = []
    _set_versions(context, options)
    _load_chain(context, options, base, files)
    _set_client_auth(context, options, base, files)
    _set_ciphers(context, options)
    _set_curves(context, options.curve_preferences)
    context.options |= ssl.OP_NO_COMPRESSION
    return context, tuple(files)


def _choice(table: dict, name, key: str):
    if name not in table:
        raise WebConfigError.got(key, name, ", ".join(table))
    return table[name]


def _set_versions(context: ssl.SSLContext, options: TLSOptions) -> None:
    low_name, high_name = options.min_version or "TLS12", options.max_version or "TLS13"
    low = _choice(_VERSIONS, low_name, f"{KEY}.min_version")
    high = _choice(_VERSIONS, high_name, f"{KEY}.max_version")
    if low > high:
        raise WebConfigError(f"{KEY}.min_version", f"got {low_name}, allowed: at most max_version")
    try:
        context.minimum_version, context.maximum_version = low, high
    except (ValueError, ssl.SSLError) as err:
        raise WebConfigError(f"{KEY}.min_version", f"not supported by this OpenSSL: {err}") from None


def _pem(options: TLSOptions, name: str, base: str, files: list[str]) -> tuple[str | None, str]:
    """The PEM text of `name` (cert, key or client_ca), from `<name>_file` or inline, and the key
    an error about it names."""
    file = getattr(options, f"{name}_file")
    if not file:
        return getattr(options, name), f"{KEY}.{name}"
    key = f"{KEY}.{name}_file"
    if may_be_secret(file) or "\0" in file:  # read_file's message would echo it
        raise WebConfigError.got(key, file, "a file name")
    path = os.path.join(base, file)
    files.append(path)
    data = validation.read_file(path, key, WebConfigError, MAX_FILE_BYTES)
    try:
        return data.decode("utf-8"), key
    except UnicodeDecodeError:
        raise WebConfigError(key, f"{validation.show(path)} is not UTF-8 text") from None


def _load_chain(context: ssl.SSLContext, options: TLSOptions, base: str, files: list[str]) -> None:
    cert, cert_key = _pem(options, "cert", base, files)
    key, _ = _pem(options, "key", base, files)
    if cert is None or key is None:  # config.py requires both before asking for a context
        raise WebConfigError(cert_key, "a certificate and its key are both required")
    with _pem_path(cert) as cert_path, _pem_path(key) as key_path:
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as err:
            raise WebConfigError(cert_key, f"certificate and key do not load as a pair: {err.reason or err}") from None
        except (OSError, ValueError) as err:
            raise WebConfigError(cert_key, f"certificate and key do not load: {type(err).__name__}") from None


@contextlib.contextmanager
def _pem_path(pem: str):
    """A path holding `pem`, for load_cert_chain(), which reads files only: an anonymous memory
    file (nothing on disk, so a read-only root filesystem is fine) or, failing that, a private
    temporary file (mode 0600), removed on exit."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pem", 0)
        try:
            os.write(fd, pem.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    handle, path = tempfile.mkstemp(prefix="llmcost-pem-")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(pem.encode())
        yield path
    finally:
        os.unlink(path)


def _verify_mode(auth: str) -> ssl.VerifyMode:
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(f"{KEY}.client_auth_type", f"got {auth}: accepting client certificates without verifying "
                             "them is not supported; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    return _choice(_CLIENT_AUTH, auth, f"{KEY}.client_auth_type")


def _set_client_auth(context: ssl.SSLContext, options: TLSOptions, base: str, files: list[str]) -> None:
    auth = options.client_auth_type or "NoClientCert"
    context.verify_mode = _verify_mode(auth)
    ca, ca_key = _pem(options, "client_ca", base, files)
    if auth == "NoClientCert" and ca:
        raise WebConfigError(ca_key, "client CAs are set but client_auth_type is NoClientCert")
    if auth != "NoClientCert":
        if not ca:
            raise WebConfigError(f"{KEY}.client_ca_file", f"required when client_auth_type is {auth}")
        try:
            context.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError) as err:
            raise WebConfigError(ca_key, f"no usable CA certificate: {err}"[:200]) from None
    if options.client_allowed_sans and auth != "RequireAndVerifyClientCert":
        raise WebConfigError(f"{KEY}.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert")


def _set_ciphers(context: ssl.SSLContext, options: TLSOptions) -> None:
    suites = [_choice(_CIPHERS, name, f"{KEY}.cipher_suites[{i}]") for i, name in enumerate(options.cipher_suites)]
    openssl = [suite for suite in suites if suite]
    if openssl:
        try:
            context.set_ciphers(":".join(openssl))
        except ssl.SSLError as err:
            raise WebConfigError(f"{KEY}.cipher_suites", f"none usable with this OpenSSL: {err}") from None
    if options.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE


def _set_curves(context: ssl.SSLContext, curves: tuple[str, ...]) -> None:
    groups = [_choice(_CURVES, name, f"{KEY}.curve_preferences[{i}]") for i, name in enumerate(curves)]
    if len(groups) == 1:
        context.set_ecdh_curve(groups[0])
    elif groups:
        log.info("tls_server_config.curve_preferences lists %d curves: Python's ssl sets one or none, so OpenSSL's "
                 "default groups apply (they include %s)", len(groups), ", ".join(_CURVES))
