"""The in-process stores: replay keys, the settings file's credentials (with a TTL cache in
front of any slower store), and the flow's tokens. One worker process each; behind several
workers use the Redis stores, which share what they hold.

The guard reads the replay store early (`seen`, step 7) and writes it last (`claim`, step 12),
once the signature has verified, so nobody without the secrets can burn a client's nonces or
fill the store. `claim` must be atomic: two concurrent requests with one key get one True.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Final, cast

from cachetools import TTLCache
from mypy_extensions import mypyc_attr

from ..core.protocols import (
    TOMBSTONE_SECONDS,
    ClientStore,
    CredentialStore,
    ReplayKey,
    ReplayStoreError,
    RequestTokenQuotaExceeded,
    TokenStore,
    TokenStoreError,
    UserLookup,
    serves_clients,
)
from ..core.records import Certificate, Decision, Integration, RequestToken, Token, User

_DIGEST_MASK: Final = (1 << 60) - 1


def _fingerprint(signature: str) -> int:
    """1 to 256 for a signature, 0 for none: in-process only (the string hash is per process)."""
    return (hash(signature) & 0xFF) + 1 if signature else 0


class _Generation:
    """The digests claimed within one `generation_seconds`, forgotten together."""

    __slots__ = ("digests", "expires")

    def __init__(self) -> None:
        self.expires = 0.0
        self.digests: list[int] = []


@mypyc_attr(allow_interpreted_subclasses=True)
class MemoryReplayStore:
    """The in-process store: one worker process, bounded by entry count.

    Each entry is a keyed digest held as a small int: about 70-130 bytes an entry, against
    about 400 for cachetools' TTLCache, whose entries also carry a linked-list node and the full
    key (benchmarks/bench_replay.py). Every live digest is in one dict, so a check is one lookup
    however many entries there are; its value is a fingerprint of the accepted signature, 1 to
    256 (a small int Python shares: no memory of its own), or 0 when claimed without one. The
    digests are also listed by when they were claimed (`generation_seconds`), so that expiry
    forgets a whole generation at once. When full of live keys it raises rather than forget one,
    because forgetting a live key lets its replay through.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        *,
        clock: Callable[[], float] | None = None,
        generation_seconds: int = 120,
    ) -> None:
        self.max_entries = max_entries
        self._clock = time.time if clock is None else clock  # None: a readable signature
        self._generation_seconds = generation_seconds
        self._live: dict[int, int] = {}
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
        return self.seen_now(key)

    def seen_now(self, key: ReplayKey) -> bool:
        """`seen`, answered at once: the guard calls it without a coroutine."""
        now = self._clock()
        if now - self._purged_at >= 1.0:
            self.purge(now)
        return self._digest(key) in self._live

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        return await self.claim_signed(key, ttl, "")

    async def claim_signed(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        """`claim`, keeping 8 bits of the signature's hash: one collision in 256 is taken for a
        resend, which a broken nonce generator, colliding again and again, soon shows."""
        return self.claim_signed_now(key, ttl, signature)

    def claim_signed_now(self, key: ReplayKey, ttl: int, signature: str) -> bool:
        """`claim_signed`, answered at once: the guard calls it without a coroutine."""
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
        # `_fingerprint`, inlined: this is the accepted path.
        self._live[digest] = (hash(signature) & 0xFF) + 1 if signature else 0
        return True

    async def signed_alike(self, key: ReplayKey, signature: str) -> bool | None:
        kept = self._live.get(self._digest(key), 0)
        return None if kept == 0 else kept == _fingerprint(signature)

    def purge(self, now: float | None = None) -> None:
        """Forget every generation whose keys can no longer pass the timestamp window."""
        now = self._clock() if now is None else now
        self._purged_at = now
        expired = [n for n, generation in self._generations.items() if generation.expires <= now]
        live = self._live
        for number in expired:
            for digest in self._generations.pop(number).digests:
                del live[digest]  # each live digest is in one generation: claimed once


@mypyc_attr(allow_interpreted_subclasses=True)
class StaticCredentials:
    """Integrations, tokens and OAuth 2.0 mappings held in memory, as read from settings."""

    def __init__(
        self,
        integrations: Iterable[Integration] = (),
        tokens: Iterable[Token] = (),
        certificates: Iterable[Certificate] = (),
    ):
        self._integrations = {i.consumer_key: i for i in integrations}
        self._clients = {i.client_id: i for i in self._integrations.values() if i.client_id}
        self._tokens = {t.token_id: t for t in tokens}
        self._certificates = {c.certificate_id: c for c in certificates}

    async def integration(self, consumer_key: str) -> Integration | None:
        return self._integrations.get(consumer_key)

    def integration_now(self, consumer_key: str) -> Integration | None:
        """`integration`, answered at once: the guard calls it without a coroutine."""
        return self._integrations.get(consumer_key)

    async def token(self, token_id: str) -> Token | None:
        return self._tokens.get(token_id)

    def token_now(self, token_id: str) -> Token | None:
        return self._tokens.get(token_id)

    async def client(self, client_id: str) -> Integration | None:
        return self._clients.get(client_id)

    async def certificate(self, certificate_id: str) -> Certificate | None:
        return self._certificates.get(certificate_id)

    def add_token(self, token: Token) -> None:
        self._tokens[token.token_id] = token


@mypyc_attr(allow_interpreted_subclasses=True)
class CachedCredentials:
    """A short-lived cache in front of a slow store (a database).

    Misses are cached too, so a flood of unknown keys does not reach the database; the price is
    that a revoked token or a new integration takes effect within `ttl` seconds, not at once.
    """

    def __init__(
        self,
        store: CredentialStore,
        *,
        ttl: float = 30.0,
        maxsize: int = 10_000,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._integrations: TTLCache[str, Integration | None] = TTLCache(
            maxsize, ttl, timer or time.monotonic
        )
        self._tokens: TTLCache[str, Token | None] = TTLCache(maxsize, ttl, timer or time.monotonic)
        self._clients: TTLCache[str, Integration | None] = TTLCache(
            maxsize, ttl, timer or time.monotonic
        )
        self._certificates: TTLCache[str, Certificate | None] = TTLCache(
            maxsize, ttl, timer or time.monotonic
        )

    async def integration(self, consumer_key: str) -> Integration | None:
        try:
            return self._integrations[consumer_key]
        except KeyError:
            found = await self._store.integration(consumer_key)
            self._integrations[consumer_key] = found
            return found

    async def token(self, token_id: str) -> Token | None:
        try:
            return self._tokens[token_id]
        except KeyError:
            found = await self._store.token(token_id)
            self._tokens[token_id] = found
            return found

    async def client(self, client_id: str) -> Integration | None:
        try:
            return self._clients[client_id]
        except KeyError:
            found = await clients_of(self._store).client(client_id)
            self._clients[client_id] = found
            return found

    async def certificate(self, certificate_id: str) -> Certificate | None:
        try:
            return self._certificates[certificate_id]
        except KeyError:
            found = await clients_of(self._store).certificate(certificate_id)
            self._certificates[certificate_id] = found
            return found


@mypyc_attr(allow_interpreted_subclasses=True)
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
        max_per_integration: int = 1000,  # DEFAULT_QUOTA, spelled out for the signature
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max_request_tokens = max_request_tokens
        self.max_per_integration = max_per_integration
        self._clock = time.time if clock is None else clock  # None: a readable signature
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


@mypyc_attr(allow_interpreted_subclasses=True)
class FlowCredentials:
    """The guard's credential store: the configured one first, then the access tokens the flow
    issued. With `users`, a token whose user (or role) is no longer usable is reported inactive,
    so the middleware answers `EntityOrRoleDisabled` for it (NetSuite rule N18).
    """

    def __init__(
        self, base: CredentialStore, tokens: TokenStore, users: UserLookup | None = None
    ) -> None:
        self.base = base
        self.tokens = tokens
        self.users = users

    async def integration(self, consumer_key: str) -> Integration | None:
        return await self.base.integration(consumer_key)

    async def client(self, client_id: str) -> Integration | None:
        return await clients_of(self.base).client(client_id)

    async def certificate(self, certificate_id: str) -> Certificate | None:
        return await clients_of(self.base).certificate(certificate_id)

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


class NoClients:
    """The OAuth 2.0 half of a store of one's own that serves TBA alone: it knows no client."""

    async def client(self, client_id: str) -> Integration | None:
        return None

    async def certificate(self, certificate_id: str) -> Certificate | None:
        return None


def clients_of(store: CredentialStore) -> ClientStore:
    """`store` itself when it serves OAuth 2.0's lookups, else one that knows no client."""
    return cast(ClientStore, store) if serves_clients(store) else NoClients()


def settings_user_lookup(users: Iterable[User]) -> UserLookup:
    """A `UserLookup` over users declared in settings (`[[users]]`)."""
    by_entity = {user.entity: user for user in users}

    async def lookup(entity: str) -> User | None:
        return by_entity.get(entity)

    return lookup
