"""What one client, or all of them together, may hold of the server: connection slots (in all and
per client address) and the memory of request heads (a shared byte budget).

Both are taken when a connection starts and given back when it ends, whatever happens in between
(the server releases them in a `finally`): a leak here would end in every connection refused.
"""

from __future__ import annotations

import collections
import http.client
import ipaddress
import threading

MAX_CONNECTIONS = 64
MAX_CONNECTIONS_PER_CLIENT = 16  # a quarter: one address (a slowloris) leaves 48 to everyone else
HEAD_FREE_BYTES = 16 * 1024  # every connection may hold this much head without asking (a scrape's is < 1 KiB)
HEAD_BUDGET_BYTES = 1024 * 1024  # beyond it, heads share this pool (64 KiB x 100 headers is 6.4 MiB a connection)


def client_of(address: str) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (a host is commonly given
    a whole /64, so counting single IPv6 addresses would cap nothing)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectionSlots:
    """At most `total` connections at once, at most `per_client` of them from one client (client_of())."""

    def __init__(self, total: int = MAX_CONNECTIONS, per_client: int = MAX_CONNECTIONS_PER_CLIENT):
        if not 1 <= per_client <= total:
            raise ValueError(f"connections per client: got {per_client}, allowed: 1 to {total}")
        self.total, self.per_client = total, per_client
        self._lock = threading.Lock()
        self._open: collections.Counter[str] = collections.Counter()
        self._count = 0

    def acquire(self, client: str) -> str | None:
        """None when a slot is taken for `client`; else why not, for the log."""
        with self._lock:
            if self._count >= self.total:
                return f"{self.total} connections open"
            if self._open[client] >= self.per_client:
                return f"{self.per_client} connections open from this client"
            self._open[client] += 1
            self._count += 1
            return None

    def release(self, client: str) -> None:
        with self._lock:
            self._count -= 1
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    @property
    def in_use(self) -> int:
        return self._count


class HeadOverBudget(http.client.HTTPException):
    """The request head outgrew what memory is left for heads; http.server answers 431."""


class HeadBudget:
    """The bytes of request heads held in memory, over all connections: each connection may read
    HEAD_FREE_BYTES freely, beyond that it borrows from one pool of `pool` bytes, given back
    when the connection ends. So 64 connections x 100 headers x 64 KiB hold at most
    64 x HEAD_FREE_BYTES + `pool`, and a scraper's small head never waits on the pool."""

    def __init__(self, pool: int = HEAD_BUDGET_BYTES, free: int = HEAD_FREE_BYTES):
        self.free = free
        self._left = pool
        self._lock = threading.Lock()

    def borrow(self, wanted: int) -> int:
        """Up to `wanted` bytes from the pool (0 when it is spent)."""
        with self._lock:
            granted = min(wanted, self._left)
            self._left -= granted
            return granted

    def give_back(self, count: int) -> None:
        with self._lock:
            self._left += count

    @property
    def left(self) -> int:
        return self._left


class HeadAllowance:
    """One connection's share of a HeadBudget: how many more bytes of head it may read now."""

    def __init__(self, budget: HeadBudget):
        self._budget = budget
        self._read = 0
        self._borrowed = 0

    def room(self, wanted: int) -> int:
        """How many of `wanted` bytes the next read may take (> 0), borrowing from the pool what the
        free share lacks; raises HeadOverBudget when the pool is spent. Tell spent() what was read."""
        left = self._budget.free + self._borrowed - self._read
        if left < wanted:
            borrowed = self._budget.borrow(wanted - max(left, 0))
            self._borrowed += borrowed
            left += borrowed
        if left <= 0:
            raise HeadOverBudget("request head over the server's header memory budget")
        return min(wanted, left)

    def spent(self, count: int) -> None:
        self._read += count

    def close(self) -> None:
        self._budget.give_back(self._borrowed)
        self._borrowed = 0
