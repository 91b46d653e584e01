"""Concurrency governance across two `tba-guard serve` processes sharing one Redis: exactly the
limit in flight over both, the next request answered per surface, an allocation honoured, and
the slots of a killed server freed within the lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2 as httpx
import pytest

from tba_guard.stores.redis_governance import RedisSlotStore
from tests.support import SHARED_REDIS_URL, oauth_header, shared_redis
from tests.support.servers import serving

CONSUMER_KEY, CONSUMER_SECRET = "ck-governed-orders", "cs-governed-orders-secret"
TOKEN_ID, TOKEN_SECRET = "tk-governed-orders", "ts-governed-orders-secret"
ALLOCATED_KEY, ALLOCATED_SECRET = "ck-governed-invoices", "cs-governed-invoices-secret"
ALLOCATED_TOKEN, ALLOCATED_TOKEN_SECRET = "tk-governed-invoices", "ts-governed-invoices-secret"
LIMIT, ALLOCATED, LEASE = 4, 1, 2.0
HELD = 4.0  # seconds the held requests stay in the application (`?delay=`)
RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"
REST = "/services/rest/record/v1/customer/1"


def write_config(directory: Path, prefix: str) -> Path:
    config = directory / "governed.toml"
    config.write_text(
        f"""
[guard]
realm = "123456"
replay_store = "{SHARED_REDIS_URL}"
replay_store_key_prefix = "{prefix}nonce:"
governance_limit = {LIMIT}
governance_store = "{SHARED_REDIS_URL}"
governance_key_prefix = "{prefix}governance:"
governance_lease = {LEASE}
governance_allocations = ["{ALLOCATED_KEY}={ALLOCATED}"]

[[integrations]]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"

[[integrations]]
consumer_key = "{ALLOCATED_KEY}"
consumer_secret = "{ALLOCATED_SECRET}"

[[tokens]]
token_id = "{TOKEN_ID}"
token_secret = "{TOKEN_SECRET}"
consumer_key = "{CONSUMER_KEY}"

[[tokens]]
token_id = "{ALLOCATED_TOKEN}"
token_secret = "{ALLOCATED_TOKEN_SECRET}"
consumer_key = "{ALLOCATED_KEY}"
"""
    )
    return config


@pytest.fixture
def servers(tmp_path: Path, redis_prefix: str) -> Iterator[tuple[str, str, int]]:
    config = write_config(tmp_path, redis_prefix)
    with ExitStack() as stack:
        first_port, _ = stack.enter_context(serving(config))
        second_port, second = stack.enter_context(serving(config))
        yield f"http://127.0.0.1:{first_port}", f"http://127.0.0.1:{second_port}", second.pid


async def signed(
    client: httpx.AsyncClient, base: str, path: str, allocated: bool = False
) -> httpx.Response:
    key, secret, token, token_secret = (
        (ALLOCATED_KEY, ALLOCATED_SECRET, ALLOCATED_TOKEN, ALLOCATED_TOKEN_SECRET)
        if allocated
        else (CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET)
    )
    url = base + path
    header = oauth_header(
        "GET",
        url,
        consumer_key=key,
        consumer_secret=secret,
        token=token,
        token_secret=token_secret,
        realm="123456",
        timestamp=int(time.time()),
    )
    return await client.get(url, headers={"Authorization": header})


async def in_flight(prefix: str, pool: str) -> int:
    store = RedisSlotStore(SHARED_REDIS_URL, prefix=prefix + "governance:", timeout=2.0)
    try:
        return await store.in_flight(pool)
    finally:
        await store.aclose()


async def wait_for_in_flight(prefix: str, pool: str, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds  # a bound, not a measure
    while await in_flight(prefix, pool) != count:
        assert time.monotonic() < deadline, f"{pool}: not {count} in flight after {seconds} s"
        await asyncio.sleep(0.05)


async def test_two_servers_hold_exactly_the_limit_and_refuse_the_next_per_surface(
    servers: tuple[str, str, int], redis_prefix: str
) -> None:
    first, second, _ = servers
    shared = LIMIT - ALLOCATED
    async with httpx.AsyncClient(timeout=30) as client:
        held = [
            asyncio.ensure_future(signed(client, (first, second)[n % 2], f"{REST}?delay={HELD}"))
            for n in range(shared)
        ]
        allocated = asyncio.ensure_future(
            signed(client, second, f"{REST}?delay={HELD}", allocated=True)
        )
        await wait_for_in_flight(redis_prefix, "unallocated", shared, 20)
        await wait_for_in_flight(redis_prefix, f"integration:{ALLOCATED_KEY}", 1, 20)

        over_rest = await signed(client, first, REST)
        over_restlet = await signed(client, second, RESTLET)
        over_allocation = await signed(client, first, REST, allocated=True)
        limits = await signed(client, second, "/services/rest/system/v1/governanceLimits")

        assert over_rest.status_code == 429
        assert over_rest.headers["retry-after"] == "1"
        assert over_rest.json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
        assert over_restlet.status_code == 400
        assert over_restlet.json()["error"]["code"] == "SSS_REQUEST_LIMIT_EXCEEDED"
        assert over_allocation.status_code == 429
        assert limits.status_code == 200
        assert limits.json() == {
            "accountConcurrencyLimit": LIMIT,
            "accountUnallocatedConcurrencyLimit": shared,
            "limitType": "unallocated",
        }
        answers = await asyncio.gather(*held, allocated)
        assert [answer.status_code for answer in answers] == [200] * (shared + 1)
        assert json.loads(answers[-1].content)["consumer_key"] == ALLOCATED_KEY
        await wait_for_in_flight(redis_prefix, "unallocated", 0, 5)
        after = await signed(client, first, REST)
        assert after.status_code == 200


async def test_a_killed_servers_slots_come_free_within_the_lease(
    servers: tuple[str, str, int], redis_prefix: str
) -> None:
    first, second, second_pid = servers
    shared = LIMIT - ALLOCATED
    async with httpx.AsyncClient(timeout=30) as client:
        doomed = [
            asyncio.ensure_future(signed(client, second, f"{REST}?delay=10")) for _ in range(shared)
        ]
        await wait_for_in_flight(redis_prefix, "unallocated", shared, 20)
        refused = await signed(client, first, REST)
        assert refused.status_code == 429
        os.kill(second_pid, signal.SIGKILL)  # no response ends, no slot is given back
        redis = shared_redis()
        seconds, micros = redis.time()
        killed_at_ms = seconds * 1000 + micros // 1000
        leases = redis.zrange(f"{redis_prefix}governance:unallocated", 0, -1, withscores=True)
        assert len(leases) == shared
        # Nobody renews them now: each lapses within one lease of the kill, on Redis' clock.
        assert all(lapses <= killed_at_ms + LEASE * 1000 for _, lapses in leases)
        await asyncio.gather(*doomed, return_exceptions=True)
        await wait_for_in_flight(redis_prefix, "unallocated", 0, LEASE * 10)
        served = await signed(client, first, REST)
        assert served.status_code == 200
