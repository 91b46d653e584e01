"""Where concurrency governance counts the requests in flight: in process here, in Redis across
workers and hosts (`redis_governance.py`).

A slot is a lease: taken when a verified request enters the application, given back when its
response ends, and lost by itself when nobody renews it within the lease, so that a worker that
dies holding slots frees them without anyone's help.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from mypy_extensions import mypyc_attr


class SlotStoreError(Exception):
    """The slots could not be counted (Redis down): the request gets the 503."""


class SlotStore(Protocol):
    """Counts leases per pool. `acquire` is atomic: of two requests racing for the last slot,
    exactly one gets it."""

    async def acquire(self, pool: str, limit: int, lease_id: str, lease: float) -> bool: ...

    async def release(self, pool: str, lease_id: str) -> None: ...

    async def renew(self, leases: Iterable[tuple[str, str]], lease: float) -> None: ...

    async def in_flight(self, pool: str) -> int: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class MemorySlotStore:
    """One process's slots: for a single worker, and for tests with an injected clock."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pools: dict[str, dict[str, float]] = {}  # pool -> lease id -> when it lapses

    def _live(self, pool: str) -> dict[str, float]:
        leases = self.pools.setdefault(pool, {})
        now = self.clock()
        for lease_id in [lease_id for lease_id, until in leases.items() if until <= now]:
            del leases[lease_id]
        return leases

    async def acquire(self, pool: str, limit: int, lease_id: str, lease: float) -> bool:
        leases = self.pools.setdefault(pool, {})
        if len(leases) >= limit and len(self._live(pool)) >= limit:  # lapsed ones go when full
            return False
        leases[lease_id] = self.clock() + lease
        return True

    async def release(self, pool: str, lease_id: str) -> None:
        self.pools.get(pool, {}).pop(lease_id, None)

    async def renew(self, leases: Iterable[tuple[str, str]], lease: float) -> None:
        now = self.clock()
        for pool, lease_id in leases:
            held = self.pools.get(pool, {})
            if held.get(lease_id, now) > now:  # a lapsed lease is not brought back
                held[lease_id] = now + lease

    async def in_flight(self, pool: str) -> int:
        return len(self._live(pool))
