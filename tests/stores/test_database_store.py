"""The credential database store against real SQLite and PostgreSQL: what it finds, what it
caches and for how long, how many queries a flood costs, the secrets it never stores in clear,
the migrations, and the flow's access tokens."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tba_guard.core.records import Token
from tba_guard.core.settings import GuardSettings, SettingsError
from tba_guard.stores import credential_store_for, token_store_for
from tba_guard.stores.database import store as store_module
from tba_guard.stores.database.admin import CredentialAdmin
from tba_guard.stores.database.schema import VERSION_TABLE, metadata
from tba_guard.stores.database.sealing import Sealer
from tba_guard.stores.database.store import DatabaseCredentials, DatabaseUnavailable
from tba_guard.stores.database.tokens import MemoryRequestTokens
from tests.support.databases import (
    Timer,
    database_url,
    free_port,
    fresh_key,
    postgres_database,
    prepared,
    wait_for,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as found:
        yield found


async def test_finds_the_integrations_and_tokens_the_admin_created(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    integration = admin.add_integration("Order sync", authorization_flow=True)
    token = admin.issue_token(integration.consumer_key, entity="38", role="3", account="123")
    assert await store.integration(integration.consumer_key) == integration
    assert await store.token(token.token_id) == token
    assert await store.integration("ck-unknown") is None
    assert await store.token("tk-unknown") is None


async def test_a_revocation_or_a_block_bites_once_the_ttl_passes(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    integration = admin.add_integration("Order sync")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    assert (await store.token(token.token_id)) == token  # cached from here
    admin.revoke_token(token.token_id)
    admin.set_state(integration.consumer_key, "blocked")
    timer.now += 4.9
    assert (await store.token(token.token_id)) == token  # within the TTL: still cached
    timer.now += 0.2
    found = await store.token(token.token_id)
    assert found is not None
    assert found.revoked
    blocked = await store.integration(integration.consumer_key)
    assert blocked is not None
    assert blocked.state == "blocked"


async def test_a_flood_of_unknown_consumer_keys_costs_a_query_a_second_at_most(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    admin.add_integration("Order sync")
    for second in range(10):
        for n in range(1000):
            assert await store.integration(f"ck-made-up-{second}-{n}") is None
        timer.now += 1.0
    assert store.queries <= 10  # one directory reload a second, not 10,000 lookups


async def test_an_integration_added_elsewhere_is_found_within_a_second(
    store: DatabaseCredentials, admin: CredentialAdmin, timer: Timer
) -> None:
    assert await store.integration("ck-later") is None  # the directory is loaded, without it
    admin.add_integration("Later", consumer_key="ck-later")
    timer.now += 1.0
    found = await store.integration("ck-later")
    assert found is not None
    assert found.name == "Later"


async def test_concurrent_misses_for_one_id_cost_one_query(
    store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    integration = admin.add_integration("Order sync")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    await store.token("warm-the-directory")
    before = store.queries
    found = await asyncio.gather(*(store.token(token.token_id) for _ in range(50)))
    assert all(item == token for item in found)
    assert store.queries == before + 1


async def test_the_negative_cache_is_bounded_and_spares_repeated_misses(
    url: str, key: str, admin: CredentialAdmin, timer: Timer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "DIRECTORY_MAX", 0)  # every table "too large to hold"
    admin.issue_token(admin.add_integration("Order sync").consumer_key, entity="38", role="3")
    store = DatabaseCredentials(url, [key], ttl=5.0, cache_size=100, timer=timer, listen=False)
    try:
        for _ in range(5):
            assert await store.token("tk-unknown") is None
        queries = store.queries
        assert queries == 2  # the directory (found too large) and the id, once
        for n in range(1000):
            await store.token(f"tk-unknown-{n}")
        assert len(store._missing["token"]) <= 100
    finally:
        store.close()


async def test_a_database_that_refuses_is_unavailable_within_the_timeout() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    store = DatabaseCredentials(url, [fresh_key()], ttl=5.0, timeout=0.5, listen=False)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await store.integration("ck-any")
        assert time.monotonic() - started < 5  # bounded: the timeout, plus slack for CI
    finally:
        store.close()


async def test_without_the_key_that_sealed_them_secrets_do_not_open(
    url: str, store: DatabaseCredentials, admin: CredentialAdmin
) -> None:
    integration = admin.add_integration("Order sync")
    stranger = DatabaseCredentials(url, [fresh_key()], ttl=5.0, listen=False)
    try:
        with pytest.raises(DatabaseUnavailable, match="no credential_key opens"):
            await stranger.integration(integration.consumer_key)
    finally:
        stranger.close()


async def test_rekey_seals_every_secret_under_the_new_key(
    url: str, key: str, admin: CredentialAdmin
) -> None:
    integration = admin.add_integration("Order sync")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    new = fresh_key()
    rotating = CredentialAdmin(admin.engine, Sealer([new, key]))
    assert rotating.rekey() == 2
    only_new = DatabaseCredentials(url, [new], ttl=5.0, listen=False)
    try:
        assert await only_new.integration(integration.consumer_key) == integration
        assert await only_new.token(token.token_id) == token
    finally:
        only_new.close()


def test_a_sealed_secret_copied_to_another_row_does_not_open(key: str) -> None:
    sealer = Sealer([key])
    sealed = sealer.seal("token", "tk-a", "ts-secret-of-token-a")
    assert sealer.open("token", "tk-a", sealed) == "ts-secret-of-token-a"
    with pytest.raises(Exception, match="another row"):
        sealer.open("token", "tk-b", sealed)


def test_a_dump_of_the_tables_holds_no_secret(
    backend: str, url: str, admin: CredentialAdmin, tmp_path: Path
) -> None:
    integration = admin.add_integration("Order sync")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    imported = admin.import_records(
        [], [Token("tk-imported", "ts-imported-token-secret", integration.consumer_key)]
    )
    assert imported.added == ("token tk-imported",)
    if backend == "sqlite":
        dump = subprocess.run(
            ["sqlite3", url.removeprefix("sqlite:///"), ".dump"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    else:
        dump = subprocess.run(["pg_dump", url], capture_output=True, text=True, check=True).stdout
    assert integration.consumer_key in dump
    assert token.token_id in dump
    for secret in (integration.consumer_secret, token.token_secret, "ts-imported-token-secret"):
        assert secret not in dump


def test_the_migrations_build_the_schema_the_code_uses(admin: CredentialAdmin) -> None:
    with admin.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


async def test_the_flow_keeps_its_access_tokens_in_the_database(
    url: str, key: str, admin: CredentialAdmin
) -> None:
    integration = admin.add_integration("Flow app", authorization_flow=True)
    settings = GuardSettings(credential_store=url, credential_key=(key,))
    tokens = token_store_for(settings)
    credentials = credential_store_for(settings)
    assert isinstance(tokens, MemoryRequestTokens)
    assert tokens.database is credentials  # one cache and one pool for both
    issued = Token("tk-" + "f" * 40, "ts-" + "e" * 40, integration.consumer_key, "38", "3")
    await tokens.put_access_token(issued)
    # Another process (a fresh store) finds it: it outlives the process that issued it.
    later = DatabaseCredentials(url, [key], ttl=5.0, listen=False)
    try:
        assert await later.flow_token(issued.token_id) == issued
        # The flow's tokens are served by the flow, which checks their user on each use.
        assert await later.token(issued.token_id) is None
    finally:
        later.close()
        credentials.close()  # type: ignore[attr-defined]
    listed = {info.token_id: info.issued_by for info in admin.tokens()}
    assert listed == {issued.token_id: "flow"}


async def test_on_postgresql_a_revocation_is_pushed_within_a_second() -> None:
    with postgres_database() as url:
        key = fresh_key()
        admin = prepared(url, key)
        try:
            await revocation_pushed(url, key, admin)
        finally:
            admin.engine.dispose()


async def revocation_pushed(url: str, key: str, admin: CredentialAdmin) -> None:
    integration = admin.add_integration("Order sync")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    store = DatabaseCredentials(url, [key], ttl=60.0)  # the TTL alone would take a minute
    try:
        await store.integration(integration.consumer_key)
        await asyncio.to_thread(wait_for, lambda: store.push_connected, 10)
        assert await store.token(token.token_id) == token
        admin.revoke_token(token.token_id)
        started = time.monotonic()
        while True:
            found = await store.token(token.token_id)
            if found is not None and found.revoked:
                break
            assert time.monotonic() - started < 1.0, "the revocation was not pushed in 1 s"
            await asyncio.sleep(0.01)
    finally:
        store.close()


def test_a_database_credential_store_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="credential_key: required"):
        GuardSettings(credential_store=f"sqlite:///{tmp_path}/tba.db")
    for bad in (("not-a-fernet-key",), ("é" * 44,), (42,), 42):
        with pytest.raises(SettingsError, match="credential_key"):
            GuardSettings(credential_key=bad)
    with pytest.raises(SettingsError, match="credential_store"):
        GuardSettings(credential_store="mysql://root:hunter2@db/tba")


def test_the_cache_ttl_defaults_to_five_seconds_for_a_database_and_none_for_settings(
    tmp_path: Path,
) -> None:
    key = fresh_key()
    environ = {
        "TBA_GUARD_CREDENTIAL_STORE": f"sqlite:///{tmp_path}/tba.db",
        "TBA_GUARD_CREDENTIAL_KEY": f"{key}, {fresh_key()}",
    }
    settings = GuardSettings.from_env(environ)
    assert settings.effective_credential_cache_ttl == 5.0
    assert settings.credential_key[0] == key
    assert len(settings.credential_key) == 2
    assert GuardSettings().effective_credential_cache_ttl == 0.0
    assert GuardSettings(credential_cache_ttl=2).effective_credential_cache_ttl == 2.0
    assert "hunter2" not in repr(
        GuardSettings(credential_store="postgresql://u:hunter2@h/d", credential_key=(key,))
    )
