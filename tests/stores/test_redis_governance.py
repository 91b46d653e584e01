"""Concurrency governance's slots in a real Redis: atomic under a race, released, renewed,
lapsed on Redis' own clock, and a stopped Redis answered as the 503 it is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tba_guard.asgi.governance import slot_store_for
from tba_guard.stores.governance import MemorySlotStore, SlotStoreError
from tba_guard.stores.redis_governance import RedisSlotStore
from tests.support import SHARED_REDIS_URL, free_port, keys_under, make_settings, shared_redis


@pytest.fixture
async def slots(redis_prefix: str) -> AsyncIterator[RedisSlotStore]:
    store = RedisSlotStore(SHARED_REDIS_URL, prefix=redis_prefix, timeout=2.0)
    yield store
    await store.aclose()


async def test_of_many_racing_requests_exactly_the_limit_get_a_slot(slots: RedisSlotStore) -> None:
    taken = await asyncio.gather(
        *(slots.acquire("unallocated", 5, f"lease-{n}", 30) for n in range(40))
    )
    assert taken.count(True) == 5
    assert await slots.in_flight("unallocated") == 5


async def test_a_released_slot_is_free_at_once(slots: RedisSlotStore) -> None:
    assert await slots.acquire("pool", 1, "first", 30)
    assert not await slots.acquire("pool", 1, "second", 30)
    await slots.release("pool", "first")
    assert await slots.acquire("pool", 1, "second", 30)


async def test_pools_are_counted_apart(slots: RedisSlotStore) -> None:
    assert await slots.acquire("integration:a", 1, "a1", 30)
    assert await slots.acquire("unallocated", 1, "u1", 30)
    assert not await slots.acquire("integration:a", 1, "a2", 30)
    assert await slots.in_flight("integration:a") == await slots.in_flight("unallocated") == 1


async def test_a_lease_nobody_renews_lapses_and_a_renewed_one_holds(
    slots: RedisSlotStore, redis_prefix: str
) -> None:
    assert await slots.acquire("pool", 2, "dead-worker", 0.3)
    assert await slots.acquire("pool", 2, "live-worker", 0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await slots.renew([("pool", "live-worker")], 0.3)
    assert await slots.in_flight("pool") == 1  # the dead worker's lease lapsed
    await slots.renew([("pool", "dead-worker")], 0.3)  # too late: not brought back
    assert await slots.in_flight("pool") == 1
    await asyncio.sleep(0.45)
    assert await slots.in_flight("pool") == 0
    assert keys_under(shared_redis(), redis_prefix) == []  # the pool's key expired with it


async def test_an_unreachable_redis_is_a_slot_store_error() -> None:
    store = RedisSlotStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises(SlotStoreError):
        await store.acquire("pool", 1, "lease", 30)
    with pytest.raises(SlotStoreError):
        await store.release("pool", "lease")
    await store.aclose()


def test_the_settings_name_the_store() -> None:
    assert isinstance(slot_store_for(make_settings()), MemorySlotStore)
    redis_store = slot_store_for(make_settings(governance_store=SHARED_REDIS_URL))
    assert isinstance(redis_store, RedisSlotStore)
    assert "RedisSlotStore('redis://127.0.0.1:6379/0'" in repr(redis_store)
