"""Integrations and tokens: who may call, with which secrets.

The guard needs two lookups and nothing else, so the storage boundary is a two-method
`Protocol`; back it with a database by implementing those two coroutines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from cachetools import TTLCache

IntegrationState = Literal["enabled", "blocked"]


@dataclass(frozen=True, slots=True)
class Integration:
    """An integration record: NetSuite's consumer key and secret and its switches."""

    consumer_key: str
    consumer_secret: str
    name: str = ""
    state: IntegrationState = "enabled"
    authorization_flow: bool = False
    callback_url: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Integration(name={self.name!r}, consumer_key={self.consumer_key!r})"


@dataclass(frozen=True, slots=True)
class Token:
    """An access token: bound to one integration, one entity (user) and one role.

    `account` pins the token to a realm when one store serves several accounts; `expires_at`
    (epoch seconds) and `revoked` let a store report why a token stopped working.
    """

    token_id: str
    token_secret: str
    consumer_key: str
    entity: str = ""
    role: str = ""
    active: bool = True
    revoked: bool = False
    expires_at: float | None = None
    account: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Token(token_id={self.token_id!r}, consumer_key={self.consumer_key!r})"


class CredentialStore(Protocol):
    """Where the guard looks up integrations and tokens. Return None for an unknown key."""

    async def integration(self, consumer_key: str) -> Integration | None: ...

    async def token(self, token_id: str) -> Token | None: ...


class StaticCredentials:
    """Integrations and tokens held in memory, as read from settings."""

    def __init__(self, integrations: Iterable[Integration] = (), tokens: Iterable[Token] = ()):
        self._integrations = {i.consumer_key: i for i in integrations}
        self._tokens = {t.token_id: t for t in tokens}

    async def integration(self, consumer_key: str) -> Integration | None:
        return self._integrations.get(consumer_key)

    async def token(self, token_id: str) -> Token | None:
        return self._tokens.get(token_id)

    def add_token(self, token: Token) -> None:
        self._tokens[token.token_id] = token


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
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._integrations: TTLCache[str, Integration | None] = TTLCache(maxsize, ttl, timer)
        self._tokens: TTLCache[str, Token | None] = TTLCache(maxsize, ttl, timer)

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
