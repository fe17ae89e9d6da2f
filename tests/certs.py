"""Test certificates made with the openssl command line (tests only; no shell: argument lists).

    certs = make_certs(tmp_path)  # certs["ca.crt"], certs["server.crt"], certs["client.key"], ...

Two CAs: `ca` signs the server certificates (SAN IP:127.0.0.1, DNS:localhost) and the client
certificate (SAN DNS:prometheus.monitoring.svc); `other-ca` signs a client certificate nobody
trusts. `server2` is a second server certificate, for rotation.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

OPENSSL = shutil.which("openssl")


def _run(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key_and_csr(name: str, cn: str, cwd):
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)


def _ca(name: str, cwd):
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


def _sign(name: str, ca: str, extensions: str, cwd):
    (pathlib.Path(cwd) / f"{name}.ext").write_text(extensions)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
         "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=cwd)


def make_certs(directory) -> dict[str, str]:
    if OPENSSL is None:
        pytest.fail("openssl not on PATH (Debian package openssl)")
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _ca("ca", d)
    _ca("other-ca", d)
    server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    for name in ("server", "server2"):
        _key_and_csr(name, name, d)
        _sign(name, "ca", server, d)
    _key_and_csr("client", "prometheus", d)
    _sign("client", "ca", "subjectAltName=DNS:prometheus.monitoring.svc\nextendedKeyUsage=clientAuth\n", d)
    _key_and_csr("stranger", "stranger", d)
    _sign("stranger", "other-ca", "subjectAltName=DNS:prometheus.monitoring.svc\nextendedKeyUsage=clientAuth\n", d)
    return {p.name: str(p) for p in d.iterdir()}
