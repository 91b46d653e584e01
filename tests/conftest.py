"""Shared fixtures. The helpers behind them live in `tests.support`, which tests import."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

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


@pytest.fixture(autouse=True)
def _no_server_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine's own WEB_CONCURRENCY would tell every flow under test it runs in several
    workers; the tests that mean it set it themselves."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


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


@pytest.fixture(params=["python", "c"])
def accelerated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Runs a test on each implementation of the accelerated functions (core/accelerated.py):
    the Python twins, then the C, bound into header.py and signature.py, which call them by
    those names. Returns the module the functions came from."""
    from tba_guard.core import _native, header, signature

    implementation: ModuleType = _native
    if request.param == "c":
        try:
            implementation = importlib.import_module("tba_guard.core._speedups")
        except ImportError:
            pytest.skip("the pure build has no core/_speedups.c; the compiled run tests the C")
    monkeypatch.setattr(header, "header_parameters", implementation.header_parameters)
    monkeypatch.setattr(
        signature, "normalized_for_base_string", implementation.normalized_for_base_string
    )
    return implementation
