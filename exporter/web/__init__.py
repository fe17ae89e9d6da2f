"""The exporter's HTTP endpoints and their web config, one job per module:

    server.py     the HTTP server: connections, deadlines, TLS handshake, routing, HEAD
    metrics.py    the metrics path, through prometheus_client's own WSGI app
    config.py     --web.config.file (exporter-toolkit format): read, check, build a WebConfig
    tls.py        tls_server_config -> ssl.SSLContext
    errors.py     WebConfigError and the secret-safe way values are shown in it
    watcher.py    WebConfigWatcher: reload on change
    auth.py       basic auth against bcrypt hashes, with a cache
    ratelimit.py  rate_limit's token bucket
    limits.py     connection slots (in all, per client) and the request heads' memory budget
"""

from exporter.web.config import WebConfig, load
from exporter.web.errors import WebConfigError
from exporter.web.limits import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT
from exporter.web.server import READ_TIMEOUT_S, WebServer, parse_listen_address
from exporter.web.watcher import WebConfigWatcher

__all__ = ["MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_CLIENT", "READ_TIMEOUT_S", "WebConfig", "WebConfigError",
           "WebConfigWatcher", "WebServer", "load", "parse_listen_address"]
