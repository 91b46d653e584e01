"""Concurrency allocations kept in the credential database, against real SQLite and PostgreSQL:
the revision that adds them (up and down), the admin's changes, and a guard over the database
that sizes its pools from them, learns a change once the cache TTL passes, and keeps counting
as it did while the database cannot answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from tba_guard import Guard, Integration, TBAGuardMiddleware, Token
from tba_guard.asgi.flow import TBAFlow
from tba_guard.asgi.governance import GOVERNANCE_LIMITS_PATH, Governance
from tba_guard.stores.database import connect, migrate
from tba_guard.stores.database.admin import CredentialAdmin, NotFound, Refused
from tba_guard.stores.database.sealing import Sealer
from tba_guard.stores.database.store import DatabaseCredentials
from tests.support import (
    BASE_URL,
    Clock,
    Exchange,
    HeldApp,
    Request,
    make_settings,
    oauth_header,
    scope_for,
)
from tests.support.databases import Timer, database_url
from tests.support.oauth2 import certificate_pem, ec_key

REST_PATH = "/services/rest/record/v1/customer/1"
TTL = 5.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as found:
        yield found


# --- the schema -------------------------------------------------------------------------------


def downgrade(engine: Any, revision: str) -> None:
    config = migrate._config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def integration_columns(engine: Any) -> set[str]:
    with engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT * FROM tba_integrations").mappings().first()
    assert row is not None
    return set(row.keys())


def test_revision_0003_adds_a_null_allocation_to_the_integrations_there(url: str, key: str) -> None:
    engine = connect.create(url, timeout=10.0)
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as connection:  # a row as revision 0002's code wrote it
            connection.exec_driver_sql(
                "INSERT INTO tba_integrations (consumer_key, name, secret_sealed, state, "
                "authorization_flow, created_at, updated_at) VALUES "
                f"('ck-old', 'Old', '{Sealer([key]).seal('integration', 'ck-old', 'cs-' * 6)}', "
                "'enabled', false, 1, 1)"
            )
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head() == "0003"
        old = CredentialAdmin(engine, Sealer([key]))
        assert old.integration_with_secret("ck-old").concurrency_limit is None
        assert old.integrations()[0].concurrency_limit is None
    finally:
        engine.dispose()


def test_revision_0003_downgrades_to_0002_keeping_integrations_tokens_and_certificates(
    admin: CredentialAdmin,
) -> None:
    integration = admin.add_integration("Order sync", client_id="client-1", concurrency_limit=4)
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    pem = certificate_pem(ec_key(), days=365, not_before=time.time() - 3600)
    admin.add_certificate("client-1", "38", "3", pem, certificate_id="cert-1")
    downgrade(admin.engine, "0002")  # rows point at the integration: no copy of its table
    assert migrate.current(admin.engine) == "0002"
    assert "concurrency_limit" not in integration_columns(admin.engine)
    with admin.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT token_id FROM tba_tokens").scalar() == (
            token.token_id
        )
        assert connection.exec_driver_sql(
            "SELECT certificate_id FROM tba_certificates"
        ).scalar() == ("cert-1")
    migrate.upgrade(admin.engine)
    assert admin.integrations()[0].concurrency_limit is None  # what it held went with 0002


# --- the admin ------------------------------------------------------------------------------------


async def test_an_allocation_is_set_read_back_and_taken_away(
    admin: CredentialAdmin,
    store: DatabaseCredentials,
    timer: Timer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    allocated = admin.add_integration("Order sync", concurrency_limit=2)
    shared = admin.add_integration("Invoices")
    assert allocated.concurrency_limit == 2
    assert (await store.integration(allocated.consumer_key)) == allocated
    assert (await store.integration(shared.consumer_key)) == shared
    assert await store.concurrency_allocations() == {allocated.consumer_key: 2}

    with caplog.at_level(logging.INFO, logger="tba_guard.audit"):
        admin.set_concurrency_limit(shared.consumer_key, 5)
    change = caplog.records[-1].tba_change  # type: ignore[attr-defined]
    assert (change["action"], change["consumer_key"], change["slots"]) == (
        "integration.concurrency",
        shared.consumer_key,
        5,
    )
    listed = {i.consumer_key: i.concurrency_limit for i in admin.integrations()}
    assert listed == {allocated.consumer_key: 2, shared.consumer_key: 5}
    assert await store.concurrency_allocations() == {
        allocated.consumer_key: 2,
        shared.consumer_key: 5,
    }
    timer.now += TTL  # the record's cache too
    found = await store.integration(shared.consumer_key)
    assert found is not None
    assert found.concurrency_limit == 5

    admin.set_concurrency_limit(allocated.consumer_key, None)
    assert await store.concurrency_allocations() == {shared.consumer_key: 5}
    assert admin.integrations()[0].concurrency_limit is None


def test_an_allocation_is_one_slot_or_more_of_an_integration_that_exists(
    admin: CredentialAdmin,
) -> None:
    consumer_key = admin.add_integration("Order sync").consumer_key
    for bad in (0, -1, True, 1.5):
        with pytest.raises(Refused, match="concurrency limit"):
            admin.set_concurrency_limit(consumer_key, bad)  # type: ignore[arg-type]
    with pytest.raises(Refused, match="concurrency limit"):
        admin.add_integration("Other", concurrency_limit=0)
    with pytest.raises(NotFound):
        admin.set_concurrency_limit("ck-unknown", 2)
    assert [i.name for i in admin.integrations()] == ["Order sync"]
    assert admin.integrations()[0].concurrency_limit is None


def test_an_import_copies_the_records_allocation(admin: CredentialAdmin) -> None:
    admin.import_records(
        [
            Integration("ck-imported", "cs-imported-secret-000", concurrency_limit=3),
            Integration("ck-shared", "cs-shared-secret-00000"),
        ],
        [],
    )
    listed = {i.consumer_key: i.concurrency_limit for i in admin.integrations()}
    assert listed == {"ck-imported": 3, "ck-shared": None}


async def test_all_allocations_cost_one_query_shared_by_concurrent_callers(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    for n in range(3):
        admin.add_integration(f"Integration {n}", consumer_key=f"ck-{n}", concurrency_limit=n + 1)
    admin.add_integration("Shared", consumer_key="ck-shared")
    before = store.queries
    found = await asyncio.gather(*(store.concurrency_allocations() for _ in range(5)))
    assert store.queries == before + 1
    assert found == [{"ck-0": 1, "ck-1": 2, "ck-2": 3}] * 5


# --- a guard over the database --------------------------------------------------------------------


class Caller:
    """An integration of the database and its token, signing requests through a middleware."""

    def __init__(self, admin: CredentialAdmin, name: str) -> None:
        self.integration = admin.add_integration(name)
        self.token = admin.issue_token(self.integration.consumer_key, entity="38", role="3")

    @property
    def consumer_key(self) -> str:
        return self.integration.consumer_key

    def scope(self, path: str = REST_PATH) -> dict[str, Any]:
        header = oauth_header(
            "GET",
            BASE_URL + path,
            consumer_key=self.integration.consumer_key,
            consumer_secret=self.integration.consumer_secret,
            token=self.token.token_id,
            token_secret=self.token.token_secret,
        )
        headers = [(b"authorization", header.encode())]
        return scope_for(Request(raw_path=path.encode(), headers=headers))


async def held(
    middleware: TBAGuardMiddleware, app: HeldApp, caller: Caller, count: int
) -> list[Exchange]:
    """`count` requests of `caller` in flight, once each reached the application (their
    lookups run in the store's threads)."""
    target = app.entered + count
    exchanges = [Exchange(middleware, caller.scope()) for _ in range(count)]
    async with asyncio.timeout(10):  # a bound on a hang, not a timing assertion
        while app.entered < target:
            answered = [exchange.status for exchange in exchanges if exchange.task.done()]
            assert not answered, f"answered {answered} instead of reaching the application"
            await asyncio.sleep(0.005)
    return exchanges


async def answered(exchange: Exchange) -> None:
    """The exchange's answer; one the application holds instead fails the test, not hangs it."""
    async with asyncio.timeout(10):
        await exchange.task


async def refused(middleware: TBAGuardMiddleware, caller: Caller) -> bool:
    exchange = Exchange(middleware, caller.scope())
    await answered(exchange)
    return exchange.status == 429


async def limits(middleware: TBAGuardMiddleware, caller: Caller) -> dict[str, Any]:
    exchange = Exchange(middleware, caller.scope(GOVERNANCE_LIMITS_PATH))
    await answered(exchange)
    found: dict[str, Any] = json.loads(exchange.body)
    return found


async def let_go(app: HeldApp, exchanges: list[Exchange]) -> None:
    app.go.set()
    await asyncio.gather(*(exchange.task for exchange in exchanges))
    assert all(exchange.status == 200 for exchange in exchanges)
    app.go.clear()


def guarded(store: DatabaseCredentials, **settings: Any) -> tuple[TBAGuardMiddleware, HeldApp]:
    """The middleware over the database store, with no records of the settings' own."""
    values = {"integrations": [], "tokens": [], "governance_limit": 3, **settings}
    guard = Guard(make_settings(**values), credentials=store, clock=Clock())
    app = HeldApp()
    return TBAGuardMiddleware(app, guard=guard), app


async def test_a_guard_over_the_database_gives_an_allocated_integration_its_own_slots(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    """The middleware hands the guard's store to governance: the database's allocation
    shrinks the shared pool, which the settings alone never heard of."""
    order_sync, invoices = Caller(admin, "Order sync"), Caller(admin, "Invoices")
    admin.set_concurrency_limit(order_sync.consumer_key, 1)
    middleware, app = guarded(store)

    allocated = await held(middleware, app, order_sync, 1)
    shared = await held(middleware, app, invoices, 2)
    assert app.entered == 3
    assert await refused(middleware, order_sync)  # its one slot is taken
    assert await refused(middleware, invoices)  # 3 - 1: the shared pool is full at 2
    assert await limits(middleware, invoices) == {
        "accountConcurrencyLimit": 3,
        "accountUnallocatedConcurrencyLimit": 2,
        "limitType": "unallocated",
    }
    await let_go(app, allocated + shared)
    governance = middleware.governance
    assert governance is not None
    assert governance.allocations == {order_sync.consumer_key: 1}


async def test_the_authorization_flow_over_the_database_counts_its_allocations_too(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    """`TBAFlow` (what `tba-guard serve` runs) wraps the store in its own credentials: the
    allocations are read through it."""
    order_sync, invoices = Caller(admin, "Order sync"), Caller(admin, "Invoices")
    admin.set_concurrency_limit(order_sync.consumer_key, 2)
    settings = make_settings(integrations=[], tokens=[], governance_limit=3)
    flow = TBAFlow(HeldApp(), guard=Guard(settings, credentials=store, clock=Clock()))
    assert await limits(flow.middleware, invoices) == {
        "accountConcurrencyLimit": 3,
        "accountUnallocatedConcurrencyLimit": 1,
        "limitType": "unallocated",
    }


async def test_the_settings_allocation_wins_over_the_databases(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    order_sync, invoices = Caller(admin, "Order sync"), Caller(admin, "Invoices")
    admin.set_concurrency_limit(order_sync.consumer_key, 1)
    admin.set_concurrency_limit(invoices.consumer_key, 1)
    middleware, _ = guarded(
        store, governance_limit=5, governance_allocations=[f"{order_sync.consumer_key}=3"]
    )
    assert (await limits(middleware, order_sync))["integrationConcurrencyLimit"] == 3
    assert (await limits(middleware, invoices))["accountUnallocatedConcurrencyLimit"] == 1


async def test_an_allocation_changed_in_the_database_reaches_a_running_guard_after_the_ttl(
    admin: CredentialAdmin, url: str, key: str, timer: Timer
) -> None:
    """Without the push (listen off), the TTL bounds how long a change takes: the injected
    timer, the store's and governance's both, moves past it."""
    store = DatabaseCredentials(url, [key], ttl=TTL, timer=timer, listen=False)
    try:
        order_sync, invoices = Caller(admin, "Order sync"), Caller(admin, "Invoices")
        middleware, app = guarded(store, credential_cache_ttl=TTL)
        guard = middleware.guard
        middleware.governance = Governance(
            guard.settings, guard.audit, credentials=store, clock=timer
        )
        await let_go(app, await held(middleware, app, invoices, 3))  # nothing allocated: 3 shared

        admin.set_concurrency_limit(order_sync.consumer_key, 2)
        timer.now += TTL - 1
        assert (await limits(middleware, invoices))["limitType"] == "account"  # not yet
        timer.now += 1
        assert (await limits(middleware, invoices))["accountUnallocatedConcurrencyLimit"] == 1
        shared = await held(middleware, app, invoices, 1)
        assert await refused(middleware, invoices)
        allocated = await held(middleware, app, order_sync, 2)
        assert app.entered == 3 + 1 + 2
        assert await refused(middleware, order_sync)
        await let_go(app, shared + allocated)

        admin.set_concurrency_limit(order_sync.consumer_key, None)
        timer.now += TTL
        assert (await limits(middleware, invoices))["limitType"] == "account"
        await let_go(app, await held(middleware, app, invoices, 3))
    finally:
        store.close()


def rename_integrations(admin: CredentialAdmin, old: str, new: str) -> None:
    """The table out of the way and back: the database then fails the query, for real."""
    with admin.engine.begin() as connection:
        connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


async def test_allocations_the_database_cannot_give_stay_as_they_were_logged_once(
    admin: CredentialAdmin,
    url: str,
    key: str,
    timer: Timer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The records stay cached past governance's TTL (the store's is longer), so requests are
    verified while the allocations cannot be read."""
    store = DatabaseCredentials(url, [key], ttl=60 * TTL, timer=timer, listen=False)
    try:
        order_sync, invoices = Caller(admin, "Order sync"), Caller(admin, "Invoices")
        admin.set_concurrency_limit(order_sync.consumer_key, 1)
        middleware, app = guarded(store, credential_cache_ttl=TTL)
        guard = middleware.guard
        governance = Governance(guard.settings, guard.audit, credentials=store, clock=timer)
        middleware.governance = governance
        await limits(middleware, order_sync)
        await limits(middleware, invoices)  # both records cached
        assert governance.unallocated == 2

        rename_integrations(admin, "tba_integrations", "tba_integrations_away")
        with caplog.at_level(logging.WARNING, logger="tba_guard.governance"):
            for _ in range(3):
                timer.now += TTL
                shared = await held(middleware, app, invoices, 2)
                assert await refused(middleware, invoices)  # still 3 - 1
                await let_go(app, shared)
        warnings = [r for r in caplog.records if r.name == "tba_guard.governance"]
        assert len(warnings) == 1
        assert "the previous ones stay" in warnings[0].getMessage()
        assert key not in caplog.text

        rename_integrations(admin, "tba_integrations_away", "tba_integrations")
        admin.set_concurrency_limit(order_sync.consumer_key, None)
        timer.now += TTL
        assert (await limits(middleware, invoices))["limitType"] == "account"
        assert governance.unallocated == 3

        rename_integrations(admin, "tba_integrations", "tba_integrations_away")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tba_guard.governance"):
            timer.now += TTL
            await limits(middleware, invoices)
        # Answered again in between: a new outage is told again.
        assert [r.name for r in caplog.records].count("tba_guard.governance") == 1
        rename_integrations(admin, "tba_integrations_away", "tba_integrations")
    finally:
        store.close()


async def test_a_settings_store_costs_governance_no_reload() -> None:
    """The settings' records: no `concurrency_allocations`, so the accepted path awaits
    nothing more than the slot."""
    settings = make_settings(
        integrations=[Integration("ck-a", "cs-a-secret-000000000", concurrency_limit=1)],
        tokens=[Token("tk-a", "ts-a-secret-0000000", "ck-a", entity="38", role="3")],
        governance_limit=3,
    )
    guard = Guard(settings, clock=Clock())
    governance = Governance(guard.settings, guard.audit, credentials=guard.credentials)
    assert governance._load is None
    assert (governance.allocations, governance.unallocated) == ({"ck-a": 1}, 2)
