"""The flow's token stores with a credential database: request tokens where they were (in
process or in Redis: they live minutes), access tokens in the database, so that a token the
flow issued outlives every process and a Redis restart.

Subclasses rather than wrappers, so that whoever asks what kind of request-token store this is
(the flow refuses per-process stores behind several workers) gets the true answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...core.protocols import TokenStoreError
from ...core.records import Token
from ...core.settings import FlowSettings
from ..memory import MemoryTokenStore
from ..redis_tokens import RedisTokenStore
from .store import DatabaseCredentials, DatabaseUnavailable


async def _put(database: DatabaseCredentials, token: Token) -> None:
    try:
        await database.put_flow_token(token)
    except DatabaseUnavailable as exc:  # the flow answers a token-store failure with 503
        raise TokenStoreError(str(exc)) from exc


async def _get(database: DatabaseCredentials, token_id: str) -> Token | None:
    try:
        return await database.flow_token(token_id)
    except DatabaseUnavailable as exc:
        raise TokenStoreError(str(exc)) from exc


# Each class overrides the two methods itself, with no mixin: the compiled build's stores are
# mypyc classes, which take interpreted subclasses but are safest with a single base.
class MemoryRequestTokens(MemoryTokenStore):
    """Request tokens in this process; access tokens in the database."""

    def __init__(
        self,
        database: DatabaseCredentials,
        *,
        max_per_integration: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_per_integration=max_per_integration, clock=clock)
        self.database = database

    async def put_access_token(self, token: Token) -> None:
        await _put(self.database, token)

    async def access_token(self, token_id: str) -> Token | None:
        return await _get(self.database, token_id)


class RedisRequestTokens(RedisTokenStore):
    """Request tokens in Redis; access tokens in the database."""

    database: DatabaseCredentials

    async def put_access_token(self, token: Token) -> None:
        await _put(self.database, token)

    async def access_token(self, token_id: str) -> Token | None:
        return await _get(self.database, token_id)

    @classmethod
    def with_database(
        cls,
        database: DatabaseCredentials,
        settings: FlowSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> RedisRequestTokens:
        store = cls(
            settings.token_store,
            prefix=settings.token_store_key_prefix,
            timeout=settings.token_store_timeout,
            pool_size=settings.token_store_pool_size,
            max_per_integration=settings.request_token_max_per_integration,
            clock=clock,
        )
        store.database = database
        return store
