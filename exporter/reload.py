"""Configuration reloads: when the file changed, load it, and apply it or keep the running one.

The file is looked at every `reload_interval` (only its content counts: a digest), on SIGHUP and
through reload(). A file that fails to load (invalid, deleted, unreadable, or changing a key that
needs a restart) leaves the running configuration in place; `successful` says so until a good
file is loaded, and one log line names the key. A file seen changing (an editor writing it in
place) is looked at again on the next poll rather than read half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time

from exporter.config import Config, ConfigError, load_bytes, read_file

log = logging.getLogger("exporter")

SETTLE_SECONDS = 0.1  # a changed file must read the same this much later before it is loaded
# Keys a reload cannot change in a running exporter: totals are kept per currency and cost
# component, windows are sized at start, and the GPU and Kubernetes sources are built at start.
RESTART_KEYS = ("pricing.mode", "pricing.currency", "gpu.backend", "gpu.simulated", "window", "kubernetes")


class ConfigReloader:
    def __init__(self, path: str | None, apply, clock, environ=None):
        """apply(new_config) applies a valid configuration (raising ConfigError to refuse it)."""
        self.path = path
        self._apply = apply
        self._clock = clock
        self._environ = environ  # None: os.environ
        self._lock = threading.Lock()
        self._running_digest = self._last_seen = self._file_state()
        self.successful = True
        self.success_time = clock.now()

    def reload(self) -> tuple[bool, str]:
        """Re-read the file and apply it now (SIGHUP). Returns (success, message)."""
        return self._check(force=True)

    def poll(self) -> tuple[bool, str]:
        """The polling job: load the file again only if its content (or readability) changed."""
        return self._check(force=False)

    def _file_state(self) -> str | None:
        """'sha256:<digest>' of the file's content, 'error:<why>' if unreadable, None without a file."""
        if not self.path:
            return None
        try:
            return _digest(read_file(self.path))
        except ConfigError as err:
            return f"error:{err}"

    def _check(self, force: bool) -> tuple[bool, str]:
        if not self.path:
            return True, "no configuration file to reload"
        with self._lock:
            data: bytes | ConfigError
            try:
                data = read_file(self.path)  # ConfigMap updates swap a symlink: read the target anew
                state = _digest(data)
            except ConfigError as err:
                data, state = err, f"error:{err}"
            if state == self._last_seen and not force:
                return self.successful, "unchanged"
            if not force and isinstance(data, bytes) and not self._settled(self.path, data):
                return self.successful, "changing"  # an editor still writing it: look at the next poll
            self._last_seen = state
            if isinstance(data, ConfigError):
                return self._failed(data)
            if state == self._running_digest:
                return self._succeeded("configuration file unchanged", applied=False)
            try:
                self._apply(load_bytes(data, self.path, self._environ))
            except ConfigError as err:
                return self._failed(err)
            except Exception as err:  # noqa: BLE001 (a defect must not leave the gauge saying success)
                return self._failed(ConfigError("config.file", f"could not be applied: {type(err).__name__}: {err}"))
            self._running_digest = state
            return self._succeeded("configuration reloaded", applied=True)

    @staticmethod
    def _settled(path: str, data: bytes) -> bool:
        """Is the file still the same a moment later? A file rewritten in place can be read half
        written (a ConfigMap update, a rename, cannot)."""
        time.sleep(SETTLE_SECONDS)
        try:
            return read_file(path) == data
        except ConfigError:
            return False

    def _failed(self, err: ConfigError) -> tuple[bool, str]:
        self.successful = False
        log.error("config reload failed, keeping the running configuration path=%s key=%s error=%s",
                  self.path, err.key, err)
        return False, str(err)

    def _succeeded(self, message: str, applied: bool) -> tuple[bool, str]:
        recovered = not self.successful
        self.successful, self.success_time = True, self._clock.now()
        if applied or recovered:
            log.info("%s path=%s", message, self.path)
        return True, message


def check_restart_keys(old: Config, new: Config) -> None:
    """Raise ConfigError naming the first key that changed and needs a restart."""
    for key in RESTART_KEYS:
        changed = _first_difference(_get(old, key), _get(new, key), key)
        if changed:
            raise ConfigError(changed[0], f"changed from {changed[1]!r} to {changed[2]!r}, allowed: the running "
                              "value; this key needs a restart")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _get(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _first_difference(old, new, key: str):
    """(key, old, new) of the first leaf that differs between two configuration values, or None."""
    if old == new:
        return None
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new):
        for f in dataclasses.fields(old):
            found = _first_difference(getattr(old, f.name), getattr(new, f.name), f"{key}.{f.name}")
            if found:
                return found
    return key, old, new
