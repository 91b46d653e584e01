"""Step one of the authorization flow, the request token: what it answers, every code of the
seed's table that this step gives, callbacks registered, localhost and wildcard.

Requests are signed with oauthlib (`tests.support.oauth_header`), never with tba_guard's own
signing code.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tests.support import (
    AUTHORIZE_PATH,
    BASE_URL,
    CALLBACK,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    FLOW_KEY,
    FLOW_SECRET,
    HEX64,
    NOW,
    REALM,
    REQUEST_TOKEN_PATH,
    Clock,
    FlowClient,
    assert_error,
    client_for,
    echo_app,
    flow_settings,
    form,
)

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
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(feature_enabled=False), clock=clock))
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
