"""Concurrency governance through the middleware: the slots of verified requests in flight, the
answer per surface over the limit, allocations, leases that lapse, and `governanceLimits`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tba_guard import Guard, Integration, TBAGuardMiddleware, Token
from tba_guard.asgi.governance import GOVERNANCE_LIMITS_PATH, RESTLET_PATH, Governance
from tba_guard.core.audit import AuditEvent
from tba_guard.stores.governance import MemorySlotStore, SlotStoreError
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN_ID,
    TOKEN_SECRET,
    Clock,
    Exchange,
    HeldApp,
    Request,
    make_settings,
    oauth_header,
    scope_for,
)

OTHER_KEY = "ck-invoices"
OTHER_SECRET = "cs-s3cr3t-invoices-sync"
OTHER_TOKEN, OTHER_TOKEN_SECRET = "tk-invoices", "ts-s3cr3t-invoices-token"
REST_PATH = "/services/rest/record/v1/customer/1"


def governed(**overrides: Any) -> Any:
    integrations = [
        Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Order sync"),
        Integration(OTHER_KEY, OTHER_SECRET, name="Invoices"),
    ]
    tokens = [
        Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),
        Token(OTHER_TOKEN, OTHER_TOKEN_SECRET, OTHER_KEY, entity="40", role="3"),
    ]
    values = {"integrations": integrations, "tokens": tokens, "governance_limit": 3}
    return make_settings(**{**values, **overrides})


def request_for(path: str, consumer_key: str = CONSUMER_KEY, secret: str = CONSUMER_SECRET) -> Any:
    token, token_secret = (
        (TOKEN_ID, TOKEN_SECRET)
        if consumer_key == CONSUMER_KEY
        else (OTHER_TOKEN, OTHER_TOKEN_SECRET)
    )
    header = oauth_header(
        "GET",
        BASE_URL + path,
        consumer_key=consumer_key,
        consumer_secret=secret,
        token=token,
        token_secret=token_secret,
    )
    return scope_for(Request(raw_path=path.encode(), headers=[(b"authorization", header.encode())]))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def setup(
    settings: Any, slots: MemorySlotStore | None = None
) -> tuple[TBAGuardMiddleware, HeldApp, list[AuditEvent]]:
    events: list[AuditEvent] = []
    app = HeldApp()
    guard = Guard(settings, clock=Clock(), audit_hooks=[events.append])
    middleware = TBAGuardMiddleware(app, guard=guard)
    if slots is not None:
        middleware.governance = Governance(guard.settings, guard.audit, slots=slots)
    return middleware, app, events


async def test_the_request_past_the_limit_is_refused_per_surface_until_a_slot_frees() -> None:
    middleware, app, events = setup(governed())
    held = [Exchange(middleware, request_for(RESTLET_PATH)) for _ in range(3)]
    await settle()
    assert app.entered == 3
    restlet = Exchange(middleware, request_for(RESTLET_PATH))
    rest = Exchange(middleware, request_for(REST_PATH))
    await asyncio.gather(restlet.task, rest.task)
    assert app.entered == 3  # neither reached the application
    assert restlet.status == 400
    assert json.loads(restlet.body)["error"]["code"] == "SSS_REQUEST_LIMIT_EXCEEDED"
    assert rest.status == 429
    assert json.loads(rest.body)["o:errorDetails"][0]["o:errorCode"] == (
        "CONCURRENCY_LIMIT_EXCEEDED"
    )
    assert restlet.headers[b"retry-after"] == rest.headers[b"retry-after"] == b"1"
    refusals = [event.code for event in events if event.outcome == "rejected"]
    assert refusals == ["SSS_REQUEST_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED"]

    app.go.set()
    await asyncio.gather(*(exchange.task for exchange in held))
    assert [exchange.status for exchange in held] == [200, 200, 200]
    assert await middleware.governance.in_flight() == 0  # type: ignore[union-attr]
    again = Exchange(middleware, request_for(REST_PATH))
    await again.task
    assert again.status == 200


async def test_a_client_that_hangs_up_gives_its_slot_back() -> None:
    settings = governed(governance_limit=2)
    middleware, app, _ = setup(settings)

    async def waits_for_disconnect(scope: Any, receive: Any, send: Any) -> None:
        app.entered += 1
        assert (await receive())["type"] == "http.disconnect"

    middleware.app = waits_for_disconnect
    first = Exchange(middleware, request_for(REST_PATH))
    await settle()
    assert await middleware.governance.in_flight() == 1  # type: ignore[union-attr]
    first.hang_up.set()
    await first.task
    assert first.sent == []  # nobody to answer
    assert await middleware.governance.in_flight() == 0  # type: ignore[union-attr]


async def test_an_application_that_fails_gives_its_slot_back() -> None:
    middleware, _, _ = setup(governed())

    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the application broke")

    middleware.app = fails
    with pytest.raises(RuntimeError):
        await Exchange(middleware, request_for(REST_PATH)).task
    assert await middleware.governance.in_flight() == 0  # type: ignore[union-attr]


async def test_an_allocated_integration_has_its_slots_and_the_others_share_the_rest() -> None:
    settings = governed(governance_allocations=[f"{OTHER_KEY}=1"])
    middleware, app, _ = setup(settings)
    assert middleware.governance is not None
    assert middleware.governance.unallocated == 2
    other = Exchange(middleware, request_for(REST_PATH, OTHER_KEY, OTHER_SECRET))
    shared = [Exchange(middleware, request_for(REST_PATH)) for _ in range(2)]
    await settle()
    assert app.entered == 3
    over_allocation = Exchange(middleware, request_for(REST_PATH, OTHER_KEY, OTHER_SECRET))
    over_shared = Exchange(middleware, request_for(REST_PATH))
    await asyncio.gather(over_allocation.task, over_shared.task)
    assert (over_allocation.status, over_shared.status) == (429, 429)
    app.go.set()
    await asyncio.gather(other.task, *(exchange.task for exchange in shared))


async def test_an_integration_records_allocation_counts_like_the_setting() -> None:
    integrations = [
        Integration(CONSUMER_KEY, CONSUMER_SECRET),
        Integration(OTHER_KEY, OTHER_SECRET, concurrency_limit=2),
    ]
    settings = make_settings(integrations=integrations, governance_limit=5)
    middleware, _, _ = setup(settings)
    assert middleware.governance is not None
    assert middleware.governance.allocations == {OTHER_KEY: 2}
    assert middleware.governance.unallocated == 3
    assert middleware.governance.pool_for(OTHER_KEY, None) == (f"integration:{OTHER_KEY}", 2)
    # A record the settings do not list (the database's) brings its allocation along.
    found = Integration("ck-db", "cs-from-the-database-0", concurrency_limit=4)
    assert middleware.governance.pool_for("ck-db", found) == ("integration:ck-db", 4)


async def test_governance_limits_tell_the_caller_its_limit_type() -> None:
    settings = governed(governance_limit=5, governance_allocations=[f"{OTHER_KEY}=2"])
    middleware, app, _ = setup(settings)
    mine = Exchange(middleware, request_for(GOVERNANCE_LIMITS_PATH))
    allocated = Exchange(middleware, request_for(GOVERNANCE_LIMITS_PATH, OTHER_KEY, OTHER_SECRET))
    await asyncio.gather(mine.task, allocated.task)
    assert app.entered == 0  # answered by the guard, without a slot
    assert json.loads(mine.body) == {
        "accountConcurrencyLimit": 5,
        "accountUnallocatedConcurrencyLimit": 3,
        "limitType": "unallocated",
    }
    assert json.loads(allocated.body) == {
        "accountConcurrencyLimit": 5,
        "accountUnallocatedConcurrencyLimit": 3,
        "integrationConcurrencyLimit": 2,
        "limitType": "integrationSpecific",
    }
    alone, _, _ = setup(governed(governance_limit=5))
    whole = Exchange(alone, request_for(GOVERNANCE_LIMITS_PATH))
    await whole.task
    assert json.loads(whole.body)["limitType"] == "account"


async def test_an_unsigned_request_for_the_limits_is_refused_before_governance() -> None:
    middleware, app, _ = setup(governed())
    scope = scope_for(Request(raw_path=GOVERNANCE_LIMITS_PATH.encode()))
    assert app.entered == 0
    exchange = Exchange(middleware, scope)
    await exchange.task
    assert exchange.status == 401
    assert json.loads(exchange.body)["error"]["code"] == "MissingRequiredParameter"


async def test_a_lease_nobody_renews_lapses() -> None:
    clock = Clock()
    slots = MemorySlotStore(clock=clock)
    assert await slots.acquire("pool", 1, "dead-worker", lease=30)
    assert not await slots.acquire("pool", 1, "live", lease=30)
    clock.now += 29
    await slots.renew([("pool", "dead-worker")], lease=30)  # renewed in time: held on
    clock.now += 29
    assert await slots.in_flight("pool") == 1
    clock.now += 2
    assert await slots.in_flight("pool") == 0
    await slots.renew([("pool", "dead-worker")], lease=30)  # too late: stays lapsed
    assert await slots.acquire("pool", 1, "live", lease=30)
    await slots.release("pool", "live")
    await slots.release("pool", "never-held")
    assert await slots.in_flight("pool") == 0


async def test_a_worker_renews_the_leases_of_its_long_requests() -> None:
    clock = Clock()
    slots = MemorySlotStore(clock=clock)
    settings = governed(governance_lease=3.0)
    middleware, app, _ = setup(settings, slots)
    long = Exchange(middleware, request_for(REST_PATH))
    await settle()
    clock.now += 2.5
    await asyncio.sleep(1.1)  # a third of the lease: one renewal
    clock.now += 2.5  # 5 s in: lapsed without the renewal
    assert await slots.in_flight("unallocated") == 1
    app.go.set()
    await long.task
    assert await slots.in_flight("unallocated") == 0


class BrokenSlots(MemorySlotStore):
    async def acquire(self, pool: str, limit: int, lease_id: str, lease: float) -> bool:
        raise SlotStoreError("redis down")


async def test_slots_that_cannot_be_counted_answer_503() -> None:
    middleware, app, events = setup(governed(), BrokenSlots())
    exchange = Exchange(middleware, request_for(REST_PATH))
    await exchange.task
    assert exchange.status == 503
    assert json.loads(exchange.body)["error"]["code"] == "GovernanceStoreUnavailable"
    assert exchange.headers[b"retry-after"] == b"1"
    assert app.entered == 0
    assert events[-1].code == "GovernanceStoreUnavailable"


async def test_governance_is_off_without_a_limit() -> None:
    middleware, _, _ = setup(make_settings())
    assert middleware.governance is None


def test_allocations_must_leave_one_slot_unallocated() -> None:
    from tba_guard.core.settings import SettingsError

    with pytest.raises(SettingsError, match="at least 1 must stay unallocated"):
        make_settings(governance_limit=3, governance_allocations=["a=1", "b=2"])
    with pytest.raises(SettingsError, match="consumer_key=slots"):
        make_settings(governance_limit=3, governance_allocations=["a=0"])


async def test_metrics_count_a_governance_refusal_once_beside_the_verifications() -> None:
    pytest.importorskip("prometheus_client")
    middleware, app, _ = setup(governed(governance_limit=1, metrics_path="/metrics"))
    held = Exchange(middleware, request_for(REST_PATH))
    await settle()
    refused = Exchange(middleware, request_for(RESTLET_PATH))
    await refused.task
    assert refused.status == 400
    app.go.set()
    await held.task
    assert middleware.observability is not None
    exposition = middleware.observability.metrics.exposition().decode()  # type: ignore[union-attr]
    lines = [line for line in exposition.splitlines() if not line.startswith("#")]
    assert 'tba_guard_governance_rejections_total{integration="ck-order-sync"} 1.0' in lines, (
        exposition
    )
    accepted = [line for line in lines if line.startswith("tba_guard_requests_total{")]
    assert accepted == [
        'tba_guard_requests_total{code="",integration="ck-order-sync",outcome="accepted",'
        'scheme="tba"} 2.0'
    ]
