"""A token's lifecycle as NetSuite keeps it: active, inactive (a switch turned back on at will)
and revoked (final, kept). Inactive and revoked tokens are both `TokenRejected` on the wire;
the audit record, the problem and explain say which. Against the settings, the flow's tokens
and real SQLite and PostgreSQL databases, with requests signed by oauthlib's `Client`; and the
last use of each token and integration, written once per token per flush interval."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from oauthlib.oauth1 import Client

from tba_guard import (
    AuditEvent,
    Guard,
    GuardSettings,
    Integration,
    SettingsError,
    TBAGuardMiddleware,
    Token,
    User,
)
from tba_guard.core.checks import check_token_usable
from tba_guard.core.errors import ErrorCode, TBAError
from tba_guard.stores.database.admin import CredentialAdmin, NotFound, Refused
from tba_guard.stores.database.store import DatabaseCredentials
from tba_guard.stores.memory import FlowCredentials, MemoryTokenStore, StaticCredentials
from tba_guard.tools.explain import explain
from tests.support import BASE_URL, NOW, REALM, Clock, echo_app
from tests.support.databases import Timer, database_url, fresh_key, postgres_database, prepared

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"
CONSUMER_KEY = "ck-lifecycle"
CONSUMER_SECRET = "cs-LIFECYCLE-consumer-secret"
SECRETS = {
    "tk-active": "ts-ACTIVE-token-secret-1",
    "tk-inactive": "ts-INACTIVE-token-secret-2",
    "tk-revoked": "ts-REVOKED-token-secret-3",
    "tk-revoked-state": "ts-REVOKED-STATE-secret-4",
    "tk-entity-off": "ts-ENTITY-OFF-secret-5",
}
_nonces = itertools.count(1)


def settings_with_tokens(**overrides: object) -> GuardSettings:
    values: dict[str, object] = {
        "realm": REALM,
        "integrations": [Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Lifecycle")],
        "tokens": [
            Token("tk-active", SECRETS["tk-active"], CONSUMER_KEY, entity="38", role="3"),
            Token("tk-inactive", SECRETS["tk-inactive"], CONSUMER_KEY, state="inactive"),
            Token("tk-revoked", SECRETS["tk-revoked"], CONSUMER_KEY, revoked=True),
            Token("tk-revoked-state", SECRETS["tk-revoked-state"], CONSUMER_KEY, state="revoked"),
            Token("tk-entity-off", SECRETS["tk-entity-off"], CONSUMER_KEY, active=False),
        ],
    }
    values.update(overrides)
    return GuardSettings(**values)  # type: ignore[arg-type]


def authorization(
    token_id: str,
    token_secret: str,
    *,
    consumer_key: str = CONSUMER_KEY,
    consumer_secret: str = CONSUMER_SECRET,
    timestamp: float = NOW,
) -> str:
    """Signed by oauthlib's `Client`, not by tba_guard."""
    client = Client(
        consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=token_id,
        resource_owner_secret=token_secret,
        signature_method="HMAC-SHA256",
        realm=REALM,
        nonce=f"lifecycle{next(_nonces):010d}",
        timestamp=str(int(timestamp)),
    )
    _, headers, _ = client.sign(URL, http_method="GET")
    return str(headers["Authorization"])


@asynccontextmanager
async def guarded(guard: Guard) -> AsyncIterator[httpx.AsyncClient]:
    app = TBAGuardMiddleware(echo_app(), guard=guard)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def get(client: httpx.AsyncClient, token_id: str, token_secret: str, **kw: object) -> str:
    """The verdict: "OK", or the error code and the problem the challenge names."""
    response = await client.get(
        URL,
        headers={"Authorization": authorization(token_id, token_secret, **kw)},  # type: ignore[arg-type]
    )
    if response.status_code == 200:
        return "OK"
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    problem = challenge.split('oauth_problem="', 1)[1].split('"', 1)[0]
    return f"{response.json()['error']['code']} {problem}"


# --- the record and the check -------------------------------------------------------------------


def test_the_record_keeps_its_old_keywords_and_the_state_is_one_field_more() -> None:
    positional = Token("tk", "ts", "ck", "38", "3", True, False, None, None)
    assert (positional.state, positional.current_state) == ("active", "active")
    assert Token("tk", "ts", "ck", revoked=True).current_state == "revoked"
    assert Token("tk", "ts", "ck", state="inactive").current_state == "inactive"
    assert Token("tk", "ts", "ck", state="revoked").current_state == "revoked"
    # `active` stays the entity and role: not the record's state.
    assert Token("tk", "ts", "ck", active=False).current_state == "active"


@pytest.mark.parametrize(
    ("token", "reason", "problem"),
    [
        (Token("tk", "ts", CONSUMER_KEY, state="inactive"), "inactive token", "token_inactive"),
        (Token("tk", "ts", CONSUMER_KEY, revoked=True), "revoked token", "token_revoked"),
        (Token("tk", "ts", CONSUMER_KEY, state="revoked"), "revoked token", "token_revoked"),
        # A state a store of one's own made up is not "active": refused, as inactive.
        (Token("tk", "ts", CONSUMER_KEY, state="paused"), "inactive token", "token_inactive"),  # type: ignore[arg-type]
        # Revoked wins over an inactive switch: it is final.
        (
            Token("tk", "ts", CONSUMER_KEY, revoked=True, state="inactive"),
            "revoked token",
            "token_revoked",
        ),
    ],
    ids=["inactive", "revoked", "state revoked", "made-up state", "revoked and inactive"],
)
def test_a_token_not_active_is_token_rejected_and_the_reason_names_its_state(
    token: Token, reason: str, problem: str
) -> None:
    integration = Integration(CONSUMER_KEY, CONSUMER_SECRET)
    with pytest.raises(TBAError) as raised:
        check_token_usable(token, {}, integration, realm=None, now=NOW)
    assert raised.value.code is ErrorCode.TOKEN_REJECTED
    assert (raised.value.reason, raised.value.oauth_problem) == (reason, problem)


# --- on the wire, in the audit log and in explain -------------------------------------------


async def test_inactive_and_revoked_are_one_wire_code_and_the_audit_says_which() -> None:
    events: list[AuditEvent] = []
    guard = Guard(settings_with_tokens(), clock=Clock(), audit_hooks=[events.append])
    async with guarded(guard) as client:
        verdicts = {
            token_id: await get(client, token_id, secret) for token_id, secret in SECRETS.items()
        }
    assert verdicts == {
        "tk-active": "OK",
        "tk-inactive": "TokenRejected token_inactive",
        "tk-revoked": "TokenRejected token_revoked",
        "tk-revoked-state": "TokenRejected token_revoked",
        # The entity or role, not the token record: its own code still.
        "tk-entity-off": "EntityOrRoleDisabled permission_denied",
    }
    reasons = {event.token_id: (event.outcome, event.code, event.reason) for event in events}
    assert reasons["tk-inactive"] == ("rejected", "TokenRejected", "inactive token")
    assert reasons["tk-revoked"] == ("rejected", "TokenRejected", "revoked token")
    assert reasons["tk-revoked-state"] == ("rejected", "TokenRejected", "revoked token")
    assert reasons["tk-active"] == ("accepted", "", "")


async def test_explain_tells_an_inactive_token_from_a_revoked_one() -> None:
    config = settings_with_tokens()
    printed = {}
    for token_id in ("tk-inactive", "tk-revoked"):
        header = authorization(token_id, SECRETS[token_id])
        lines, accepted = await explain(config, "GET", URL, header, "", NOW)
        assert not accepted
        printed[token_id] = "\n".join(lines)
    assert "Rejected: TokenRejected (HTTP 401)" in printed["tk-inactive"]
    assert "Reason: inactive token" in printed["tk-inactive"]
    assert "Reason: revoked token" in printed["tk-revoked"]
    assert "revoked" not in printed["tk-inactive"].split("Reason:", 1)[1].splitlines()[0]
    # Each state's own fix, not TokenRejected's generic one.
    assert "tba-guard token activate" in printed["tk-inactive"]
    assert "a revocation is final" in printed["tk-revoked"]
    assert "tba-guard token activate" not in printed["tk-revoked"]
    for text in printed.values():  # explain never prints a secret
        assert all(secret not in text for secret in (CONSUMER_SECRET, *SECRETS.values()))


async def test_a_flow_token_whose_user_is_gone_is_entity_or_role_disabled_unless_inactive() -> None:
    """The flow's tokens are checked against their user on each use: a user deactivated is
    `EntityOrRoleDisabled`; a token record switched off is `TokenRejected` first."""
    tokens = MemoryTokenStore(max_per_integration=10)
    users = {
        "38": User("38", "alice", roles=("3",)),
        "41": User("41", "bob", roles=("3",), active=False),
    }

    async def user(entity: str) -> User | None:
        return users.get(entity)

    flow_secrets = {"at-alice": "at-ALICE-secret-0001", "at-bob": "at-BOB-secret-0002"}
    await tokens.put_access_token(
        Token("at-alice", flow_secrets["at-alice"], CONSUMER_KEY, "38", "3")
    )
    await tokens.put_access_token(Token("at-bob", flow_secrets["at-bob"], CONSUMER_KEY, "41", "3"))
    await tokens.put_access_token(
        Token("at-off", "at-OFF-secret-00003", CONSUMER_KEY, "41", "3", state="inactive")
    )
    settings = settings_with_tokens(tokens=[])
    credentials = FlowCredentials(StaticCredentials(settings.integrations), tokens, user)
    guard = Guard(settings, credentials=credentials, clock=Clock())
    async with guarded(guard) as client:
        assert await get(client, "at-alice", flow_secrets["at-alice"]) == "OK"
        assert await get(client, "at-bob", flow_secrets["at-bob"]) == (
            "EntityOrRoleDisabled permission_denied"
        )
        assert await get(client, "at-off", "at-OFF-secret-00003") == (
            "TokenRejected token_inactive"
        )


# --- settings files -----------------------------------------------------------------------------


def test_a_settings_file_carries_the_state_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    secret = "ts-settings-token-secret-9"
    path = tmp_path / "tba.toml"
    path.write_text(
        f"""
[guard]
realm = "{REALM}"

[[integrations]]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"

[[tokens]]
token_id = "tk-paused"
token_secret = "{secret}"
consumer_key = "{CONSUMER_KEY}"
state = "inactive"
"""
    )
    (token,) = GuardSettings.from_toml(path).tokens
    assert token.current_state == "inactive"
    path.write_text(path.read_text().replace('"inactive"', '"paused"'))
    with pytest.raises(SettingsError) as raised:
        GuardSettings.from_toml(path)
    assert "tokens[0].state: expected 'active', 'inactive' or 'revoked', got 'paused'" in str(
        raised.value
    )
    assert secret not in str(raised.value)


# --- the credential database --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as found:
        yield found


def states(admin: CredentialAdmin) -> dict[str, str]:
    return {info.token_id: info.state for info in admin.tokens()}


async def test_deactivate_and_activate_switch_the_record_and_revoke_stays_final(
    admin: CredentialAdmin, store: DatabaseCredentials, timer: Timer
) -> None:
    integration = admin.add_integration("Lifecycle")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    admin.set_token_state(token.token_id, "inactive")
    assert states(admin) == {token.token_id: "inactive"}
    found = await store.token(token.token_id)
    assert found is not None
    assert found.current_state == "inactive"
    assert found.active  # the entity and role are not what was switched off
    admin.set_token_state(token.token_id, "active")
    assert states(admin) == {token.token_id: "active"}

    admin.revoke_token(token.token_id)
    (revoked,) = admin.tokens()
    assert revoked.state == "revoked"
    assert revoked.revoked_at is not None
    for state in ("active", "inactive"):
        with pytest.raises(Refused, match="revoked, and a revocation is final: issue a new token"):
            admin.set_token_state(token.token_id, state)
    admin.revoke_token(token.token_id)  # again: nothing changes, the first time stays
    assert admin.tokens() == [revoked]
    timer.now += 6  # past the cache's TTL
    found = await store.token(token.token_id)
    assert found is not None
    assert (found.current_state, found.revoked) == ("revoked", True)

    with pytest.raises(NotFound, match="no token with id 'tk-nobody'"):
        admin.set_token_state("tk-nobody", "inactive")
    with pytest.raises(NotFound, match="no token with id 'tk-nobody'"):
        admin.revoke_token("tk-nobody")


async def test_an_imported_token_keeps_its_state_and_a_disabled_entity_arrives_inactive(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    """The database keeps no users: its one switch holds both an inactive record and an
    entity or role marked disabled in the settings file."""
    settings = settings_with_tokens()
    admin.import_records(settings.integrations, settings.tokens)
    assert states(admin) == {
        "tk-active": "active",
        "tk-inactive": "inactive",
        "tk-revoked": "revoked",
        "tk-revoked-state": "revoked",
        "tk-entity-off": "inactive",
    }
    for token_id in ("tk-revoked", "tk-revoked-state"):
        found = await store.token(token_id)
        assert found is not None
        assert found.revoked


async def test_a_running_guard_refuses_a_deactivated_token_and_accepts_it_once_activated(
    admin: CredentialAdmin, url: str, key: str, timer: Timer
) -> None:
    """Without the push (SQLite, or PostgreSQL with listen off), the cache's TTL bounds how
    long a change takes: the injected timer moves past it."""
    integration = admin.add_integration("Lifecycle")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    store = DatabaseCredentials(url, [key], ttl=5.0, timer=timer, listen=False)
    events: list[AuditEvent] = []
    guard = Guard(
        settings_with_tokens(integrations=[], tokens=[]),
        credentials=store,
        clock=Clock(),
        audit_hooks=[events.append],
    )
    keys = {
        "consumer_key": integration.consumer_key,
        "consumer_secret": integration.consumer_secret,
    }
    try:
        async with guarded(guard) as client:
            assert await get(client, token.token_id, token.token_secret, **keys) == "OK"
            admin.set_token_state(token.token_id, "inactive")
            assert await get(client, token.token_id, token.token_secret, **keys) == "OK"  # cached
            timer.now += 5.0
            assert await get(client, token.token_id, token.token_secret, **keys) == (
                "TokenRejected token_inactive"
            )
            assert events[-1].reason == "inactive token"
            admin.set_token_state(token.token_id, "active")
            timer.now += 5.0
            assert await get(client, token.token_id, token.token_secret, **keys) == "OK"
    finally:
        store.close()


async def test_on_postgresql_deactivation_and_activation_are_pushed_to_a_running_guard() -> None:
    with postgres_database() as url:
        key = fresh_key()
        admin = prepared(url, key)
        integration = admin.add_integration("Lifecycle")
        token = admin.issue_token(integration.consumer_key, entity="38", role="3")
        store = DatabaseCredentials(url, [key], ttl=600.0)  # the TTL alone: ten minutes
        guard = Guard(
            settings_with_tokens(integrations=[], tokens=[]), credentials=store, clock=Clock()
        )
        keys = {
            "consumer_key": integration.consumer_key,
            "consumer_secret": integration.consumer_secret,
        }
        try:
            async with guarded(guard) as client:

                async def until(verdict: str) -> None:
                    deadline = time.monotonic() + 10  # a bound, not a timing assertion
                    while await get(client, token.token_id, token.token_secret, **keys) != verdict:
                        assert time.monotonic() < deadline, f"never {verdict!r}: not pushed"
                        await asyncio.sleep(0.02)

                await until("OK")
                await asyncio.to_thread(_wait, lambda: store.push_connected)
                admin.set_token_state(token.token_id, "inactive")
                await until("TokenRejected token_inactive")
                admin.set_token_state(token.token_id, "active")
                await until("OK")
                admin.revoke_token(token.token_id)
                await until("TokenRejected token_revoked")
        finally:
            store.close()
            admin.engine.dispose()


def _wait(predicate: object) -> None:
    deadline = time.monotonic() + 10
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the listener never connected"
        time.sleep(0.02)


# --- last used ----------------------------------------------------------------------------------


async def test_many_requests_between_two_flushes_make_one_write_with_the_last_use(
    admin: CredentialAdmin, url: str, key: str, timer: Timer
) -> None:
    integration = admin.add_integration("Lifecycle")
    first = admin.issue_token(integration.consumer_key, entity="38", role="3")
    second = admin.issue_token(integration.consumer_key, entity="39", role="3")
    idle = admin.issue_token(integration.consumer_key, entity="40", role="3")
    store = DatabaseCredentials(url, [key], ttl=3600.0, timer=timer, listen=False)
    clock = Clock()
    guard = Guard(
        settings_with_tokens(integrations=[], tokens=[], usage_flush_interval=60),
        credentials=store,
        clock=clock,
    )
    assert guard.usage is not None
    keys = {
        "consumer_key": integration.consumer_key,
        "consumer_secret": integration.consumer_secret,
    }
    try:
        async with guarded(guard) as client:
            assert await get(client, second.token_id, second.token_secret, **keys) == "OK"
            assert await get(client, first.token_id, first.token_secret, **keys) == "OK"
            looked_up = store.queries  # the lookups: cached from now on
            for _ in range(24):
                clock.now += 2  # 48 s in all: inside one flush interval
                assert (
                    await get(
                        client, first.token_id, first.token_secret, timestamp=clock.now, **keys
                    )
                    == "OK"
                )
            assert store.queries == looked_up  # nothing written yet
            assert all(info.last_used is None for info in admin.tokens())
            clock.now += 12  # 60 s after the guard started: the next request writes
            assert (
                await get(client, first.token_id, first.token_secret, timestamp=clock.now, **keys)
                == "OK"
            )
            await guard.usage.drain()
            assert store.queries == looked_up + 1  # one write, for both tokens
    finally:
        store.close()
    (row_first, row_second) = sorted(
        (u for u in admin.usage()), key=lambda u: u.token_id != first.token_id
    )
    assert (row_first.count, row_first.last_used) == (26, NOW + 60)
    assert (row_second.count, row_second.last_used) == (1, NOW)
    last_used = {info.token_id: info.last_used for info in admin.tokens()}
    assert last_used == {first.token_id: NOW + 60, second.token_id: NOW, idle.token_id: None}
    (listed,) = admin.integrations()
    assert listed.last_used == NOW + 60


async def test_an_integration_last_used_counts_every_scheme_a_token_only_its_tba_use(
    admin: CredentialAdmin, store: DatabaseCredentials
) -> None:
    integration = admin.add_integration("Lifecycle")
    token = admin.issue_token(integration.consumer_key, entity="38", role="3")
    other = admin.add_integration("Unused")
    await store.flush_usage(
        {
            (integration.consumer_key, token.token_id, "tba"): (3, 1000.0),
            # An OAuth 2.0 mapping's ID, should it equal a token ID, is not the token's use.
            (integration.consumer_key, token.token_id, "oauth2"): (1, 3000.0),
            (integration.consumer_key, "cert-1", "oauth2"): (1, 2000.0),
            # Counts outlive what they counted: another integration's same token ID is not it.
            ("ck-removed", token.token_id, "tba"): (1, 4000.0),
        }
    )
    assert [info.last_used for info in admin.tokens()] == [1000.0]
    last_used = {info.consumer_key: info.last_used for info in admin.integrations()}
    assert last_used == {integration.consumer_key: 3000.0, other.consumer_key: None}
