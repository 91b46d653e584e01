"""The guard through its ASGI middleware, driven as uvicorn drives it, beside oauthlib and Authlib.

Each request is an `http` scope as uvicorn builds it (lower-cased header pairs, `raw_path`,
`client`, `server`), a `receive` that hands over the whole body in one `http.request` message and
then `http.disconnect`, and a `send` that collects the messages. Behind every middleware sits the
same no-op app: it reads the body through `receive` (POSTs) and answers 200 with what it read.

Each request is timed on its own (`perf_counter_ns` around `await middleware(scope, receive,
send)`, in one asyncio event loop) and the same app driven bare, with the same scope, receive and
send, is subtracted: what is left is what the middleware costs. Bare, tba_guard, oauthlib and
Authlib take turns in every round, so that a machine that slows down mid-run weighs on all alike;
every round gets freshly signed requests (a new nonce each, signed before its timing starts).

oauthlib and Authlib run as pure ASGI middlewares written here, as a user would write them: the
request built from the scope, the body read for a form body or a hashed one, the library's own
verification, and `oauth_body_hash` compared with the body (neither library checks it). Their body
read has the size cap but no timeout, so that if anything they look a little faster than they are.

    python benchmarks/bench_middleware.py [--requests N] [--rounds R] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from competitors import (
    JSON_BODY_HASH,
    SETTINGS,
    SHAPES,
    AuthlibProtector,
    Shape,
    oauthlib_endpoint,
    signed_headers,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tba_guard.asgi.middleware
from tba_guard import TBAGuardMiddleware

# GET with a query, form POST (signed form parameters), JSON POST with a SHA-1 oauth_body_hash.
MIDDLEWARE_SHAPES = (SHAPES[0], SHAPES[1], JSON_BODY_HASH)
IMPLEMENTATIONS = ("bare", "tba_guard", "oauthlib", "Authlib")
SERVER = ("127.0.0.1", 8000)  # competitors.HOST
CLIENT = ("127.0.0.1", 50312)
# What requests (python-requests, which requests-oauthlib drives) sends besides the OAuth header.
CLIENT_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"python-requests/2.32.3"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept", b"*/*"),
    (b"connection", b"keep-alive"),
]
MAX_BODY = SETTINGS.body_max_bytes
FORM = "application/x-www-form-urlencoded"


class Cycle:
    """One request's channels, as uvicorn's RequestResponseCycle hands them to the app."""

    __slots__ = ("body", "body_sent", "messages")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.body_sent = False
        self.messages: list[Message] = []

    async def receive(self) -> Message:
        if self.body_sent:
            return {"type": "http.disconnect"}
        self.body_sent = True
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    def response(self) -> tuple[int, bytes]:
        status = next(m["status"] for m in self.messages if m["type"] == "http.response.start")
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )
        return status, body


def request_scope(shape: Shape, headers: dict[str, str]) -> Scope:
    """The scope uvicorn (h11) builds for this request, with its signed headers."""
    path, _, query = shape.path.partition("?")
    raw = list(CLIENT_HEADERS)
    for name, value in headers.items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if shape.body:
        raw.append((b"content-length", str(len(shape.body.encode())).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": SERVER,
        "client": CLIENT,
        "scheme": "http",
        "method": shape.method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "headers": raw,
        "state": {},
    }


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200; a POST's body is read through `receive` first and echoed, so that the
    benchmark can check the application got the body the middleware buffered."""
    body = b""
    if scope["method"] != "GET":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- oauthlib and Authlib as ASGI middlewares -------------------------------------------------

# (method, url, form body or None, headers) -> the request's oauth_* parameters, None if refused.
Verifier = Callable[[str, str, str | None, dict[str, str]], dict[str, str] | None]


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive) -> bytes | None:
    """The whole body under the same cap as tba_guard's; None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """Hand the buffered body to the app once, then the server's channel."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha1(body).digest()).decode()  # the extension's hash


class CompetitorMiddleware:
    """A library's verifier in front of an ASGI app: 401 if refused, the app if accepted."""

    def __init__(self, app: ASGIApp, verify: Verifier) -> None:
        self.app = app
        self.verify = verify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Title-cased: Authlib looks the header up as "Authorization" in a plain dict.
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("Host") or "{}:{}".format(*scope["server"])
        query = scope["query_string"].decode("latin-1")
        url = f"{scope['scheme']}://{host}{scope['raw_path'].decode('latin-1')}"
        if query:
            url += "?" + query
        content_type = headers.get("Content-Type")
        body: bytes | None = None
        if content_type is not None:  # a body to sign (form) or to hash: read it whole
            try:
                body = await read_body(receive)
            except BodyTooLarge:
                await self.refuse(send, 413)
                return
            if body is None:
                return  # the client went away
            receive = replay(body, receive)
        form = content_type is not None and content_type.split(";")[0].strip().lower() == FORM
        text = body.decode("utf-8", "replace") if form and body is not None else None
        oauth = self.verify(scope["method"], url, text, headers)
        sent_hash = oauth.get("oauth_body_hash") if oauth is not None else None
        if oauth is not None and (
            sent_hash is None or hmac.compare_digest(sent_hash, body_hash(body or b""))
        ):
            await self.app(scope, receive, send)
            return
        await self.refuse(send, 401)

    @staticmethod
    async def refuse(send: Send, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"rejected"})


def oauthlib_middleware(app: ASGIApp) -> CompetitorMiddleware:
    endpoint = oauthlib_endpoint()

    def verify(
        method: str, url: str, body: str | None, headers: dict[str, str]
    ) -> dict[str, str] | None:
        valid, request = endpoint.validate_protected_resource_request(url, method, body, headers)
        return dict(request.oauth_params) if valid else None

    return CompetitorMiddleware(app, verify)


def authlib_middleware(app: ASGIApp) -> CompetitorMiddleware:
    protector = AuthlibProtector()

    def verify(
        method: str, url: str, body: str | None, headers: dict[str, str]
    ) -> dict[str, str] | None:
        try:
            request = protector.validate_request(method, url, body, headers)
        except Exception:  # Authlib refuses by raising its OAuth1Error subclasses
            return None
        return dict(request.oauth_params)

    return CompetitorMiddleware(app, verify)


# --- measurement ------------------------------------------------------------------------------


def prepare(shape: Shape, count: int) -> list[tuple[Scope, Cycle]]:
    body = shape.body.encode()
    return [(request_scope(shape, signed_headers(shape)), Cycle(body)) for _ in range(count)]


async def time_batch(app: ASGIApp, batch: list[tuple[Scope, Cycle]]) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for scope, cycle in batch:
        receive, send = cycle.receive, cycle.send
        start = clock()
        await app(scope, receive, send)
        samples.append(clock() - start)
        # Let the loop turn once between requests, untimed, as it does under a server (uvicorn
        # runs each request as a task): cancelled timers (body timeouts) are swept from its heap.
        await asyncio.sleep(0)
    return samples


def check(name: str, shape: Shape, batch: list[tuple[Scope, Cycle]]) -> None:
    """Every signed request accepted and the body reaching the app intact: a verifier that
    refuses (or loses the body) must not look fast."""
    expected = shape.body.encode() if shape.method != "GET" else b""
    for _, cycle in batch:
        status, echoed = cycle.response()
        assert status == 200, f"{name} answered {status} to a valid {shape.name}"
        assert echoed == expected, f"the app behind {name} read another body ({shape.name})"


async def check_refusal(name: str, app: ASGIApp, shape: Shape) -> None:
    """A signed request altered after signing (the body, or the query of a GET) is refused:
    a verifier that lets everything through must not look fast either."""
    headers = signed_headers(shape)
    if shape.body:
        tampered = shape.body.replace("3", "4").encode()
        scope = request_scope(shape, headers)
    else:
        tampered = b""
        scope = request_scope(shape, headers)
        scope["query_string"] = scope["query_string"].replace(b"id=42", b"id=43")
    cycle = Cycle(tampered)
    await app(scope, cycle.receive, cycle.send)
    status, _ = cycle.response()
    assert status != 200, f"{name} accepted a tampered {shape.name}"


async def measure_shape(shape: Shape, count: int, rounds: int) -> dict[str, Any]:
    apps: dict[str, ASGIApp] = {
        "bare": noop_app,
        "tba_guard": TBAGuardMiddleware(noop_app, SETTINGS),
        "oauthlib": oauthlib_middleware(noop_app),
        "Authlib": authlib_middleware(noop_app),
    }
    share = max(1, count // rounds)
    for name, app in apps.items():  # warm-up: first-call caches, imports, the event loop
        batch = prepare(shape, min(share, 50))
        await time_batch(app, batch)
        check(name, shape, batch)
        if name != "bare":
            await check_refusal(name, app, shape)
    medians: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            batch = prepare(shape, share)
            gc.collect()
            samples = await time_batch(app, batch)
            check(name, shape, batch)
            medians[name].append(statistics.median(samples) / 1000)
    bare = medians["bare"]
    row: dict[str, Any] = {"bare": {"median_us": statistics.median(bare), "worst_us": max(bare)}}
    net: dict[str, list[float]] = {}
    for name in IMPLEMENTATIONS[1:]:
        net[name] = [max(0.0, m - b) for m, b in zip(medians[name], bare, strict=True)]
        row[name] = {
            "median_us": statistics.median(net[name]),
            "worst_us": max(net[name]),
            "rounds_us": net[name],
        }
    for other in ("oauthlib", "Authlib"):
        ratios = [t / o for t, o in zip(net["tba_guard"], net[other], strict=True)]
        row[f"tba_guard / {other}"] = {"median": statistics.median(ratios), "worst": max(ratios)}
    return row


def build() -> str:
    compiled = not (tba_guard.asgi.middleware.__file__ or "").endswith(".py")
    return "compiled" if compiled else "pure Python"


def run(count: int, rounds: int = 5) -> dict[str, Any]:
    async def all_shapes() -> dict[str, Any]:
        return {
            shape.name: await measure_shape(shape, count, rounds) for shape in MIDDLEWARE_SHAPES
        }

    results = asyncio.run(all_shapes())
    results["_run"] = {"build": build(), "requests": count, "rounds": rounds}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| request | bare µs | tba_guard µs | oauthlib µs | Authlib µs"
        " | tba_guard / oauthlib | tba_guard / Authlib |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, row in results.items():
        if shape.startswith("_"):
            continue
        cells = [f"{row['bare']['median_us']:.1f}"]
        for name in IMPLEMENTATIONS[1:]:
            cells.append(f"{row[name]['median_us']:.1f} (worst {row[name]['worst_us']:.1f})")
        for other in ("oauthlib", "Authlib"):
            ratio = row[f"tba_guard / {other}"]
            cells.append(f"{ratio['median']:.3f} (worst {ratio['worst']:.3f})")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=5000, help="requests per shape and implementation"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = run(args.requests, args.rounds)
    run_info = results["_run"]
    print(
        f"tba_guard {run_info['build']}; {run_info['requests']} requests per shape and"
        f" implementation over {run_info['rounds']} rounds; µs per request minus bare,"
        " median of the round medians (worst round)"
    )
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
