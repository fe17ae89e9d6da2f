"""The HTTP server over real sockets: the metrics path through prometheus_client (gzip, HEAD,
name[]), TLS, basic auth and the server's bounds, with real TLS clients (ssl, http.client) and
certificates made by openssl (tests/certs.py). The web config is exporter-toolkit's format; every
invalid one has a fixture under tests/webconfigs/ whose first line is the error expected."""

import base64
import gzip
import http.client
import logging
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import bcrypt
import pytest

from certs import make_certs
from conftest import make_config
from exporter.clock import ManualClock
from exporter.web import WebConfigError, WebConfigWatcher, WebServer, load
from exporter.web.limits import ConnectionSlots, HeadBudget, client_of
from test_bench_smoke import PROMETHEUS_ACCEPT
from test_demo_and_promtool import free_port

HERE = pathlib.Path(__file__).parent
BAD = sorted((HERE / "webconfigs").glob("*.yml"))
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def hashed():
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture
def config_clock():
    """The web config watcher's monotonic clock: advance it past CHECK_EVERY_S to have a change seen."""
    return ManualClock(0.0)


@pytest.fixture
def serve(certs, exporter_for, tmp_path, config_clock):
    """serve(web_config_yaml, **WebServer kwargs) -> (WebServer, path of the web config)."""
    servers = []

    def make(text: str, **kwargs):
        directory = tmp_path / f"web{len(servers)}"
        shutil.copytree(os.path.dirname(certs["ca.crt"]), directory)  # relative names resolve beside the file
        path = directory / "web.yml"
        path.write_text(text)
        exporter = exporter_for(make_config([]))
        exporter.sample_all()
        web = WebServer(exporter, "127.0.0.1:0", web_config=WebConfigWatcher(str(path), clock=config_clock.now),
                        **kwargs)
        web.start()
        servers.append(web)
        return web, path

    yield make
    for web in servers:
        web.stop()


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


def client_context(certs, cert=None, **versions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs["ca.crt"])
    if cert:
        context.load_cert_chain(certs[f"{cert}.crt"], certs[f"{cert}.key"])
    for key, value in versions.items():
        setattr(context, key, value)
    return context


def get(port, path="/metrics", context=None, auth=None, header=None, source="127.0.0.1"):
    """(status, headers, body) over HTTPS (context given) or HTTP, from the client address `source`."""
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if header:
        headers["Authorization"] = header
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


REFUSED = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)


# -- the metrics path, through prometheus_client -------------------------------------------------

@pytest.fixture
def plain(exporter_for):
    """A WebServer without a web config, over an exporter whose manual clock stands still (so two
    scrapes give the same values)."""
    exporter = exporter_for(make_config([]))
    exporter.sample_all()
    web = WebServer(exporter, "127.0.0.1:0")
    web.start()
    yield web
    web.stop()


def raw_request(port, method, path, headers=()):
    """(status, headers, every byte after the head) of one HTTP/1.0 request on a raw socket: what
    the server really sent, not what a client library chose to read."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.0\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
                  + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), body


@pytest.mark.parametrize("accept", [PROMETHEUS_ACCEPT, "text/plain"])
def test_gzip_is_the_same_exposition_compressed(plain, accept):
    status, headers, body = raw_request(plain.port, "GET", "/metrics", [("Accept", accept)])
    assert status == 200 and "Content-Encoding" not in headers and b"llmcost_build_info" in body
    status, zipped_headers, zipped = raw_request(plain.port, "GET", "/metrics",
                                                 [("Accept", accept), ("Accept-Encoding", "gzip")])
    assert status == 200 and zipped_headers["Content-Encoding"] == "gzip"
    assert zipped_headers["Content-Type"] == headers["Content-Type"]
    assert int(zipped_headers["Content-Length"]) == len(zipped) < len(body)
    assert gzip.decompress(zipped) == body


@pytest.mark.parametrize("path, status", [("/metrics", 200), ("/", 200), ("/healthz", 200), ("/nowhere", 404)])
def test_head_has_the_headers_of_get_and_no_body(plain, path, status):
    got, get_headers, get_body = raw_request(plain.port, "GET", path)
    head, head_headers, head_body = raw_request(plain.port, "HEAD", path)
    assert got == head == status
    assert head_body == b""
    assert head_headers["Content-Type"] == get_headers["Content-Type"]
    assert int(head_headers["Content-Length"]) == len(get_body) > 0


def test_name_filter_returns_only_those_families(plain):
    from prometheus_client.parser import text_string_to_metric_families

    def families(body):
        return {f.name: f for f in text_string_to_metric_families(body.decode()) if f.samples}

    _, _, everything = raw_request(plain.port, "GET", "/metrics")
    gauges = sorted(name for name, family in families(everything).items() if family.type == "gauge")
    assert len(gauges) > 10 and "llmcost_build_info" in gauges
    for query in ("name[]=llmcost_build_info", "name%5B%5D=llmcost_build_info"):
        status, _, body = raw_request(plain.port, "GET", f"/metrics?{query}")
        assert status == 200 and set(families(body)) == {"llmcost_build_info"}, query
    _, _, two = raw_request(plain.port, "GET", f"/metrics?name[]=llmcost_build_info&name[]={gauges[0]}")
    assert set(families(two)) == {"llmcost_build_info", gauges[0]}  # sample names: a counter's end in _total


def test_other_methods_are_not_implemented(plain):
    status, _, body = raw_request(plain.port, "POST", "/metrics")
    assert status == 501 and b"llmcost_" not in body


# -- TLS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/", "/healthz"])
def test_tls_serves_every_endpoint_to_a_verifying_client(serve, certs, path):
    web, _ = serve(TLS)
    status, _, body = get(web.port, path, client_context(certs))
    assert status == 200 and body


def test_tls_is_required_plain_http_gets_a_400_and_no_metrics(serve, certs):
    web, _ = serve(TLS)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{web.port}/metrics", timeout=5)
    assert err.value.code == 400 and b"llmcost_" not in err.value.read()


def test_a_client_that_does_not_trust_the_ca_fails(serve):
    web, _ = serve(TLS)
    with pytest.raises(ssl.SSLCertVerificationError):
        get(web.port, context=ssl.create_default_context())


def test_min_version_is_enforced(serve, certs):
    web, _ = serve(TLS + "  min_version: TLS13\n")
    with pytest.raises(REFUSED):
        get(web.port, context=client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert get(web.port, context=client_context(certs))[0] == 200


def test_cipher_suites_by_go_name_and_one_curve_apply(serve, certs):
    web, _ = serve(TLS + "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
                         "  curve_preferences: [CurveP384]\n")
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as raw:
        with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert get(web.port, "/healthz", client_context(certs))[0] == 200
    refusing = client_context(certs)
    refusing.set_ecdh_curve("prime256v1")  # the client offers only P-256
    with pytest.raises(REFUSED):
        get(web.port, context=refusing)


def test_inline_certificate_and_key(serve, certs):
    cert, key = (pathlib.Path(certs[n]).read_text() for n in ("server.crt", "server.key"))
    indent = lambda pem: "\n".join("    " + line for line in pem.splitlines())  # noqa: E731
    web, _ = serve(f"tls_server_config:\n  cert: |\n{indent(cert)}\n  key: |\n{indent(key)}\n")
    assert get(web.port, context=client_context(certs))[0] == 200


@pytest.mark.integration  # a real-time read timeout
def test_a_silent_client_does_not_block_the_others(serve, certs):
    web, _ = serve(TLS, read_timeout=2.0)
    silent = socket.create_connection(("127.0.0.1", web.port))  # connects, never says hello
    try:
        started = time.monotonic()
        assert get(web.port, context=client_context(certs))[0] == 200
        assert time.monotonic() - started < 1.5  # well before the silent one's 2 s deadline
        silent.settimeout(5)
        assert silent.recv(1) == b""  # closed at the handshake deadline
    finally:
        silent.close()


# -- client certificates ------------------------------------------------------------------------

MTLS = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"


def test_client_certificate_required_and_verified(serve, certs):
    web, _ = serve(MTLS)
    assert get(web.port, context=client_context(certs, "client"))[0] == 200
    for cert in (None, "stranger"):  # none, or one from a CA the server does not trust
        with pytest.raises(REFUSED):
            get(web.port, context=client_context(certs, cert))


def test_client_allowed_sans(serve, certs):
    web, _ = serve(MTLS + "  client_allowed_sans: [prometheus.monitoring.svc]\n")
    assert get(web.port, context=client_context(certs, "client"))[0] == 200
    other, _ = serve(MTLS + "  client_allowed_sans: [grafana.monitoring.svc]\n")
    with pytest.raises(REFUSED):
        get(other.port, context=client_context(certs, "client"))


# -- basic auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/", "/healthz", "/nowhere"])
def test_basic_auth_wrong_missing_and_right_credentials(serve, certs, hashed, path):
    web, _ = serve(TLS + f"basic_auth_users:\n  prometheus: {hashed}\n")
    context = client_context(certs)
    for attempt in (dict(), dict(auth=("prometheus", "wrong")), dict(auth=("nobody", PASSWORD)),
                    dict(auth=("prometheus", PASSWORD + "x")), dict(header="Basic !!notbase64"),
                    dict(header="Bearer " + PASSWORD), dict(auth=("prometheus", "x" * 100))):
        status, headers, body = get(web.port, path, context, **attempt)
        assert status == 401, attempt
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
        assert b"llmcost_" not in body
    status, _, _ = get(web.port, path, context, auth=("prometheus", PASSWORD))
    assert status == (404 if path == "/nowhere" else 200)


def test_head_without_credentials_is_refused_too(serve, hashed):
    web, _ = serve(f"basic_auth_users:\n  prometheus: {hashed}\n")
    status, headers, body = raw_request(web.port, "HEAD", "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=") and body == b""
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    status, headers, body = raw_request(web.port, "HEAD", "/metrics", [("Authorization", f"Basic {token}")])
    assert status == 200 and int(headers["Content-Length"]) > 0 and body == b""


def test_bcrypt_runs_once_per_credentials(serve, certs, hashed):
    web, _ = serve(TLS + f"basic_auth_users:\n  prometheus: {hashed}\n")
    context = client_context(certs)
    for _ in range(5):
        assert get(web.port, context=context, auth=("prometheus", PASSWORD))[0] == 200
    auth = web.httpd.basic_auth
    assert auth.bcrypt_calls == 1
    get(web.port, context=context, auth=("prometheus", "wrong"))
    assert auth.bcrypt_calls == 2
    assert not any(PASSWORD.encode() in key or b"wrong" in key for key in auth._cache)  # HMACs, not passwords


def test_basic_auth_works_with_htpasswd_style_2y_hashes(serve, hashed):
    web, _ = serve(f"basic_auth_users:\n  prometheus: {hashed.replace('$2b$', '$2y$', 1)}\n")
    assert get(web.port, auth=("prometheus", PASSWORD))[0] == 200
    assert get(web.port)[0] == 401


def test_configured_headers_are_on_every_response(serve, certs, hashed):
    web, _ = serve(TLS + f"basic_auth_users:\n  p: {hashed}\nhttp_server_config:\n  headers:\n"
                         "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n")
    for kwargs in (dict(), dict(auth=("p", PASSWORD))):
        _, headers, _ = get(web.port, context=client_context(certs), **kwargs)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_rate_limit(serve):
    web, _ = serve("rate_limit:\n  interval: 1h\n  burst: 2\n")
    assert [get(web.port)[0] for _ in range(3)] == [200, 200, 429]


def test_requests_that_fail_authentication_spend_no_rate_limit_token(serve, hashed):
    web, _ = serve(f"basic_auth_users:\n  prometheus: {hashed}\nrate_limit:\n  interval: 1h\n  burst: 2\n")
    assert [get(web.port, **attempt)[0] for attempt in (dict(), dict(auth=("prometheus", "wrong")),
                                                        dict(auth=("nobody", PASSWORD)))] * 3 == [401] * 9
    assert [get(web.port, auth=("prometheus", PASSWORD))[0] for _ in range(3)] == [200, 200, 429]


def test_failed_logins_are_not_cached_and_last_as_long_as_the_dearest_check(serve, hashed):
    dear = bcrypt.hashpw(b"other", bcrypt.gensalt(9)).decode()
    web, _ = serve(f"basic_auth_users:\n  prometheus: {hashed}\n  dear: {dear}\n")
    assert get(web.port, auth=("prometheus", PASSWORD))[0] == 200  # measures the cost-9 check once
    auth = web.httpd.basic_auth
    floor = auth._failure_costs[9].seconds
    calls = auth.bcrypt_calls
    for user in ("prometheus", "prometheus", "nobody"):
        started = time.monotonic()
        assert get(web.port, auth=(user, "wrong"))[0] == 401
        assert time.monotonic() - started >= floor  # a cost-4 check takes a 32nd of a cost-9 one
    assert auth.bcrypt_calls == calls + 3  # each failure checked again, none remembered


# -- reloading ----------------------------------------------------------------------------------


def test_rotated_certificate_is_served_to_new_connections(serve, certs, config_clock):
    web, path = serve(TLS)

    def served_cn():
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as raw:
            with client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]

    assert served_cn() == "server"
    for ext in ("crt", "key"):  # what cert-manager's renewal does to a mounted secret
        shutil.copy(path.parent / f"server2.{ext}", path.parent / f"server.{ext}")
    assert served_cn() == "server"  # changes are looked for at most once a second
    config_clock.advance(WebConfigWatcher.CHECK_EVERY_S)
    assert served_cn() == "server2"


def test_a_broken_edit_keeps_the_last_good_config_with_one_line(serve, certs, hashed, caplog, config_clock):
    web, path = serve(TLS + f"basic_auth_users:\n  prometheus: {hashed}\n")
    caplog.set_level(logging.INFO, logger="exporter.web")
    path.write_text(TLS + "basic_auth_users: [oops]\n")
    for _ in range(3):
        config_clock.advance(WebConfigWatcher.CHECK_EVERY_S)
        assert get(web.port, context=client_context(certs))[0] == 401  # still protected
        assert get(web.port, context=client_context(certs), auth=("prometheus", PASSWORD))[0] == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "basic_auth_users" in errors[0].getMessage()


@pytest.mark.parametrize("edit, key", [
    ("rate_limit:\n  interval: 0x" + "f" * 5000 + "\n", "rate_limit.interval"),  # str() of it raises ValueError
    ("tls_server_config:\n  min_version: 0x" + "f" * 5000 + "\n", "tls_server_config"),
    ("rate_limit: " + "[" * 3000 + "]" * 3000 + "\n", "web.config.file"),  # RecursionError
], ids=["huge-int", "huge-int-tls", "deep"])
def test_an_edit_that_raises_anything_keeps_the_config_and_leaks_no_slot(serve, config_clock, caplog, edit, key):
    web, path = serve("")
    caplog.set_level(logging.INFO, logger="exporter.web")
    path.write_text(edit)
    for _ in range(5):
        config_clock.advance(WebConfigWatcher.CHECK_EVERY_S)
        assert get(web.port)[0] == 200
        deadline = time.monotonic() + 5
        while web.httpd.slots.in_use:  # the connection's slot is given back, however its reload ended
            assert time.monotonic() < deadline, "a connection slot leaked"
            time.sleep(0.01)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"last good one: {key}" in errors[0], errors


def test_users_added_by_a_reload_are_required(serve, hashed, config_clock):
    web, path = serve("")  # no users at start
    assert get(web.port)[0] == 200
    path.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    config_clock.advance(WebConfigWatcher.CHECK_EVERY_S)
    assert get(web.port)[0] == 401
    assert get(web.port, auth=("prometheus", PASSWORD))[0] == 200


# -- bounds -------------------------------------------------------------------------------------


def test_a_slow_drip_request_is_cut_at_the_deadline_and_others_are_served(serve):
    web, _ = serve("", read_timeout=1.0)
    slow = socket.create_connection(("127.0.0.1", web.port))
    try:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                slow.sendall(b"X")  # one header byte every 0.2 s: each read is quick, the whole never ends
            except OSError:
                closed = True
                break
            assert get(web.port)[0] == 200  # the others are served meanwhile
            time.sleep(0.2)
        assert closed and time.monotonic() - started < 2.5
    finally:
        slow.close()


def test_connections_over_the_cap_are_closed_and_service_resumes(serve):
    web, _ = serve("", max_connections=2, read_timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", web.port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", web.port))
        extra.settimeout(2)
        try:
            assert extra.recv(1) == b""  # closed at once
        except ConnectionResetError:
            pass
        extra.close()
        deadline = time.monotonic() + 5  # the idle ones hit the 1 s read deadline, then there is room
        while True:
            try:
                assert get(web.port)[0] == 200
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                assert time.monotonic() < deadline, "no room again after the idle connections timed out"
                time.sleep(0.1)
    finally:
        for s in idle:
            s.close()


def test_connections_over_the_per_client_cap_are_closed_and_other_clients_served(serve):
    web, _ = serve("", max_connections=4, max_connections_per_client=2, read_timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", web.port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", web.port), timeout=2) as extra:
            try:
                assert extra.recv(1) == b""  # a third from the same address: closed at once
            except ConnectionResetError:
                pass
        assert get(web.port, source="127.0.0.2")[0] == 200  # another address still has room
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while web.httpd.slots.in_use:  # every slot given back once the idle ones are closed
        assert time.monotonic() < deadline, web.httpd.slots.in_use
        time.sleep(0.05)
    assert get(web.port)[0] == 200


def test_slots_per_client_cannot_exceed_the_total():
    with pytest.raises(ValueError):
        ConnectionSlots(total=4, per_client=5)
    slots = ConnectionSlots(total=3, per_client=2)
    assert [slots.acquire("a"), slots.acquire("a"), slots.acquire("b")] == [None, None, None]
    assert slots.acquire("a") and slots.acquire("c")  # per client, then in all
    slots.release("a")
    assert slots.acquire("c") is None and slots.in_use == 3


@pytest.mark.parametrize("address, client", [
    ("127.0.0.2", "127.0.0.2"), ("::ffff:10.1.2.3", "10.1.2.3"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"), ("2001:db8:1:2:bbbb::9%eth0", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
])
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(address, client):
    assert client_of(address) == client


def test_a_head_over_the_memory_budget_gets_431_and_the_budget_is_given_back(serve):
    web, _ = serve("")
    web.httpd.head_budget = budget = HeadBudget(pool=100_000, free=1024)
    head = b"GET /metrics HTTP/1.0\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 40_000) for i in range(3))
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        s.sendall(head + b"\r\n")
        assert s.recv(64).startswith(b"HTTP/1.0 431")
    deadline = time.monotonic() + 5
    while budget.left != 100_000:
        assert time.monotonic() < deadline, budget.left
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:  # 2 x 40 kB fit the pool
        s.sendall(b"GET /healthz HTTP/1.0\r\n" + b"X-Pad: " + b"a" * 40_000 + b"\r\n" * 2)
        assert s.recv(64).startswith(b"HTTP/1.0 200")


def test_oversized_request_headers_are_refused(serve):
    web, _ = serve("")
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.0 431") or s.recv(64) == b""


# -- invalid configurations ---------------------------------------------------------------------


def test_there_is_a_fixture_per_failure_case():
    assert len(BAD) >= 20


@pytest.mark.parametrize("fixture", BAD, ids=lambda p: p.stem)
def test_invalid_web_config_names_its_key(fixture, certs, tmp_path):
    expected = fixture.read_text().splitlines()[0].removeprefix("# expect: ")
    directory = tmp_path / "cfg"
    shutil.copytree(os.path.dirname(certs["ca.crt"]), directory)
    path = directory / fixture.name
    shutil.copy(fixture, path)
    with pytest.raises(WebConfigError) as err:
        load(str(path))
    assert str(err.value).startswith(expected), str(err.value)
    assert "correct-horse" not in str(err.value)  # a secret is never echoed


@pytest.mark.parametrize("text", [
    "basic_auth_users:\n  alice: \"{hashed}\n",  # an unterminated quote on the hash's line
    "basic_auth_users:\n  alice: {hashed}: x\n",
    "tls_server_config:\n  key: -----BEGIN PRIVATE KEY----- MIIEsecretkeyline: x\n",
], ids=["quote", "colon", "inline-key"])
def test_a_yaml_error_quotes_no_line_of_the_file(text, hashed, tmp_path):
    path = tmp_path / "web.yml"
    path.write_text(text.format(hashed=hashed))
    with pytest.raises(WebConfigError) as err:
        load(str(path))
    message = str(err.value)
    assert message.startswith("web.config.file: not valid YAML") and "line " in message, message
    for secret in (hashed[:7], hashed[7:20], hashed[-20:], "MIIEsecretkeyline", "BEGIN"):  # snippets are shortened
        assert secret not in message


def test_a_fifo_is_not_read(tmp_path):
    path = tmp_path / "web.yml"
    os.mkfifo(path)
    with pytest.raises(WebConfigError) as err:
        load(str(path))  # would block for ever on open() or read()
    assert str(err.value).startswith("web.config.file: cannot read") and "not a regular file" in str(err.value)


def test_cli_exits_2_with_one_line_naming_the_key(tmp_path):
    bad = HERE / "webconfigs" / "plaintext_password.yml"
    for command in ("run", "demo"):
        result = subprocess.run([sys.executable, "-m", "exporter", command, f"--web.config.file={bad}",
                                 "--web.listen-address=127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "LLMCOST_INSTANCE_HOURLY": "1"})
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "basic_auth_users.alice" in lines[0] and "correct-horse" not in lines[0]


@pytest.mark.parametrize("flags, expected", [
    (["--web.max-connections-per-client=65"], "--web.max-connections-per-client: got 65, allowed: at most --web.max-connections (64)"),
    (["--web.max-connections=8", "--web.max-connections-per-client=9"], "at most --web.max-connections (8)"),
    (["--web.max-connections=0"], "--web.max-connections: got '0', allowed: a whole number >= 1"),
])
def test_connection_caps_are_checked_at_start(flags, expected):
    result = subprocess.run([sys.executable, "-m", "exporter", "run", "--web.listen-address=127.0.0.1:0", *flags],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "LLMCOST_INSTANCE_HOURLY": "1"})
    assert result.returncode == 2 and expected in result.stderr, result.stderr


@pytest.mark.integration  # the run command as a subprocess
def test_secrets_are_never_logged(certs, hashed, tmp_path):
    """The run command at debug level, asked with right and wrong passwords over TLS: its log
    holds neither a password nor the hash."""
    directory = tmp_path / "cfg"
    shutil.copytree(os.path.dirname(certs["ca.crt"]), directory)
    (directory / "web.yml").write_text(TLS + f"basic_auth_users:\n  prometheus: {hashed}\n")
    port = free_port()
    env = {**os.environ, "LLMCOST_INSTANCE_HOURLY": "1", "LLMCOST_GPU_BACKEND": "none",
           "LLMCOST_ENGINE_URL": "http://scraper:engine-s3cret@127.0.0.1:9/metrics"}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}",
                                f"--web.config.file={directory / 'web.yml'}", "--log.level=debug"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        context = client_context(certs)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                get(port, "/healthz", context)
                break
            except OSError:
                time.sleep(0.2)
        for password in (PASSWORD, "wrong-" + PASSWORD, "x" * 100):
            get(port, "/metrics", context, auth=("prometheus", password))
        assert get(port, "/metrics", context, auth=("prometheus", PASSWORD))[0] == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "listening" in stderr and "tls=True basic_auth=True" in stderr
    for secret in (PASSWORD, hashed, hashed[7:], "engine-s3cret"):
        assert secret not in stderr
