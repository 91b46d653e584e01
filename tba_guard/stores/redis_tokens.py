"""The flow's tokens in Redis: request tokens between its steps, and the access tokens it
issues, shared by every worker and host.

A request token lives for minutes and changes state twice: the user decides on the consent page
(`decide`, once), then step three exchanges it (`consume`, once). Both changes are atomic so
that two tabs, two retries or two workers cannot both win. Expired and used request tokens are
kept a while longer as tombstones, so step three can say *why* a token is rejected
(`token_expired`, `token_used`) instead of "unknown".
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.protocols import (
    DEFAULT_QUOTA,
    TOMBSTONE_SECONDS,
    RequestTokenQuotaExceeded,
    TokenStoreError,
)
from ..core.records import Decision, RequestToken, Token
from .redis import DEFAULT_POOL_SIZE, Argument, RedisConnection, RedisUnavailable

if TYPE_CHECKING:
    from ..core.settings import FlowSettings

DEFAULT_PREFIX = "tba_guard:flow:"


# --- in process ------------------------------------------------------------------------------


# --- Redis -----------------------------------------------------------------------------------

# Each script touches one key, so it runs atomically and routes unchanged in Redis Cluster.
_PUT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""
_DECIDE = """
if redis.call('HGET', KEYS[1], 'decision') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'decision', ARGV[1], 'verifier', ARGV[2], 'entity', ARGV[3],
           'role', ARGV[4])
return 1
"""
_CONSUME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
return {redis.call('HINCRBY', KEYS[1], 'uses', 1), redis.call('HGET', KEYS[1], 'consumer_key')}
"""
# One integration's live request tokens: a sorted set of ids scored by expiry, trimmed of the
# expired before it is counted; the set itself lasts as long as its newest member.
_CLAIM_QUOTA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
"""
_REQUEST_FIELDS = {f.name: f.type for f in dataclasses.fields(RequestToken)}
_ACCESS_FIELDS = ("token_id", "token_secret", "consumer_key", "entity", "role", "account")


class RedisTokenStore:
    """Tokens in Redis, so that every worker and host sees every token at once.

    Request tokens are hashes that expire by themselves (lifetime plus the tombstone time);
    access tokens are hashes without expiry. Each integration's live request tokens are counted
    in a sorted set of their own, so a flood ends at that integration's quota. Secrets are
    stored as issued: the server needs them to check HMAC signatures, so protect the Redis
    server as you protect the settings file.
    Connections belong to the event loop that opened them: one client per running loop.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 1.0,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_per_integration: int = DEFAULT_QUOTA,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = RedisConnection(url, pool_size=pool_size, timeout=timeout, what="token_store")
        self.prefix = prefix
        self.max_per_integration = max_per_integration
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: FlowSettings, *, clock: Callable[[], float] = time.time
    ) -> RedisTokenStore:
        return cls(
            settings.token_store,
            prefix=settings.token_store_key_prefix,
            timeout=settings.token_store_timeout,
            pool_size=settings.token_store_pool_size,
            max_per_integration=settings.request_token_max_per_integration,
            clock=clock,
        )

    @property
    def location(self) -> str:
        """The URL with any password hidden."""
        return self.redis.location

    def __repr__(self) -> str:
        return f"RedisTokenStore({self.location!r}, prefix={self.prefix!r})"

    def _request_key(self, token_id: str) -> str:
        return f"{self.prefix}rt:{token_id}"

    def _access_key(self, token_id: str) -> str:
        return f"{self.prefix}at:{token_id}"

    def _live_key(self, consumer_key: str) -> str:
        return f"{self.prefix}live:{consumer_key}"

    async def put_request_token(self, token: RequestToken) -> None:
        now = self._clock()
        live_ms = max(int((token.expires_at - now) * 1000) + 1, 1)
        live_key = self._live_key(token.consumer_key)
        claimed = await self._call(
            "EVAL",
            _CLAIM_QUOTA,
            1,
            live_key,
            repr(now),
            self.max_per_integration,
            repr(token.expires_at),
            token.token_id,
            live_ms,
        )
        if not int(claimed):
            raise RequestTokenQuotaExceeded(token.consumer_key, self.max_per_integration)
        keep_ms = int((token.expires_at + TOMBSTONE_SECONDS - now) * 1000)
        mapping = {name: str(getattr(token, name)) for name in _REQUEST_FIELDS}
        key = self._request_key(token.token_id)
        try:
            await self._call("EVAL", _PUT, 1, key, max(keep_ms, 1), *_flatten(mapping))
        except TokenStoreError:
            with contextlib.suppress(TokenStoreError):  # give the quota back if we can
                await self._call("ZREM", live_key, token.token_id)
            raise

    async def live_request_tokens(self, consumer_key: str) -> int:
        """How many live request tokens count against this integration's quota."""
        key = self._live_key(consumer_key)
        return int(await self._call("ZCOUNT", key, f"({self._clock()!r}", "+inf"))

    async def request_token(self, token_id: str) -> RequestToken | None:
        raw = await self._call("HGETALL", self._request_key(token_id))
        if not raw:
            return None
        values = _decode(raw)
        return RequestToken(
            token_id=values["token_id"],
            token_secret=values["token_secret"],
            consumer_key=values["consumer_key"],
            callback=values["callback"],
            expires_at=float(values["expires_at"]),
            realm=values.get("realm", ""),
            requested_role=values.get("requested_role", ""),
            decision=_decision(values.get("decision", "pending")),
            verifier=values.get("verifier", ""),
            entity=values.get("entity", ""),
            role=values.get("role", ""),
            uses=int(values.get("uses", "0")),
        )

    async def decide(
        self, token_id: str, decision: Decision, *, verifier: str, entity: str, role: str
    ) -> bool:
        key = self._request_key(token_id)
        done = await self._call("EVAL", _DECIDE, 1, key, decision, verifier, entity, role)
        return bool(done)

    async def consume(self, token_id: str) -> bool:
        uses, consumer_key = await self._call("EVAL", _CONSUME, 1, self._request_key(token_id))
        if int(uses) != 1:
            return False
        if isinstance(consumer_key, bytes):
            consumer_key = consumer_key.decode()
        # Used: no longer live. Should this fail, the id leaves the set when it expires anyway.
        with contextlib.suppress(TokenStoreError):
            await self._call("ZREM", self._live_key(consumer_key), token_id)
        return True

    async def put_access_token(self, token: Token) -> None:
        mapping = {name: getattr(token, name) or "" for name in _ACCESS_FIELDS}
        mapping["active"] = "1" if token.active else "0"
        await self._call("HSET", self._access_key(token.token_id), *_flatten(mapping))

    async def access_token(self, token_id: str) -> Token | None:
        raw = await self._call("HGETALL", self._access_key(token_id))
        if not raw:
            return None
        values = _decode(raw)
        return Token(
            values["token_id"],
            values["token_secret"],
            values["consumer_key"],
            entity=values.get("entity", ""),
            role=values.get("role", ""),
            active=values.get("active", "1") == "1",
            account=values.get("account") or None,
        )

    async def aclose(self) -> None:
        """Close the connections this store opened."""
        await self.redis.aclose()

    async def _call(self, name: str, *arguments: Argument) -> Any:
        try:
            return await self.redis.call(name, *arguments)
        except RedisUnavailable as exc:
            raise TokenStoreError(str(exc)) from None


def _flatten(mapping: dict[str, str]) -> list[str]:
    return [item for pair in mapping.items() for item in pair]


def _decode(raw: Any) -> dict[str, str]:
    """HGETALL's reply as text: a flat list of fields and values under RESP2 (the default), a
    map (a dict) under RESP3 (`?protocol=3`); bytes, or text with `decode_responses`."""
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in items
    }


def _decision(value: str) -> Decision:
    if value == "allowed":
        return "allowed"
    if value == "denied":
        return "denied"
    return "pending"


# --- the guard's view ------------------------------------------------------------------------
