"""Basic auth: `Authorization: Basic` checked against the web config's bcrypt hashes, with a cache,
and failed logins that all cost the same."""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass

# Every failed login lasts at least this much more than one check at the dearest configured cost
# was measured to take, so the dearest user's own check, a little slower on a busy machine, still
# ends inside it.
FAILURE_MARGIN = 1.25


@dataclass(frozen=True)
class _FailureCost:
    dummy: bytes  # a hash, at the dearest configured cost, of a random password: what unknown users are checked against
    seconds: float  # how long every failed login takes, at least


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes. bcrypt is slow on purpose (~60 ms at
    cost 10), so successes are cached, like exporter-toolkit does; the cache key is an HMAC under a
    per-process random key of (user, hash, password), so no password is kept in memory, and a
    changed hash never matches an old entry. Failures are not cached (a flood of wrong passwords
    cannot evict the scraper's entry). One bcrypt at a time, so such a flood costs one core at most.

    A failed login must not tell whether the user exists, whatever the users' costs (bcrypt's time
    doubles with each cost step): an unknown user is checked against a dummy hash at the dearest
    configured cost, and every failure is padded, by sleeping outside the bcrypt lock, to
    FAILURE_MARGIN x the time one check at that cost was measured to take here (once per cost)."""

    CACHE_SIZE = 128

    def __init__(self):
        self._key = os.urandom(32)
        self._cache: collections.OrderedDict[bytes, bool] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()
        self._failure_costs: dict[int, _FailureCost] = {}
        self._measuring = threading.Lock()
        self.bcrypt_calls = 0  # for tests: how often the slow path ran

    def check(self, users: dict[str, bytes], header: str | None) -> str | None:
        """The authenticated user name, or None."""
        started = time.monotonic()
        credentials = parse_basic(header)
        if credentials is None:
            return None  # no user named: nothing to hide
        user, password = credentials
        hashed = users.get(user)
        key = hmac.new(self._key, b"\0".join((user.encode(), hashed or b"", password)), hashlib.sha256).digest()
        if hashed is not None and self._cached(key):
            return user
        failure = self._failure_cost(users)
        if self._checkpw(password, hashed or failure.dummy) and hashed is not None:
            self._remember(key)
            return user
        time.sleep(max(0.0, started + failure.seconds - time.monotonic()))
        return None

    def _cached(self, key: bytes) -> bool:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
            return False

    def _remember(self, key: bytes) -> None:
        with self._lock:
            self._cache[key] = True
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

    def _failure_cost(self, users: dict[str, bytes]) -> _FailureCost:
        cost = max((_cost(hashed) for hashed in users.values()), default=10)
        known = self._failure_costs.get(cost)
        if known is None:
            with self._measuring:
                known = self._failure_costs.get(cost) or self._measure(cost)
                self._failure_costs[cost] = known
        return known

    def _measure(self, cost: int) -> _FailureCost:
        """Hash a random password at `cost` (what a check at that cost does) and time it."""
        import bcrypt

        with self._bcrypt:
            started = time.monotonic()
            dummy = bcrypt.hashpw(os.urandom(18).hex().encode(), bcrypt.gensalt(cost))
            took = time.monotonic() - started
        return _FailureCost(dummy, FAILURE_MARGIN * took)


def _cost(hashed: bytes) -> int:
    """The cost of a bcrypt hash ($2b$12$... -> 12; the config checked the shape)."""
    return int(hashed.split(b"$")[2])


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
