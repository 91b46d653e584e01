"""Where replay keys, credentials and the flow's tokens live: in process, in Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core.protocols import CredentialStore, ReplayStore, TokenStore
from ..core.settings import GuardSettings
from .memory import CachedCredentials, MemoryReplayStore, MemoryTokenStore, StaticCredentials


def replay_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> ReplayStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.replay_store == "memory":
        return MemoryReplayStore(settings.replay_store_max_entries, clock=clock)
    from .redis_replay import RedisReplayStore

    return RedisReplayStore.from_settings(settings)


def credential_store_for(settings: GuardSettings) -> CredentialStore:
    store: CredentialStore = StaticCredentials(settings.integrations, settings.tokens)
    if settings.credentials_cache_ttl > 0:
        store = CachedCredentials(store, ttl=settings.credentials_cache_ttl)
    return store


def token_store_for(
    settings: GuardSettings, *, clock: Callable[[], float] = time.time
) -> TokenStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.token_store == "memory":
        return MemoryTokenStore(
            max_per_integration=settings.max_request_tokens_per_integration, clock=clock
        )
    from .redis_tokens import RedisTokenStore

    return RedisTokenStore.from_settings(settings, clock=clock)
