"""The authorization flow's token stores, in memory and on Redis: what both promise (a decision
once, a consumption once, tokens round-trip), their bounds, and an unreachable Redis failing
closed.
"""

from __future__ import annotations

import asyncio

import pytest

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.protocols import RequestTokenQuotaExceeded, TokenStore, TokenStoreError
from tba_guard.core.records import RequestToken
from tba_guard.stores.memory import MemoryTokenStore
from tba_guard.stores.redis_tokens import TOMBSTONE_SECONDS, RedisTokenStore
from tests.support import (
    CALLBACK,
    FLOW_KEY,
    NOW,
    REALM,
    REDIS_TIMEOUT,
    SHARED_REDIS_URL,
    Clock,
    client_for,
    echo_app,
    flow_settings,
    free_port,
    shared_redis,
)
from tests.support.redis_servers import PROTOCOLS, spoken_protocol, with_protocol


def sample_request_token(token_id: str = "rt-1", now: float = NOW) -> RequestToken:
    return RequestToken(
        token_id=token_id,
        token_secret="rt-secret",
        consumer_key=FLOW_KEY,
        callback=CALLBACK,
        expires_at=now + 600,
        realm=REALM,
        requested_role="3",
    )


async def check_store_contract(store: TokenStore) -> None:
    """What both stores promise: a decision once, a consumption once, tokens round-trip."""
    token = sample_request_token()
    await store.put_request_token(token)
    assert await store.request_token("rt-1") == token
    assert await store.request_token("rt-nope") is None
    decided = [
        store.decide("rt-1", "allowed", verifier="v1", entity="38", role="3"),
        store.decide("rt-1", "denied", verifier="", entity="38", role=""),
    ]
    assert sorted(await asyncio.gather(*decided)) == [False, True]
    after = await store.request_token("rt-1")
    assert after is not None
    assert after.decision in ("allowed", "denied")
    assert sorted(await asyncio.gather(*(store.consume("rt-1") for _ in range(4)))) == [
        False,
        False,
        False,
        True,
    ]
    used = await store.request_token("rt-1")
    assert used is not None
    assert used.uses == 4
    assert not await store.consume("rt-nope")
    access = sample_request_token("at-1").as_token()
    await store.put_access_token(access)
    found = await store.access_token("at-1")
    assert found is not None
    assert (found.token_id, found.token_secret, found.consumer_key) == (
        "at-1",
        "rt-secret",
        FLOW_KEY,
    )
    assert found.account == REALM
    assert found.active
    assert await store.access_token("at-nope") is None


async def test_memory_token_store_keeps_its_promises(clock: Clock) -> None:
    await check_store_contract(MemoryTokenStore(clock=clock))


async def test_memory_token_store_forgets_tombstones_and_refuses_when_full(clock: Clock) -> None:
    store = MemoryTokenStore(max_request_tokens=2, clock=clock)
    await store.put_request_token(sample_request_token("a"))
    await store.put_request_token(sample_request_token("b"))
    with pytest.raises(TokenStoreError, match="full") as raised:
        await store.put_request_token(sample_request_token("c"))
    assert not isinstance(raised.value, RequestTokenQuotaExceeded)  # the store, not a quota
    clock.now += 600 + TOMBSTONE_SECONDS
    await store.put_request_token(sample_request_token("c", now=clock.now))
    assert await store.request_token("a") is None
    assert await store.request_token("c") is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_redis_token_store_keeps_its_promises(
    redis_prefix: str, clock: Clock, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    store = RedisTokenStore(url, prefix=redis_prefix, clock=clock, timeout=REDIS_TIMEOUT)
    try:
        assert await spoken_protocol(store.redis) == protocol  # HGETALL: a map under RESP3
        await check_store_contract(store)
        client = shared_redis()
        ttl = client.pttl(f"{redis_prefix}rt:rt-1")
        client.close()
        assert 0 < ttl <= (600 + TOMBSTONE_SECONDS) * 1000
    finally:
        await store.aclose()


async def test_unreachable_redis_token_store_fails_closed_with_503(clock: Clock) -> None:
    settings = flow_settings(token_store=f"redis://127.0.0.1:{free_port()}/0")
    flow = TBAFlow(echo_app(), guard=Guard(settings, clock=clock))
    async for fc in client_for(flow):
        response = await fc.request_token()
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "CredentialStoreUnavailable"
        assert response.headers["retry-after"]
