"""Reloading the web config: the file and the files it names are checked for changes when a
connection starts, at most once per CHECK_EVERY_S, so rotated certificates and changed users apply
to new connections without a restart; a broken edit keeps the last good configuration and logs its
error once (again only when the error changes).

This runs on the connection path, so get() never raises and never waits: whatever a broken edit
raises is its one error line, and while one connection reloads, the others use the current config.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from exporter.web.config import WebConfig, load
from exporter.web.errors import WebConfigError

log = logging.getLogger("exporter.web")


class WebConfigWatcher:
    """The current WebConfig, reloaded when the file or a file it names changes (checked at most
    once per CHECK_EVERY_S of `clock`, a monotonic clock in seconds). Turning TLS on or off needs
    a restart: such an edit is refused."""

    CHECK_EVERY_S = 1.0

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic):
        self.current = load(path)  # at startup, errors are fatal (exit 2)
        self._clock = clock
        self._stamp = _stamp(self.current.files)
        self._checked = clock()
        self._lock = threading.Lock()
        self._last_error: str | None = None

    def get(self) -> WebConfig:
        now = self._clock()
        if now - self._checked < self.CHECK_EVERY_S or not self._lock.acquire(blocking=False):
            return self.current  # checked lately, or being reloaded by another connection
        try:
            if now - self._checked >= self.CHECK_EVERY_S:
                self._checked = now
                self._reload_if_changed()
        finally:
            self._lock.release()
        return self.current

    def _reload_if_changed(self) -> None:
        stamp = _stamp(self.current.files)
        if stamp == self._stamp:
            return
        try:
            fresh = load(self.current.path)
            if (fresh.tls is None) != (self.current.tls is None):
                raise WebConfigError("tls_server_config", "TLS cannot be turned on or off while running; restart")
        except Exception as err:  # load() raises only WebConfigError; should anything else come, it must not escape
            if str(err) != self._last_error:
                log.error("web config not reloaded, keeping the last good one: %s", err)
                self._last_error = str(err)
            self._stamp = stamp  # one attempt per change, not one per check
            return
        self.current, self._stamp, self._last_error = fresh, _stamp(fresh.files), None
        log.info("web config reloaded path=%s tls=%s basic_auth_users=%d", fresh.path, fresh.tls is not None,
                 len(fresh.users))


def _stamp(files) -> tuple:
    """What tells a changed file: modification time, size and inode (a replaced file)."""
    out: list[tuple] = []
    for path in files:
        try:
            st = os.stat(path)
            out.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except (OSError, ValueError):  # ValueError: a NUL in the name
            out.append((path, None))
    return tuple(out)
