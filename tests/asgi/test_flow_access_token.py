"""Step three of the authorization flow, the access token: the exchange, every code of the
seed's table that this step gives, a request token used once, and verifiers.

Requests are signed with oauthlib (`tests.support.oauth_header`), never with tba_guard's own
signing code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.records import User
from tests.support import (
    ALICE,
    AUTHORIZE_PATH,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    HEX64,
    NOW,
    OTHER_KEY,
    OTHER_SECRET,
    REALM,
    Clock,
    FlowClient,
    assert_error,
    client_for,
    csrf_of,
    echo_app,
    flow_settings,
    form,
    query_of,
)

# --- step three: access token -----------------------------------------------------------------


async def test_whole_flow_issues_an_access_token_the_guard_accepts_at_once(
    fc: FlowClient,
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    answer = form(await fc.access_token(token_id, secret, verifier))
    assert set(answer) == {"oauth_token", "oauth_token_secret"}
    assert HEX64.fullmatch(answer["oauth_token"])
    response = await fc.resource(answer["oauth_token"], answer["oauth_token_secret"])
    assert response.status_code == 200, response.text
    assert response.json()["token_id"] == answer["oauth_token"]
    assert response.json()["user"] == ALICE.entity


@pytest.mark.parametrize(
    ("header", "code", "status"),
    [
        ({"consumer_key": "ck-nobody"}, "UnknownIntegration", 401),
        ({"version": "1.0a"}, "VersionRejected", 400),
        ({"signature_method": "PLAINTEXT"}, "UnknownAlgorithm", 400),
        ({"timestamp": NOW + 301}, "InvalidTimestamp", 400),
        ({"nonce": "n" * 65}, "NonceRejected", 400),
        ({"consumer_secret": "wrong"}, "InvalidSignature", 401),
    ],
)
async def test_access_token_common_codes(
    fc: FlowClient, header: dict[str, Any], code: str, status: int
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    response = await fc.access_token(token_id, secret, verifier, **header)
    assert_error(response, code, status)
    # A rejected exchange leaves the request token usable.
    assert (await fc.access_token(token_id, secret, verifier)).status_code == 200


async def test_access_token_feature_disabled(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(feature_enabled=False), clock=clock))
    async for fc in client_for(flow):
        response = await fc.access_token("f" * 64, "s", "v")
        assert_error(response, "FeatureDisabled", 401, "permission_denied")


async def test_access_token_unknown_request_token_is_token_rejected(fc: FlowClient) -> None:
    response = await fc.access_token("f" * 64, "secret", "verifier")
    assert_error(response, "TokenRejected", 401, "token_rejected")


async def test_access_token_reused_request_token_is_token_used(fc: FlowClient) -> None:
    token_id, secret, verifier = await fc.through_consent()
    assert (await fc.access_token(token_id, secret, verifier)).status_code == 200
    again = await fc.access_token(token_id, secret, verifier)
    assert_error(again, "TokenRejected", 401, "token_used")


async def test_reused_request_token_is_rejected_before_its_signature_is_checked(
    fc: FlowClient,
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    assert (await fc.access_token(token_id, secret, verifier)).status_code == 200
    response = await fc.access_token(token_id, "wrong-secret", verifier)
    assert_error(response, "TokenRejected", 401, "token_used")


async def test_access_token_expired_request_token_is_token_expired(
    fc: FlowClient, clock: Clock
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    clock.now += 600
    response = await fc.access_token(token_id, secret, verifier, timestamp=int(clock.now))
    assert_error(response, "TokenRejected", 401, "token_expired")


async def test_request_token_lifetime_follows_the_setting(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(request_token_ttl=60), clock=clock))
    async for fc in client_for(flow):
        token_id, secret, verifier = await fc.through_consent()
        clock.now += 60
        response = await fc.access_token(token_id, secret, verifier, timestamp=int(clock.now))
        assert_error(response, "TokenRejected", 401, "token_expired")


async def test_access_token_for_an_undecided_request_token_is_rejected(fc: FlowClient) -> None:
    token_id, secret = await fc.new_request_token()
    response = await fc.access_token(token_id, secret, "guess")
    assert_error(response, "TokenRejected", 401, "permission_unknown")


async def test_access_token_with_another_request_tokens_verifier_is_invalid_verifier(
    fc: FlowClient,
) -> None:
    first_id, first_secret, _ = await fc.through_consent()
    _, _, second_verifier = await fc.through_consent()
    response = await fc.access_token(first_id, first_secret, second_verifier)
    assert_error(response, "InvalidVerifier", 401, "verifier_invalid")


async def test_a_wrong_verifier_burns_the_request_token(fc: FlowClient) -> None:
    token_id, secret, verifier = await fc.through_consent()
    assert_error(await fc.access_token(token_id, secret, "0" * 64), "InvalidVerifier", 401)
    assert_error(
        await fc.access_token(token_id, secret, verifier), "TokenRejected", 401, "token_used"
    )


async def test_access_token_after_deny_is_invalid_verifier(fc: FlowClient) -> None:
    token_id, secret = await fc.new_request_token()
    received = query_of((await fc.decide(token_id, decision="deny")).headers["location"])
    response = await fc.access_token(token_id, secret, received["oauth_verifier"])
    assert_error(response, "InvalidVerifier", 401, "verifier_invalid")


async def test_access_token_without_verifier_is_missing_required_parameter(
    fc: FlowClient,
) -> None:
    token_id, secret, _ = await fc.through_consent()
    response = await fc.access_token(token_id, secret, "v", drop=("oauth_verifier",))
    assert_error(response, "MissingRequiredParameter", 400, "parameter_absent")
    assert "oauth_verifier" in response.headers["www-authenticate"]


async def test_access_token_signed_without_the_request_token_secret_is_invalid_signature(
    fc: FlowClient,
) -> None:
    token_id, _, verifier = await fc.through_consent()
    response = await fc.access_token(token_id, "", verifier)
    assert_error(response, "InvalidSignature", 401, "signature_invalid")


async def test_access_token_with_another_integrations_request_token_is_token_rejected(
    fc: FlowClient,
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    response = await fc.access_token(
        token_id, secret, verifier, consumer_key=OTHER_KEY, consumer_secret=OTHER_SECRET
    )
    assert_error(response, "TokenRejected", 401)


@pytest.mark.parametrize("realm", [None, REALM])
async def test_access_token_blocked_integration_is_integration_blocked(
    fc: FlowClient, realm: str | None
) -> None:
    response = await fc.access_token(
        "f" * 64,
        "s",
        "v",
        consumer_key="ck-flow-blocked",
        consumer_secret="cs-flow-blocked-secret",
        realm=realm,
    )
    assert_error(response, "IntegrationBlocked", 401, "consumer_key_rejected")


async def test_access_token_without_flow_box_is_authorization_flow_required(
    fc: FlowClient,
) -> None:
    response = await fc.access_token(
        "f" * 64, "s", "v", consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET
    )
    assert_error(response, "AuthorizationFlowRequired", 401)


async def test_access_token_replayed_nonce_is_nonce_used(fc: FlowClient) -> None:
    token_id, secret, verifier = await fc.through_consent()
    first = await fc.access_token(token_id, secret, verifier, nonce="same-nonce-3")
    assert first.status_code == 200
    again = await fc.access_token(token_id, secret, verifier, nonce="same-nonce-3")
    assert_error(again, "NonceUsed", 401, "nonce_used")


async def test_user_disabled_after_consent_is_entity_or_role_disabled(clock: Clock) -> None:
    directory = {ALICE.entity: ALICE}

    async def current_user(request: Request) -> User | None:
        return directory.get(ALICE.entity)

    async def lookup(entity: str) -> User | None:
        return directory.get(entity)

    flow = TBAFlow(
        echo_app(),
        guard=Guard(flow_settings(), clock=clock),
        current_user=current_user,
        user_lookup=lookup,
    )
    async for fc in client_for(flow):
        first_id, first_secret = await fc.new_request_token()
        page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": first_id})
        data = {"oauth_token": first_id, "csrf": csrf_of(page.text), "decision": "allow"}
        location = (await fc.http.post(AUTHORIZE_PATH, data=data | {"role": "3"})).headers[
            "location"
        ]
        issued = form(
            await fc.access_token(first_id, first_secret, query_of(location)["oauth_verifier"])
        )
        second_id, second_secret = await fc.new_request_token()
        page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": second_id})
        data = {"oauth_token": second_id, "csrf": csrf_of(page.text), "decision": "allow"}
        location = (await fc.http.post(AUTHORIZE_PATH, data=data | {"role": "3"})).headers[
            "location"
        ]
        directory[ALICE.entity] = User(ALICE.entity, ALICE.name, roles=("1000",))  # role taken
        response = await fc.access_token(
            second_id, second_secret, query_of(location)["oauth_verifier"]
        )
        assert_error(response, "EntityOrRoleDisabled", 401, "permission_denied")
        resource = await fc.resource(issued["oauth_token"], issued["oauth_token_secret"])
        assert_error(resource, "EntityOrRoleDisabled", 401)


async def test_concurrent_exchanges_of_one_request_token_issue_one_access_token(
    fc: FlowClient,
) -> None:
    token_id, secret, verifier = await fc.through_consent()
    responses = await asyncio.gather(
        *(fc.access_token(token_id, secret, verifier) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]
    for response in responses:
        if response.status_code == 401:
            assert_error(response, "TokenRejected", 401, "token_used")
