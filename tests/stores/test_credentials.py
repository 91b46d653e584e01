"""Credential lookups: the storage boundary, the cache in front of a slow store, failures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tba_guard import CachedCredentials, ErrorCode, Guard, Integration, TBAError, Token
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN_ID,
    TOKEN_SECRET,
    Clock,
    make_settings,
    oauth_header,
)

URL = f"{BASE_URL}/services/rest/x"


class Database:
    """A user's own store: counts lookups so the cache's effect is visible."""

    def __init__(self) -> None:
        self.integrations = {CONSUMER_KEY: Integration(CONSUMER_KEY, CONSUMER_SECRET)}
        self.tokens = {TOKEN_ID: Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38")}
        self.lookups = 0
        self.down = False

    async def integration(self, consumer_key: str) -> Integration | None:
        self.lookups += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.integrations.get(consumer_key)

    async def token(self, token_id: str) -> Token | None:
        self.lookups += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.tokens.get(token_id)


async def verdict(guard: Guard, **bends: str) -> ErrorCode | None:
    try:
        await guard.verify_request("GET", URL, {"Authorization": oauth_header("GET", URL, **bends)})
    except TBAError as error:
        return error.code
    return None


async def test_a_users_own_store_backs_the_guard(clock: Clock) -> None:
    database = Database()
    guard = Guard(make_settings(), credentials=database, clock=clock)
    assert await verdict(guard) is None
    assert await verdict(guard, consumer_key="nobody") is ErrorCode.UNKNOWN_INTEGRATION


async def test_cache_spares_the_users_store_and_revocation_lands_within_ttl(clock: Clock) -> None:
    database = Database()
    cached = CachedCredentials(database, ttl=30, timer=clock)
    guard = Guard(make_settings(), credentials=cached, clock=clock)
    for _ in range(5):
        assert await verdict(guard) is None
    assert database.lookups == 2  # one integration, one token, then from the cache

    database.tokens[TOKEN_ID] = replace(database.tokens[TOKEN_ID], revoked=True)
    clock.now += 29
    assert await verdict(guard, timestamp=str(int(clock.now))) is None  # still cached
    clock.now += 2
    assert await verdict(guard, timestamp=str(int(clock.now))) is ErrorCode.TOKEN_REJECTED


async def test_unknown_keys_are_cached_too(clock: Clock) -> None:
    database = Database()
    guard = Guard(
        make_settings(), credentials=CachedCredentials(database, timer=clock), clock=clock
    )
    for _ in range(5):
        assert await verdict(guard, consumer_key="nobody") is ErrorCode.UNKNOWN_INTEGRATION
    assert database.lookups == 1


async def test_a_failing_store_fails_closed_with_503(clock: Clock) -> None:
    database = Database()
    database.down = True
    guard = Guard(make_settings(), credentials=database, clock=clock)
    with pytest.raises(TBAError) as caught:
        await guard.verify_request("GET", URL, {"Authorization": oauth_header("GET", URL)})
    assert caught.value.code is ErrorCode.CREDENTIAL_STORE_UNAVAILABLE
    assert caught.value.status == 503


async def test_credentials_cache_setting_wraps_the_built_in_store(clock: Clock) -> None:
    guard = Guard(make_settings(credential_cache_ttl=5), clock=clock)
    assert isinstance(guard.credentials, CachedCredentials)
    assert await verdict(guard) is None


async def test_an_integration_blocked_in_the_store_is_refused_once_the_cache_ttl_is_over(
    clock: Clock,
) -> None:
    # The injected timer ages integrations as it ages tokens: no real time passes in the test.
    users_store = Database()
    guard = Guard(
        make_settings(),
        credentials=CachedCredentials(users_store, ttl=30, timer=clock),
        clock=clock,
    )
    assert await verdict(guard) is None
    blocked = replace(users_store.integrations[CONSUMER_KEY], state="blocked")
    users_store.integrations[CONSUMER_KEY] = blocked
    clock.now += 31
    assert await verdict(guard, timestamp=str(int(clock.now))) is ErrorCode.INTEGRATION_BLOCKED
