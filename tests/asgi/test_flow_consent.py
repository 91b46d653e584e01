"""Step two of the authorization flow, the consent page: sign-in, Allow and Deny, the redirect
to the callback, CSRF and cookies, error pages, a host's own users, and what is audited.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request

from tba_guard import Guard
from tba_guard.asgi.flow import TBAFlow
from tba_guard.core.records import User
from tests.support import (
    ALICE,
    AUTHORIZE_PATH,
    BOB,
    CALLBACK,
    HEX64,
    REALM,
    Clock,
    FlowClient,
    client_for,
    csrf_of,
    echo_app,
    flow_integrations,
    flow_settings,
    query_of,
)

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
    flow = TBAFlow(
        echo_app(),
        guard=Guard(flow_settings(integrations=flow_integrations(callback)), clock=clock),
    )
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

    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(), clock=clock), current_user=current_user)
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
        echo_app(),
        guard=Guard(flow_settings(), clock=clock),
        current_user=nobody,
        sign_in_url="/login",
    )
    async for fc in client_for(flow):
        token_id, _ = await fc.new_request_token()
        response = await fc.http.get(AUTHORIZE_PATH, params={"oauth_token": token_id})
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/login?next=")
        assert token_id in query_of(location)["next"]


async def test_opaque_mode_hides_flow_codes_on_the_wire(clock: Clock) -> None:
    flow = TBAFlow(echo_app(), guard=Guard(flow_settings(error_detail="opaque"), clock=clock))
    async for fc in client_for(flow):
        response = await fc.request_token(callback="https://evil.example.net/")
        assert response.status_code == 400
        assert "InvalidCallback" not in response.text
        assert "evil.example.net" not in response.text


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
