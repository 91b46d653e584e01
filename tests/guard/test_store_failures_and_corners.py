"""A credential store whose token lookup fails, the parameters a signature covers, the
sequence's entries as they print, explain's access-token step (which has no token store), the
in-memory stores' corners (a static token added later, a full replay store that purges,
tombstones of request tokens, flow-issued tokens checked against the user directory), and the
body `verify_request` is given or not."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest

from tba_guard import ErrorCode, Guard, GuardSettings, ReplayKey, TBAError, User
from tba_guard.core.checks import Step
from tba_guard.core.records import RequestToken, Token
from tba_guard.core.request import parse_parameters, request_from_url
from tba_guard.core.sequence import SEQUENCE
from tba_guard.core.signature import request_base_string
from tba_guard.stores.memory import (
    FlowCredentials,
    MemoryReplayStore,
    MemoryTokenStore,
    StaticCredentials,
)
from tba_guard.stores.redis_tokens import TOMBSTONE_SECONDS
from tba_guard.tools.explain import explain
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    NOW,
    TOKEN_ID,
    Clock,
    Request,
    drive,
    make_settings,
    oauth_header,
)
from tests.support.flow import ALICE, FLOW_KEY, FLOW_SECRET, flow_settings

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"


class TokenLookupDown(StaticCredentials):
    """Integrations answer; the token lookup fails, as a database dropping mid-request."""

    async def token(self, token_id: str) -> Token | None:
        raise ConnectionError("credential database gone")


async def test_a_failing_token_lookup_is_503_and_the_app_never_runs() -> None:
    settings = make_settings()
    guard_credentials = TokenLookupDown(settings.integrations, settings.tokens)
    guard = Guard(settings, credentials=guard_credentials, clock=Clock())
    header = oauth_header("GET", BASE_URL + "/app")
    outcome = await drive(
        Request(raw_path=b"/app", headers=[(b"authorization", header.encode())]),
        settings,
        guard=guard,
    )
    assert outcome.status == 503
    assert outcome.error["code"] == "CredentialStoreUnavailable"
    assert outcome.header(b"retry-after")
    assert outcome.app_calls == 0


async def test_a_guard_whose_settings_are_replaced_checks_against_the_new_ones() -> None:
    settings = make_settings()
    guard = Guard(settings, clock=Clock())
    url = BASE_URL + "/app"
    accepted = await guard.verify(
        request_from_url("GET", url, {"Authorization": oauth_header("GET", url)})
    )
    assert accepted.token_id
    guard.settings = dataclasses.replace(settings, timestamp_tolerance=1, feature_enabled=False)
    assert guard.replay_ttl == 2
    stale = request_from_url("GET", url, {"Authorization": oauth_header("GET", url)})
    with pytest.raises(TBAError) as refused:
        await guard.verify(stale)
    assert refused.value.code is ErrorCode.FEATURE_DISABLED


def test_the_signature_covers_the_header_and_query_parameters_but_realm_and_itself() -> None:
    header = oauth_header("GET", BASE_URL + "/app?b=2&a=1", nonce="n1")
    request = parse_parameters(
        request_from_url("GET", BASE_URL + "/app?b=2&a=1", {"Authorization": header})
    )
    covered = request_base_string(request).split("&")[2]  # the normalized parameters
    assert "realm" not in covered
    assert "oauth_signature%3D" not in covered
    assert "b%3D2" in covered
    assert "a%3D1" in covered
    assert "oauth_nonce%3Dn1" in covered


def test_each_entry_of_the_sequence_prints_its_number_and_name() -> None:
    assert repr(SEQUENCE[0]) == "Check('1', 'FeatureDisabled')"


async def test_explain_reports_an_access_token_request_it_cannot_look_up_as_token_rejected() -> (
    None
):
    # explain has no token store: the request token of step three is unknown to it.
    settings = flow_settings()
    url = BASE_URL + "/rest/accesstoken"
    header = oauth_header(
        "POST",
        url,
        consumer_key=FLOW_KEY,
        consumer_secret=FLOW_SECRET,
        token="rt-unknown",
        token_secret="rt-secret",
        extra={"oauth_verifier": "v" * 64},
    )
    lines, accepted = await explain(settings, "POST", url, header, now=NOW, step=Step.ACCESS_TOKEN)
    assert not accepted
    assert any("TokenRejected" in line for line in lines), lines


async def test_a_token_added_to_static_credentials_is_found() -> None:
    store = StaticCredentials()
    assert await store.token("tk-new") is None
    token = Token("tk-new", "ts-new-secret", CONSUMER_KEY)
    store.add_token(token)
    assert await store.token("tk-new") == token


async def test_a_full_replay_store_whose_keys_expired_meanwhile_accepts_a_new_key() -> None:
    clock = Clock()
    store = MemoryReplayStore(max_entries=2, clock=clock, generation_seconds=1)
    assert await store.claim(ReplayKey("c", "t", "n1", NOW), ttl=1)
    assert await store.claim(ReplayKey("c", "t", "n2", NOW), ttl=1)
    clock.now += 0.5
    store.purge()  # nothing expired yet: the store stays full
    clock.now += 0.6  # both keys expired, but the store purged less than a second ago
    assert await store.claim(ReplayKey("c", "t", "n3", NOW + 1), ttl=1)
    assert not await store.seen(ReplayKey("c", "t", "n1", NOW))


async def test_a_request_token_is_forgotten_once_its_tombstone_has_passed() -> None:
    clock = Clock()
    store = MemoryTokenStore(clock=clock)
    token = RequestToken(
        token_id="rt-1",
        token_secret="rt-secret",
        consumer_key=FLOW_KEY,
        callback="https://client.example/cb",
        expires_at=NOW + 600,
        realm="",
        requested_role="3",
    )
    await store.put_request_token(token)
    clock.now = NOW + 600 + TOMBSTONE_SECONDS - 1
    assert await store.request_token("rt-1") == token  # expired, still known as used up
    clock.now += 1
    assert await store.request_token("rt-1") is None
    assert store.live_request_tokens(FLOW_KEY) == 0


@pytest.mark.parametrize(
    ("user", "active"),
    [(ALICE, True), (None, False), (User(ALICE.entity, ALICE.name, roles=("1000",)), False)],
)
async def test_a_flow_issued_token_is_inactive_once_its_user_or_role_is_gone(
    user: User | None, active: bool
) -> None:
    tokens = MemoryTokenStore(clock=Clock())
    issued = Token("at-1", "at-secret", FLOW_KEY, entity=ALICE.entity, role="3")
    await tokens.put_access_token(issued)

    async def lookup(entity: str) -> User | None:
        return user

    found = await FlowCredentials(StaticCredentials(), tokens, lookup).token("at-1")
    assert found is not None
    assert found.active is active
    assert await FlowCredentials(StaticCredentials(), tokens).token("at-1") == issued
    # The configured store comes first, and its tokens are not checked against the directory.
    configured = Token("at-1", "other-secret", FLOW_KEY, entity="99", role="3")
    both = FlowCredentials(StaticCredentials(tokens=[configured]), tokens, lookup)
    assert await both.token("at-1") == configured
    assert await FlowCredentials(StaticCredentials(), tokens, lookup).token("at-no") is None


def test_user_roles_read_as_a_list_are_held_as_a_tuple() -> None:
    # TOML and JSON give lists; the settings hand a User a tuple, as the compiled build insists.
    settings = GuardSettings.from_mapping(
        {"users": [{"entity": "38", "name": "Alice", "roles": ["3", "1032"]}]}
    )
    (from_toml,) = settings.users
    assert from_toml.roles == ("3", "1032")
    assert from_toml == User("38", "Alice", roles=("3", "1032"))
    assert hash(from_toml) == hash(User("38", "Alice", roles=("3", "1032")))


def test_only_the_checks_that_change_a_store_are_marked_as_writing() -> None:
    # `explain` skips exactly these: it never writes to a store.
    assert [check.run.__name__ for check in SEQUENCE if check.writes] == [
        "verifier_matches",
        "nonce_claimed",
    ]


def test_a_url_built_request_over_wss_is_secure_and_any_header_character_is_accepted() -> None:
    assert request_from_url("GET", "wss://example.com/ws", {}).secure
    assert not request_from_url("GET", "ws://example.com/ws", {}).secure
    # A header value outside Latin-1 is replaced, never an encoding error: the check refuses it.
    request = request_from_url("GET", BASE_URL + "/app", {"Authorization": 'OAuth realm="€"'})
    assert request.authorization == 'OAuth realm="?"'


async def test_verify_request_verifies_the_form_body_it_is_given() -> None:
    form = "name=Acme+%26+Co&qty=3"
    headers = {
        "Authorization": oauth_header("POST", URL, body=form, form=True),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    guard = Guard(make_settings(), clock=Clock())
    identity = await guard.verify_request("POST", URL, headers, form)
    assert identity.token_id == TOKEN_ID


async def test_verify_request_without_a_body_checks_the_body_hash_of_an_empty_one() -> None:
    empty_hash = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    value = oauth_header("GET", URL, extra={"oauth_body_hash": empty_hash})
    guard = Guard(make_settings(), clock=Clock())
    identity = await guard.verify_request("GET", URL, {"Authorization": value})
    assert identity.token_id == TOKEN_ID
    value = oauth_header("GET", URL, extra={"oauth_body_hash": empty_hash})
    with pytest.raises(TBAError) as raised:  # the same hash does not cover another body
        await guard.verify_request("GET", URL, {"Authorization": value}, b"XXXX")
    assert raised.value.code.value == "InvalidSignature"
