"""`on_error`: the application renders rejections its own way; the guard keeps the audit, the
`Retry-After` of an operational 503 and, should the hook fail, the documented answer."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from tba_guard import (
    AuditEvent,
    Guard,
    MemoryReplayStore,
    RequireTBA,
    TBAError,
    TBAFlow,
    TBAGuardMiddleware,
)
from tests.support import BASE_URL, Clock, FailingStore, echo_app, make_settings, oauth_header

URL = BASE_URL + "/services/rest/orders"


class Seen:
    """Records what the hook was called with, and answers as the application chooses."""

    def __init__(self) -> None:
        self.calls: list[tuple[HTTPConnection, TBAError]] = []

    def __call__(self, connection: HTTPConnection, error: TBAError) -> Response:
        self.calls.append((connection, error))
        return JSONResponse({"problem": error.code.value}, status_code=error.status)


def client_for(on_error: Any, events: list[AuditEvent] | None = None, **overrides: Any) -> Any:
    store = overrides.pop("replay_store", None) or MemoryReplayStore(clock=Clock())
    guard = Guard(
        make_settings(**overrides),
        clock=Clock(),
        replay_store=store,
        audit_hooks=[events.append] if events is not None else [],
    )
    app = TBAGuardMiddleware(echo_app(), guard=guard, on_error=on_error)
    return TestClient(app, base_url=BASE_URL)


def test_on_error_renders_the_rejection_and_sees_the_connection_and_the_error() -> None:
    seen = Seen()
    with client_for(seen) as client:
        response = client.get(
            URL, headers={"Authorization": oauth_header("GET", URL, signature="x")}
        )
    assert response.status_code == 401
    assert response.json() == {"problem": "InvalidSignature"}
    [(connection, error)] = seen.calls
    assert connection.url.path == "/services/rest/orders"
    assert error.code == "InvalidSignature"


def test_an_async_on_error_is_awaited() -> None:
    async def on_error(connection: HTTPConnection, error: TBAError) -> Response:
        return PlainTextResponse(f"no: {error.code}", status_code=403)

    with client_for(on_error) as client:
        response = client.get(URL)
    assert (response.status_code, response.text) == (403, "no: MissingRequiredParameter")


def test_an_accepted_request_never_calls_on_error() -> None:
    seen = Seen()
    with client_for(seen) as client:
        response = client.get(URL, headers={"Authorization": oauth_header("GET", URL)})
    assert response.status_code == 200
    assert seen.calls == []


def test_in_opaque_mode_on_error_sees_the_real_code() -> None:
    # It runs on the server: what the client learns is the application's choice.
    seen = Seen()
    bad = {"Authorization": oauth_header("GET", URL, token_secret="not-the-secret")}
    with client_for(None, error_detail="opaque") as client:
        assert client.get(URL, headers=bad).json()["error"]["code"] == "INVALID_LOGIN_ATTEMPT"
    with client_for(seen, error_detail="opaque") as client:
        client.get(URL, headers=bad)
    assert seen.calls[0][1].code == "InvalidSignature"


def test_the_rejection_is_audited_before_on_error_runs() -> None:
    events: list[AuditEvent] = []
    codes_when_called: list[list[str]] = []

    def on_error(connection: HTTPConnection, error: TBAError) -> Response:
        codes_when_called.append([event.code for event in events])
        return Response(status_code=401)

    with client_for(on_error, events) as client:
        client.get(URL)
    assert codes_when_called == [["MissingRequiredParameter"]]


def test_an_operational_503_keeps_its_retry_after_unless_on_error_sets_one() -> None:
    signed = {"Authorization": oauth_header("GET", URL)}
    with client_for(Seen(), replay_store=FailingStore()) as client:
        response = client.get(URL, headers=signed)
    assert response.status_code == 503
    assert response.json() == {"problem": "ReplayStoreUnavailable"}
    assert response.headers["retry-after"] == "1"

    def own_retry(connection: HTTPConnection, error: TBAError) -> Response:
        return Response(status_code=503, headers={"Retry-After": "30"})

    with client_for(own_retry, replay_store=FailingStore()) as client:
        assert client.get(URL, headers=signed).headers.get_list("retry-after") == ["30"]


def test_a_401_gets_no_retry_after_from_the_guard() -> None:
    with client_for(Seen()) as client:
        assert "retry-after" not in client.get(URL).headers


def raising(connection: HTTPConnection, error: TBAError) -> Response:
    raise KeyError(error.code)


def returning_none(connection: HTTPConnection, error: TBAError) -> Any:
    return None


@pytest.mark.parametrize("on_error", [raising, returning_none], ids=["raises", "returns None"])
def test_a_failing_on_error_is_logged_and_the_default_answers(
    on_error: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {"Authorization": oauth_header("GET", URL, token_secret="not-the-secret")}
    with client_for(None, error_detail="opaque") as client:
        default = client.get(URL, headers=bad)
    with (
        caplog.at_level(logging.ERROR, logger="tba_guard"),
        client_for(on_error, error_detail="opaque") as client,
    ):
        response = client.get(URL, headers=bad)
    # Not a 500: in opaque mode a crash on some codes only would name the check that failed.
    assert response.status_code == default.status_code == 401
    assert response.content == default.content
    assert response.headers["www-authenticate"] == default.headers["www-authenticate"]
    failures = [r for r in caplog.records if r.name == "tba_guard" and r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "on_error failed on InvalidSignature" in failures[0].getMessage()
    assert failures[0].exc_info is not None


def test_a_websocket_rejection_ignores_on_error() -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    seen = Seen()
    guard = Guard(make_settings(), clock=Clock())
    app = TBAGuardMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", endpoint)]), guard=guard, on_error=seen
    )
    with (
        TestClient(app) as client,
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws"),
    ):
        pass
    assert denied.value.json()["error"]["code"] == "MissingRequiredParameter"
    assert seen.calls == []


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_per_route_protection_renders_with_on_error_too(kind: str) -> None:
    seen = Seen()
    require_tba = RequireTBA(guard=Guard(make_settings(), clock=Clock()), on_error=seen)
    if kind == "starlette":

        @require_tba.endpoint
        async def orders(request: Request) -> Response:
            return PlainTextResponse("ok")

        app: Any = Starlette(routes=[Route("/services/rest/orders", orders)])
    else:
        from fastapi import Depends, FastAPI

        from tba_guard import TBARejection, tba_rejection_handler

        app = FastAPI()
        app.add_exception_handler(TBARejection, tba_rejection_handler)
        app.get("/services/rest/orders", dependencies=[Depends(require_tba)])(lambda: "ok")
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(URL)
    assert response.status_code == 401
    assert response.json() == {"problem": "MissingRequiredParameter"}
    assert isinstance(seen.calls[0][0], Request)


SETTINGS = make_settings()


@pytest.mark.parametrize("cls", [TBAGuardMiddleware, RequireTBA, TBAFlow])
def test_guard_with_other_settings_is_a_type_error(cls: Any) -> None:
    args = () if cls is RequireTBA else (echo_app(),)
    with pytest.raises(TypeError, match=r"^guard= already carries its settings"):
        cls(*args, settings=make_settings(), guard=Guard(SETTINGS))


@pytest.mark.parametrize("cls", [TBAGuardMiddleware, RequireTBA, TBAFlow])
@pytest.mark.parametrize("option", ["credentials", "replay_store", "clock", "audit_hooks"])
def test_the_stores_clock_and_hooks_go_to_the_guard_alone(cls: Any, option: str) -> None:
    args = () if cls is RequireTBA else (echo_app(),)
    with pytest.raises(TypeError, match=option):
        cls(*args, settings=SETTINGS, **{option: None})


def test_guard_with_its_own_settings_is_no_conflict() -> None:
    guard = Guard(SETTINGS)
    middleware = TBAGuardMiddleware(echo_app(), SETTINGS, guard=guard)
    assert middleware.guard is guard


def test_the_flows_token_endpoints_render_their_rejections_with_on_error() -> None:
    seen = Seen()
    flow = TBAFlow(echo_app(), guard=Guard(SETTINGS, clock=Clock()), on_error=seen)
    with TestClient(flow, base_url=BASE_URL) as client:
        step_one = client.post("/rest/requesttoken")  # no credentials at all
        resource = client.get(URL)
    assert step_one.json() == {"problem": "MissingRequiredParameter"}
    assert resource.json() == {"problem": "MissingRequiredParameter"}
    assert [error.code for _, error in seen.calls] == ["MissingRequiredParameter"] * 2
