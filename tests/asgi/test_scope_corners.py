"""Corners of the ASGI scope the middleware reads: the URL when there is no Host header, a
comma-separated X-Forwarded-Host, websockets refused with or without the denial-response
extension, PLAINTEXT over `wss` and `ws`, PLAINTEXT with a body hash, and what an accepted
request hands the application (`scope["user"]`, `scope["auth"]`).

Every request is signed by oauthlib (`tests.support.oauth_header`) for the URL the client
would have used, so an acceptance shows the middleware rebuilt that URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest

from tba_guard import ErrorCode, Guard, GuardSettings, TBAGuardMiddleware
from tests.support import HOST, Clock, make_settings, oauth_header

Message = dict[str, Any]


class App:
    """The protected application: remembers the scope it was given, answers 299 (http) or
    accepts the websocket."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(
    settings: GuardSettings, scope: dict[str, Any], messages: list[Message]
) -> tuple[list[Message], App]:
    app = App()
    middleware = TBAGuardMiddleware(app, guard=Guard(settings, clock=Clock()))
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(middleware(scope, receive, send), timeout=30)
    return sent, app


def http_scope(
    headers: list[tuple[bytes, bytes]],
    *,
    path: str = "/app/restlet.nl",
    scheme: str = "https",
    server: tuple[str, int | None] | None = (HOST, 443),
    client: tuple[str, int] = ("203.0.113.9", 50000),
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
    }
    if server is not None:
        scope["server"] = server
    return scope


def websocket_scope(
    headers: list[tuple[bytes, bytes]], *, scheme: str = "wss", denial: bool = False
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": scheme,
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *headers],
        "client": ("203.0.113.9", 50000),
        "server": (HOST, 443),
        "subprotocols": [],
    }
    if denial:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


def auth(value: str) -> tuple[bytes, bytes]:
    return (b"authorization", value.encode())


def status_and_code(sent: list[Message]) -> tuple[int, str]:
    start = next(m for m in sent if m["type"].endswith("response.start"))
    body = b"".join(m.get("body", b"") for m in sent if m["type"].endswith("response.body"))
    return start["status"], json.loads(body)["error"]["code"]


GET = [{"type": "http.request", "body": b"", "more_body": False}]
CONNECT = [{"type": "websocket.connect"}]


# --- the URL without a Host header ---------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "signed_for"),
    [
        (("srv.example", 8443), "https://srv.example:8443/app/restlet.nl"),
        (("srv.example", 443), "https://srv.example/app/restlet.nl"),  # the default port
        (("srv.example", None), "https://srv.example/app/restlet.nl"),  # a Unix socket
        (None, "https://localhost/app/restlet.nl"),  # no server at all
    ],
)
async def test_without_a_host_header_the_url_is_the_servers_address(
    server: tuple[str, int | None] | None, signed_for: str
) -> None:
    settings = make_settings()
    scope = http_scope([auth(oauth_header("GET", signed_for))], server=server)
    sent, app = await call(settings, scope, GET)
    assert sent[0]["status"] == 299
    assert len(app.scopes) == 1


async def test_without_a_host_header_a_signature_for_another_port_is_refused() -> None:
    settings = make_settings()
    signed = oauth_header("GET", "https://srv.example/app/restlet.nl")
    scope = http_scope([auth(signed)], server=("srv.example", 8443))
    sent, app = await call(settings, scope, GET)
    assert status_and_code(sent) == (401, ErrorCode.INVALID_SIGNATURE)
    assert app.scopes == []


# --- X-Forwarded-Host -------------------------------------------------------------------------


async def test_a_comma_separated_forwarded_host_is_read_as_its_first_host() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    headers = [
        (b"host", b"internal.local"),
        (b"x-forwarded-host", b"api.example.com , proxy.internal"),
    ]
    proxy = ("10.1.2.3", 40000)
    first = oauth_header("GET", "https://api.example.com/app/restlet.nl")
    sent, _ = await call(settings, http_scope([*headers, auth(first)], client=proxy), GET)
    assert sent[0]["status"] == 299
    for other in ("proxy.internal", "internal.local", "api.example.com, proxy.internal"):
        signed = oauth_header("GET", f"https://{other}/app/restlet.nl")
        sent, _ = await call(settings, http_scope([*headers, auth(signed)], client=proxy), GET)
        assert status_and_code(sent) == (401, ErrorCode.INVALID_SIGNATURE), other


async def test_an_empty_forwarded_host_leaves_the_host_header() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    headers = [(b"host", HOST.encode()), (b"x-forwarded-host", b" , other.example")]
    signed = oauth_header("GET", f"https://{HOST}/app/restlet.nl")
    scope = http_scope([*headers, auth(signed)], client=("10.1.2.3", 40000))
    sent, _ = await call(settings, scope, GET)
    assert sent[0]["status"] == 299


async def test_a_forwarded_host_from_an_untrusted_peer_is_ignored() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    headers = [(b"host", HOST.encode()), (b"x-forwarded-host", b"api.example.com")]
    signed = oauth_header("GET", "https://api.example.com/app/restlet.nl")
    sent, _ = await call(settings, http_scope([*headers, auth(signed)]), GET)
    assert status_and_code(sent) == (401, ErrorCode.INVALID_SIGNATURE)


# --- websockets -------------------------------------------------------------------------------


async def test_a_refused_websocket_without_the_denial_extension_is_closed_with_1008() -> None:
    sent, app = await call(make_settings(), websocket_scope([]), CONNECT)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert app.scopes == []


async def test_a_refused_websocket_with_the_denial_extension_gets_the_status_and_code() -> None:
    sent, app = await call(make_settings(), websocket_scope([], denial=True), CONNECT)
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert status_and_code(sent) == (401, ErrorCode.MISSING_REQUIRED_PARAMETER)
    assert app.scopes == []


async def test_a_websocket_that_disconnects_before_connecting_gets_no_answer() -> None:
    sent, app = await call(
        make_settings(), websocket_scope([], denial=True), [{"type": "websocket.disconnect"}]
    )
    assert sent == []
    assert app.scopes == []


async def test_a_signed_websocket_handshake_is_accepted_as_an_https_get() -> None:
    signed = oauth_header("GET", f"https://{HOST}/ws")
    sent, app = await call(make_settings(), websocket_scope([auth(signed)]), CONNECT)
    assert sent == [{"type": "websocket.accept"}]
    assert app.scopes[0]["tba"].token_id == "tk-alice"


async def test_plaintext_is_accepted_over_wss_and_refused_over_ws() -> None:
    settings = make_settings(signature_methods=["HMAC-SHA256", "PLAINTEXT"])
    secure = oauth_header("GET", f"https://{HOST}/ws", signature_method="PLAINTEXT")
    sent, _ = await call(settings, websocket_scope([auth(secure)], scheme="wss"), CONNECT)
    assert sent == [{"type": "websocket.accept"}]
    plain = oauth_header("GET", f"http://{HOST}/ws", signature_method="PLAINTEXT")
    scope = websocket_scope([auth(plain)], scheme="ws", denial=True)
    sent, app = await call(settings, scope, CONNECT)
    assert status_and_code(sent) == (400, ErrorCode.UNKNOWN_ALGORITHM)
    assert app.scopes == []


# --- PLAINTEXT with a body hash ---------------------------------------------------------------


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha1(body).digest()).decode()  # the extension's hash


async def test_plaintext_with_a_body_hash_is_refused_as_an_unknown_algorithm() -> None:
    """PLAINTEXT signs no base string, so a body hash beside it would protect nothing."""
    settings = make_settings(signature_methods=["HMAC-SHA256", "PLAINTEXT"])
    body = b'{"a": 1}'
    signed = oauth_header(
        "POST",
        f"https://{HOST}/app/restlet.nl",
        signature_method="PLAINTEXT",
        extra={"oauth_body_hash": body_hash(body)},
    )
    scope = http_scope([(b"host", HOST.encode()), auth(signed)]) | {"method": "POST"}
    sent, app = await call(settings, scope, [{"type": "http.request", "body": body}])
    assert status_and_code(sent) == (400, ErrorCode.UNKNOWN_ALGORITHM)
    assert app.scopes == []


async def test_hmac_with_a_body_hash_of_the_body_sent_is_accepted() -> None:
    settings = make_settings()
    body = b'{"a": 1}'
    url = f"https://{HOST}/app/restlet.nl"
    signed = oauth_header("POST", url, extra={"oauth_body_hash": body_hash(body)})
    scope = http_scope([(b"host", HOST.encode()), auth(signed)]) | {"method": "POST"}
    sent, _ = await call(settings, scope, [{"type": "http.request", "body": body}])
    assert sent[0]["status"] == 299
    signed = oauth_header("POST", url, extra={"oauth_body_hash": body_hash(b"other")})
    scope = http_scope([(b"host", HOST.encode()), auth(signed)]) | {"method": "POST"}
    sent, _ = await call(settings, scope, [{"type": "http.request", "body": body}])
    assert status_and_code(sent) == (401, ErrorCode.INVALID_SIGNATURE)


# --- what an accepted request hands the application -------------------------------------------


async def test_an_accepted_request_is_an_authenticated_user_with_its_identity() -> None:
    signed = oauth_header("GET", f"https://{HOST}/app/restlet.nl")
    scope = http_scope([(b"host", HOST.encode()), auth(signed)])
    sent, app = await call(make_settings(), scope, GET)
    assert sent[0]["status"] == 299
    seen = app.scopes[0]
    assert seen["user"].is_authenticated is True
    assert seen["user"].identity == "tk-alice"
    assert seen["user"].display_name == "38"  # the entity, when the token has one
    assert seen["auth"].scopes == ["authenticated"]
    assert seen["tba"].consumer_key == "ck-order-sync"
    assert seen["tba"].realm == "123456_SB1"
    assert (seen["tba"].entity, seen["tba"].role) == ("38", "3")


async def test_scopes_an_application_changes_in_place_never_reach_another_request() -> None:
    """`scope["auth"]` is one object for every verified request: what one request's app does
    to its scopes must not grant anything to the next."""
    url = f"https://{HOST}/app/restlet.nl"
    seen: list[list[str]] = []

    async def granting_app(scope: Any, receive: Any, send: Any) -> None:
        scope["auth"].scopes.append("admin")
        with pytest.raises(AttributeError, match="set scope\\['auth'\\] instead"):
            scope["auth"].scopes = ["authenticated", "admin"]
        seen.append(scope["auth"].scopes)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = TBAGuardMiddleware(granting_app, guard=Guard(make_settings(), clock=Clock()))
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(2):
        scope = http_scope([(b"host", HOST.encode()), auth(oauth_header("GET", url))])
        await middleware(scope, receive, send)
    assert statuses == [299, 299]
    assert seen == [["authenticated"], ["authenticated"]]
