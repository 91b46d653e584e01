"""What the authorization flow stores: request tokens between its steps, and the access tokens
it issues, behind one small async `TokenStore` protocol with an in-process and a Redis
implementation.

A request token lives for minutes and changes state twice: the user decides on the consent page
(`authorize`, once), then step three exchanges it (`consume`, once). Both changes are atomic so
that two tabs, two retries or two workers cannot both win. Expired and used request tokens are
kept a while longer as tombstones, so step three can say *why* a token is rejected
(`token_expired`, `token_used`) instead of "unknown".

`FlowCredentials` puts issued access tokens in front of the guard, so `TBAGuardMiddleware`
accepts them the moment they are issued, in every worker that shares the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .credentials import CredentialStore, Integration, Token
from .users import User

if TYPE_CHECKING:
    from .settings import GuardSettings

Decision = Literal["pending", "allowed", "denied"]
#: How long an expired or used request token is remembered, to name the reason at step three.
TOMBSTONE_SECONDS = 3600
DEFAULT_PREFIX = "tba_guard:flow:"
#: Live request tokens per integration unless the settings say otherwise.
DEFAULT_QUOTA = 1000


class TokenStoreError(Exception):
    """The token store cannot answer (down, timed out, full). The flow fails closed: 503."""


class RequestTokenQuotaExceeded(TokenStoreError):
    """One integration holds its quota of live request tokens: refused for it alone
    (`RequestTokenLimit`), while every other integration keeps getting tokens."""

    def __init__(self, consumer_key: str, quota: int) -> None:
        super().__init__(f"integration holds {quota} live request tokens, its quota")
        self.consumer_key, self.quota = consumer_key, quota


UserLookup = Callable[[str], Awaitable[User | None]]


@dataclass(frozen=True, slots=True)
class RequestToken:
    """A token between steps one and three. `verifier` is set by the user's decision: a random
    value on Allow, empty on Deny. `uses` counts exchanges; only the first may succeed."""

    token_id: str
    token_secret: str = field(repr=False)
    consumer_key: str
    callback: str
    expires_at: float
    realm: str = ""  # the account: the configured realm, else the one sent at step one
    requested_role: str = ""  # NetSuite's `role` header parameter of step one
    decision: Decision = "pending"
    verifier: str = field(default="", repr=False)
    entity: str = ""
    role: str = ""
    uses: int = 0

    def as_token(self) -> Token:
        """The view `checks.check_token_usable` judges: owner, account and expiry."""
        return Token(
            self.token_id,
            self.token_secret,
            self.consumer_key,
            entity=self.entity,
            role=self.role,
            expires_at=self.expires_at,
            account=self.realm or None,
        )


class TokenStore(Protocol):
    """The storage boundary of the flow. Every method may raise `TokenStoreError`."""

    async def put_request_token(self, token: RequestToken) -> None:
        """Store a new token; `RequestTokenQuotaExceeded` when its integration is at quota."""
        ...

    async def request_token(self, token_id: str) -> RequestToken | None:
        """The token as it is now (pending, decided or used), or None once forgotten."""
        ...

    async def decide(
        self, token_id: str, decision: Decision, *, verifier: str, entity: str, role: str
    ) -> bool:
        """Record the user's decision if none was recorded yet. False otherwise (atomic)."""
        ...

    async def consume(self, token_id: str) -> bool:
        """Count one exchange. True only for the first (atomic)."""
        ...

    async def put_access_token(self, token: Token) -> None: ...

    async def access_token(self, token_id: str) -> Token | None: ...


# --- in process ------------------------------------------------------------------------------


class MemoryTokenStore:
    """One process's tokens. Request tokens are bounded in number, per integration (a quota of
    live ones) and in all: only a caller holding a consumer secret can create one, but a leaked
    secret must neither exhaust memory nor lock the other integrations out. Access tokens are
    not bounded, as they are issued only after a user's consent.

    Each state change happens without an `await` in between, so it is atomic on the event loop.
    """

    def __init__(
        self,
        *,
        max_request_tokens: int = 100_000,
        max_per_integration: int = DEFAULT_QUOTA,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_request_tokens = max_request_tokens
        self.max_per_integration = max_per_integration
        self._clock = clock
        self._request_tokens: dict[str, RequestToken] = {}
        # Per integration, its live (unexpired, unconsumed) token ids and their expiry, in the
        # order issued: with one lifetime that is the order they expire in.
        self._live: dict[str, dict[str, float]] = {}
        self._access_tokens: dict[str, Token] = {}

    async def put_request_token(self, token: RequestToken) -> None:
        now = self._clock()
        live = self._live.get(token.consumer_key)
        if live is not None and len(live) >= self.max_per_integration:
            _drop_expired(live, now)
            if len(live) >= self.max_per_integration:
                raise RequestTokenQuotaExceeded(token.consumer_key, self.max_per_integration)
        if len(self._request_tokens) >= self.max_request_tokens:
            self.purge(tombstones=True)
            if len(self._request_tokens) >= self.max_request_tokens:
                raise TokenStoreError(
                    f"in-process token store full ({self.max_request_tokens} request tokens)"
                )
        self._request_tokens[token.token_id] = token
        self._live.setdefault(token.consumer_key, {})[token.token_id] = token.expires_at

    async def request_token(self, token_id: str) -> RequestToken | None:
        token = self._request_tokens.get(token_id)
        if token is not None and token.expires_at + TOMBSTONE_SECONDS <= self._clock():
            self._forget(token)
            return None
        return token

    async def decide(
        self, token_id: str, decision: Decision, *, verifier: str, entity: str, role: str
    ) -> bool:
        token = self._request_tokens.get(token_id)
        if token is None or token.decision != "pending":
            return False
        self._request_tokens[token_id] = dataclasses.replace(
            token, decision=decision, verifier=verifier, entity=entity, role=role
        )
        return True

    async def consume(self, token_id: str) -> bool:
        token = self._request_tokens.get(token_id)
        if token is None:
            return False
        self._request_tokens[token_id] = dataclasses.replace(token, uses=token.uses + 1)
        self._unlive(token)  # used: a tombstone, no longer counted against the quota
        return token.uses == 0

    async def put_access_token(self, token: Token) -> None:
        self._access_tokens[token.token_id] = token

    async def access_token(self, token_id: str) -> Token | None:
        return self._access_tokens.get(token_id)

    def live_request_tokens(self, consumer_key: str) -> int:
        """How many live request tokens count against this integration's quota."""
        live = self._live.get(consumer_key)
        if live is None:
            return 0
        _drop_expired(live, self._clock())
        return len(live)

    def purge(self, *, tombstones: bool = False) -> None:
        """Forget request tokens whose tombstone time is over; with `tombstones`, also the
        expired and used ones kept only to name a reason at step three (the store is full)."""
        now = self._clock()
        for token in [
            t
            for t in self._request_tokens.values()
            if t.expires_at + TOMBSTONE_SECONDS <= now
            or (tombstones and (t.expires_at <= now or t.uses))
        ]:
            self._forget(token)

    def _forget(self, token: RequestToken) -> None:
        del self._request_tokens[token.token_id]
        self._unlive(token)

    def _unlive(self, token: RequestToken) -> None:
        live = self._live.get(token.consumer_key)
        if live is not None and live.pop(token.token_id, None) is not None and not live:
            del self._live[token.consumer_key]


def _drop_expired(live: dict[str, float], now: float) -> None:
    """Drop expired ids from the front; the rest are newer, so the first live one ends it."""
    expired = []
    for token_id, expires_at in live.items():
        if expires_at > now:
            break
        expired.append(token_id)
    for token_id in expired:
        del live[token_id]


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
        max_per_integration: int = DEFAULT_QUOTA,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from .redis_store import redact_url

        self.url = url
        self.location = redact_url(url)
        self.prefix = prefix
        self.timeout = timeout
        self.max_per_integration = max_per_integration
        self._clock = clock
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    @classmethod
    def from_settings(
        cls, settings: GuardSettings, *, clock: Callable[[], float] = time.time
    ) -> RedisTokenStore:
        return cls(
            settings.token_store,
            prefix=settings.token_store_key_prefix,
            timeout=max(settings.redis_timeout, 1.0),
            max_per_integration=settings.max_request_tokens_per_integration,
            clock=clock,
        )

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
        """Close the connections this store opened in the running loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from redis.asyncio import Redis

            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]
            client = self._clients[loop] = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return client

    async def _call(self, *command: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.timeout):
                return await self._client().execute_command(*command)
        except TimeoutError:
            raise TokenStoreError(f"Redis at {self.location}: no answer in time") from None
        except (RedisError, OSError) as exc:
            raise TokenStoreError(f"Redis at {self.location}: {type(exc).__name__}") from None


def _flatten(mapping: dict[str, str]) -> list[str]:
    return [item for pair in mapping.items() for item in pair]


def _decode(raw: Any) -> dict[str, str]:
    """HGETALL's reply (a dict, or a flat list under RESP2 scripts) as text."""
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


def token_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> TokenStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.token_store == "memory":
        return MemoryTokenStore(
            max_per_integration=settings.max_request_tokens_per_integration, clock=clock
        )
    return RedisTokenStore.from_settings(settings, clock=clock)


# --- the guard's view ------------------------------------------------------------------------


class FlowCredentials:
    """The guard's credential store: the configured one first, then the access tokens the flow
    issued. With `users`, a token whose user (or role) is no longer usable is reported inactive,
    so the middleware answers `EntityOrRoleDisabled` for it.
    """

    def __init__(
        self, base: CredentialStore, tokens: TokenStore, users: UserLookup | None = None
    ) -> None:
        self.base = base
        self.tokens = tokens
        self.users = users

    async def integration(self, consumer_key: str) -> Integration | None:
        return await self.base.integration(consumer_key)

    async def token(self, token_id: str) -> Token | None:
        found = await self.base.token(token_id)
        if found is not None:
            return found
        issued = await self.tokens.access_token(token_id)
        if issued is None or self.users is None:
            return issued
        user = await self.users(issued.entity)
        usable = user is not None and user.may_use(issued.role)
        return issued if usable else dataclasses.replace(issued, active=False)


def settings_user_lookup(users: Iterable[User]) -> UserLookup:
    """A `UserLookup` over users declared in settings (`[[users]]`)."""
    by_entity = {user.entity: user for user in users}

    async def lookup(entity: str) -> User | None:
        return by_entity.get(entity)

    return lookup
