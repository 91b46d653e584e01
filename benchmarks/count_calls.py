"""Python function calls of one accepted request through TBAGuardMiddleware, counted with
`sys.setprofile`: how much driving the guard's own code does, apart from what each call costs.

Run it on the plain-Python source tree (compiled functions raise no profile events):

    PYTHONPATH=. python benchmarks/count_calls.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.types import Message

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_middleware import MIDDLEWARE_SHAPES, noop_app, request_scope  # noqa: E402
from competitors import SETTINGS, signed_headers  # noqa: E402

from tba_guard import Guard, TBAGuardMiddleware  # noqa: E402


def calls(shape_name: str) -> tuple[int, int]:
    """(calls into tba_guard's modules, all Python calls) of the second of two requests."""
    shape = next(s for s in MIDDLEWARE_SHAPES if s.name == shape_name)
    now = time.time()
    app = TBAGuardMiddleware(noop_app, guard=Guard(SETTINGS, clock=lambda: now))
    body = shape.body.encode()
    counted: Counter[bool] = Counter()

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event == "call":
            counted[frame.f_code.co_filename.rpartition("tba_guard/")[1] == "tba_guard/"] += 1

    async def one(profiled: bool) -> None:
        statuses: list[int] = []
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        scope = request_scope(shape, signed_headers(shape, now=now))

        async def receive() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))

        if profiled:
            sys.setprofile(profile)
        try:
            await app(scope, receive, send)
        finally:
            sys.setprofile(None)
        assert statuses == [200], statuses

    async def both() -> None:
        await one(False)  # caches and lazy imports warm
        await one(True)

    asyncio.run(both())
    return counted[True], counted[True] + counted[False]


def main() -> None:
    print("| request | calls into tba_guard | all Python calls |")
    print("|---|---:|---:|")
    for shape in MIDDLEWARE_SHAPES:
        own, everything = calls(shape.name)
        print(f"| {shape.name} | {own} | {everything} |")


if __name__ == "__main__":
    main()
