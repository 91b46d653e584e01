"""Replay protection: remembering (consumer key, token, nonce, timestamp) while it could pass.

The guard reads the store early (`seen`, step 7) and writes it last (`claim`, step 12), once the
signature has verified, so nobody without the secrets can burn a client's nonces or fill the
store. `claim` must be atomic: two concurrent requests with one key get one True.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from .settings import GuardSettings


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


class _Bucket:
    __slots__ = ("digests", "expires")

    def __init__(self) -> None:
        self.expires = 0.0
        self.digests: set[bytes] = set()


class MemoryReplayStore:
    """The in-process store: one worker process, bounded by entry count.

    Keys are grouped by their timestamp, so a lookup touches one set and expiry drops whole
    groups; each entry is a 16-byte keyed BLAKE2b digest in a set (about 100 bytes with the set
    slot, against about 250 for cachetools' TTLCache, which also keeps a linked list per entry:
    see benchmarks). When full of live keys it raises rather than forget one, because forgetting
    a live key lets its replay through.
    """

    def __init__(self, max_entries: int = 1_000_000, *, clock: Callable[[], float] = time.time):
        self.max_entries = max_entries
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._size = 0
        self._purged_at = float("-inf")
        self._salt = secrets.token_bytes(16)  # keyed: nobody can aim for a digest collision
        self._last: tuple[ReplayKey | None, bytes] = (None, b"")

    def __len__(self) -> int:
        return self._size

    def _digest(self, key: ReplayKey) -> bytes:
        last_key, last_digest = self._last
        if key is last_key:  # the guard reads (`seen`) then claims one key: hash it once
            return last_digest
        ck, token, nonce = key.consumer_key, key.token, key.nonce
        text = f"{len(ck)}:{ck}{len(token)}:{token}{nonce}".encode("utf-8", "surrogateescape")
        digest = hashlib.blake2b(text, digest_size=16, key=self._salt).digest()
        self._last = (key, digest)
        return digest

    async def seen(self, key: ReplayKey) -> bool:
        bucket = self._buckets.get(key.timestamp)
        if bucket is None or bucket.expires <= self._clock():
            return False
        return self._digest(key) in bucket.digests

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        now = self._clock()
        if now - self._purged_at >= 1.0:
            self.purge(now)
        bucket = self._buckets.get(key.timestamp)
        if bucket is None:
            bucket = self._buckets[key.timestamp] = _Bucket()
        elif bucket.expires <= now:
            self._size -= len(bucket.digests)
            bucket.digests.clear()
        digest = self._digest(key)
        if digest in bucket.digests:
            return False
        if self._size >= self.max_entries:
            self.purge(now)
            if self._size >= self.max_entries:
                raise ReplayStoreError(
                    f"in-process replay store full ({self.max_entries} live entries)"
                )
        bucket.digests.add(digest)
        bucket.expires = max(bucket.expires, now + ttl)
        self._size += 1
        return True

    def purge(self, now: float | None = None) -> None:
        """Forget every group whose keys can no longer pass the timestamp window."""
        now = self._clock() if now is None else now
        self._purged_at = now
        expired = [ts for ts, bucket in self._buckets.items() if bucket.expires <= now]
        for timestamp in expired:
            self._size -= len(self._buckets.pop(timestamp).digests)


def replay_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> ReplayStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.replay_store == "memory":
        return MemoryReplayStore(settings.replay_store_max_entries, clock=clock)
    from .redis_store import RedisReplayStore

    return RedisReplayStore.from_settings(settings)
