"""A second `Authorization` scheme joins through one module and one registration: a toy
`Authorization: Demo <token>` verifier, served by the middleware, `RequireTBA` and the flow
unchanged, beside TBA, whose requests it never touches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tba_guard import (
    AuditEvent,
    ErrorCode,
    Guard,
    MemoryTokenStore,
    RequireTBA,
    TBAError,
    TBAFlow,
    TBAGuardMiddleware,
)
from tba_guard.core import scheme as schemes
from tba_guard.core.protocols import TokenStoreError
from tba_guard.core.records import RequestToken
from tba_guard.core.request import OAuthRequest
from tba_guard.core.scheme import Check, Scheme, Verification, register_scheme
from tba_guard.core.sequence import oauth_identity
from tests.support import BASE_URL, TOKEN_ID, Clock, make_settings, oauth_header
from tests.support.flow import FlowClient, flow_settings

RESOURCE = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"


async def demo_token_known(v: Verification) -> None:
    """The toy scheme's one check: the header's token is a known, usable token."""
    token_id = (v.request.authorization or "").partition(" ")[2].strip()
    token = await v.credentials.token(token_id)
    if token is None or not token.active:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "unknown demo token")
    v.token = token
    v.integration = await v.credentials.integration(token.consumer_key)


def no_body(request: OAuthRequest) -> bool:
    return False


DEMO = Scheme(
    "Demo",
    (Check("1", (ErrorCode.TOKEN_REJECTED,), demo_token_known),),
    body_from=1,
    identity=oauth_identity,
    wants_body=no_body,
    codes=[ErrorCode.TOKEN_REJECTED],
)


@pytest.fixture
def registered() -> Iterator[Scheme]:
    """DEMO registered for the guards built in the test, and forgotten after it."""
    register_scheme(DEMO)
    try:
        yield DEMO
    finally:
        del schemes.SCHEMES["demo"]


async def who(request: Request) -> JSONResponse:
    return JSONResponse({"token": request.scope["tba"].token_id})


def app_with(guard: Guard) -> TBAGuardMiddleware:
    return TBAGuardMiddleware(Starlette(routes=[Route("/{path:path}", who)]), guard=guard)


def test_a_registered_scheme_is_served_by_the_middleware(registered: Scheme) -> None:
    app = app_with(Guard(make_settings(), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        demo = client.get(RESOURCE, headers={"Authorization": f"Demo {TOKEN_ID}"})
        unknown = client.get(RESOURCE, headers={"Authorization": "Demo nobody"})
        tba = client.get(RESOURCE, headers={"Authorization": oauth_header("GET", RESOURCE)})
    assert demo.status_code == 200
    assert demo.json() == {"token": TOKEN_ID}
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "TokenRejected"
    assert tba.status_code == 200  # TBA's sequence, untouched


def test_a_guard_given_its_schemes_dispatches_to_them_alone() -> None:
    only_demo = app_with(Guard(make_settings(), clock=Clock(), schemes=[DEMO]))
    without = app_with(Guard(make_settings(), clock=Clock()))
    with TestClient(only_demo, base_url=BASE_URL) as a, TestClient(without, base_url=BASE_URL) as b:
        assert a.get(RESOURCE, headers={"Authorization": f"Demo {TOKEN_ID}"}).status_code == 200
        refused = b.get(RESOURCE, headers={"Authorization": f"Demo {TOKEN_ID}"})
    # Unregistered, the scheme is TBA's to judge: not OAuth, so the header is malformed.
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "MissingRequiredParameter"


def test_two_authorization_headers_stay_tbas_to_refuse(registered: Scheme) -> None:
    app = app_with(Guard(make_settings(), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(
            RESOURCE,
            headers=[("Authorization", f"Demo {TOKEN_ID}"), ("Authorization", "Demo other")],
        )
    assert response.json()["error"]["code"] == "MissingRequiredParameter"


def test_require_tba_and_the_flow_serve_a_registered_scheme(registered: Scheme) -> None:
    guard = Guard(make_settings(), clock=Clock())
    require = RequireTBA(guard=guard)

    @require.endpoint
    async def protected(request: Request) -> JSONResponse:
        return JSONResponse({"token": request.scope["tba"].token_id})

    per_route = Starlette(routes=[Route("/only", protected)])
    flow = TBAFlow(Starlette(routes=[Route("/{path:path}", who)]), guard=guard)
    header = {"Authorization": f"Demo {TOKEN_ID}"}
    with TestClient(per_route, base_url=BASE_URL) as a, TestClient(flow, base_url=BASE_URL) as b:
        assert a.get("/only", headers=header).json() == {"token": TOKEN_ID}
        assert b.get("/app/site/hosting/restlet.nl", headers=header).json() == {"token": TOKEN_ID}


async def test_the_guard_alone_verifies_a_registered_scheme(registered: Scheme) -> None:
    guard = Guard(make_settings(), clock=Clock())
    identity = await guard.verify_request("GET", RESOURCE, {"Authorization": f"Demo {TOKEN_ID}"})
    assert identity.token_id == TOKEN_ID
    assert (
        guard.scheme_for(
            OAuthRequest("GET", RESOURCE, authorization="demo x", authorization_count=1)
        )
        is DEMO
    )


async def test_a_flow_step_is_audited_when_its_block_ends_and_a_crash_is_no_verdict() -> None:
    """A flow step's verdict includes what its block does (the token written): a token store
    that fails as expected is the step's rejection, one that crashes leaves no decision."""
    heard: list[tuple[str, str]] = []

    class Failing(MemoryTokenStore):
        def __init__(self, failure: Exception) -> None:
            super().__init__()
            self.failure = failure

        async def put_request_token(self, token: RequestToken) -> None:
            raise self.failure

    for failure in (TokenStoreError("down"), RuntimeError("a bug")):
        guard = Guard(flow_settings(), clock=Clock(), audit_hooks=[heard_by(heard)])
        flow = TBAFlow(guard=guard, tokens=Failing(failure))
        transport = httpx.ASGITransport(app=flow, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            response = await FlowClient(client).request_token()
        assert response.status_code in (503, 500)
    assert heard == [("rejected", "CredentialStoreUnavailable")]


def heard_by(heard: list[tuple[str, str]]) -> Callable[[AuditEvent], None]:
    return lambda event: heard.append((event.outcome, event.code))


def test_a_scheme_no_guard_knows_is_tbas_to_refuse_beside_a_registered_one(
    registered: Scheme,
) -> None:
    app = app_with(Guard(make_settings(), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(RESOURCE, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingRequiredParameter"
