"""Receiving a body message under a deadline: at once when it is there, else awaited with a
bound, and a cancellation still reaches the server's own `receive`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tba_guard.asgi import receiving

MESSAGE = {"type": "http.request", "body": b"a=1", "more_body": False}


def test_a_message_that_is_there_comes_back_without_suspending() -> None:
    async def receive() -> dict[str, Any]:
        return MESSAGE

    message, rest = receiving.start(receive)
    assert message is MESSAGE
    assert rest is None


def test_a_message_that_arrives_later_is_awaited() -> None:
    async def main() -> dict[str, Any]:
        arrived = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await arrived.wait()
            await asyncio.sleep(0)  # suspends a second time, on a bare yield
            return MESSAGE

        message, rest = receiving.start(receive)
        assert message is None
        assert rest is not None
        asyncio.get_running_loop().call_soon(arrived.set)
        return await receiving.finish(rest, asyncio.get_running_loop().time() + 30)

    assert asyncio.run(main()) is MESSAGE


def test_a_message_that_never_arrives_times_out_and_the_wait_is_cancelled() -> None:
    cancelled = []

    async def main() -> None:
        async def receive() -> dict[str, Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return MESSAGE

        _, rest = receiving.start(receive)
        assert rest is not None
        await receiving.finish(rest, asyncio.get_running_loop().time() + 0.01)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert cancelled == [True]


def test_an_exception_inside_receive_reaches_the_caller() -> None:
    async def main() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0)
            raise ConnectionResetError("peer gone")

        _, rest = receiving.start(receive)
        assert rest is not None
        await receiving.finish(rest, asyncio.get_running_loop().time() + 30)

    with pytest.raises(ConnectionResetError, match="peer gone"):
        asyncio.run(main())


def test_a_receive_that_answers_the_deadline_with_a_message_hands_that_message_over() -> None:
    async def main() -> dict[str, Any]:
        async def receive() -> dict[str, Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return MESSAGE  # a server that hands over what it has when asked to stop
            raise AssertionError("not reached")

        _, rest = receiving.start(receive)
        assert rest is not None
        return await receiving.finish(rest, asyncio.get_running_loop().time() + 0.01)

    assert asyncio.run(main()) is MESSAGE


def test_a_started_receive_that_is_abandoned_closes_the_servers_receive() -> None:
    closed = []

    async def main() -> None:
        async def receive() -> dict[str, Any]:
            try:
                await asyncio.sleep(0)
            finally:
                closed.append(True)
            return MESSAGE

        _, rest = receiving.start(receive)
        assert rest is not None
        rest.send(None)  # resumed once, as the awaiting task does
        rest.close()  # the middleware's task went away before the message came

    asyncio.run(main())
    assert closed == [True]


def test_a_receive_polling_without_a_future_still_hears_the_deadline() -> None:
    # The cancellation must reach `receive` itself: a server polling on bare yields has no
    # future for asyncio to cancel, and would otherwise poll on past the deadline.
    cancelled = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 2

        async def receive() -> dict[str, Any]:
            try:
                while loop.time() < give_up:  # noqa: ASYNC110 (polling is the point)
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return MESSAGE

        _, rest = receiving.start(receive)
        assert rest is not None
        return await receiving.finish(rest, loop.time() + 0.01)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert cancelled == [True]


class IteratorAwaitable:
    """Like granian's `receive()`: `__await__` gives an iterator with neither `send` nor
    `throw`, yielding a future until the message is there."""

    def __init__(self, future: asyncio.Future[dict[str, Any]] | None) -> None:
        self.future = future

    def __await__(self) -> IteratorAwaitable:
        return self

    def __iter__(self) -> IteratorAwaitable:
        return self

    def __next__(self) -> asyncio.Future[dict[str, Any]]:
        if self.future is None:
            raise StopIteration(MESSAGE)
        if not self.future.done():
            self.future._asyncio_future_blocking = True  # what a future's own __await__ sets
            return self.future
        raise StopIteration(self.future.result())


def test_a_receive_whose_awaitable_has_no_send_hands_its_message_over_at_once() -> None:
    message, rest = receiving.start(lambda: IteratorAwaitable(None))  # type: ignore[arg-type, return-value]
    assert message is MESSAGE
    assert rest is None


def test_a_receive_whose_awaitable_has_no_send_is_awaited_when_it_suspends() -> None:
    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        message, rest = receiving.start(lambda: IteratorAwaitable(future))  # type: ignore[arg-type, return-value]
        assert message is None
        assert rest is not None
        loop.call_soon(future.set_result, MESSAGE)
        return await receiving.finish(rest, loop.time() + 30)

    assert asyncio.run(main()) is MESSAGE
