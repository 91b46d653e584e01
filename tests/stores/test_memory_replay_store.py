"""The in-process replay store: exact memory of live keys, bounded, never forgetful."""

from __future__ import annotations

import pytest

from tba_guard import MemoryReplayStore, ReplayKey, ReplayStoreError
from tests.support import NOW, Clock


def key(nonce: str, timestamp: int = NOW, token: str = "t", consumer: str = "c") -> ReplayKey:
    return ReplayKey(consumer, token, nonce, timestamp)


async def test_claim_is_true_once_then_false(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert not await store.seen(key("n1"))
    assert await store.claim(key("n1"), ttl=600)
    assert await store.seen(key("n1"))
    assert not await store.claim(key("n1"), ttl=600)
    assert len(store) == 1


@pytest.mark.parametrize(
    "other",
    [key("n1", NOW + 1), key("n1", token="u"), key("n1", consumer="d"), key("n2")],
)
async def test_every_part_of_the_key_counts(clock: Clock, other: ReplayKey) -> None:
    store = MemoryReplayStore(clock=clock)
    assert await store.claim(key("n1"), ttl=600)
    assert not await store.seen(other)
    assert await store.claim(other, ttl=600)


async def test_keys_cannot_collide_by_shifting_characters(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert await store.claim(ReplayKey("ab", "c", "nonce1", NOW), ttl=600)
    assert await store.claim(ReplayKey("a", "bc", "nonce1", NOW), ttl=600)
    assert await store.claim(ReplayKey("a", "b", "cnonce1", NOW), ttl=600)


async def test_a_key_expires_after_its_ttl(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock)
    await store.claim(key("n1"), ttl=600)
    clock.now += 599
    assert await store.seen(key("n1"))
    clock.now += 2
    assert not await store.seen(key("n1"))
    assert await store.claim(key("n1"), ttl=600)
    assert len(store) == 1


async def test_purge_forgets_only_expired_generations(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock, generation_seconds=60)
    await store.claim(key("old"), ttl=10)
    clock.now += 60  # the next generation
    await store.claim(key("new"), ttl=600)
    store.purge()
    assert len(store) == 1
    assert await store.seen(key("new"))
    assert not await store.seen(key("old"))


async def test_a_generation_lives_as_long_as_its_longest_lived_key(clock: Clock) -> None:
    store = MemoryReplayStore(clock=clock, generation_seconds=60)
    await store.claim(key("short"), ttl=10)
    await store.claim(key("long"), ttl=600)
    clock.now += 11
    store.purge()
    assert await store.seen(key("long"))  # never forgotten early
    assert len(store) == 2  # the short one is kept a little longer than asked: allowed


async def test_full_store_refuses_instead_of_forgetting(clock: Clock) -> None:
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for nonce in ("a", "b", "c"):
        assert await store.claim(key(nonce), ttl=600)
    with pytest.raises(ReplayStoreError):
        await store.claim(key("d"), ttl=600)
    for nonce in ("a", "b", "c"):
        assert await store.seen(key(nonce))
    # A replay of a live key is still recognised while full.
    assert not await store.claim(key("a"), ttl=600)
    clock.now += 601
    assert await store.claim(key("d"), ttl=600)
    assert len(store) == 1


async def test_a_key_is_forgotten_after_its_ttl_while_newer_keys_keep_coming(clock: Clock) -> None:
    # Keys are grouped by when they were claimed: a steady stream of new keys must not keep an
    # old one alive, or the store would fill with keys no timestamp window still accepts.
    store = MemoryReplayStore(clock=clock, generation_seconds=1)
    assert await store.claim(key("old"), ttl=10)
    for _ in range(12):
        clock.now += 1
        assert await store.claim(key(f"n{clock.now}"), ttl=10)
    assert not await store.seen(key("old"))
    assert await store.claim(key("old"), ttl=10)
