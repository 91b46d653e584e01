"""The Redis replay store: replay protection shared by every worker and host using one Redis.

The in-process store protects one process; behind `uvicorn --workers N` or several hosts a
replay that lands on another worker would pass. Here each well-formed request costs one
`EXISTS key` (step 7, a read) and each accepted one a `SET key fp NX PX ttl` (step 12, the
atomic claim). The key is the prefix plus a fixed-length digest of the replay key: one key per
command, so Redis Cluster routes it unchanged. Its value `fp` is a CRC-32 of the signature (8 hex
digits, for telling a resend from a collision after a `NonceUsed`); nothing else is stored (not
even the nonce).

It fails closed: whatever `RedisConnection` cannot do in time (refused, timed out, an error
reply) is a `ReplayStoreError`, which the guard answers with the 503 and `Retry-After`.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import TYPE_CHECKING

from ..core.protocols import ReplayKey, ReplayStoreError
from .redis import DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, RedisConnection, RedisUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

    from ..core.settings import ReplaySettings

DEFAULT_PREFIX = "tba_guard:nonce:"
_DIGEST_BYTES = 20  # 160 bits: 27 characters of base64url, no accidental collision in practice


def key_digest(key: ReplayKey) -> str:
    """A fixed-length name for a replay key: bounded whatever the client sent, and unkeyed so
    that every worker and host derives the same name."""
    digest = hashlib.blake2b(key.identity(), digest_size=_DIGEST_BYTES).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _fingerprint(signature: str) -> bytes:
    """8 hex digits of CRC-32: the same in every worker, and too short to stand for the
    signature; `1` (what a claim without a signature stores) is never one."""
    if not signature:
        return b"1"
    return b"%08x" % zlib.crc32(signature.encode("utf-8", "surrogateescape"))


class RedisReplayStore:
    """A `ReplayStore` in Redis (or Valkey): `redis://`, `rediss://` (TLS) or `unix://` URLs."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.redis = RedisConnection(url, pool_size=pool_size, timeout=timeout, what="replay_store")
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: ReplaySettings) -> RedisReplayStore:
        return cls(
            settings.replay_store,
            prefix=settings.replay_store_key_prefix,
            pool_size=settings.replay_store_pool_size,
            timeout=settings.replay_store_timeout,
        )

    @classmethod
    def from_client(
        cls,
        client: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RedisReplayStore:
        """Use a client you built (`RedisCluster`, Sentinel, custom TLS). You close it.
        Build it with retries off: see `RedisConnection.from_client`."""
        store = cls.__new__(cls)
        store.redis = RedisConnection.from_client(client, timeout=timeout)
        store.prefix = prefix
        return store

    @property
    def location(self) -> str:
        """The URL with any password hidden."""
        return self.redis.location

    @property
    def pool_size(self) -> int:
        return self.redis.pool_size

    @property
    def timeout(self) -> float:
        return self.redis.timeout

    def __repr__(self) -> str:
        return f"RedisReplayStore({self.location!r}, prefix={self.prefix!r})"

    def redis_key(self, key: ReplayKey) -> str:
        """The Redis key that remembers this replay key."""
        return self.prefix + key_digest(key)

    async def seen(self, key: ReplayKey) -> bool:
        """One `EXISTS`: a read that never writes."""
        found = await self._call("EXISTS", self.redis_key(key).encode())
        return bool(found)

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        """One `SET key 1 NX PX ttl`: atomic, so of two concurrent claims exactly one wins."""
        return await self.claim_signed(key, ttl, "")

    async def claim_signed(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        """`claim` with the signature's fingerprint as the value: still one `SET NX PX`."""
        name, ms = self.redis_key(key).encode(), str(ttl * 1000).encode()
        created = await self._call("SET", name, _fingerprint(signature), b"NX", b"PX", ms)
        return created is not None

    async def signed_alike(self, key: ReplayKey, signature: str) -> bool | None:
        """One `GET`, after a rejection only. A value of `1` was claimed without a fingerprint
        (by `claim`, or by a version before fingerprints): None, as for a forgotten key."""
        kept = await self._call("GET", self.redis_key(key).encode())
        if isinstance(kept, str):  # a client given to `from_client` may decode its replies
            kept = kept.encode()
        if not isinstance(kept, bytes) or kept == b"1":
            return None
        return kept == _fingerprint(signature)

    async def aclose(self) -> None:
        """Close the connections this store opened (not a client given to `from_client`)."""
        await self.redis.aclose()

    async def _call(self, name: str, *arguments: bytes) -> object:
        try:
            return await self.redis.call(name, *arguments)
        except RedisUnavailable as exc:
            raise ReplayStoreError(str(exc)) from None
