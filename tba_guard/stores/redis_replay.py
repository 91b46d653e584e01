"""The Redis replay store: replay protection shared by every worker and host using one Redis.

The in-process store protects one process; behind `uvicorn --workers N` or several hosts a
replay that lands on another worker would pass. Here each well-formed request costs one
`EXISTS key` (step 7, a read) and each accepted one a `SET key 1 NX PX ttl` (step 12, the atomic
claim). The key is the prefix plus a fixed-length digest of the replay key: one key per command,
so Redis Cluster routes it unchanged, and nothing else is stored (not even the nonce).

Commands go out pipelined: those that a worker's concurrent requests issue in one turn of the
event loop share one write and one read on one connection (`_Pipeline`). On loopback a round
trip costs mostly system calls and client code, not Redis, so this is what keeps a worker's
throughput close to the in-process store's. Install `hiredis` (the `redis` extra does) and
redis-py parses replies in C.

It fails closed: a refused connection, a timeout, an exhausted pool or an error reply raises
`ReplayStoreError`, which the guard answers with the 503 and `Retry-After`. Every call is bounded
by `timeout` in all (pool wait, connect and reply together), so a dead Redis cannot hang a
request. No command is retried: a retried `SET NX` whose first attempt did land would turn a
legitimate request into `NonceUsed`. A connection the server dropped is replaced from the pool on
the next call, so requests succeed again as soon as Redis is back, without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.connection import Connection, parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Redis replay store needs the redis package: pip install 'tba-guard[redis]'"
    ) from None

from ..core.protocols import ReplayKey, ReplayStoreError

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from ..core.settings import GuardSettings

DEFAULT_PREFIX = "tba_guard:nonce:"
DEFAULT_POOL_SIZE = 32
DEFAULT_TIMEOUT = 0.25  # seconds; a loopback or same-zone Redis answers in well under 1 ms
_DIGEST_BYTES = 20  # 160 bits: 27 characters of base64url, no accidental collision in practice


def redact_url(url: str) -> str:
    """The URL with any password (`user:pw@`, or `?password=` of `unix://`) replaced by `***`,
    for messages, logs and `repr`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Rebuilt by hand: urlunsplit drops the `//` of `unix:///path` (an empty host).
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def url_password(url: str) -> str | None:
    """The password a URL carries, so that it can be scrubbed from error messages."""
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    passwords = [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    return passwords[0] if passwords else None


def key_digest(key: ReplayKey) -> str:
    """A fixed-length name for a replay key: bounded whatever the client sent, and unkeyed so
    that every worker and host derives the same name."""
    digest = hashlib.blake2b(key.identity(), digest_size=_DIGEST_BYTES).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class RedisReplayStore:
    """A `ReplayStore` in Redis (or Valkey): `redis://`, `rediss://` (TLS) or `unix://` URLs.

    Connections belong to the event loop that opened them, so the store keeps one client per
    running loop (in a server that is exactly one); call `aclose()` on shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.location = redact_url(url)
        self.prefix = prefix
        self.pool_size = pool_size
        self.timeout = timeout
        self._password = url_password(url)
        try:
            options: dict[str, Any] = dict(parse_url(url))  # a bad URL: a startup error, not a 503
        except ValueError as exc:
            raise ValueError(f"replay_store {self.location}: {exc}") from None
        self._connection_class: type[AbstractConnection] = options.pop(
            "connection_class", Connection
        )
        # The URL's own options win, as in redis-py's from_url. No socket timeout of its own:
        # each batch is bounded by `timeout` in all, without a timer per read and per write.
        self._connection_options = {"socket_connect_timeout": timeout, **options}
        self._external: Redis | RedisCluster | None = None
        self._external_ready = True
        self._external_lock: asyncio.Lock | None = None
        self._clients: dict[asyncio.AbstractEventLoop, _Pipeline] = {}

    @classmethod
    def from_settings(cls, settings: GuardSettings) -> RedisReplayStore:
        return cls(
            settings.replay_store,
            prefix=settings.redis_key_prefix,
            pool_size=settings.redis_pool_size,
            timeout=settings.redis_timeout,
        )

    @classmethod
    def from_client(
        cls,
        client: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RedisReplayStore:
        """Use a client you built (`RedisCluster`, Sentinel, custom TLS). You close it.

        Build it with retries off (`retry=Retry(NoBackoff(), 0)`): a client that retries a
        `SET NX` whose first attempt did land answers a genuine request `NonceUsed`. A
        `RedisCluster` is initialized once, before its first command, because a cold cluster
        client that many requests use at once fails some of them.
        """
        if _retries(client):
            warnings.warn(
                "RedisReplayStore.from_client: this client retries failed commands, so a "
                "retried claim can refuse a genuine request as NonceUsed; build it with "
                "retry=Retry(NoBackoff(), 0)",
                RuntimeWarning,
                stacklevel=2,
            )
        store = cls.__new__(cls)
        store.url = store.location = f"<{type(client).__name__}>"
        store.prefix, store.pool_size, store.timeout = prefix, 0, timeout
        store._password = None
        store._connection_class, store._connection_options = Connection, {}
        store._external = client
        store._external_ready = not isinstance(client, RedisCluster)
        store._external_lock = None
        store._clients = {}
        return store

    def __repr__(self) -> str:
        return f"RedisReplayStore({self.location!r}, prefix={self.prefix!r})"

    def redis_key(self, key: ReplayKey) -> str:
        """The Redis key that remembers this replay key."""
        return self.prefix + key_digest(key)

    async def seen(self, key: ReplayKey) -> bool:
        """One `EXISTS`: a read that never writes."""
        found = await self._call("EXISTS", self.redis_key(key).encode())
        return bool(found)

    async def claim(self, key: ReplayKey, ttl: int) -> bool:
        """One `SET key 1 NX PX ttl`: atomic, so of two concurrent claims exactly one wins."""
        name, ms = self.redis_key(key).encode(), str(ttl * 1000).encode()
        created = await self._call("SET", name, b"1", b"NX", b"PX", ms)
        return created is not None

    async def aclose(self) -> None:
        """Close the connections this store opened (not a client given to `from_client`)."""
        pipelines, self._clients = self._clients, {}
        loop = asyncio.get_running_loop()
        for pipeline_loop, pipeline in pipelines.items():
            if pipeline_loop is loop:
                await pipeline.aclose()

    def _pipeline(self) -> _Pipeline:
        loop = asyncio.get_running_loop()
        pipeline = self._clients.get(loop)
        if pipeline is None:
            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]
            pipeline = self._clients[loop] = _Pipeline(
                self._new_connection, self.pool_size, self.timeout
            )
        return pipeline

    async def _initialized(self) -> Redis | RedisCluster:
        """The given cluster client, initialized by exactly one caller."""
        assert self._external is not None
        if self._external_lock is None:
            self._external_lock = asyncio.Lock()
        async with self._external_lock:
            if not self._external_ready:
                assert isinstance(self._external, RedisCluster)
                await self._external.initialize()
                self._external_ready = True
        return self._external

    def _new_connection(self) -> AbstractConnection:
        return self._connection_class(**self._connection_options, retry=Retry(NoBackoff(), 0))

    async def _call(self, name: str, *arguments: bytes) -> Any:
        try:
            async with asyncio.timeout(self.timeout):  # pool wait, connect and reply together
                if self._external is None:
                    return await self._pipeline().call(_pack(name.encode(), *arguments))
                client = self._external if self._external_ready else await self._initialized()
                return await client.execute_command(name, *arguments)
        except TimeoutError:  # asyncio's and the socket's; redis' own is a RedisError
            raise self._failure(f"no answer within {self.timeout:g} s") from None
        except (RedisError, OSError) as exc:
            raise self._failure(f"{type(exc).__name__}: {exc}") from None

    def _failure(self, why: str) -> ReplayStoreError:
        if self._password:  # as written in the URL, and percent-decoded as redis-py sends it
            for secret in {self._password, unquote(self._password)}:
                why = why.replace(secret, "***")
        return ReplayStoreError(f"Redis at {self.location}: {why}")


def _retries(client: Redis | RedisCluster) -> int:
    retry = client.retry if isinstance(client, RedisCluster) else client.get_retry()
    return retry.get_retries() if retry is not None else 0


def _pack(*command: bytes) -> bytes:
    """A command in RESP, as redis-py would write it, without its per-call packing work."""
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
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

    def is_closed(self) -> bool:
        return self._loop.is_closed()

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
                        if not future.done():
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(reply)
        except (Exception, asyncio.CancelledError) as exc:
            failure = exc
            if isinstance(exc, asyncio.CancelledError):  # the store is closing
                exc = RedisConnectionError("the replay store was closed")
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
