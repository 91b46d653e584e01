"""Where replay keys, credentials and the flow's tokens live: in process, in Redis, in a
database (SQLite or PostgreSQL)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.protocols import CredentialStore, ReplayStore, TokenStore
from ..core.settings import GuardSettings
from .memory import CachedCredentials, MemoryReplayStore, MemoryTokenStore, StaticCredentials

if TYPE_CHECKING:
    from .database.store import DatabaseCredentials

# One database store per database and settings per process, so that the guard's credential
# store and the flow's token store share one cache, one pool and one listener.
_databases: weakref.WeakValueDictionary[tuple[object, ...], DatabaseCredentials] = (
    weakref.WeakValueDictionary()
)


def replay_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> ReplayStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.replay_store == "memory":
        return MemoryReplayStore(settings.replay_store_max_entries, clock=clock)
    from .redis_replay import RedisReplayStore

    return RedisReplayStore.from_settings(settings)


def credential_store_for(settings: GuardSettings) -> CredentialStore:
    """The settings' own lists, or the database `credential_store` names (needs
    `tba-guard[database]`)."""
    if settings.credential_store != "settings":
        return database_store_for(settings)
    store: CredentialStore = StaticCredentials(settings.integrations, settings.tokens)
    if settings.effective_credential_cache_ttl > 0:
        store = CachedCredentials(store, ttl=settings.effective_credential_cache_ttl)
    return store


def database_store_for(settings: GuardSettings) -> DatabaseCredentials:
    """The process's store for the database the settings name, built on first use."""
    from .database.store import DatabaseCredentials

    key = (
        settings.credential_store,
        settings.credential_key,
        settings.effective_credential_cache_ttl,
        settings.credential_store_timeout,
        settings.credential_store_pool_size,
        settings.credential_cache_size,
    )
    store = _databases.get(key)
    if store is None:
        store = DatabaseCredentials(
            settings.credential_store,
            settings.credential_key,
            ttl=settings.effective_credential_cache_ttl,
            timeout=settings.credential_store_timeout,
            pool_size=settings.credential_store_pool_size,
            cache_size=settings.credential_cache_size,
        )
        _databases[key] = store
    return store


def token_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> TokenStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`).

    With a database credential store, the access tokens the flow issues go to the database
    instead, so they outlive every process and Redis; request tokens stay where they were.
    """
    database = database_store_for(settings) if settings.credential_store != "settings" else None
    if settings.token_store == "memory":
        if database is not None:
            from .database.tokens import MemoryRequestTokens

            return MemoryRequestTokens(
                database,
                max_per_integration=settings.request_token_max_per_integration,
                clock=clock,
            )
        return MemoryTokenStore(
            max_per_integration=settings.request_token_max_per_integration, clock=clock
        )
    from .redis_tokens import RedisTokenStore

    if database is not None:
        from .database.tokens import RedisRequestTokens

        return RedisRequestTokens.with_database(database, settings, clock=clock)
    return RedisTokenStore.from_settings(settings, clock=clock)
