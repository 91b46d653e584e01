"""Instructions per request through TBAGuardMiddleware, counted by callgrind: repeatable where
wall-clock timings are not (a busy machine, CPU frequency), so two builds compare exactly.

Requests are signed beforehand (oauthlib's signing is not counted) and driven as uvicorn would,
the same way as bench_middleware.py; the count is that of N requests minus that of none, over N.
With `--competitors`, oauthlib's and Authlib's middlewares of bench_middleware.py and the no-op
app alone are counted too, and the ratios are of counts minus the bare app's: bench_middleware's
ratios in instructions, which no other load on the machine moves. Needs valgrind (Debian:
apt-get install valgrind).

    python benchmarks/callgrind_middleware.py [--requests 400] [--competitors]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.types import ASGIApp, Message

from tba_guard import Guard

HERE = Path(__file__).resolve().parent
SHAPE_NAMES = ("GET query", "POST form", "POST JSON body hash")


IMPLEMENTATIONS = ("bare", "tba_guard", "oauthlib", "Authlib")


def drive(signed: Path, shape_name: str, count: int, implementation: str = "tba_guard") -> None:
    """Send the first `count` signed requests through a fresh middleware; all must pass."""
    sys.path.insert(0, str(HERE))
    from bench_middleware import (
        MIDDLEWARE_SHAPES,
        authlib_middleware,
        noop_app,
        oauthlib_middleware,
        request_scope,
    )
    from competitors import SETTINGS

    from tba_guard import TBAGuardMiddleware

    shape = next(s for s in MIDDLEWARE_SHAPES if s.name == shape_name)
    data = json.loads(signed.read_text())
    now = data["now"]
    scopes = [request_scope(shape, headers) for headers in data["headers"][:count]]
    body = shape.body.encode()
    # oauthlib and Authlib read the wall clock: the requests were signed moments ago.
    factories: dict[str, Callable[[], ASGIApp]] = {
        "bare": lambda: noop_app,
        "tba_guard": lambda: TBAGuardMiddleware(noop_app, guard=Guard(SETTINGS, clock=lambda: now)),
        "oauthlib": lambda: oauthlib_middleware(noop_app),
        "Authlib": lambda: authlib_middleware(noop_app),
    }
    app = factories[implementation]()

    async def run() -> None:
        statuses: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))

        for scope in scopes:
            messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(pending: list[Message] = messages) -> Message:
                return pending.pop(0) if pending else {"type": "http.disconnect"}

            await app(scope, receive, send)
        assert statuses == [200] * len(scopes), statuses[:3]

    asyncio.run(run())


def sign(path: Path, shape_name: str, count: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_middleware import MIDDLEWARE_SHAPES
    from competitors import signed_headers

    shape = next(s for s in MIDDLEWARE_SHAPES if s.name == shape_name)
    now = time.time()
    headers = [signed_headers(shape, now=now) for _ in range(count)]
    path.write_text(json.dumps({"now": now, "headers": headers}))


def instructions(
    signed: Path, shape_name: str, count: int, implementation: str = "tba_guard"
) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--drive",
        str(signed),
        shape_name,
        str(count),
        implementation,
    ]
    # One hash seed for every run: string hashing otherwise moves the count by a percent or two.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--drive"]:
        drive(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument(
        "--competitors", action="store_true", help="count oauthlib, Authlib and the bare app too"
    )
    args = parser.parse_args()
    names = IMPLEMENTATIONS if args.competitors else ("tba_guard",)
    if args.competitors:
        print(
            "| request | bare | tba_guard | oauthlib | Authlib | tba_guard / oauthlib"
            " | tba_guard / Authlib |\n|---|---:|---:|---:|---:|---:|---:|"
        )
    else:
        print("| request | instructions per request |\n|---|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in SHAPE_NAMES:
            signed = Path(folder) / "signed.json"
            sign(signed, name, args.requests)
            counts = {}
            for implementation in names:
                none, many = (
                    instructions(signed, name, n, implementation) for n in (0, args.requests)
                )
                counts[implementation] = (many - none) // args.requests
            if not args.competitors:
                print(f"| {name} | {counts['tba_guard']:,} |")
                continue
            net = {k: counts[k] - counts["bare"] for k in IMPLEMENTATIONS[1:]}
            cells = [f"{counts[k]:,}" for k in IMPLEMENTATIONS]
            cells += [f"{net['tba_guard'] / net[k]:.3f}" for k in ("oauthlib", "Authlib")]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
