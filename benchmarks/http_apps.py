"""A Starlette hello-world, bare and behind each guard, as uvicorn factories.

    uvicorn --factory http_apps:bare | tba_guard | oauthlib | authlib | busy_10us

Besides /hello (bench_http.py), the app answers the paths of bench_middleware's request shapes
(GET and POST, the body read), so that bench_server.py can send those shapes to every variant.
`profiled` (bench_server.py --count-calls) and `counted_demo` / `serve_counted` (its workers
check) wrap these or `tba-guard serve` for counting, each enabled only by an environment variable.

The oauthlib and Authlib guards are pure ASGI wrappers like tba_guard's, so the difference
measured is the verification itself. They call the libraries synchronously, as their own
framework integrations do.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
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


async def shaped(request: Request) -> PlainTextResponse:
    """The shapes' endpoint: a POST's body is read, as an application would read it."""
    if request.method == "POST":
        await request.body()
    return PlainTextResponse("Hello, world!")


#: The paths of bench_middleware.MIDDLEWARE_SHAPES (their queries apart).
SHAPE_PATHS = ("/app/site/hosting/restlet.nl", "/services/rest/record/v1/salesOrder")


def bare() -> Starlette:
    return Starlette(
        routes=[
            Route("/hello", hello),
            *(Route(path, shaped, methods=["GET", "POST"]) for path in SHAPE_PATHS),
        ]
    )


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


# --- counting, for bench_server.py ------------------------------------------------------------

#: `variant:file`: `profiled` serves that variant under `sys.setprofile` and writes the Python
#: function calls per request to the file at exit.
PROFILE_ENV = "TBA_BENCH_PROFILE"
#: A folder: `counted` apps write their request count to `<folder>/<pid>` on SIGUSR1.
COUNT_ENV = "TBA_BENCH_COUNT_DIR"


def profiled() -> ASGIApp:
    """A factory variant counted with `sys.setprofile`: the calls are attributed by (file,
    function), and the count of HTTP requests divides them at exit (SIGINT lets atexit run).
    Compiled (mypyc) functions raise no profile events, so only Python-level calls show."""
    variant, _, out = os.environ[PROFILE_ENV].partition(":")
    app = FACTORIES[variant]()
    calls: Counter[tuple[str, str]] = Counter()
    requests = [0]

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event == "call":
            code = frame.f_code
            calls[(code.co_filename.rsplit("site-packages/", 1)[-1], code.co_name)] += 1

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            requests[0] += 1
        await app(scope, receive, send)

    def dump() -> None:
        sys.setprofile(None)
        lines = [f"{requests[0]}"]
        lines += [f"{n}\t{file}\t{name}" for (file, name), n in calls.most_common()]
        Path(out).write_text("\n".join(lines) + "\n")

    atexit.register(dump)
    sys.setprofile(profile)
    return counted


def counted(app: ASGIApp) -> ASGIApp:
    """`app` counting its HTTP requests; SIGUSR1 writes the count to `$TBA_BENCH_COUNT_DIR/<pid>`
    (written whole, then renamed), so that a benchmark reads exact requests per worker."""
    folder = Path(os.environ[COUNT_ENV])
    requests = [0]

    def write(sig: int, frame: FrameType | None) -> None:
        partial = folder / f".{os.getpid()}"
        partial.write_text(f"{requests[0]}\n")
        partial.rename(folder / str(os.getpid()))

    signal.signal(signal.SIGUSR1, write)

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            requests[0] += 1
        await app(scope, receive, send)

    return counting


def counted_demo() -> ASGIApp:
    """Each worker's factory under `serve_counted`: the demo service's own, counted."""
    from tba_guard.serving import create_app

    return counted(create_app())


def serve_counted() -> None:
    """`tba-guard serve` (its `main`, arguments from the command line) with the demo app
    counted: one worker counts the app object it serves, several import `counted_demo`."""
    import tba_guard.tools.cli as cli

    original = cli.uvicorn_target

    def target(config: str | None, settings: Any, workers: int) -> tuple[Any, bool]:
        app, _ = original(config, settings, workers)  # sets the workers' environment
        return (counted(app), False) if workers == 1 else ("http_apps:counted_demo", True)

    cli.uvicorn_target = target
    sys.exit(cli.main(sys.argv[1:]))
