"""The middleware as ASGI: bodies, streaming, lifespan, websockets, exemptions, identity."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from tba_guard import Guard, Identity, TBAGuardMiddleware
from tba_guard.testing import TBAAuth, guarded_app, sign_headers
from tests.support import BASE_URL, Clock, echo_app, make_settings, oauth_header

FORM = "application/x-www-form-urlencoded"


class RecordingApp:
    """An ASGI app that records every scope and message it is given."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.scopes.append(scope)
        while True:
            message = await receive()
            self.messages.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def guarded(app: Any, clock: Clock, **overrides: Any) -> TestClient:
    return TestClient(
        TBAGuardMiddleware(app, guard=Guard(make_settings(**overrides), clock=clock)),
        base_url=BASE_URL,
    )


def test_signed_form_body_reaches_the_app_unchanged() -> None:
    # Signed by tba_guard.testing's httpx auth, as an application's own tests would sign.
    body = "b=2&a=%C3%A9t%C3%A9&a=1&empty=&plus=x+y"
    app = RecordingApp()
    guarded_recorder, credentials = guarded_app(app, make_settings())
    with TestClient(guarded_recorder) as client:
        response = client.post(
            "/services/rest/form?q=1",
            content=body,
            headers={"Content-Type": FORM},
            auth=TBAAuth(credentials),
        )
    assert response.status_code == 204
    assert b"".join(m.get("body", b"") for m in app.messages) == body.encode()
    assert app.messages[-1]["more_body"] is False


def test_an_unsigned_change_to_the_form_body_is_caught() -> None:
    app, credentials = guarded_app(echo_app(), make_settings())
    url = "http://testserver/services/rest/form"
    headers = sign_headers(credentials, "POST", url, "amount=1", FORM)
    with TestClient(app) as client:
        response = client.post(url, content="amount=1000", headers=headers)
    assert response.json()["error"]["code"] == "InvalidSignature"


async def test_other_bodies_stream_through_untouched(clock: Clock) -> None:
    # Driven at the ASGI level: a test client would join the chunks before the app sees them.
    url = f"{BASE_URL}/upload"
    header = oauth_header("PUT", url)
    app = RecordingApp()
    middleware = TBAGuardMiddleware(app, guard=Guard(make_settings(), clock=clock))
    incoming = [
        {"type": "http.request", "body": b'{"part": 1}', "more_body": True},
        {"type": "http.request", "body": b'{"part": 2}', "more_body": False},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "PUT",
        "scheme": "https",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "headers": [
            (b"host", b"123456-sb1.restlets.example.com"),
            (b"authorization", header.encode()),
            (b"content-type", b"application/json"),
        ],
    }
    await middleware(scope, receive, send)
    assert sent[0]["status"] == 204
    assert [m["body"] for m in app.messages] == [b'{"part": 1}', b'{"part": 2}']


def test_json_body_with_body_hash_is_checked(clock: Clock) -> None:
    import base64
    import hashlib

    url = f"{BASE_URL}/services/rest/json"
    body = '{"id": 7}'
    sha1 = base64.b64encode(hashlib.sha1(body.encode()).digest()).decode()
    sha256 = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    with guarded(echo_app(), clock) as client:
        for body_hash in (sha1, sha256):
            header = oauth_header("POST", url, extra={"oauth_body_hash": body_hash})
            response = client.post(
                url,
                content=body,
                headers={"Authorization": header, "Content-Type": "application/json"},
            )
            assert response.status_code == 200
            assert response.json()["body"] == body
        header = oauth_header("POST", url, extra={"oauth_body_hash": sha1})
        tampered = client.post(
            url,
            content='{"id": 8}',
            headers={"Authorization": header, "Content-Type": "application/json"},
        )
    assert tampered.json()["error"]["code"] == "InvalidSignature"


def test_form_body_over_the_cap_is_413_and_never_reaches_the_app(clock: Clock) -> None:
    url = f"{BASE_URL}/services/rest/form"
    body = "a=" + "x" * 200
    header = oauth_header("POST", url, body=body, form=True)
    app = RecordingApp()
    with guarded(app, clock, body_max_bytes=100) as client:
        response = client.post(
            url, content=body, headers={"Authorization": header, "Content-Type": FORM}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestBodyTooLarge"
    assert app.scopes == []


def test_streaming_responses_pass_through(clock: Clock) -> None:
    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"part{i};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    url = f"{BASE_URL}/stream"
    with guarded(Starlette(routes=[Route("/stream", stream)]), clock) as client:
        response = client.get(url, headers={"Authorization": oauth_header("GET", url)})
    assert response.status_code == 200
    assert response.text == "part0;part1;part2;"


def test_lifespan_passes_through(clock: Clock) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    with guarded(Starlette(lifespan=lifespan), clock):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def websocket_app() -> Starlette:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        identity: Identity = websocket.scope["tba"]
        await websocket.send_json({"token_id": identity.token_id})
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def test_signed_websocket_handshake_is_accepted(clock: Clock) -> None:
    # The client signs the handshake as a GET of the https:// URL (wss -> https).
    # The test client connects to ws://testserver.
    header = oauth_header("GET", "http://testserver/ws?channel=orders")
    with (
        guarded(websocket_app(), clock) as client,
        client.websocket_connect(
            "/ws?channel=orders", headers={"Authorization": header}
        ) as websocket,
    ):
        assert websocket.receive_json() == {"token_id": "tk-alice"}


def test_unsigned_websocket_handshake_is_refused_before_accept(clock: Clock) -> None:
    with guarded(websocket_app(), clock) as client:
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
            pass
        assert denied.value.status_code == 401
        assert denied.value.json()["error"]["code"] == "MissingRequiredParameter"
        bad = oauth_header("GET", "http://testserver/ws", signature="bad")
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/ws", headers={"Authorization": bad}),
        ):
            pass
        assert denied.value.json()["error"]["code"] == "InvalidSignature"


def test_a_rejected_request_never_reaches_the_app(clock: Clock) -> None:
    app = RecordingApp()
    url = f"{BASE_URL}/x"
    with guarded(app, clock) as client:
        for header, status, code in (
            (None, 401, "MissingRequiredParameter"),
            ("Bearer x", 400, "MissingRequiredParameter"),
            (oauth_header("GET", url, signature="bad"), 401, "InvalidSignature"),
        ):
            headers = {"Authorization": header} if header else {}
            response = client.get(url, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert app.scopes == []


def test_exempt_paths_are_not_guarded(clock: Clock) -> None:
    app = RecordingApp()
    with guarded(app, clock, exempt_paths=["/healthz", "/public/"]) as client:
        assert client.get("/healthz").status_code == 204
        assert client.get("/public/logo.png").status_code == 204
        assert client.get("/healthz/x").status_code == 401
        assert client.get("/publicity").status_code == 401
    assert [s["path"] for s in app.scopes] == ["/healthz", "/public/logo.png"]


def test_identity_is_in_scope_and_starlette_auth_works(clock: Clock) -> None:
    @requires("authenticated")
    async def me(request: Request) -> JSONResponse:
        identity: Identity = request.scope["tba"]
        return JSONResponse(
            {
                "user": request.user.display_name,
                "identity": request.user.identity,
                "scopes": request.auth.scopes,
                "tba": [
                    identity.consumer_key,
                    identity.token_id,
                    identity.realm,
                    identity.entity,
                    identity.role,
                ],
            }
        )

    url = f"{BASE_URL}/me"
    with guarded(Starlette(routes=[Route("/me", me)]), clock) as client:
        response = client.get(url, headers={"Authorization": oauth_header("GET", url)})
    assert response.json() == {
        "user": "38",
        "identity": "tk-alice",
        "scopes": ["authenticated"],
        "tba": ["ck-order-sync", "tk-alice", "123456_SB1", "38", "3"],
    }


def test_path_is_signed_exactly_as_the_client_sent_it(clock: Clock) -> None:
    url = f"{BASE_URL}/services/rest/a%2Fb/caf%C3%A9"
    with guarded(echo_app(), clock) as client:
        response = client.get(url, headers={"Authorization": oauth_header("GET", url)})
    assert response.status_code == 200


def test_public_url_is_what_the_client_signed_behind_a_proxy(clock: Clock) -> None:
    public = "https://123456-sb1.restlets.api.example.com:8443/gateway"
    header = oauth_header("GET", f"{public}/orders?x=1")
    app = RecordingApp()
    with guarded(app, clock, public_url=public) as client:
        # The proxy forwards plain http to an internal host and strips /gateway.
        response = client.get("http://internal:8000/orders?x=1", headers={"Authorization": header})
    assert response.status_code == 204


@pytest.mark.parametrize("suffix", ["/", "/?", "/#"], ids=["slash", "empty query", "fragment"])
def test_a_public_url_ending_in_a_slash_adds_no_second_slash(clock: Clock, suffix: str) -> None:
    # The proxy strips `/gateway/`: the client signed `/gateway/orders`, not `/gateway//orders`,
    # whatever empty part follows the slash.
    public = "https://123456-sb1.restlets.api.example.com/gateway" + suffix
    header = oauth_header("GET", "https://123456-sb1.restlets.api.example.com/gateway/orders")
    with guarded(RecordingApp(), clock, public_url=public) as client:
        response = client.get("http://internal:8000/orders", headers={"Authorization": header})
    assert response.status_code == 204


def test_with_development_hints_a_rejection_carries_the_hint(clock: Clock) -> None:
    url = f"{BASE_URL}/orders"
    header = oauth_header("GET", url, timestamp=str(int(clock.now) * 1000))
    with guarded(echo_app(), clock, development_hints=True) as client:
        error = client.get(url, headers={"Authorization": header}).json()["error"]
    assert error["code"] == "InvalidTimestamp"
    assert error["hint"].startswith("not a decimal number of seconds")


def test_forwarded_headers_are_honoured_only_when_trusted(clock: Clock) -> None:
    header = oauth_header("GET", "https://api.example.com/orders")
    forwarded = {
        "Authorization": header,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
    }
    with guarded(RecordingApp(), clock, trusted_proxies=("*",)) as client:
        assert client.get("http://internal:8000/orders", headers=forwarded).status_code == 204
    with guarded(RecordingApp(), clock) as client:
        response = client.get("http://internal:8000/orders", headers=forwarded)
    assert response.json()["error"]["code"] == "InvalidSignature"


def test_host_port_and_case_are_normalised(clock: Clock) -> None:
    header = oauth_header("GET", "http://example.com/x")  # default port dropped, lower case
    with guarded(RecordingApp(), clock) as client:
        assert (
            client.get("http://EXAMPLE.com:80/x", headers={"Authorization": header}).status_code
            == 204
        )
        other_port = oauth_header("GET", "http://example.com:8080/x")
        assert (
            client.get(
                "http://example.com:8080/x", headers={"Authorization": other_port}
            ).status_code
            == 204
        )
        moved = oauth_header("GET", "http://example.com:8080/x")
        wrong = client.get("http://example.com:8081/x", headers={"Authorization": moved})
    assert wrong.json()["error"]["code"] == "InvalidSignature"


def test_non_http_scopes_pass_through(clock: Clock) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    middleware = TBAGuardMiddleware(app, guard=Guard(make_settings(), clock=clock))

    async def receive() -> Message:
        return {"type": "x"}

    async def send(message: Message) -> None:
        raise AssertionError("the guard must not answer")

    import asyncio

    asyncio.run(middleware({"type": "custom"}, receive, send))
    assert seen == ["custom"]


def test_rejected_response_has_no_body_from_the_app(clock: Clock) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("secret data")

    with guarded(Starlette(routes=[Route("/h", hello)]), clock) as client:
        response = client.get("/h")
    assert "secret data" not in response.text
