"""A Starlette hello-world, bare and behind each guard, as uvicorn factories.

    uvicorn --factory http_apps:bare | tba_guard | oauthlib | authlib | busy_10us

The oauthlib and Authlib guards are pure ASGI wrappers like tba_guard's, so the difference
measured is the verification itself. They call the libraries synchronously, as their own
framework integrations do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from competitors import SETTINGS, AuthlibProtector, oauthlib_endpoint
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tba_guard import TBAGuardMiddleware


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


def bare() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)])


def tba_guard() -> ASGIApp:
    return TBAGuardMiddleware(bare(), SETTINGS)


#: The control's fixed work per request, in microseconds.
BUSY_MICROSECONDS = 10


def busy_10us() -> ASGIApp:
    """The control: the bare app behind a middleware that only waits on the clock for a fixed
    time. It brings almost no code or data of its own, so its share of bare says what that much
    server time costs in requests per second on this machine, against which a guard's compares."""
    app = bare()
    wait_ns = BUSY_MICROSECONDS * 1000

    async def busy(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            until = time.perf_counter_ns() + wait_ns
            while time.perf_counter_ns() < until:
                pass
        await app(scope, receive, send)

    return busy


class _SyncGuard:
    """Verify with a synchronous library call; 401 on failure, the app on success."""

    def __init__(self, app: ASGIApp, check: Callable[[str, str, dict[str, str]], bool]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("Host", "127.0.0.1")
        query = scope["query_string"].decode("latin-1")
        url = f"http://{host}{scope['path']}" + (f"?{query}" if query else "")
        if self.check(scope["method"], url, headers):
            await self.app(scope, receive, send)
        else:
            await Response("rejected", status_code=401)(scope, receive, send)


def oauthlib() -> ASGIApp:
    endpoint = oauthlib_endpoint()

    def check(method: str, url: str, headers: dict[str, str]) -> bool:
        valid, _ = endpoint.validate_protected_resource_request(url, method, None, headers)
        return bool(valid)

    return _SyncGuard(bare(), check)


def authlib() -> ASGIApp:
    protector = AuthlibProtector()

    def check(method: str, url: str, headers: dict[str, str]) -> bool:
        try:
            protector.validate_request(method, url, None, headers)
        except Exception:
            return False
        return True

    return _SyncGuard(bare(), check)


FACTORIES: dict[str, Callable[[], Any]] = {
    "bare": bare,
    "tba_guard": tba_guard,
    "oauthlib": oauthlib,
    "authlib": authlib,
    "busy_10us": busy_10us,
}
