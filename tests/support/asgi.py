"""Applications behind the guard, and driving the middleware at the ASGI level.

`drive` plays a client and a server around one fresh middleware and collects every message it
sends, so a test sees exactly what went on the wire and whether the application ran.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from tba_guard import Guard, GuardSettings, ReplayKey, TBAGuardMiddleware
from tests.support.signing import BASE_URL, Clock

HOST = BASE_URL.removeprefix("https://")
APP_STATUS = 299  # only the application answers with this


async def echo(request: StarletteRequest) -> JSONResponse:
    body = await request.body()
    identity = request.scope.get("tba")
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "body": body.decode("utf-8", "replace"),
            "token_id": identity.token_id if identity else None,
            "user": request.user.display_name if "user" in request.scope else None,
        }
    )


def echo_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
    )


class RecordingApp:
    """The protected application: records that it ran, drains the body, answers 299."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": APP_STATUS, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


@dataclass
class Outcome:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    app_calls: int
    app_body: bytes = b""
    received: int = 0  # how many messages the guard and the app took from the client

    @property
    def error(self) -> dict[str, str]:
        document = json.loads(self.body)
        assert set(document) == {"error"}
        error: dict[str, str] = document["error"]
        return error

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


class FailingStore:
    """A replay store that is down: every call raises, as a lost Redis connection does."""

    async def seen(self, key: ReplayKey) -> bool:
        raise ConnectionError("replay store down")

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        raise ConnectionError("replay store down")


@dataclass
class Request:
    method: str = "GET"
    raw_path: bytes = b"/"
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: Sequence[bytes] = (b"",)


def scope_for(request: Request) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "https",
        "path": request.raw_path.decode("latin-1"),
        "raw_path": request.raw_path,
        "query_string": request.query,
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *request.headers],
        "client": ("203.0.113.9", 50000),
        "server": (HOST, 443),
    }


async def drive(
    request: Request,
    settings: GuardSettings,
    *,
    replay_store: Any = None,
    stall: bool = False,
    hooks: Sequence[Any] = (),
    guard: Guard | None = None,
) -> Outcome:
    """Run one request through a fresh middleware; collect what it sent."""
    app = RecordingApp()
    if guard is None:
        guard = Guard(settings, clock=Clock(), replay_store=replay_store, audit_hooks=hooks)
    middleware = TBAGuardMiddleware(app, guard=guard)
    pending = [
        # A client that stalls promises more body after its last chunk.
        {"type": "http.request", "body": chunk, "more_body": stall or i < len(request.chunks) - 1}
        for i, chunk in enumerate(request.chunks)
    ]
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if pending:
            return pending.pop(0)
        if stall:
            await asyncio.Event().wait()  # a client that never sends the rest
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(middleware(scope_for(request), receive, send), timeout=30)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Outcome(
        starts[0]["status"], list(starts[0]["headers"]), body, app.calls, app.body, received
    )


class CountingCredentials:
    """The settings' credentials, counting each lookup."""

    def __init__(self, settings: GuardSettings) -> None:
        from tba_guard import StaticCredentials

        self.store = StaticCredentials(settings.integrations, settings.tokens)
        self.lookups: Counter[str] = Counter()
        self.tokens_asked: list[str] = []

    async def integration(self, consumer_key: str) -> Any:
        self.lookups["integration"] += 1
        return await self.store.integration(consumer_key)

    async def token(self, token_id: str) -> Any:
        self.lookups["token"] += 1
        self.tokens_asked.append(token_id)
        return await self.store.token(token_id)


def count_signatures(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every HMAC that is base64-encoded, which the guard does once per
    signature it computes. Patched in the standard library, where both the pure and the
    compiled build look it up on each call."""
    signs: list[int] = []
    real_b2a_base64 = binascii.b2a_base64

    def counting_b2a_base64(data: bytes, *, newline: bool = True) -> bytes:
        signs.append(len(data))
        return real_b2a_base64(data, newline=newline)

    monkeypatch.setattr(binascii, "b2a_base64", counting_b2a_base64)
    return signs


class HeldApp:
    """An application whose requests stay in flight until the test lets them go."""

    def __init__(self) -> None:
        self.entered = 0
        self.go = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.go.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


class Exchange:
    """One request through the middleware, run as a task: what it sent, and a way to hang up."""

    def __init__(self, middleware: Any, scope: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.hang_up = asyncio.Event()
        self.task = asyncio.ensure_future(middleware(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
