"""Where replay keys, credentials and the flow's tokens live: in process, in Redis, in a
database (SQLite or PostgreSQL).

Redis and the database need optional packages (extras): a store whose package is missing
raises `MissingExtra`, whose one line names the `pip install` to run.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from ..core.protocols import CredentialStore, ReplayStore, TokenStore
from ..core.settings import CredentialSettings, GuardSettings, ReplaySettings
from .memory import CachedCredentials, MemoryReplayStore, MemoryTokenStore, StaticCredentials

if TYPE_CHECKING:
    from .database.store import DatabaseCredentials

#: Each extra, and the packages it installs that tba_guard imports (as the import system names
#: them). A package missing from this list is a broken installation, not a missing extra.
EXTRAS: Final = {
    "cli": ("uvicorn",),
    "database": ("sqlalchemy", "alembic", "psycopg", "cryptography"),
    "redis": ("redis",),
    "oauth2": ("jwt",),
}
REDIS_REPLAY_STORE = 'replay_store = "redis://…"'
REDIS_TOKEN_STORE = 'token_store = "redis://…"'
DATABASE_STORE = "the credential database"


class MissingExtra(ImportError):
    """An optional package is not installed: one line naming the extra that installs it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the {extra} extra: pip install 'tba-guard[{extra}]'")
        self.extra = extra


def extra_missing(exc: BaseException) -> str | None:
    """The extra whose package `exc` (or an error it was raised from) could not import."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ImportError) and seen.name:
            package = seen.name.partition(".")[0]
            for extra, packages in EXTRAS.items():
                if package in packages:
                    return extra
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def needs_extra(what: str) -> Iterator[None]:
    """Turns the ImportError of an extra's missing package into a `MissingExtra` saying that
    `what` needs it, without the chained traceback; any other ImportError passes as it is."""
    try:
        yield
    except ImportError as exc:
        extra = extra_missing(exc)
        if extra is None or isinstance(exc, MissingExtra):
            raise
        raise MissingExtra(what, extra) from None


# One database store per database and settings per process, so that the guard's credential
# store and the flow's token store share one cache, one pool and one listener.
_databases: weakref.WeakValueDictionary[tuple[object, ...], DatabaseCredentials] = (
    weakref.WeakValueDictionary()
)


def replay_store_for(
    settings: ReplaySettings, *, clock: Callable[[], float] = time.time
) -> ReplayStore:
    """The store the settings name: `memory`, or a Redis URL (needs `tba-guard[redis]`)."""
    if settings.replay_store == "memory":
        return MemoryReplayStore(settings.replay_store_max_entries, clock=clock)
    with needs_extra(REDIS_REPLAY_STORE):
        from .redis_replay import RedisReplayStore

    return RedisReplayStore.from_settings(settings)


def credential_store_for(settings: CredentialSettings) -> CredentialStore:
    """The settings' own lists, or the database `credential_store` names (needs
    `tba-guard[database]`)."""
    if settings.credential_store != "settings":
        return database_store_for(settings)
    store: CredentialStore = StaticCredentials(
        settings.integrations, settings.tokens, settings.certificates
    )
    if settings.effective_credential_cache_ttl > 0:
        store = CachedCredentials(store, ttl=settings.effective_credential_cache_ttl)
    return store


def database_store_for(settings: CredentialSettings) -> DatabaseCredentials:
    """The process's store for the database the settings name, built on first use."""
    with needs_extra(DATABASE_STORE):
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
        with needs_extra(DATABASE_STORE):  # PostgreSQL's driver is imported by the engine
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
    with needs_extra(REDIS_TOKEN_STORE):
        from .redis_tokens import RedisTokenStore

    if database is not None:
        from .database.tokens import RedisRequestTokens

        return RedisRequestTokens.with_database(database, settings, clock=clock)
    return RedisTokenStore.from_settings(settings, clock=clock)


def require_extras(settings: GuardSettings) -> None:
    """Raises `MissingExtra` now for a store the settings name whose package is missing, so
    that `serve --workers N` says so once instead of each worker failing with a traceback."""
    if settings.replay_store != "memory":
        with needs_extra(REDIS_REPLAY_STORE):
            from . import redis_replay  # noqa: F401
    if settings.token_store != "memory":
        with needs_extra(REDIS_TOKEN_STORE):
            from . import redis_tokens  # noqa: F401
    if settings.credential_store != "settings":
        with needs_extra(DATABASE_STORE):
            from .database import store  # noqa: F401
