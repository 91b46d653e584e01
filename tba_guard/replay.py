"""Replay protection: remembering (consumer key, token, nonce, timestamp) while it could pass.

The guard reads the store early (`seen`, step 7) and writes it last (`claim`, step 12), once the
signature has verified, so nobody without the secrets can burn a client's nonces or fill the
store. `claim` must be atomic: two concurrent requests with one key get one True.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol


class ReplayKey(NamedTuple):
    consumer_key: str
    token: str  # empty on the request-token step
    nonce: str
    timestamp: int

    def identity(self) -> bytes:
        """The key as unambiguous bytes: lengths prefixed, so no two keys can collide."""
        ck, token, nonce = self.consumer_key, self.token, self.nonce
        text = f"{len(ck)}:{ck}{len(token)}:{token}{len(nonce)}:{nonce}{self.timestamp}"
        return text.encode("utf-8", "surrogateescape")


class ReplayStoreError(Exception):
    """The store cannot answer (down, timed out, full). The guard fails closed with a 503."""


class ReplayStore(Protocol):
    """The storage boundary of replay protection. Implement both coroutines to add a store."""

    async def seen(self, key: ReplayKey) -> bool:
        """Whether the key was claimed and is still remembered. Reads only."""
        ...

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        """Remember the key for at least `ttl` seconds. False when it was already claimed."""
        ...


_DIGEST_MASK: Final = (1 << 60) - 1


class _Generation:
    """The digests claimed within one `generation_seconds`, forgotten together."""

    __slots__ = ("digests", "expires")

    def __init__(self) -> None:
        self.expires = 0.0
        self.digests: list[int] = []


class MemoryReplayStore:
    """The in-process store: one worker process, bounded by entry count.

    Each entry is a keyed digest held as a small int: about 70-130 bytes an entry, against
    about 400 for cachetools' TTLCache, whose entries also carry a linked-list node and the full
    key (benchmarks/bench_replay.py). Every live digest is in one set, so a check is one lookup
    however many entries there are. The digests are also listed by when they were claimed
    (`generation_seconds`), so that expiry forgets a whole generation at once. When full of live
    keys it raises rather than forget one, because forgetting a live key lets its replay through.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        *,
        clock: Callable[[], float] = time.time,
        generation_seconds: int = 120,
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._generation_seconds = generation_seconds
        self._live: set[int] = set()
        self._generations: dict[int, _Generation] = {}
        self._purged_at = float("-inf")

    def __len__(self) -> int:
        return len(self._live)

    def _digest(self, key: ReplayKey) -> int:
        """60 bits of the key's hash: a small int (32 bytes) rather than the key itself.

        Python hashes strings with SipHash under a key drawn at random when the process starts
        (unless PYTHONHASHSEED fixes it), so nobody outside can aim for a collision; and a
        collision could only refuse a fresh request as `NonceUsed` (about one in 10^12 with a
        million live keys), never accept a replay: a digest already live is never claimed
        twice, so forgetting one generation cannot forget another's key. A keyed BLAKE2b did
        the same job at several times the cost.
        """
        return hash(key) & _DIGEST_MASK

    async def seen(self, key: ReplayKey) -> bool:
        now = self._clock()
        if now - self._purged_at >= 1.0:
            self.purge(now)
        return self._digest(key) in self._live

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        now = self._clock()
        if now - self._purged_at >= 1.0:
            self.purge(now)
        digest = self._digest(key)
        if digest in self._live:
            return False
        if len(self._live) >= self.max_entries:
            self.purge(now)
            if len(self._live) >= self.max_entries:
                raise ReplayStoreError(
                    f"in-process replay store full ({self.max_entries} live entries)"
                )
        number = int(now // self._generation_seconds)
        generation = self._generations.get(number)
        if generation is None:
            generation = self._generations[number] = _Generation()
        generation.digests.append(digest)
        generation.expires = max(generation.expires, now + ttl)
        self._live.add(digest)
        return True

    def purge(self, now: float | None = None) -> None:
        """Forget every generation whose keys can no longer pass the timestamp window."""
        now = self._clock() if now is None else now
        self._purged_at = now
        expired = [n for n, generation in self._generations.items() if generation.expires <= now]
        for number in expired:
            self._live.difference_update(self._generations.pop(number).digests)
