"""The credential database's fixtures the store tests share: each module gives its `url` (a
migrated SQLite or PostgreSQL database), and these build the admin, the store and its clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tba_guard.stores.database.admin import CredentialAdmin
from tba_guard.stores.database.store import DatabaseCredentials
from tests.support.databases import Timer, fresh_key, prepared


@pytest.fixture
def key() -> str:
    return fresh_key()


@pytest.fixture
def admin(url: str, key: str) -> Iterator[CredentialAdmin]:
    admin = prepared(url, key)
    yield admin
    admin.engine.dispose()


@pytest.fixture
def timer() -> Timer:
    return Timer()


@pytest.fixture
def store(
    url: str, key: str, timer: Timer, admin: CredentialAdmin
) -> Iterator[DatabaseCredentials]:
    found = DatabaseCredentials(url, [key], ttl=5.0, timer=timer, listen=False)
    yield found
    found.close()
