"""One Redis connection module for the stores that share a Redis: the replay store and the
flow's token store.

Commands go out pipelined: those that a worker's concurrent requests issue in one turn of the
event loop share one write and one read on one connection (`_Pipeline`). On loopback a round
trip costs mostly system calls and client code, not Redis, so this is what keeps a worker's
throughput close to the in-process stores'. Install `hiredis` (the `redis` extra does) and
redis-py parses replies in C.

Every call is bounded by `timeout` in all (pool wait, connect and reply together), so a dead
Redis cannot hang a request, and no command is retried: a retried `SET NX` whose first attempt
did land would turn a legitimate request into `NonceUsed`. A connection the server dropped is
replaced on the next call, so requests succeed again as soon as Redis is back, without a
restart. Failures are `RedisUnavailable`, their text scrubbed of the URL's password.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.connection import Connection, parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Redis stores need the redis package: pip install 'tba-guard[redis]'"
    ) from None

from .urls import redact_url, url_password

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

DEFAULT_POOL_SIZE = 32
DEFAULT_TIMEOUT = 0.25  # seconds; a loopback or same-zone Redis answers in well under 1 ms
Argument = bytes | str | int | float


class RedisUnavailable(Exception):
    """Redis did not answer in time, refused, or replied with an error. No secret in the text."""


class RedisConnection:
    """A store's way to one Redis (or Valkey): `redis://`, `rediss://` (TLS) or `unix://` URLs,
    or a client you built (`from_client`).

    Connections speak RESP2 unless the URL asks for RESP3 (`?protocol=3`). They belong to the
    event loop that opened them, so there is one pipeline per running loop (in a server that is
    exactly one); call `aclose()` on shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "redis_url",
    ) -> None:
        self.url = url
        self.location = redact_url(url)
        self.pool_size = pool_size
        self.timeout = timeout
        self._password = url_password(url)
        try:
            options: dict[str, Any] = dict(parse_url(url))  # a bad URL: a startup error, not a 503
        except ValueError as exc:
            raise ValueError(f"{what} {self.location}: {exc}") from None
        self._connection_class: type[AbstractConnection] = options.pop(
            "connection_class", Connection
        )
        # RESP2 unless the URL says `?protocol=3`: RESP3, redis-py 8's default, opens each
        # connection with `HELLO 3`, a round trip (~90 µs on loopback) for commands that cost
        # the same (docs/replay-protection.md, "Redis protocol").
        protocol = str(options.get("protocol", 2))  # redis-py 5 leaves a URL's as text
        if protocol not in ("2", "3"):
            raise ValueError(f"{what} {self.location}: protocol must be 2 or 3, not {protocol}")
        options["protocol"] = int(protocol)
        # The URL's own options win, as in redis-py's from_url. No socket timeout of its own:
        # each batch is bounded by `timeout` in all, without a timer per read and per write.
        self._connection_options = {"socket_connect_timeout": timeout, **options}
        self._external: Redis | RedisCluster | None = None
        self._external_ready = True
        self._external_lock: asyncio.Lock | None = None
        self._pipelines: dict[asyncio.AbstractEventLoop, _Pipeline] = {}

    @classmethod
    def from_client(
        cls, client: Redis | RedisCluster, *, timeout: float = DEFAULT_TIMEOUT
    ) -> RedisConnection:
        """Use a client you built (`RedisCluster`, Sentinel, custom TLS). You close it.

        Build it with retries off (`retry=Retry(NoBackoff(), 0)`): a client that retries a
        `SET NX` whose first attempt did land answers a genuine request `NonceUsed`. A
        `RedisCluster` is initialized once, before its first command, because a cold cluster
        client that many requests use at once fails some of them.
        """
        if _retries(client):
            warnings.warn(
                "this Redis client retries failed commands, so a retried claim can refuse a "
                "genuine request as NonceUsed; build it with retry=Retry(NoBackoff(), 0)",
                RuntimeWarning,
                stacklevel=3,
            )
        connection = cls.__new__(cls)
        connection.url = connection.location = f"<{type(client).__name__}>"
        connection.pool_size, connection.timeout = 0, timeout
        connection._password = None
        connection._connection_class, connection._connection_options = Connection, {}
        connection._external = client
        connection._external_ready = not isinstance(client, RedisCluster)
        connection._external_lock = None
        connection._pipelines = {}
        return connection

    async def call(self, name: str, *arguments: Argument) -> Any:
        """One command, bounded by `timeout`; its reply, or `RedisUnavailable`."""
        try:
            async with asyncio.timeout(self.timeout):  # pool wait, connect and reply together
                if self._external is None:
                    return await self._pipeline().call(_pack(name, *arguments))
                client = self._external if self._external_ready else await self._initialized()
                return await client.execute_command(name, *arguments)
        except TimeoutError:  # asyncio's and the socket's; redis' own is a RedisError
            raise self._failure(f"no answer within {self.timeout:g} s") from None
        except (RedisError, OSError) as exc:
            raise self._failure(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        """Close the connections opened here in this event loop (not a client given to
        `from_client`). Another loop's stay open for it: forgotten, they would never be closed."""
        pipeline = self._pipelines.pop(asyncio.get_running_loop(), None)
        if pipeline is not None:
            await pipeline.aclose()

    def _pipeline(self) -> _Pipeline:
        loop = asyncio.get_running_loop()
        pipeline = self._pipelines.get(loop)
        if pipeline is None:
            for stale in [other for other in self._pipelines if other.is_closed()]:
                del self._pipelines[stale]
            pipeline = self._pipelines[loop] = _Pipeline(
                self._new_connection, self.pool_size, self.timeout
            )
        return pipeline

    async def _initialized(self) -> Redis | RedisCluster:
        """The given cluster client, initialized by exactly one caller."""
        assert self._external is not None
        if self._external_lock is None:
            self._external_lock = asyncio.Lock()
        async with self._external_lock:
            # A later caller does skip this; Python 3.11 reports that jump as one to the last
            # line of the block, so coverage.py never sees the branch it expects.
            if not self._external_ready:  # pragma: no branch
                assert isinstance(self._external, RedisCluster)
                await self._external.initialize()
                self._external_ready = True
        return self._external

    def _new_connection(self) -> AbstractConnection:
        return self._connection_class(**self._connection_options, retry=Retry(NoBackoff(), 0))

    def _failure(self, why: str) -> RedisUnavailable:
        if self._password:  # as written in the URL, and percent-decoded as redis-py sends it
            for secret in {self._password, unquote(self._password)}:
                why = why.replace(secret, "***")
        return RedisUnavailable(f"Redis at {self.location}: {why}")


def _retries(client: Redis | RedisCluster) -> int:
    retry = client.retry if isinstance(client, RedisCluster) else client.get_retry()
    # `get_retries()` came with redis-py 6; every version from 5.0 on keeps the count here.
    return retry._retries if retry is not None else 0


def _pack(name: str, *arguments: Argument) -> bytes:
    """A command in RESP, as redis-py would write it, without its per-call packing work."""
    parts = [b"*%d\r\n$%d\r\n%s\r\n" % (len(arguments) + 1, len(name), name.encode())]
    for argument in arguments:
        if not isinstance(argument, bytes):
            text = repr(argument) if isinstance(argument, float) else str(argument)
            argument = text.encode("utf-8", "surrogateescape")
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


_Batch = list[tuple[bytes, "asyncio.Future[Any]"]]


class _Pipeline:
    """One event loop's commands to one Redis, in batches over at most `size` connections.

    The commands submitted during one turn of the loop go out in the next, in one write on one
    connection; their replies come back in order, usually in one read. While every connection
    has a batch in flight, new commands wait and leave together with the next free one.

    A batch that fails or outlasts `timeout` closes its connection and fails each of its commands
    (none is retried: a `SET NX` sent twice could refuse its own request); a failure also closes
    the idle connections, which a restarted or unreachable Redis has dropped as well.
    """

    def __init__(
        self, connect: Callable[[], AbstractConnection], size: int, timeout: float
    ) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._idle: list[AbstractConnection] = []
        self._busy = 0
        self._queue: _Batch = []
        self._scheduled = False
        self._batches: set[asyncio.Task[None]] = set()

    async def call(self, packed: bytes) -> Any:
        """Send one packed command with the next batch; its reply, or its error."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((packed, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        # A caller that gave up (its timeout) before its command left: it is never sent.
        batch = [item for item in self._queue if not item[1].done()]
        if not batch or (not self._idle and self._busy >= self._size):
            self._queue = batch  # the batch in flight that ends first dispatches these
            return
        self._queue = []
        connection = self._idle.pop() if self._idle else self._connect()
        self._busy += 1
        task = self._loop.create_task(self._run(connection, batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run(self, connection: AbstractConnection, batch: _Batch) -> None:
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(self._timeout):
                # Connects first if needed (TLS, AUTH, SELECT: redis-py's own handshake).
                await connection.send_packed_command([packed for packed, _ in batch], False)
                for _, future in batch:
                    try:
                        reply = await connection.read_response()
                    except ResponseError as exc:  # this command's error; the next replies follow
                        # Done already only if its caller gave up between the send and this
                        # error: no test can order that; the same check on a reply is tested.
                        if not future.done():  # pragma: no branch
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(reply)
        except (Exception, asyncio.CancelledError) as exc:
            failure = exc
            if isinstance(exc, asyncio.CancelledError):  # the store is closing
                exc = RedisConnectionError("the store was closed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._busy -= 1
            if failure is None:
                self._idle.append(connection)
            else:
                closing, self._idle = [connection, *self._idle], []
                for dropped in closing:
                    await dropped.disconnect(nowait=True)
            if self._queue:
                self._schedule()

    async def aclose(self) -> None:
        """Stop the batches in flight (their commands fail) and close every connection."""
        for task in list(self._batches):
            task.cancel()
        if self._batches:
            await asyncio.wait(list(self._batches))
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()
