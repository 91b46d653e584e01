"""The replay stores keep a short fingerprint of the accepted signature beside the replay key,
in the same single write, so a later `NonceUsed` tells a resend from a collision; a store with
only `seen` and `claim` keeps working, and a subclass overriding `claim` is still called."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tba_guard import Guard, MemoryReplayStore, ReplayKey, TBAError
from tba_guard import guard as guard_module
from tba_guard.core.checks import claims_signed
from tba_guard.stores.redis_replay import RedisReplayStore
from tests.support.redis_servers import (
    REDIS_TIMEOUT,
    SHARED_REDIS_URL,
    close_client,
    delete_prefix,
    keys_under,
    shared_redis,
    unique_prefix,
)
from tests.support.signing import NOW, Clock, make_settings, oauth_header

KEY = ReplayKey("ck", "tk", "nonce-0123456789abcd", NOW)
SIGNATURE = "k1a0Oi6QvA0cyPZ7BoPpl3DTHzG3+Bh2dQ/2yE3x0xg="
OTHER = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5PQ=="
URL = "https://123456-sb1.restlets.example.com/app/site/hosting/restlet.nl"


# --- in process ----------------------------------------------------------------------------------


async def test_the_memory_store_tells_the_same_signature_from_another() -> None:
    store = MemoryReplayStore(clock=Clock())
    assert await store.claim_signed(KEY, 600, SIGNATURE)
    assert not await store.claim_signed(KEY, 600, SIGNATURE)  # still one claim per key
    assert await store.signed_alike(KEY, SIGNATURE) is True
    assert await store.signed_alike(KEY, OTHER) is False
    assert await store.signed_alike(KEY._replace(nonce="never-claimed-nonce"), SIGNATURE) is None


async def test_a_claim_without_a_signature_keeps_no_fingerprint() -> None:
    store = MemoryReplayStore(clock=Clock())
    assert await store.claim(KEY, 600)
    assert await store.seen(KEY)
    assert await store.signed_alike(KEY, SIGNATURE) is None


async def test_purging_forgets_the_fingerprints_with_their_keys() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    await store.claim_signed(KEY, 600, SIGNATURE)
    clock.now += 601
    store.purge()
    assert len(store) == 0
    assert await store.signed_alike(KEY, SIGNATURE) is None


class CountingSubclass(MemoryReplayStore):
    """A subclass that overrides `claim` alone, as one written before fingerprints did."""

    claims = 0

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        type(self).claims += 1
        return await super().claim(key, ttl)


class OwnStore:
    async def seen(self, key: ReplayKey) -> bool:
        return False

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        return True


def test_which_stores_are_claimed_with_the_signature() -> None:
    assert claims_signed(MemoryReplayStore())
    assert claims_signed(RedisReplayStore("redis://127.0.0.1:1"))
    assert not claims_signed(CountingSubclass())  # its own claim stays the one called
    assert not claims_signed(OwnStore())
    assert not claims_signed(object())


async def test_a_subclass_overriding_claim_is_still_called_by_the_guard() -> None:
    store = CountingSubclass(clock=Clock())
    guard = Guard(make_settings(), clock=Clock(), replay_store=store)
    await guard.verify_request("GET", URL, {"Authorization": oauth_header("GET", URL)})
    assert CountingSubclass.claims == 1


# --- the guard's detail: asked only when heard, never failing a rejection ------------------------


async def rejected_detail(guard: Guard) -> None:
    """One rejection (InvalidTimestamp) through the guard."""
    header = oauth_header("GET", URL, timestamp=NOW - 400)
    with pytest.raises(TBAError):
        await guard.verify_request("GET", URL, {"Authorization": header})


@pytest.fixture
def describers() -> Iterator[list[Any]]:
    saved = list(guard_module.DESCRIBERS)
    guard_module.DESCRIBERS.clear()
    yield guard_module.DESCRIBERS
    guard_module.DESCRIBERS[:] = saved


async def test_no_diagnosis_installed_leaves_the_detail_empty(describers: list[Any]) -> None:
    events: list[Any] = []
    guard = Guard(make_settings(), clock=Clock(), audit_hooks=[events.append])
    await rejected_detail(guard)
    assert events[-1].code == "InvalidTimestamp"
    assert events[-1].detail == ""


async def test_nobody_listening_means_no_diagnosis(
    describers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[str] = []

    async def describe(guard: Guard, verification: Any, error: TBAError) -> str:
        asked.append(error.code.value)
        return "said"

    describers.append(describe)
    caplog.set_level(logging.CRITICAL + 1, logger="tba_guard.audit")
    logging.getLogger("tba_guard.audit").setLevel(logging.CRITICAL + 1)
    try:
        await rejected_detail(Guard(make_settings(), clock=Clock()))
    finally:
        logging.getLogger("tba_guard.audit").setLevel(logging.NOTSET)
    assert asked == []


async def test_a_failing_diagnosis_leaves_the_rejection_as_it_is(
    describers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(guard: Guard, verification: Any, error: TBAError) -> str:
        raise RuntimeError("diagnosis broke")

    describers.append(broken)
    events: list[Any] = []
    await rejected_detail(Guard(make_settings(), clock=Clock(), audit_hooks=[events.append]))
    assert events[-1].code == "InvalidTimestamp"
    assert events[-1].detail == ""
    assert any("diagnosing InvalidTimestamp failed" in r.getMessage() for r in caplog.records)


# --- in Redis ------------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    client = shared_redis()
    prefix = unique_prefix()
    yield prefix
    delete_prefix(client, prefix)
    client.close()


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisReplayStore]:
    found = RedisReplayStore(SHARED_REDIS_URL, prefix=prefix, timeout=REDIS_TIMEOUT)
    yield found
    await found.aclose()


async def test_redis_keeps_eight_hex_digits_of_the_signature_in_the_one_set(
    store: RedisReplayStore, prefix: str
) -> None:
    assert await store.claim_signed(KEY, 600, SIGNATURE)
    assert not await store.claim_signed(KEY, 600, OTHER)
    client = shared_redis()
    [name] = keys_under(client, prefix)
    value = client.get(name)
    assert value is not None
    assert len(value) == 8
    assert int(value, 16) >= 0
    assert SIGNATURE.encode() not in value
    assert 0 < client.pttl(name) <= 600_000
    client.close()
    assert await store.signed_alike(KEY, SIGNATURE) is True
    assert await store.signed_alike(KEY, OTHER) is False
    assert await store.signed_alike(KEY._replace(nonce="never-claimed-nonce"), SIGNATURE) is None


async def test_redis_claimed_without_a_signature_cannot_tell(store: RedisReplayStore) -> None:
    assert await store.claim(KEY, 600)
    assert await store.seen(KEY)
    assert await store.signed_alike(KEY, SIGNATURE) is None


async def test_a_client_that_decodes_its_replies_tells_alike(prefix: str) -> None:
    client = aredis.Redis.from_url(SHARED_REDIS_URL, decode_responses=True, retry=None)
    store = RedisReplayStore.from_client(client, prefix=prefix)
    try:
        assert await store.claim_signed(KEY, 600, SIGNATURE)
        assert await store.signed_alike(KEY, SIGNATURE) is True
    finally:
        await close_client(client)


async def test_the_redis_store_through_the_guard_tells_a_resend(
    store: RedisReplayStore,
) -> None:
    from tba_guard.diagnosis.operator import install

    install()
    events: list[Any] = []
    guard = Guard(make_settings(), clock=Clock(), replay_store=store, audit_hooks=[events.append])
    header = {"Authorization": oauth_header("GET", URL)}
    await guard.verify_request("GET", URL, header)
    with pytest.raises(TBAError):
        await guard.verify_request("GET", URL, header)
    assert events[-1].code == "NonceUsed"
    assert events[-1].detail.startswith("the same signature was sent again")
