"""Which token store the settings build for the flow, with a credential database: request
tokens where `token_store` says (here Redis), access tokens in the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tba_guard.core.protocols import RequestTokenQuotaExceeded
from tba_guard.core.records import RequestToken, Token
from tba_guard.core.settings import GuardSettings
from tba_guard.stores import credential_store_for, database_store_for, token_store_for
from tba_guard.stores.database.tokens import MemoryRequestTokens, RedisRequestTokens
from tba_guard.stores.memory import CachedCredentials, StaticCredentials
from tba_guard.stores.redis_tokens import RedisTokenStore
from tests.support import NOW, SHARED_REDIS_URL, Clock, keys_under, shared_redis
from tests.support.databases import database_url, fresh_key, prepared
from tests.support.redis_servers import PROTOCOLS, with_protocol


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_with_a_credential_store_access_tokens_leave_redis_for_it(
    redis_prefix: str, tmp_path: Path, protocol: int
) -> None:
    key = fresh_key()
    with database_url("sqlite", tmp_path) as url:
        admin = prepared(url, key)
        integration = admin.add_integration("Flow app", authorization_flow=True)
        settings = GuardSettings(
            credential_store=url,
            credential_key=(key,),
            token_store=with_protocol(SHARED_REDIS_URL, protocol),
            token_store_key_prefix=redis_prefix,
        )
        tokens = token_store_for(settings)
        credentials = credential_store_for(settings)
        try:
            assert isinstance(tokens, RedisRequestTokens)
            assert isinstance(tokens, RedisTokenStore)  # request tokens stay on Redis
            issued = Token("tk-" + "a" * 40, "ts-" + "b" * 40, integration.consumer_key, "38", "3")
            await tokens.put_access_token(issued)
            assert await tokens.access_token(issued.token_id) == issued
            assert {info.token_id: info.issued_by for info in admin.tokens()} == {
                issued.token_id: "flow"
            }
        finally:
            await tokens.aclose()
            credentials.close()  # type: ignore[attr-defined]
            admin.engine.dispose()


def request_token_of(consumer_key: str, token_id: str, now: float) -> RequestToken:
    return RequestToken(
        token_id=token_id,
        token_secret="rt-secret",
        consumer_key=consumer_key,
        callback="https://app.example.com/cb",
        expires_at=now + 600,
    )


def test_a_cache_ttl_of_zero_means_no_cache_in_front_of_the_settings_lists() -> None:
    assert isinstance(
        credential_store_for(GuardSettings(credential_cache_ttl=0)), StaticCredentials
    )
    cached = credential_store_for(GuardSettings(credential_cache_ttl=5))
    assert isinstance(cached, CachedCredentials)


def test_one_sqlite_store_per_file_and_settings_built_with_those_settings(tmp_path: Path) -> None:
    # The guard and the flow share one cache and one pool: the second call finds the first.
    key = fresh_key()
    with database_url("sqlite", tmp_path) as url:
        admin = prepared(url, key)
        settings = GuardSettings(
            credential_store=url,
            credential_key=(key,),
            credential_cache_ttl=7,
            credential_cache_size=123,
        )
        store = database_store_for(settings)
        try:
            assert database_store_for(settings) is store
            assert (store.ttl, store.cache_size) == (7, 123)
        finally:
            store.close()
            admin.engine.dispose()


async def test_request_tokens_in_memory_beside_sqlite_keep_the_quota(tmp_path: Path) -> None:
    key = fresh_key()
    with database_url("sqlite", tmp_path) as url:
        admin = prepared(url, key)
        integration = admin.add_integration("Flow app", authorization_flow=True)
        settings = GuardSettings(
            credential_store=url,
            credential_key=(key,),
            request_token_max_per_integration=1,
        )
        clock = Clock()
        tokens = token_store_for(settings, clock=clock)
        credentials = credential_store_for(settings)
        try:
            assert isinstance(tokens, MemoryRequestTokens)
            await tokens.put_request_token(request_token_of(integration.consumer_key, "rt-1", NOW))
            with pytest.raises(RequestTokenQuotaExceeded):
                await tokens.put_request_token(
                    request_token_of(integration.consumer_key, "rt-2", NOW)
                )
            issued = Token("tk-" + "c" * 40, "ts-" + "d" * 40, integration.consumer_key, "38", "3")
            await tokens.put_access_token(issued)  # access tokens go to the file
            assert {info.token_id for info in admin.tokens()} == {issued.token_id}
        finally:
            credentials.close()  # type: ignore[attr-defined]
            admin.engine.dispose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_request_tokens_on_redis_beside_sqlite_keep_time_by_the_given_clock(
    redis_prefix: str, tmp_path: Path, protocol: int
) -> None:
    # The injected clock is years behind: by the wall clock the token would be long expired.
    key = fresh_key()
    with database_url("sqlite", tmp_path) as url:
        admin = prepared(url, key)
        integration = admin.add_integration("Flow app", authorization_flow=True)
        settings = GuardSettings(
            credential_store=url,
            credential_key=(key,),
            token_store=with_protocol(SHARED_REDIS_URL, protocol),
            token_store_key_prefix=redis_prefix,
        )
        clock = Clock(NOW)
        tokens = token_store_for(settings, clock=clock)
        credentials = credential_store_for(settings)
        try:
            assert isinstance(tokens, RedisRequestTokens)
            issued = request_token_of(integration.consumer_key, "rt-1", NOW)
            await tokens.put_request_token(issued)
            await asyncio.sleep(0.01)  # past what a wall-clock expiry would have kept
            assert await tokens.request_token("rt-1") == issued
            assert await tokens.live_request_tokens(integration.consumer_key) == 1
        finally:
            await tokens.aclose()
            credentials.close()  # type: ignore[attr-defined]
            admin.engine.dispose()


async def test_a_redis_token_store_keeps_its_keys_under_the_configured_prefix(
    redis_prefix: str,
) -> None:
    settings = GuardSettings(
        token_store="redis://127.0.0.1:6379/0", token_store_key_prefix=redis_prefix
    )
    tokens = RedisTokenStore.from_settings(settings, clock=Clock(NOW))
    try:
        await tokens.put_request_token(request_token_of("ck-flow", "rt-prefixed", NOW))
        assert keys_under(shared_redis(), redis_prefix)
    finally:
        await tokens.aclose()
