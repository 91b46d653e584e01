"""What the middleware does at the edges of the ASGI conversation: the process's body buffers
full, a client that leaves mid-body, an application that reads past the body, trusted proxies
that send odd forwarded headers, and an exempt path on a server that gives no `raw_path`.

Requests are signed by oauthlib (`tests.support.oauth_header`) for the URL the client used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tba_guard import ErrorCode, Guard, GuardSettings, TBAGuardMiddleware
from tests.support import BASE_URL, HOST, Clock, make_settings, oauth_header

Message = dict[str, Any]
FORM = (b"content-type", b"application/x-www-form-urlencoded")
URL = BASE_URL + "/app/restlet.nl"


class App:
    """Reads the body, then (with `then_receive`) once more past it; answers 299."""

    def __init__(self, then_receive: bool = False) -> None:
        self.then_receive = then_receive
        self.calls = 0
        self.scopes: list[dict[str, Any]] = []
        self.after_body: list[Message] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scopes.append(scope)
        if scope["type"] == "http":
            while (await receive()).get("more_body"):
                pass
            if self.then_receive:
                self.after_body.append(await receive())
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope_of(
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "GET",
    path: str = "/app/restlet.nl",
    client: tuple[str, int] = ("203.0.113.9", 50000),
    raw_path: bool = True,
    kind: str = "http",
    scheme: str = "https",
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *headers],
        "client": client,
        "server": (HOST, 443),
    }
    if raw_path:
        scope["raw_path"] = path.encode()
    return scope


async def run(
    middleware: TBAGuardMiddleware,
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(middleware(scope, receive, send), timeout=30)
    return sent


def messages(*items: Message) -> Callable[[], Awaitable[Message]]:
    pending = list(items)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


def chunk(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def status_and_code(sent: list[Message]) -> tuple[int, str]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)["error"]["code"]


def signed_post(body: str) -> tuple[bytes, bytes]:
    return (b"authorization", oauth_header("POST", URL, body=body, form=True).encode())


def guarded(settings: GuardSettings, app: App) -> TBAGuardMiddleware:
    return TBAGuardMiddleware(app, guard=Guard(settings, clock=Clock()))


# --- bodies ----------------------------------------------------------------------------------


async def test_a_body_beyond_what_the_process_may_hold_is_503_while_another_is_held() -> None:
    settings = make_settings(body_buffer_max_bytes=1000)
    first_body, second_body = "a=" + "x" * 598, "b=" + "y" * 598
    waiting, asked_again, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_receive() -> Message:
        # Each part arrives later: the first part is held while the second request comes.
        if not waiting.is_set():
            waiting.set()
            await asyncio.sleep(0)
            return chunk(first_body.encode(), more=True)
        asked_again.set()  # the first part is held by now
        await gate.wait()
        return chunk(b"")

    first_app, second_app = App(), App()
    first = asyncio.create_task(
        run(
            guarded(settings, first_app),
            scope_of([FORM, signed_post(first_body)], method="POST"),
            slow_receive,
        )
    )
    await asked_again.wait()
    sent = await run(
        guarded(settings, second_app),
        scope_of([FORM, signed_post(second_body)], method="POST"),
        messages(chunk(second_body.encode())),
    )
    assert status_and_code(sent) == (503, ErrorCode.REQUEST_BUFFERS_FULL)
    assert second_app.calls == 0
    gate.set()
    assert (await first)[0]["status"] == 299
    assert first_app.calls == 1


async def test_a_client_that_leaves_mid_body_gets_no_answer_and_the_app_never_runs() -> None:
    app = App()
    body = "a=1&b=2"
    sent = await run(
        guarded(make_settings(), app),
        scope_of([FORM, signed_post(body)], method="POST"),
        messages(chunk(b"a=1", more=True), {"type": "http.disconnect"}),
    )
    assert sent == []
    assert app.calls == 0


async def test_after_the_verified_body_the_app_receives_from_the_client() -> None:
    app = App(then_receive=True)
    body = "a=1"
    sent = await run(
        guarded(make_settings(), app),
        scope_of([FORM, signed_post(body)], method="POST"),
        messages(chunk(body.encode())),
    )
    assert sent[0]["status"] == 299
    assert app.after_body == [{"type": "http.disconnect"}]


# --- trusted proxies ------------------------------------------------------------------------


async def test_a_peer_that_is_not_an_ip_address_is_never_a_trusted_proxy() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    headers = [(b"x-forwarded-host", b"api.example.com")]
    signed = oauth_header("GET", "https://api.example.com/app/restlet.nl")
    app = App()
    scope = scope_of([*headers, (b"authorization", signed.encode())], client=("testclient", 1))
    sent = await run(guarded(settings, app), scope, messages(chunk(b"")))
    assert status_and_code(sent) == (401, ErrorCode.INVALID_SIGNATURE)


async def test_a_forwarded_for_of_trusted_proxies_only_names_its_first_hop_as_client() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    app = App()
    signed = oauth_header("GET", URL)
    headers = [(b"x-forwarded-for", b"10.9.9.9, 10.8.8.8"), (b"authorization", signed.encode())]
    sent = await run(
        guarded(settings, app), scope_of(headers, client=("10.1.2.3", 4000)), messages()
    )
    assert sent[0]["status"] == 299
    assert app.scopes[0]["client"] == ("10.9.9.9", 4000)


async def test_an_empty_forwarded_for_leaves_the_peer_as_client() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    app = App()
    headers = [(b"x-forwarded-for", b""), (b"authorization", oauth_header("GET", URL).encode())]
    sent = await run(
        guarded(settings, app), scope_of(headers, client=("10.1.2.3", 4000)), messages()
    )
    assert sent[0]["status"] == 299
    assert app.scopes[0]["client"] == ("10.1.2.3", 4000)


async def test_a_forwarded_proto_that_is_no_web_scheme_is_ignored() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    app = App()
    headers = [
        (b"x-forwarded-proto", b"gopher"),
        (b"authorization", oauth_header("GET", URL).encode()),  # https, the scope's own
    ]
    sent = await run(
        guarded(settings, app), scope_of(headers, client=("10.1.2.3", 4000)), messages()
    )
    assert sent[0]["status"] == 299
    assert app.scopes[0]["scheme"] == "https"


async def test_a_websocket_forwarded_as_plain_http_is_a_ws_url() -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    app = App()
    signed = oauth_header("GET", f"http://{HOST}/ws")  # ws signs as http
    headers = [(b"x-forwarded-proto", b"http"), (b"authorization", signed.encode())]
    scope = scope_of(headers, path="/ws", kind="websocket", scheme="wss", client=("10.1.2.3", 1))
    sent = await run(guarded(settings, app), scope, messages({"type": "websocket.connect"}))
    assert app.calls == 1, sent
    assert app.scopes[0]["scheme"] == "ws"


@pytest.mark.parametrize("forwarded", [b"http", b"http, https"])  # the first one counts
async def test_a_request_forwarded_as_plain_http_is_an_http_url(forwarded: bytes) -> None:
    settings = make_settings(trusted_proxies=["10.0.0.0/8"])
    app = App()
    signed = oauth_header("GET", f"http://{HOST}/app/restlet.nl")
    headers = [(b"x-forwarded-proto", forwarded), (b"authorization", signed.encode())]
    sent = await run(guarded(settings, app), scope_of(headers, client=("10.1.2.3", 1)), messages())
    assert sent[0]["status"] == 299
    assert app.scopes[0]["scheme"] == "http"


async def test_a_forwarded_client_without_a_peer_in_the_scope_gets_port_zero() -> None:
    settings = make_settings(trusted_proxies=["*"])
    app = App()
    headers = [
        (b"x-forwarded-for", b"198.51.100.7"),
        (b"authorization", oauth_header("GET", URL).encode()),
    ]
    scope = scope_of(headers)
    del scope["client"]
    sent = await run(guarded(settings, app), scope, messages())
    assert sent[0]["status"] == 299
    assert app.scopes[0]["client"] == ("198.51.100.7", 0)


# --- the keys a server may leave out ----------------------------------------------------------


def bare_scope(kind: str, path: str, authorization: str) -> dict[str, Any]:
    """Only what ASGI requires: no scheme, raw_path, query_string, client, server or Host."""
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "method": "GET",
        "path": path,
        "headers": [(b"authorization", authorization.encode())],
    }


async def test_a_scope_without_the_optional_keys_is_signed_for_their_defaults() -> None:
    app = App()
    signed = oauth_header("GET", "http://localhost/app/restlet.nl")
    scope = bare_scope("http", "/app/restlet.nl", signed)
    sent = await run(guarded(make_settings(), app), scope, messages())
    assert sent[0]["status"] == 299
    assert app.scopes[0]["tba"].token_id


async def test_a_websocket_whose_scope_leaves_out_the_scheme_is_a_ws_url() -> None:
    app = App()
    signed = oauth_header("GET", "http://localhost/ws")  # ws signs as http
    scope = bare_scope("websocket", "/ws", signed)
    sent = await run(guarded(make_settings(), app), scope, messages({"type": "websocket.connect"}))
    assert app.calls == 1, sent


# --- exempt paths ---------------------------------------------------------------------------


async def test_an_exempt_path_without_a_raw_path_from_the_server_is_exempt() -> None:
    settings = make_settings(exempt_paths=["/health"])
    app = App()
    sent = await run(
        guarded(settings, app), scope_of([], path="/health", raw_path=False), messages()
    )
    assert sent[0]["status"] == 299
    assert app.calls == 1


async def test_an_exempt_path_with_only_an_encoded_slash_in_its_raw_path_is_guarded() -> None:
    settings = make_settings(exempt_paths=["/health/"])
    app = App()
    scope = scope_of([], path="/health/x")
    scope["raw_path"] = b"/health%2Fx"
    sent = await run(guarded(settings, app), scope, messages())
    assert status_and_code(sent) == (401, ErrorCode.MISSING_REQUIRED_PARAMETER)
    assert app.calls == 0
