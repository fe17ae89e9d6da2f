"""A header-checking endpoint in front of a real Prometheus, as Mimir, Cortex or an
authenticating reverse proxy put one: requests without the expected tenant header or credentials
get 401 (Mimir's "no org id" answer is a 401 too); the rest are forwarded unchanged.

    with AuthProxy(prom.url, tenant="team-a", bearer="s3cret") as proxy:
        ... proxy.url ...
        proxy.seen  # the headers of every request, to check what the client sent
"""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AuthProxy:
    def __init__(self, upstream: str, tenant: str | None = None, bearer: str | None = None,
                 basic: tuple[str, str] | None = None):
        self.upstream = upstream.rstrip("/")
        expected = {}
        if tenant is not None:
            expected["X-Scope-OrgID"] = tenant
        if bearer is not None:
            expected["Authorization"] = f"Bearer {bearer}"
        if basic is not None:
            expected["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
        self.expected = expected
        self.seen: list = []
        self.rejected = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server interface
                proxy.seen.append(self.headers)  # an email.message.Message: names case-insensitive
                if any(self.headers.get(k) != v for k, v in proxy.expected.items()):
                    proxy.rejected += 1
                    self._answer(401, b"no org id or bad credentials\n", "text/plain")
                    return
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=60) as response:
                        self._answer(response.status, response.read(), response.headers["Content-Type"])
                except urllib.error.HTTPError as err:
                    self._answer(err.code, err.read(), err.headers.get("Content-Type", "text/plain"))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def __enter__(self) -> AuthProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
