"""Shared fixtures. The helpers behind them live in `tests.support`, which tests import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tba_guard import Guard, GuardSettings, TBAGuardMiddleware
from tests.support import (
    BASE_URL,
    Clock,
    delete_prefix,
    echo_app,
    make_settings,
    shared_redis,
    unique_prefix,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> GuardSettings:
    return make_settings()


@pytest.fixture
def client(settings: GuardSettings, clock: Clock) -> Iterator[TestClient]:
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings, clock=clock))
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the shared Redis (or skip), deleted afterwards."""
    client = shared_redis()
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        delete_prefix(client, prefix)
        client.close()
