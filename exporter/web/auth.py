"""Basic auth: `Authorization: Basic` checked against the web config's bcrypt hashes, with a cache."""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import os
import threading

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
        credentials = parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        hashed = users.get(user)
        known = hashed is not None
        hashed = hashed or _DUMMY_HASH
        key = hmac.new(self._key, b"\0".join((user.encode(), hashed, password)), hashlib.sha256).digest()
        matches = self._cached(key)
        if matches is None:
            matches = self._checkpw(password, hashed)
            self._remember(key, matches)
        return user if matches and known else None

    def _cached(self, key: bytes) -> bool | None:
        with self._lock:
            matches = self._cache.get(key)
            if matches is not None:
                self._cache.move_to_end(key)
            return matches

    def _remember(self, key: bytes, matches: bool) -> None:
        with self._lock:
            self._cache[key] = matches
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)

    def _checkpw(self, password: bytes, hashed: bytes) -> bool:
        import bcrypt  # imported only when basic auth is configured

        with self._bcrypt:
            self.bcrypt_calls += 1
            try:
                return bcrypt.checkpw(password, hashed)
            except ValueError:  # a password over 72 bytes, or a hash bcrypt will not read
                return False


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic` header, or None."""
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
