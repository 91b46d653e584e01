"""OAuth 2.0's lookups in the in-process stores: by client ID and by certificate ID, cached as
TBA's are (misses too), and none at all behind a store of one's own that serves TBA alone."""

from __future__ import annotations

from tba_guard.core.records import Certificate, Integration
from tba_guard.stores.memory import (
    CachedCredentials,
    FlowCredentials,
    MemoryTokenStore,
    StaticCredentials,
)
from tests.support import CONSUMER_KEY, CONSUMER_SECRET

ORDER_SYNC = Integration(CONSUMER_KEY, CONSUMER_SECRET, client_id="client-order-sync")
MAPPING = Certificate("cert-1", "client-order-sync", "38", "3", "-----BEGIN CERTIFICATE-----")


class Counting(StaticCredentials):
    def __init__(self) -> None:
        super().__init__([ORDER_SYNC], [], [MAPPING])
        self.asked: list[str] = []

    async def client(self, client_id: str) -> Integration | None:
        self.asked.append(client_id)
        return await super().client(client_id)

    async def certificate(self, certificate_id: str) -> Certificate | None:
        self.asked.append(certificate_id)
        return await super().certificate(certificate_id)


class TBAOnly:
    async def integration(self, consumer_key: str) -> None:
        return None

    async def token(self, token_id: str) -> None:
        return None


async def test_the_settings_store_finds_an_integration_by_client_id_and_a_mapping_by_id() -> None:
    store = StaticCredentials([ORDER_SYNC, Integration("ck-2", CONSUMER_SECRET)], [], [MAPPING])
    assert await store.client("client-order-sync") == ORDER_SYNC
    assert await store.client("ck-2") is None  # a consumer key is no client ID
    assert await store.certificate("cert-1") == MAPPING
    assert await store.certificate("cert-2") is None


async def test_the_cache_asks_its_store_once_per_id_found_or_not() -> None:
    counting = Counting()
    cached = CachedCredentials(counting, ttl=60)
    for _ in range(3):
        assert await cached.client("client-order-sync") == ORDER_SYNC
        assert await cached.certificate("cert-1") == MAPPING
        assert await cached.client("client-unknown") is None
        assert await cached.certificate("cert-unknown") is None
    assert counting.asked == ["client-order-sync", "cert-1", "client-unknown", "cert-unknown"]


async def test_behind_a_store_that_serves_tba_alone_there_is_no_client() -> None:
    for store in (
        CachedCredentials(TBAOnly(), ttl=60),
        FlowCredentials(TBAOnly(), MemoryTokenStore()),
    ):
        assert await store.client("client-order-sync") is None
        assert await store.certificate("cert-1") is None
