"""OAuth 2.0 in the credential database, against real SQLite and PostgreSQL: integrations with
their client ID and schemes, the certificate mappings and the rules a new one must meet, the
store's lookups by client ID and certificate ID through its caches (pushed on PostgreSQL), and
the usage counts the guards flush."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tba_guard.stores.database import connect, migrate
from tba_guard.stores.database.admin import (
    MAX_ACTIVE_CERTIFICATES,
    CredentialAdmin,
    NotFound,
    Refused,
)
from tba_guard.stores.database.sealing import Sealer
from tba_guard.stores.database.store import DatabaseCredentials
from tests.support.databases import (
    Timer,
    database_url,
    fresh_key,
    postgres_database,
    prepared,
    wait_for,
)
from tests.support.oauth2 import certificate_pem, ec_key, rsa_key

CLIENT_ID = "client-order-sync"
DAY = 86400.0


def fresh_pem(key: object = None, *, days: float = 365, started: float = 3600) -> str:
    """A certificate valid from `started` seconds ago for `days` days (real time: the admin's
    clock is the wall clock)."""
    return certificate_pem(key or ec_key(), days=days, not_before=time.time() - started)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as found:
        yield found


def order_sync(admin: CredentialAdmin) -> str:
    return admin.add_integration("Order sync", client_id=CLIENT_ID).consumer_key


# --- integrations -----------------------------------------------------------------------------


async def test_an_integration_reads_back_with_its_client_id_and_schemes(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    added = admin.add_integration("Order sync", client_id=CLIENT_ID, schemes=["oauth2"])
    plain = admin.add_integration("Legacy")
    found = await store.integration(added.consumer_key)
    assert found == added
    assert found is not None
    assert (found.client_id, found.schemes) == (CLIENT_ID, ("oauth2",))
    listed = {i.name: i for i in admin.integrations()}["Order sync"]
    assert (listed.client_id, listed.schemes) == (CLIENT_ID, ("oauth2",))
    assert (await store.integration(plain.consumer_key)) == plain  # both schemes, no client


def test_schemes_are_set_in_order_and_anything_else_is_refused(admin: CredentialAdmin) -> None:
    consumer_key = order_sync(admin)
    admin.set_schemes(consumer_key, ["oauth2", "tba"])
    assert admin.integrations()[0].schemes == ("tba", "oauth2")
    admin.set_schemes(consumer_key, ["tba"])
    assert admin.integrations()[0].schemes == ("tba",)
    for bad in ([], ["tba", "oauth1"]):
        with pytest.raises(Refused, match="schemes"):
            admin.set_schemes(consumer_key, bad)
    with pytest.raises(NotFound):
        admin.set_schemes("ck-unknown", ["tba"])


def test_a_client_id_names_one_integration(admin: CredentialAdmin) -> None:
    consumer_key = order_sync(admin)
    other = admin.add_integration("Other").consumer_key
    with pytest.raises(Refused, match="already integration"):
        admin.set_client(other, CLIENT_ID)
    with pytest.raises(Refused, match="already integration"):
        admin.add_integration("Third", client_id=CLIENT_ID)
    admin.set_client(consumer_key, CLIENT_ID)  # its own again: no conflict
    admin.set_client(consumer_key, None)
    admin.set_client(other, CLIENT_ID)
    assert {i.consumer_key: i.client_id for i in admin.integrations()} == {
        consumer_key: None,
        other: CLIENT_ID,
    }


def test_an_integration_of_revision_0001_keeps_tba_and_may_start_oauth2(url: str, key: str) -> None:
    engine = connect.create(url, timeout=10.0)
    try:
        migrate.upgrade(engine, "0001")
        old = CredentialAdmin(engine, Sealer([key]))
        with engine.begin() as connection:  # a row as revision 0001's code wrote it
            connection.exec_driver_sql(
                "INSERT INTO tba_integrations (consumer_key, name, secret_sealed, state, "
                "authorization_flow, created_at, updated_at) VALUES "
                f"('ck-old', 'Old', '{old.sealer.seal('integration', 'ck-old', 'cs-' * 6)}', "
                "'enabled', false, 1, 1)"
            )
        migrate.upgrade(engine)
        found = old.integration_with_secret("ck-old")
        assert (found.client_id, found.schemes) == (None, ("tba", "oauth2"))
        migrate.upgrade(engine)  # at the head: nothing to do
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_the_oauth2_revision_downgrades_to_0001(url: str, key: str) -> None:
    admin = prepared(url, key)
    try:
        consumer_key = order_sync(admin)
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem())
        from alembic import command

        config = migrate._config()
        with admin.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        assert migrate.current(admin.engine) == "0001"
        with admin.engine.connect() as connection:
            row = connection.exec_driver_sql("SELECT * FROM tba_integrations").mappings().one()
        assert row["consumer_key"] == consumer_key
        assert "client_id" not in row
    finally:
        admin.engine.dispose()


# --- certificates: the rules a new mapping meets --------------------------------------------


def test_a_certificate_is_mapped_and_listed_with_its_kind_and_validity(
    admin: CredentialAdmin,
) -> None:
    consumer_key = order_sync(admin)
    pem = fresh_pem(rsa_key(3072), days=90)
    mapping = admin.add_certificate(CLIENT_ID, "38", "3", pem, certificate_id="cert-1")
    assert (mapping.certificate_id, mapping.consumer_key, mapping.client_id) == (
        "cert-1",
        consumer_key,
        CLIENT_ID,
    )
    assert (mapping.kind, mapping.state, mapping.revoked_at) == ("RSA 3072", "active", None)
    assert mapping.not_after - mapping.not_before == pytest.approx(90 * DAY)
    generated = admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(ec_key("secp384r1")))
    assert len(generated.certificate_id) >= 32  # random: unguessable, as NetSuite's are
    assert generated.kind == "EC P-384"
    assert [m.certificate_id for m in admin.certificates(CLIENT_ID)] == [
        "cert-1",
        generated.certificate_id,
    ]
    assert admin.certificates("client-other") == []


def test_an_rsa_2048_certificate_is_refused(admin: CredentialAdmin) -> None:
    order_sync(admin)
    with pytest.raises(Refused, match="2048 bits"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(rsa_key(2048)))
    assert admin.certificates() == []


def test_a_key_on_another_curve_is_refused(admin: CredentialAdmin) -> None:
    order_sync(admin)
    bitcoin_curve = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(Refused, match="neither RSA nor EC P-256"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(bitcoin_curve))


def test_a_certificate_valid_for_more_than_two_years_is_refused(admin: CredentialAdmin) -> None:
    order_sync(admin)
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(days=2 * 365 + 1))  # the limit
    with pytest.raises(Refused, match="more than two years"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(days=2 * 365 + 2))


def test_an_expired_certificate_is_refused(admin: CredentialAdmin) -> None:
    order_sync(admin)
    with pytest.raises(Refused, match="expired"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(days=30, started=31 * DAY))


def test_text_that_is_no_certificate_is_refused(admin: CredentialAdmin) -> None:
    order_sync(admin)
    with pytest.raises(Refused, match=r"not a PEM X\.509 certificate"):
        admin.add_certificate(CLIENT_ID, "38", "3", "-----BEGIN CERTIFICATE-----\nAAAA\n")


def test_a_sixth_active_certificate_is_refused_until_one_is_revoked(
    admin: CredentialAdmin,
) -> None:
    order_sync(admin)
    other = admin.add_integration("Other", client_id="client-other")
    for n in range(MAX_ACTIVE_CERTIFICATES):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id=f"cert-{n}")
    with pytest.raises(Refused, match="5 active certificates"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-5")
    # The cap is per integration, and counts only the active ones.
    admin.add_certificate("client-other", "38", "3", fresh_pem())
    admin.revoke_certificate("cert-0")
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-5")
    states = [m.state for m in admin.certificates(CLIENT_ID)]
    assert states.count("active") == MAX_ACTIVE_CERTIFICATES
    assert states.count("revoked") == 1
    assert len(admin.certificates(other.client_id)) == 1


def test_an_unknown_client_id_or_a_taken_certificate_id_is_refused(
    admin: CredentialAdmin,
) -> None:
    order_sync(admin)
    with pytest.raises(NotFound, match="client ID 'client-unknown'"):
        admin.add_certificate("client-unknown", "38", "3", fresh_pem())
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-1")
    with pytest.raises(Refused, match="'cert-1' is taken"):
        admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-1")


def test_a_revoked_certificate_is_kept_with_its_state_and_time(admin: CredentialAdmin) -> None:
    order_sync(admin)
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-1")
    before = time.time()
    admin.revoke_certificate("cert-1")
    admin.revoke_certificate("cert-1")  # again: nothing more happens
    (kept,) = admin.certificates()
    assert kept.state == "revoked"
    assert kept.revoked_at is not None
    assert kept.revoked_at >= before - 1
    with pytest.raises(NotFound):
        admin.revoke_certificate("cert-unknown")


def test_removing_an_integration_removes_its_certificates(admin: CredentialAdmin) -> None:
    consumer_key = order_sync(admin)
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem())
    admin.remove_integration(consumer_key)
    assert admin.certificates() == []


def test_certificate_changes_are_audited_by_identifiers_only(
    admin: CredentialAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    order_sync(admin)
    pem = fresh_pem()
    with caplog.at_level(logging.INFO, logger="tba_guard.audit"):
        admin.add_certificate(CLIENT_ID, "38", "3", pem, certificate_id="cert-1")
        admin.revoke_certificate("cert-1")
        admin.set_schemes(admin.integrations()[0].consumer_key, ["oauth2"])
    actions = [record.tba_change["action"] for record in caplog.records]  # type: ignore[attr-defined]
    assert actions == ["certificate.add", "certificate.revoke", "integration.schemes"]
    body = pem.splitlines()[1]
    assert all(body not in record.getMessage() for record in caplog.records)
    assert "cert-1" in caplog.records[0].getMessage()


# --- the store's lookups ------------------------------------------------------------------------


async def test_client_finds_the_integration_by_client_id_through_the_cache(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    consumer_key = order_sync(admin)
    found = await store.client(CLIENT_ID)
    assert found is not None
    assert found.consumer_key == consumer_key
    assert found == await store.integration(consumer_key)  # the secret opened as well
    queries = store.queries
    for _ in range(100):
        assert await store.client(CLIENT_ID) == found
    assert store.queries == queries  # cached
    admin.set_state(consumer_key, "blocked")
    timer.now += 5.1
    blocked = await store.client(CLIENT_ID)
    assert blocked is not None
    assert blocked.state == "blocked"


async def test_certificate_finds_the_mapping_with_its_client_id_through_the_cache(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    order_sync(admin)
    pem = fresh_pem()
    admin.add_certificate(CLIENT_ID, "38", "3", pem, certificate_id="cert-1")
    found = await store.certificate("cert-1")
    assert found is not None
    assert (found.client_id, found.entity, found.role, found.state) == (
        CLIENT_ID,
        "38",
        "3",
        "active",
    )
    assert found.certificate.strip() == pem.strip()
    admin.revoke_certificate("cert-1")
    queries = store.queries
    assert await store.certificate("cert-1") == found  # within the TTL: the cache's
    assert store.queries == queries
    timer.now += 5.1
    revoked = await store.certificate("cert-1")
    assert revoked is not None
    assert revoked.state == "revoked"  # kept: the guard names the reason


async def test_a_flood_of_unknown_client_and_certificate_ids_costs_a_query_a_second(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    order_sync(admin)
    for second in range(5):
        for n in range(500):
            assert await store.client(f"client-made-up-{second}-{n}") is None
            assert await store.certificate(f"cert-made-up-{second}-{n}") is None
        timer.now += 1.0
    assert store.queries <= 10  # a directory reload a second for each, not 5,000 lookups


async def test_a_change_notice_for_an_integration_drops_its_client_and_mappings(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    consumer_key = order_sync(admin)
    admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-1")
    assert await store.client(CLIENT_ID) is not None
    assert await store.client("client-renamed") is None  # known missing, from here
    admin.set_client(consumer_key, "client-renamed")
    store.changed("integration", consumer_key)  # what the PostgreSQL listener queues
    assert await store.client(CLIENT_ID) is None
    renamed = await store.client("client-renamed")
    assert renamed is not None
    assert renamed.consumer_key == consumer_key
    mapping = await store.certificate("cert-1")
    assert mapping is not None
    assert mapping.client_id == "client-renamed"  # the mapping follows its integration


async def test_on_postgresql_a_certificate_revocation_and_a_new_client_id_are_pushed() -> None:
    with postgres_database() as url:
        key = fresh_key()
        admin = prepared(url, key)
        store = DatabaseCredentials(url, [key], ttl=60.0)  # the TTL alone would take a minute
        try:
            consumer_key = order_sync(admin)
            admin.add_certificate(CLIENT_ID, "38", "3", fresh_pem(), certificate_id="cert-1")
            assert await store.client(CLIENT_ID) is not None
            await asyncio.to_thread(wait_for, lambda: store.push_connected, 10)
            found = await store.certificate("cert-1")
            assert found is not None
            assert found.state == "active"
            admin.revoke_certificate("cert-1")
            await until(store, lambda: _state(store, "cert-1"), "revoked")
            admin.set_client(consumer_key, "client-renamed")
            await until(store, lambda: _consumer_of(store, "client-renamed"), consumer_key)
            assert await store.client(CLIENT_ID) is None
        finally:
            store.close()
            admin.engine.dispose()


async def _state(store: DatabaseCredentials, certificate_id: str) -> str | None:
    found = await store.certificate(certificate_id)
    return None if found is None else found.state


async def _consumer_of(store: DatabaseCredentials, client_id: str) -> str | None:
    found = await store.client(client_id)
    return None if found is None else found.consumer_key


async def until(
    store: DatabaseCredentials, probe: Callable[[], Awaitable[object]], expected: object
) -> None:
    """Poll the store until `probe()` gives `expected`; fails after one second."""
    started = time.monotonic()
    while await probe() != expected:
        assert time.monotonic() - started < 1.0, f"not pushed within 1 s: {expected!r}"
        await asyncio.sleep(0.01)


# --- usage ------------------------------------------------------------------------------------


async def test_flush_usage_adds_the_counts_and_keeps_the_latest_use(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    await store.flush_usage({})  # nothing to write: no query
    assert store.queries == 0
    await store.flush_usage(
        {("ck-a", "tk-1", "tba"): (3, 1000.0), ("ck-a", "cert-1", "oauth2"): (1, 1100.0)}
    )
    # Another process's flush, which saw an earlier last use of tk-1: the later one stays.
    await store.flush_usage(
        {("ck-a", "tk-1", "tba"): (2, 900.0), ("ck-b", "tk-2", "tba"): (5, 950.0)}
    )
    await store.flush_usage({("ck-a", "cert-1", "oauth2"): (4, 1200.0)})
    rows = {(u.consumer_key, u.token_id, u.scheme): (u.count, u.last_used) for u in admin.usage()}
    assert rows == {
        ("ck-a", "cert-1", "oauth2"): (5, 1200.0),
        ("ck-a", "tk-1", "tba"): (5, 1000.0),
        ("ck-b", "tk-2", "tba"): (5, 950.0),
    }


async def test_concurrent_flushes_lose_no_count(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    await asyncio.gather(
        *(store.flush_usage({("ck-a", "tk-1", "tba"): (1, float(n))}) for n in range(20))
    )
    (row,) = admin.usage()
    assert (row.count, row.last_used) == (20, 19.0)


async def test_usage_since_keeps_what_was_used_at_or_after_it(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    await store.flush_usage(
        {("ck-a", "tk-old", "tba"): (1, 1000.0), ("ck-a", "cert-new", "oauth2"): (1, 2000.0)}
    )
    assert [u.token_id for u in admin.usage(since=2000.0)] == ["cert-new"]
    assert [u.token_id for u in admin.usage(since=1000.0)] == ["cert-new", "tk-old"]
    assert admin.usage(since=2000.5) == []
