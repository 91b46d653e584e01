"""Who still uses which scheme: accepted requests counted per integration, token and scheme,
kept in memory and written to the credential database in batches (`tba-guard usage` reads
them), so that counting costs a dictionary update per request and one write per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

#: (consumer key, token ID or certificate ID, scheme) → (requests, last use in epoch seconds).
UsageKey = tuple[str, str, str]
UsageBatch = Mapping[UsageKey, tuple[int, float]]
Flush = Callable[[UsageBatch], Awaitable[None]]

logger = logging.getLogger("tba_guard.usage")


class UsageCounts:
    """Counts since the last write; a write starts, off the request's path, once `interval`
    seconds passed since the previous one (0: after every request). A failed write keeps its
    counts for the next one."""

    def __init__(self, flush: Flush, *, interval: float, clock: Callable[[], float]) -> None:
        self._flush = flush
        self.interval = interval
        self.clock = clock
        self.pending: dict[UsageKey, list[float]] = {}
        self.last_write = clock()
        self._writing: asyncio.Task[None] | None = None

    def count(self, consumer_key: str, token_id: str, scheme: str, now: float) -> None:
        key = (consumer_key, token_id, scheme)
        entry = self.pending.get(key)
        if entry is None:
            self.pending[key] = [1, now]
        else:
            entry[0] += 1
            entry[1] = now
        if now - self.last_write >= self.interval and self._writing is None:
            self.last_write = now
            self._writing = asyncio.get_running_loop().create_task(self.write())

    async def write(self) -> None:
        """Write what was counted; concurrent callers wait for the write in progress."""
        try:
            batch, self.pending = self.pending, {}
            if not batch:
                return
            try:
                await self._flush({key: (int(n), last) for key, (n, last) in batch.items()})
            except Exception:
                logger.exception("usage counts not written; kept for the next write")
                for key, (n, last) in batch.items():
                    entry = self.pending.setdefault(key, [0, last])
                    entry[0] += n
                    entry[1] = max(entry[1], last)
        finally:
            self._writing = None

    async def drain(self) -> None:
        """Write everything counted so far (at shutdown), after any write in progress."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
        await self.write()


def usage_counts_for(
    credentials: object, *, interval: float, clock: Callable[[], float]
) -> UsageCounts | None:
    """Counts for a credential store that keeps them (the database's `flush_usage`)."""
    flush = getattr(credentials, "flush_usage", None)
    if flush is None:
        return None
    return UsageCounts(flush, interval=interval, clock=clock)
