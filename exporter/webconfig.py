"""The web config's former home, kept for its importers (exporter/cli.py, tests/test_fuzz.py):
everything is in the exporter.web package now (config.py, tls.py, watcher.py, auth.py)."""

from exporter.web.auth import BasicAuth
from exporter.web.config import WebConfig, load
from exporter.web.errors import WebConfigError
from exporter.web.watcher import WebConfigWatcher

__all__ = ["BasicAuth", "WebConfig", "WebConfigError", "WebConfigWatcher", "load"]
