"""Receiving an ASGI message under a deadline, without paying for a timer when it is there.

Servers usually hand a small body over together with the request, so `receive()` completes
without ever suspending. `asyncio.timeout` would still cost a timer per read (more than the
rest of reading the body), so the middleware starts the awaitable by hand and only an awaitable
that suspends finishes here, under the deadline. Plain Python on purpose: the generator below
is `yield from` written out, which the compiled build need not know about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from starlette.types import Message, Receive


def start(receive: Receive) -> tuple[Message | None, Generator[Any, Any, Message] | None]:
    """Run `receive()` up to its first suspension: (the message, if it came at once; the
    suspended awaitable to finish with `finish`)."""
    waiting = receive().__await__()
    if not hasattr(waiting, "send"):  # a plain iterator (granian's future): drive it as a generator
        waiting = _generator_of(waiting)
    try:
        pending = waiting.send(None)
    except StopIteration as done:
        message: Message = done.value
        return message, None
    return None, _continue(waiting, pending)


async def finish(rest: Generator[Any, Any, Message], deadline: float) -> Message:
    """Await the rest of a started `receive()`; `TimeoutError` past `deadline` (loop time)."""
    async with asyncio.timeout_at(deadline):
        return await _Awaiting(rest)


class _Awaiting:
    def __init__(self, rest: Generator[Any, Any, Message]) -> None:
        self.rest = rest

    def __await__(self) -> Generator[Any, Any, Message]:
        return self.rest


def _generator_of(iterator: Any) -> Generator[Any, Any, Message]:
    """An `__await__` iterator without `send`/`throw`, which `yield from` knows how to drive."""
    message: Message = yield from iterator
    return message


def _continue(waiting: Generator[Any, Any, Message], pending: Any) -> Generator[Any, Any, Message]:
    """`yield from waiting`, whose first step already ran and yielded `pending`."""
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            waiting.close()
            raise
        except BaseException as exc:  # a cancellation (the deadline) goes on into `waiting`
            try:
                pending = waiting.throw(exc)
            except StopIteration as done:
                message: Message = done.value
                return message
        else:
            try:
                pending = waiting.send(sent)
            except StopIteration as done:
                message = done.value
                return message
