"""Concurrency governance's slots in Redis, shared by every worker and host.

Each pool is one sorted set: a member per lease, scored with the millisecond it lapses on
Redis' own clock (`TIME`), so hosts whose clocks disagree still agree on the leases. Taking a
slot is one script (drop the lapsed leases, count, add): one round trip, atomic, so two
requests racing for the last slot never both get it. Giving it back is one `ZREM`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .governance import SlotStoreError
from .redis import DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, RedisConnection, RedisUnavailable

if TYPE_CHECKING:
    from ..core.settings import GovernanceSettings

DEFAULT_PREFIX = "tba_guard:governance:"

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
#: KEYS[1] the pool; ARGV: limit, lease id, lease in ms. 1 when the slot is taken.
_ACQUIRE = (
    _NOW
    + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    + "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end "
    + "redis.call('ZADD', KEYS[1], now + ARGV[3], ARGV[2]) "
    + "redis.call('PEXPIRE', KEYS[1], ARGV[3]) return 1"
)
#: KEYS[1] the pool; ARGV: lease in ms, then the lease ids. Lapsed leases stay lapsed.
_RENEW = (
    _NOW
    + "for i = 2, #ARGV do local lapses = redis.call('ZSCORE', KEYS[1], ARGV[i]) "
    + "if lapses and tonumber(lapses) > now then "
    + "redis.call('ZADD', KEYS[1], 'XX', now + ARGV[1], ARGV[i]) end end "
    + "redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 0"
)
_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"


class RedisSlotStore:
    """A `SlotStore` in Redis (or Valkey): `redis://`, `rediss://` (TLS) or `unix://` URLs."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.redis = RedisConnection(
            url, pool_size=pool_size, timeout=timeout, what="governance_store"
        )
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: GovernanceSettings) -> RedisSlotStore:
        return cls(settings.governance_store, prefix=settings.governance_key_prefix)

    def __repr__(self) -> str:
        return f"RedisSlotStore({self.redis.location!r}, prefix={self.prefix!r})"

    async def acquire(self, pool: str, limit: int, lease_id: str, lease: float) -> bool:
        key, ms = self.prefix + pool, int(lease * 1000)
        return bool(await self._call("EVAL", _ACQUIRE, 1, key, limit, lease_id, ms))

    async def release(self, pool: str, lease_id: str) -> None:
        await self._call("ZREM", self.prefix + pool, lease_id)

    async def renew(self, leases: Iterable[tuple[str, str]], lease: float) -> None:
        by_pool: dict[str, list[str]] = {}
        for pool, lease_id in leases:
            by_pool.setdefault(pool, []).append(lease_id)
        ms = int(lease * 1000)
        for pool, ids in by_pool.items():
            await self._call("EVAL", _RENEW, 1, self.prefix + pool, ms, *ids)

    async def in_flight(self, pool: str) -> int:
        return await self._call("EVAL", _COUNT, 1, self.prefix + pool)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def _call(self, name: str, *arguments: str | int) -> int:
        try:  # every command here replies with an integer
            return int(await self.redis.call(name, *arguments))
        except RedisUnavailable as exc:
            raise SlotStoreError(str(exc)) from None
