"""The three-step TBA authorization flow: every code of the seed's table in its step, the
consent page, the token stores, the NetSuite vectors, and the whole flow end to end with
requests-oauthlib against real uvicorn processes.

Requests are signed with oauthlib (conftest's `oauth_header`, or requests-oauthlib itself),
never with tba_guard's own signing code.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import requests
from requests_oauthlib import OAuth1Session
from requests_oauthlib.oauth1_session import TokenRequestDenied
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tba_guard import GuardSettings, Integration
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.protocols import TokenStore
from tba_guard.core.records import RequestToken, User
from tba_guard.stores.memory import MemoryTokenStore
from tba_guard.stores.redis_tokens import TOMBSTONE_SECONDS, RedisTokenStore
from tests.support import (
    ACCESS_TOKEN_PATH,
    ALICE,
    AUTHORIZE_PATH,
    BASE_URL,
    BOB,
    CALLBACK,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    FLOW_KEY,
    FLOW_SECRET,
    HEX64,
    NOW,
    OTHER_KEY,
    OTHER_SECRET,
    REALM,
    REQUEST_TOKEN_PATH,
    Clock,
    FlowClient,
    FlowServer,
    assert_error,
    cli_command,
    client_for,
    csrf_of,
    echo_app,
    flow_integrations,
    flow_settings,
    form,
    free_port,
    load_vectors,
    oauth_session,
    query_of,
    server_config,
    shared_redis,
    sign_in_and_allow,
)


@pytest.fixture
def flow(clock: Clock) -> TBAFlow:
    return TBAFlow(echo_app(), flow_settings(), clock=clock)


@pytest.fixture
async def fc(flow: TBAFlow) -> AsyncIterator[FlowClient]:
    async for client in client_for(flow):
        yield client


# --- step one: request token ------------------------------------------------------------------


async def test_request_token_answers_form_encoded_random_token_and_confirms_callback(
    fc: FlowClient,
) -> None:
    response = await fc.request_token()
    answer = form(response)
    assert set(answer) == {"oauth_token", "oauth_token_secret", "oauth_callback_confirmed"}
    assert HEX64.fullmatch(answer["oauth_token"])
    assert HEX64.fullmatch(answer["oauth_token_secret"])
    assert answer["oauth_callback_confirmed"] == "true"
    assert response.headers["cache-control"] == "no-store"
    again = form(await fc.request_token())
    assert again["oauth_token"] != answer["oauth_token"]
    assert again["oauth_token_secret"] != answer["oauth_token_secret"]


async def test_request_token_echoes_the_role_sent_and_preselects_it_on_consent(
    fc: FlowClient,
) -> None:
    answer = form(await fc.request_token(extra={"role": "1000"}))
    assert answer["role"] == "1000"
    await fc.sign_in(answer["oauth_token"])
    page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": answer["oauth_token"]})
    assert '<option value="1000" selected>' in page.text


async def test_request_token_unknown_consumer_key_is_unknown_integration(fc: FlowClient) -> None:
    response = await fc.request_token(consumer_key="ck-nobody", consumer_secret="x")
    assert_error(response, "UnknownIntegration", 401, "consumer_key_unknown")


@pytest.mark.parametrize(
    ("realm", "code", "problem"),
    [
        (None, "UnknownIntegration", "consumer_key_unknown"),
        (REALM, "IntegrationBlocked", "consumer_key_rejected"),
    ],
)
async def test_request_token_blocked_integration_is_blocked_only_when_realm_sent(
    fc: FlowClient, realm: str | None, code: str, problem: str
) -> None:
    response = await fc.request_token(
        consumer_key="ck-flow-blocked", consumer_secret="cs-flow-blocked-secret", realm=realm
    )
    assert_error(response, code, 401, problem)


async def test_request_token_of_another_account_is_unknown_integration(fc: FlowClient) -> None:
    response = await fc.request_token(realm="123456_sb1")  # not 123456_SB1: exact comparison
    assert_error(response, "UnknownIntegration", 401)


async def test_request_token_without_flow_box_is_authorization_flow_required(
    fc: FlowClient,
) -> None:
    response = await fc.request_token(consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET)
    assert_error(response, "AuthorizationFlowRequired", 401, "permission_denied")


async def test_request_token_invalid_callback_names_the_url_sent(fc: FlowClient) -> None:
    sent = "https://evil.example.net/steal?x=1"
    response = await fc.request_token(callback=sent)
    assert_error(response, "InvalidCallback", 400, "parameter_rejected")
    assert response.json()["error"]["message"].startswith(f"InvalidCallback {sent}")
    assert 'oauth_parameters_rejected="oauth_callback"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("consumer_key", "callback", "allowed"),
    [
        (FLOW_KEY, CALLBACK, True),
        (FLOW_KEY, "https://APP.example.com:443/tba/callback", True),
        (FLOW_KEY, "http://localhost:8123/any/path?x=1", True),
        (FLOW_KEY, "http://localhost/cb", True),
        ("ck-wild", "https://tenant1.example.org/cb", True),
        (FLOW_KEY, "https://app.example.com/tba/callback/more", False),
        (FLOW_KEY, "https://app.example.com/tba/callback?x=1", False),
        (FLOW_KEY, "http://app.example.com/tba/callback", False),
        (FLOW_KEY, "https://app.example.com:8443/tba/callback", False),
        (FLOW_KEY, "https://app.example.com.evil.net/tba/callback", False),
        (FLOW_KEY, "https://user@app.example.com/tba/callback", False),
        (FLOW_KEY, "https://localhost:8123/cb", False),
        (FLOW_KEY, "http://localhost.evil.net/cb", False),
        (FLOW_KEY, "oob", False),
        ("ck-wild", "https://example.org/cb", False),
        ("ck-wild", "https://a.b.example.org/cb", False),
        ("ck-wild", "https://tenant1.example.org/other", False),
        ("ck-wild", "https://tenant1.example.org.evil.net/cb", False),
    ],
)
async def test_request_token_accepts_only_registered_localhost_and_wildcard_callbacks(
    fc: FlowClient, consumer_key: str, callback: str, allowed: bool
) -> None:
    secret = FLOW_SECRET if consumer_key == FLOW_KEY else "cs-wild-callback-secret"
    response = await fc.request_token(
        consumer_key=consumer_key, consumer_secret=secret, callback=callback
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, "InvalidCallback", 400)
        assert callback in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("header", "code", "status", "problem"),
    [
        ({"callback": None}, "MissingRequiredParameter", 400, "parameter_absent"),
        ({"drop": ("oauth_nonce",)}, "MissingRequiredParameter", 400, "parameter_absent"),
        ({"version": "2.0"}, "VersionRejected", 400, "version_rejected"),
        ({"signature_method": "HMAC-SHA1"}, "UnknownAlgorithm", 400, "signature_method_rejected"),
        ({"timestamp": NOW - 301}, "InvalidTimestamp", 400, "timestamp_refused"),
        ({"nonce": "abc"}, "NonceRejected", 400, "parameter_rejected"),
        ({"consumer_secret": "wrong"}, "InvalidSignature", 401, "signature_invalid"),
    ],
)
async def test_request_token_common_codes(
    fc: FlowClient, header: dict[str, Any], code: str, status: int, problem: str
) -> None:
    response = await fc.request_token(**header)
    assert_error(response, code, status, problem)


async def test_request_token_is_signed_with_the_consumer_secret_alone(fc: FlowClient) -> None:
    response = await fc.request_token(token_secret="some-token-secret")
    assert_error(response, "InvalidSignature", 401)


async def test_request_token_replayed_nonce_is_nonce_used(fc: FlowClient) -> None:
    assert (await fc.request_token(nonce="replayed-nonce-1")).status_code == 200
    assert_error(await fc.request_token(nonce="replayed-nonce-1"), "NonceUsed", 401, "nonce_used")


async def test_request_token_feature_disabled(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), flow_settings(feature_enabled=False), clock=clock)
    async for fc in client_for(flow):
        assert_error(await fc.request_token(), "FeatureDisabled", 401, "permission_denied")


async def test_flow_mounts_as_starlette_middleware_in_place_of_the_guard() -> None:
    app = Starlette(
        routes=[Route("/orders", lambda request: PlainTextResponse("orders"))],
        middleware=[Middleware(TBAFlow, settings=flow_settings())],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        fc = FlowClient(client)
        # The wall clock here: Starlette builds the flow, so no clock can be injected.
        response = await fc.request_token(timestamp=int(time.time()))
        assert form(response)["oauth_callback_confirmed"] == "true"
        assert_error(await client.get("/orders"), "MissingRequiredParameter", 401)


async def test_request_token_endpoint_refuses_get(fc: FlowClient) -> None:
    response = await fc.http.get(REQUEST_TOKEN_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# --- step two: the consent page ---------------------------------------------------------------


async def test_allow_redirects_to_callback_with_token_verifier_company_role_entity_state(
    fc: FlowClient,
) -> None:
    token_id, _ = await fc.new_request_token()
    response = await fc.decide(token_id, role="1000", state="abc123XYZ")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?")
    received = query_of(location)
    assert received["oauth_token"] == token_id
    assert HEX64.fullmatch(received["oauth_verifier"])
    assert received["company"] == REALM
    assert received["role"] == "1000"
    assert received["entity"] == ALICE.entity
    assert received["state"] == "abc123XYZ"


async def test_deny_redirects_to_callback_with_an_empty_verifier(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    response = await fc.decide(token_id, decision="deny", state="s1")
    assert response.status_code == 303
    received = query_of(response.headers["location"])
    assert received["oauth_token"] == token_id
    assert received["oauth_verifier"] == ""
    assert received["state"] == "s1"
    assert "entity" not in received


async def test_callback_with_a_query_of_its_own_keeps_it(clock: Clock) -> None:
    callback = "https://my.example.com/TBA/?callbackRequest"
    flow = TBAFlow(echo_app(), flow_settings(integrations=flow_integrations(callback)), clock=clock)
    async for fc in client_for(flow):
        token_id, _ = await fc.new_request_token(callback=callback)
        response = await fc.decide(token_id)
        assert response.headers["location"].startswith(callback + "&oauth_token=")


@pytest.mark.parametrize("token_id", ["", "0" * 64])
async def test_unknown_request_token_gets_an_error_page_not_a_redirect(
    fc: FlowClient, token_id: str
) -> None:
    response = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert "<form" not in response.text


async def test_expired_request_token_gets_an_error_page(fc: FlowClient, clock: Clock) -> None:
    token_id, _ = await fc.new_request_token()
    clock.now += 600
    response = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
    assert response.status_code == 400
    assert "Expired" in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("state", "accepted"),
    [("a" * 512, True), ("Ab09", True), ("a" * 513, False), ("a-b", False), ("é", False)],
)
async def test_state_is_alphanumeric_and_at_most_512_characters(
    fc: FlowClient, state: str, accepted: bool
) -> None:
    token_id, _ = await fc.new_request_token()
    response = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id, "state": state})
    assert response.status_code == (200 if accepted else 400)


async def test_consent_page_escapes_what_it_shows_and_forbids_framing(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    await fc.sign_in(token_id)
    page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
    assert "Order sync &lt;b&gt;&quot;beta&quot;&lt;/b&gt;" in page.text
    assert "<b>" not in page.text
    assert "<script" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_consent_without_csrf_cookie_is_refused_and_decides_nothing(
    fc: FlowClient, flow: TBAFlow
) -> None:
    token_id, _ = await fc.new_request_token()
    await fc.sign_in(token_id)
    page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
    data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "decision": "allow", "role": "3"}
    fc.http.cookies.delete("__Host-tba_csrf")  # served over HTTPS: the prefixed name
    response = await fc.http.post(AUTHORIZE_PATH, data=data)
    assert response.status_code == 403
    assert "location" not in response.headers
    stored = await flow.tokens.request_token(token_id)
    assert stored is not None
    assert stored.decision == "pending"


async def test_csrf_value_of_another_request_token_is_refused(fc: FlowClient) -> None:
    first, _ = await fc.new_request_token()
    second, _ = await fc.new_request_token()
    await fc.sign_in(first)
    page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": first})
    data = {"oauth_token": second, "csrf": csrf_of(page.text), "decision": "allow", "role": "3"}
    assert (await fc.http.post(AUTHORIZE_PATH, data=data)).status_code == 403


async def test_wrong_password_shows_the_sign_in_form_again(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    wrong = User(ALICE.entity, ALICE.name, "not-the-password", ALICE.roles)
    response = await fc.sign_in(token_id, wrong)
    assert response.status_code == 401
    assert "Wrong name or password" in response.text
    assert "tba_session" not in response.headers.get("set-cookie", "")


async def test_inactive_user_cannot_sign_in(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    assert (await fc.sign_in(token_id, BOB)).status_code == 401


async def test_allow_with_a_role_the_user_does_not_have_is_refused(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    response = await fc.decide(token_id, role="1032")
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_a_request_token_is_decided_once(fc: FlowClient) -> None:
    token_id, _ = await fc.new_request_token()
    assert (await fc.decide(token_id)).status_code == 303
    page = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
    assert page.status_code == 400
    assert "Already decided" in page.text


async def test_host_supplied_user_skips_the_sign_in_form(clock: Clock) -> None:
    async def current_user(request: Request) -> User | None:
        return ALICE if request.headers.get("x-user") == "alice" else None

    flow = TBAFlow(echo_app(), flow_settings(), current_user=current_user, clock=clock)
    async for fc in client_for(flow):
        token_id, _ = await fc.new_request_token()
        anonymous = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        assert anonymous.status_code == 401
        assert 'name="password"' not in anonymous.text
        page = await fc.http.get(
            AUTHORIZE_PATH, params={"oauth_token": token_id}, headers={"x-user": "alice"}
        )
        assert 'value="allow"' in page.text


async def test_visitor_of_a_host_without_session_is_sent_to_its_sign_in_url(clock: Clock) -> None:
    async def nobody(request: Request) -> User | None:
        return None

    flow = TBAFlow(
        echo_app(), flow_settings(), current_user=nobody, sign_in_url="/login", clock=clock
    )
    async for fc in client_for(flow):
        token_id, _ = await fc.new_request_token()
        response = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/login?next=")
        assert token_id in query_of(location)["next"]


async def test_opaque_mode_hides_flow_codes_on_the_wire(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), flow_settings(error_detail="opaque"), clock=clock)
    async for fc in client_for(flow):
        response = await fc.request_token(callback="https://evil.example.net/")
        assert response.status_code == 400
        assert "InvalidCallback" not in response.text
        assert "evil.example.net" not in response.text


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
    flow = TBAFlow(echo_app(), flow_settings(feature_enabled=False), clock=clock)
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
    flow = TBAFlow(echo_app(), flow_settings(request_token_ttl=60), clock=clock)
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
        echo_app(), flow_settings(), current_user=current_user, user_lookup=lookup, clock=clock
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


async def test_flow_decisions_are_audited_without_secrets(
    fc: FlowClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tba_guard.audit")
    token_id, secret, verifier = await fc.through_consent()
    answer = form(await fc.access_token(token_id, secret, verifier))
    events = [record.tba_audit for record in caplog.records if hasattr(record, "tba_audit")]
    paths = [REQUEST_TOKEN_PATH, AUTHORIZE_PATH, AUTHORIZE_PATH, ACCESS_TOKEN_PATH]
    assert [e["path"] for e in events] == paths
    assert all(e["outcome"] == "accepted" for e in events)
    assert events[1]["reason"] == f"signed in as entity {ALICE.entity}"
    assert events[2]["reason"] == f"consent allow by entity {ALICE.entity}"
    assert events[3]["token_id"] == token_id
    logged = caplog.text + repr(events)
    for value in (secret, verifier, answer["oauth_token_secret"], FLOW_SECRET, ALICE.password):
        assert value not in logged


async def test_failed_sign_in_is_audited_without_what_was_typed(
    fc: FlowClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tba_guard.audit")
    token_id, _ = await fc.new_request_token()
    typed = User(ALICE.entity, "password-typed-as-name", "typed-password", ALICE.roles)
    assert (await fc.sign_in(token_id, typed)).status_code == 401
    events = [record.tba_audit for record in caplog.records if hasattr(record, "tba_audit")]
    assert events[-1]["outcome"] == "rejected"
    assert events[-1]["reason"] == "sign-in failed"
    assert events[-1]["token_id"] == token_id
    assert "typed" not in caplog.text + repr(events)


# --- the NetSuite vectors through the endpoints -----------------------------------------------


async def test_netsuite_flow_vectors_verify_through_the_flow_endpoints() -> None:
    vectors = {v["name"]: v for v in load_vectors()}
    step_one, step_three = vectors["netsuite-flow-step1"], vectors["netsuite-flow-step3"]
    callback = "https://my.example.com/TBA/?callbackRequest"
    user = User("38", "netsuite-user", "pw-0123456789", ("45678",))
    settings = GuardSettings(
        realm="1234567",
        integrations=[
            Integration(
                step_one["consumer_key"],
                step_one["consumer_secret"],
                authorization_flow=True,
                callback_url=callback,
            )
        ],
        users=[user],
    )
    clock = Clock(step_one["now"])
    tokens = MemoryTokenStore(clock=clock)
    flow = TBAFlow(echo_app(), settings, tokens=tokens, clock=clock)
    base = "https://1234567.restlets.api.netsuite.com"
    async for fc in client_for(flow, base):
        one = await fc.http.post(REQUEST_TOKEN_PATH, headers=step_one["headers"])
        answer = form(one)
        assert answer["role"] == "45678"
        assert answer["oauth_callback_confirmed"] == "true"
        stored = await tokens.request_token(answer["oauth_token"])
        assert stored is not None
        assert stored.callback == callback

        clock.now = step_three["now"]
        await tokens.put_request_token(
            RequestToken(
                token_id=step_three["token"],
                token_secret=step_three["token_secret"],
                consumer_key=step_three["consumer_key"],
                callback=callback,
                expires_at=step_three["now"] + 600,
                realm="1234567",
                decision="allowed",
                verifier=_header_value(step_three["headers"]["Authorization"], "oauth_verifier"),
                entity=user.entity,
                role="45678",
            )
        )
        three = await fc.http.post(ACCESS_TOKEN_PATH, headers=step_three["headers"])
        issued = form(three)
        assert (await tokens.access_token(issued["oauth_token"])) is not None


def _header_value(header: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', header)
    assert found
    return found.group(1)


# --- token stores -----------------------------------------------------------------------------


def sample_request_token(token_id: str = "rt-1", now: float = NOW) -> RequestToken:
    return RequestToken(
        token_id=token_id,
        token_secret="rt-secret",
        consumer_key=FLOW_KEY,
        callback=CALLBACK,
        expires_at=now + 600,
        realm=REALM,
        requested_role="3",
    )


async def check_store_contract(store: TokenStore) -> None:
    """What both stores promise: a decision once, a consumption once, tokens round-trip."""
    token = sample_request_token()
    await store.put_request_token(token)
    assert await store.request_token("rt-1") == token
    assert await store.request_token("rt-nope") is None
    decided = [
        store.decide("rt-1", "allowed", verifier="v1", entity="38", role="3"),
        store.decide("rt-1", "denied", verifier="", entity="38", role=""),
    ]
    assert sorted(await asyncio.gather(*decided)) == [False, True]
    after = await store.request_token("rt-1")
    assert after is not None
    assert after.decision in ("allowed", "denied")
    assert sorted(await asyncio.gather(*(store.consume("rt-1") for _ in range(4)))) == [
        False,
        False,
        False,
        True,
    ]
    used = await store.request_token("rt-1")
    assert used is not None
    assert used.uses == 4
    assert not await store.consume("rt-nope")
    access = sample_request_token("at-1").as_token()
    await store.put_access_token(access)
    found = await store.access_token("at-1")
    assert found is not None
    assert (found.token_id, found.token_secret, found.consumer_key) == (
        "at-1",
        "rt-secret",
        FLOW_KEY,
    )
    assert found.account == REALM
    assert found.active
    assert await store.access_token("at-nope") is None


async def test_memory_token_store_keeps_its_promises(clock: Clock) -> None:
    await check_store_contract(MemoryTokenStore(clock=clock))


async def test_memory_token_store_forgets_tombstones_and_refuses_when_full(clock: Clock) -> None:
    store = MemoryTokenStore(max_request_tokens=2, clock=clock)
    await store.put_request_token(sample_request_token("a"))
    await store.put_request_token(sample_request_token("b"))
    with pytest.raises(Exception, match="full"):
        await store.put_request_token(sample_request_token("c"))
    clock.now += 600 + TOMBSTONE_SECONDS
    await store.put_request_token(sample_request_token("c", now=clock.now))
    assert await store.request_token("a") is None
    assert await store.request_token("c") is not None


async def test_redis_token_store_keeps_its_promises(redis_prefix: str, clock: Clock) -> None:
    store = RedisTokenStore("redis://127.0.0.1:6379/0", prefix=redis_prefix, clock=clock)
    try:
        await check_store_contract(store)
        client = shared_redis()
        ttl = client.pttl(f"{redis_prefix}rt:rt-1")
        client.close()
        assert 0 < ttl <= (600 + TOMBSTONE_SECONDS) * 1000
    finally:
        await store.aclose()


async def test_unreachable_redis_token_store_fails_closed_with_503(clock: Clock) -> None:
    settings = flow_settings(token_store=f"redis://127.0.0.1:{free_port()}/0")
    flow = TBAFlow(echo_app(), settings, clock=clock)
    async for fc in client_for(flow):
        response = await fc.request_token()
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "CredentialStoreUnavailable"
        assert response.headers["retry-after"]


async def test_two_workers_sharing_redis_see_each_others_tokens(
    redis_prefix: str, clock: Clock
) -> None:
    """Step one on one worker, consent on another, step three on the first, the protected
    request on the second: each step finds what another process stored."""
    settings = flow_settings(
        token_store="redis://127.0.0.1:6379/0",
        token_store_key_prefix=redis_prefix,
        session_secret="shared-session-secret-0123456789",
    )
    one = TBAFlow(echo_app(), settings, clock=clock)
    two = TBAFlow(echo_app(), settings, clock=clock)
    transport_one = httpx.ASGITransport(app=one)
    transport_two = httpx.ASGITransport(app=two)
    async with (
        httpx.AsyncClient(transport=transport_one, base_url=BASE_URL) as http_one,
        httpx.AsyncClient(transport=transport_two, base_url=BASE_URL) as http_two,
    ):
        fc_one, fc_two = FlowClient(http_one), FlowClient(http_two)
        token_id, secret = await fc_one.new_request_token()
        signed_in = await fc_one.sign_in(token_id)
        assert signed_in.status_code == 303
        http_two.cookies = http_one.cookies  # the browser's cookies, now sent to worker two
        page = await http_two.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "decision": "allow"}
        location = (await http_two.post(AUTHORIZE_PATH, data=data | {"role": "3"})).headers[
            "location"
        ]
        verifier = query_of(location)["oauth_verifier"]
        issued = form(await fc_one.access_token(token_id, secret, verifier))
        response = await fc_two.resource(issued["oauth_token"], issued["oauth_token_secret"])
        assert response.status_code == 200, response.text
    for flow in (one, two):
        assert isinstance(flow.tokens, RedisTokenStore)
        await flow.tokens.aclose()


# --- settings ---------------------------------------------------------------------------------


def test_flow_settings_come_from_toml_with_users(tmp_path: Path) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        textwrap.dedent(
            """
            [guard]
            request_token_ttl = 120
            authorize_path = "/consent"
            token_store = "redis://127.0.0.1:6379/0"

            [[users]]
            entity = "38"
            name = "alice"
            password = "pw"
            roles = ["3", "1000"]
            """
        )
    )
    settings = GuardSettings.from_toml(path)
    assert settings.request_token_ttl == 120
    assert settings.authorize_path == "/consent"
    assert settings.users == (User("38", "alice", "pw", ("3", "1000")),)
    assert "pw" not in repr(settings)
    assert "redis://" not in repr(settings)


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ([{"entity": "38", "name": "a", "roles": ["3"], "colour": "red"}], "users[0]"),
        ([{"entity": "38", "name": "a", "roles": "3"}], "users[0].roles"),
        ([{"name": "a"}], "entity"),
    ],
)
def test_bad_users_are_errors_naming_the_key(users: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        GuardSettings(users=users)


def test_flow_settings_come_from_the_environment() -> None:
    settings = GuardSettings.from_env(
        {
            "TBA_GUARD_REQUEST_TOKEN_TTL": "90",
            "TBA_GUARD_USERS": '[{"entity": "7", "name": "eve", "roles": ["3"]}]',
        }
    )
    assert settings.request_token_ttl == 90
    assert settings.users[0].roles == ("3",)


# --- end to end: requests-oauthlib against real uvicorn processes -----------------------------


def test_whole_flow_with_requests_oauthlib_against_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/tba/callback"
    with FlowServer(server_config(tmp_path / "flow.toml", callback), port) as server:
        client = oauth_session(callback_uri=callback)
        fetched = client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[REALM])
        assert fetched["oauth_callback_confirmed"] == "true"
        authorization_url = client.authorization_url(server.base + AUTHORIZE_PATH, state="st4te")
        browser = requests.Session()
        location = sign_in_and_allow(browser, authorization_url, role="1000")
        landing = browser.get(location)
        assert landing.status_code == 200
        assert "Callback received" in landing.text
        received = client.parse_authorization_response(location)
        assert received["oauth_token"] == fetched["oauth_token"]
        assert query_of(location)["state"] == "st4te"
        issued = client.fetch_access_token(server.base + ACCESS_TOKEN_PATH)
        assert HEX64.fullmatch(issued["oauth_token"])

        api = oauth_session(
            resource_owner_key=issued["oauth_token"],
            resource_owner_secret=issued["oauth_token_secret"],
            realm=REALM,
        )
        response = api.get(server.base + "/app/site/hosting/restlet.nl?script=7&deploy=1")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "token_id": issued["oauth_token"],
            "entity": ALICE.entity,
            "role": "1000",
            "realm": REALM,
        }
        replay = oauth_session(  # the same request token and verifier, a second time
            resource_owner_key=fetched["oauth_token"],
            resource_owner_secret=fetched["oauth_token_secret"],
            verifier=received["oauth_verifier"],
            realm=REALM,
        )
        with pytest.raises(TokenRequestDenied, match="TokenRejected"):
            replay.fetch_access_token(server.base + ACCESS_TOKEN_PATH)


def test_tokens_cross_uvicorn_processes_through_redis(tmp_path: Path, redis_prefix: str) -> None:
    """Two server processes sharing a Redis token store: whichever one a step lands on, it
    finds what the other stored, and the issued token is accepted by both at once."""
    port_a, port_b = free_port(), free_port()
    callback = f"http://127.0.0.1:{port_a}/tba/callback"
    extra = (
        'token_store = "redis://127.0.0.1:6379/0"\n'
        f'token_store_key_prefix = "{redis_prefix}"\n'
        'session_secret = "shared-session-secret-0123456789"'
    )
    config = server_config(tmp_path / "flow.toml", callback, extra)
    with FlowServer(config, port_a) as a, FlowServer(config, port_b) as b:
        client = oauth_session(callback_uri=callback)
        client.fetch_request_token(a.base + REQUEST_TOKEN_PATH, realm=[REALM])
        location = sign_in_and_allow(
            requests.Session(), client.authorization_url(b.base + AUTHORIZE_PATH)
        )
        client.parse_authorization_response(location)
        issued = client.fetch_access_token(b.base + ACCESS_TOKEN_PATH)
        for server in (a, b):
            api = oauth_session(
                resource_owner_key=issued["oauth_token"],
                resource_owner_secret=issued["oauth_token_secret"],
                realm=REALM,
            )
            response = api.get(server.base + "/app/site/hosting/restlet.nl")
            assert response.status_code == 200, response.text
            assert response.json()["entity"] == ALICE.entity


def test_demo_service_runs_the_flow_for_its_demo_user(tmp_path: Path) -> None:
    """`tba-guard serve` on its embedded settings: the demo flow integration and user go through
    the three steps, the demo's callback page shows what it received, and the issued token
    opens the demo RESTlet."""
    from tba_guard.tools.demo import CALLBACK_PATH, load_settings

    demo = load_settings(None)
    integration = next(i for i in demo.integrations if i.authorization_flow)
    user = demo.users[0]
    port = free_port()
    command = [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with FlowServer(tmp_path / "demo.toml", port, command) as server:
        callback = f"http://localhost:{port}{CALLBACK_PATH}"
        client = OAuth1Session(
            integration.consumer_key,
            client_secret=integration.consumer_secret,
            signature_method="HMAC-SHA256",
            callback_uri=callback,
        )
        client.fetch_request_token(server.base + REQUEST_TOKEN_PATH, realm=[demo.realm or ""])
        browser = requests.Session()
        authorization_url = client.authorization_url(server.base + AUTHORIZE_PATH, state="demo1")
        page = browser.get(authorization_url)
        token_id = query_of(authorization_url)["oauth_token"]
        data = {"oauth_token": token_id, "csrf": csrf_of(page.text), "action": "sign_in"}
        data |= {"name": user.name, "password": user.password, "state": "demo1"}
        consent = browser.post(server.base + AUTHORIZE_PATH, data=data)
        assert 'value="allow"' in consent.text
        data = {"oauth_token": token_id, "csrf": csrf_of(consent.text), "state": "demo1"}
        data |= {"decision": "allow", "role": user.roles[0]}
        decided = browser.post(server.base + AUTHORIZE_PATH, data=data, allow_redirects=False)
        location = decided.headers["location"]
        assert location.startswith(callback + "?")
        shown = browser.get(location.replace("localhost", "127.0.0.1", 1))
        assert "Callback received" in shown.text
        assert f'id="oauth_verifier">{query_of(location)["oauth_verifier"]}<' in shown.text
        client.parse_authorization_response(location)
        issued = client.fetch_access_token(server.base + ACCESS_TOKEN_PATH)
        api = OAuth1Session(
            integration.consumer_key,
            client_secret=integration.consumer_secret,
            resource_owner_key=issued["oauth_token"],
            resource_owner_secret=issued["oauth_token_secret"],
            signature_method="HMAC-SHA256",
            realm=demo.realm,
        )
        response = api.get(server.base + "/app/site/hosting/restlet.nl?script=1&deploy=1")
        assert response.status_code == 200, response.text
        assert response.json()["token_id"] == issued["oauth_token"]
        assert response.json()["entity"] == user.entity
        assert response.json()["role"] == user.roles[0]
