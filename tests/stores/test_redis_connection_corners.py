"""The shared Redis connection and the flow's Redis token store at their corners: more callers
than connections, one command's error inside a batch, a store used from two event loops, a
store closed or a caller gone while a command is in flight, replies decoded by the URL, and
the protocol (RESP2 unless the URL asks for RESP3; most tests run under both).

Everything runs against the shared Redis, or a local TCP peer that speaks just enough RESP and
answers PING only when told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tba_guard.core.protocols import TokenStoreError
from tba_guard.core.records import RequestToken, Token
from tba_guard.stores.redis import RedisConnection, RedisUnavailable
from tba_guard.stores.redis_replay import RedisReplayStore
from tba_guard.stores.redis_tokens import RedisTokenStore
from tba_guard.stores.urls import url_password
from tests.support import NOW, REDIS_TIMEOUT, SHARED_REDIS_URL, Clock, shared_redis
from tests.support.flow import CALLBACK, FLOW_KEY
from tests.support.redis_servers import PROTOCOLS, spoken_protocol, with_protocol

HANG_GUARD = 10  # seconds: only a hang reaches it


def request_token(token_id: str) -> RequestToken:
    return RequestToken(
        token_id=token_id,
        token_secret="rt-secret",
        consumer_key=FLOW_KEY,
        callback=CALLBACK,
        expires_at=NOW + 600,
        realm="",
        requested_role="3",
    )


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class HeldPeer:
    """A TCP peer that speaks enough RESP for redis-py: it reads each command and records it,
    answers the handshake at once (HELLO as Redis 7 does, in the protocol asked for; CLIENT
    SETINFO), and answers `PING` with `+PONG` only once `release` is set."""

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.received = asyncio.Event()  # the first PING arrived
        self.release = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.serving: list[asyncio.Task[Any]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.serving.append(task)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while command := await read_command(reader):
                self.commands.append(command)
                writer.write(await self.answer(command))
                await writer.drain()

    async def answer(self, command: list[bytes]) -> bytes:
        name = command[0].upper()
        if name == b"PING":
            self.received.set()
            await self.release.wait()
            return b"+PONG\r\n"
        if name == b"HELLO":
            proto = int(command[1]) if len(command) > 1 else 2
            fields = [bulk(b"server"), bulk(b"redis"), bulk(b"version"), bulk(b"7.0.15")]
            fields += [bulk(b"proto"), b":%d\r\n" % proto]
            head = b"%%%d\r\n" % (len(fields) // 2) if proto == 3 else b"*%d\r\n" % len(fields)
            return head + b"".join(fields)
        if command[:2] == [b"CLIENT", b"SETINFO"]:
            return b"+OK\r\n"
        return b"-ERR unknown command '%s'\r\n" % command[0]

    def names(self) -> list[bytes]:
        return [command[0].upper() for command in self.commands]


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One command as clients send it (an array of bulk strings); empty once the peer is gone."""
    head = await reader.readline()
    if not head:
        return []
    assert head.startswith(b"*"), head
    parts = []
    for _ in range(int(head[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


@asynccontextmanager
async def held_peer() -> AsyncIterator[tuple[HeldPeer, int]]:
    peer = HeldPeer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    try:
        yield peer, server.sockets[0].getsockname()[1]
    finally:
        peer.release.set()  # a PING still held gets its answer into a closing connection
        for writer in peer.writers:
            writer.close()
        server.close()
        if peer.serving:  # ended before the loop is, which would cancel them noisily
            await asyncio.wait(peer.serving, timeout=HANG_GUARD)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_more_concurrent_callers_than_connections_all_get_their_replies(
    redis_prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    connection = RedisConnection(url, pool_size=1, timeout=5)
    try:

        async def two_commands(index: int) -> bytes:
            await connection.call("SET", f"{redis_prefix}k{index}", str(index))
            reply: bytes = await connection.call("GET", f"{redis_prefix}k{index}")
            return reply

        replies = await asyncio.gather(*(two_commands(i) for i in range(20)))
        assert replies == [str(i).encode() for i in range(20)]
    finally:
        await connection.aclose()


async def test_a_batch_that_outlasts_the_timeout_frees_its_connection_for_the_next_command(
    redis_prefix: str,
) -> None:
    # One connection: the stuck batch must be cut at the timeout and its place given back, or
    # every later command would wait behind it (or forever) and the store would stay down.
    connection = RedisConnection(SHARED_REDIS_URL, pool_size=1, timeout=0.3)
    try:
        with pytest.raises(RedisUnavailable):
            await connection.call("BLPOP", f"{redis_prefix}empty", "3")
        assert await connection.call("PING") in (b"PONG", "PONG", True)
    finally:
        await connection.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_one_commands_error_fails_that_command_only(redis_prefix: str, protocol: int) -> None:
    connection = RedisConnection(with_protocol(SHARED_REDIS_URL, protocol), timeout=5)
    try:
        await connection.call("RPUSH", f"{redis_prefix}list", "x")
        results = await asyncio.gather(
            connection.call("SET", f"{redis_prefix}a", "1"),
            connection.call("HGET", f"{redis_prefix}list", "field"),  # WRONGTYPE
            connection.call("GET", f"{redis_prefix}a"),
            return_exceptions=True,
        )
        assert results[0] == b"OK"
        assert isinstance(results[1], RedisUnavailable)
        assert "WRONGTYPE" in str(results[1])
        assert results[2] == b"1"
    finally:
        await connection.aclose()


async def test_a_request_token_that_cannot_be_written_gives_its_quota_place_back(
    redis_prefix: str,
) -> None:
    store = RedisTokenStore(
        SHARED_REDIS_URL, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT
    )
    client = shared_redis()
    try:
        client.rpush(f"{redis_prefix}rt:rt-1", "not a request token")
        with pytest.raises(TokenStoreError):
            await store.put_request_token(request_token("rt-1"))
        assert await store.live_request_tokens(FLOW_KEY) == 0
    finally:
        client.close()
        await store.aclose()


class ForgetfulRedisTokenStore(RedisTokenStore):
    """A store whose Redis is lost between the write and the quota's give-back."""

    async def _call(self, name: str, *arguments: Any) -> Any:
        if name == "ZREM":
            raise TokenStoreError("redis_url: connection lost")
        return await super()._call(name, *arguments)


async def test_a_failed_write_is_reported_as_such_when_the_quota_cannot_be_given_back(
    redis_prefix: str,
) -> None:
    # The give-back is best effort: its own failure must not replace the write's error.
    store = ForgetfulRedisTokenStore(
        SHARED_REDIS_URL, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT
    )
    client = shared_redis()
    try:
        client.rpush(f"{redis_prefix}rt:rt-1", "not a request token")
        with pytest.raises(TokenStoreError, match="WRONGTYPE"):
            await store.put_request_token(request_token("rt-1"))
    finally:
        client.close()
        await store.aclose()


def test_a_connection_serves_each_event_loop_it_is_used_from(redis_prefix: str) -> None:
    connection = RedisConnection(SHARED_REDIS_URL, timeout=5)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        key = f"{redis_prefix}loops"
        assert first.run_until_complete(connection.call("SET", key, "first")) == b"OK"
        first_id = first.run_until_complete(connection.call("CLIENT", "ID"))
        assert second.run_until_complete(connection.call("GET", key)) == b"first"
        second.run_until_complete(connection.aclose())  # closes its own loop's connections
        assert first.run_until_complete(connection.call("GET", key)) == b"first"
        # Only its own: the first loop's connection is still open, and still answers.
        assert first.run_until_complete(connection.call("CLIENT", "ID")) == first_id
        first.run_until_complete(connection.aclose())
    finally:
        first.close()
        second.close()

    async def in_a_third_loop() -> Any:
        try:
            return await connection.call("GET", f"{redis_prefix}loops")
        finally:
            await connection.aclose()  # in the loop that opened it, or it outlives its loop

    # Once the first two loops have ended, a third gets connections of its own.
    assert asyncio.run(in_a_third_loop()) == b"first"


async def test_closing_the_store_fails_the_command_in_flight() -> None:
    async with held_peer() as (peer, port):
        connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout=HANG_GUARD)
        call = asyncio.create_task(connection.call("PING"))
        await asyncio.wait_for(peer.received.wait(), HANG_GUARD)
        await connection.aclose()
        with pytest.raises(RedisUnavailable, match="closed"):
            await asyncio.wait_for(call, HANG_GUARD)


async def test_a_caller_that_gives_up_mid_command_leaves_the_connection_usable() -> None:
    async with held_peer() as (peer, port):
        # One connection: the next command waits for it, so it is the same one answering.
        url = f"redis://127.0.0.1:{port}/0"
        connection = RedisConnection(url, pool_size=1, timeout=HANG_GUARD)
        try:
            call = asyncio.create_task(connection.call("PING"))
            await asyncio.wait_for(peer.received.wait(), HANG_GUARD)  # its PING is in flight
            call.cancel()  # its request went away; the reply still comes and is read
            with pytest.raises(asyncio.CancelledError):
                await call
            peer.release.set()
            assert await asyncio.wait_for(connection.call("PING"), HANG_GUARD) == b"PONG"
            assert len(peer.writers) == 1  # the same connection answered
        finally:
            await connection.aclose()
    # RESP2 asked for explicitly: no HELLO, only redis-py's CLIENT SETINFO before the PINGs.
    assert peer.commands[-2:] == [[b"PING"], [b"PING"]]
    assert set(peer.names()[:-2]) <= {b"CLIENT"}


@pytest.mark.parametrize(
    ("query", "hello"), [("", None), ("?protocol=2", None), ("?protocol=3", [b"HELLO", b"3"])]
)
async def test_a_connection_opens_with_hello_only_when_the_url_asks_for_resp3(
    query: str, hello: list[bytes] | None
) -> None:
    async with held_peer() as (peer, port):
        peer.release.set()
        connection = RedisConnection(f"redis://127.0.0.1:{port}/0{query}", timeout=HANG_GUARD)
        try:
            assert await asyncio.wait_for(connection.call("PING"), HANG_GUARD) == b"PONG"
        finally:
            await connection.aclose()
    if hello is None:
        assert b"HELLO" not in peer.names()
    else:
        assert peer.commands[0] == hello  # the first thing said on the connection
    assert peer.commands[-1] == [b"PING"]


@pytest.mark.parametrize(("query", "spoken"), [("", 2), ("?protocol=2", 2), ("?protocol=3", 3)])
async def test_the_stores_speak_resp2_unless_the_url_asks_for_resp3(
    query: str, spoken: int
) -> None:
    replay = RedisReplayStore(SHARED_REDIS_URL + query)
    tokens = RedisTokenStore(SHARED_REDIS_URL + query)
    try:
        assert await spoken_protocol(replay.redis) == spoken
        assert await spoken_protocol(tokens.redis) == spoken
    finally:
        await replay.aclose()
        await tokens.aclose()


@pytest.mark.parametrize("query", ["?protocol=4", "?protocol=1", "?decode_responses=1&protocol=0"])
def test_a_protocol_other_than_resp2_or_resp3_is_refused_at_startup(query: str) -> None:
    # Refused here, not by redis-py at the first connection, where it would be a 503 each time.
    with pytest.raises(ValueError, match=r"^replay_store .*protocol must be 2 or 3"):
        RedisReplayStore(SHARED_REDIS_URL + query)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_denied_request_token_reads_back_as_denied(
    redis_prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    store = RedisTokenStore(url, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT)
    try:
        await store.put_request_token(request_token("rt-deny"))
        assert await store.decide("rt-deny", "denied", verifier="v", entity="38", role="")
        found = await store.request_token("rt-deny")
        assert found is not None
        assert found.decision == "denied"
    finally:
        await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_token_store_on_a_url_asking_for_decoded_replies_keeps_its_promises(
    redis_prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL + "?decode_responses=True", protocol)
    store = RedisTokenStore(url, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT)
    try:
        await store.put_request_token(request_token("rt-text"))
        assert await store.live_request_tokens(FLOW_KEY) == 1
        assert await store.consume("rt-text")
        assert await store.live_request_tokens(FLOW_KEY) == 0  # used: no longer live
        assert not await store.consume("rt-text")
    finally:
        await store.aclose()


def test_the_token_store_names_its_redis_without_the_password() -> None:
    store = RedisTokenStore("redis://:s3cret-pw@127.0.0.1:6379/0", prefix="p:")
    assert "s3cret-pw" not in store.location
    assert "127.0.0.1:6379" in store.location
    assert repr(store) == f"RedisTokenStore({store.location!r}, prefix='p:')"


def test_a_password_given_in_the_url_query_is_known_so_it_can_be_scrubbed() -> None:
    # redis-py takes `?password=` as well as the userinfo; error messages must hide both.
    assert url_password("redis://127.0.0.1:6379/0?db=0&password=s3cret-pw") == "s3cret-pw"
    assert url_password("redis://:in-userinfo@127.0.0.1:6379/0") == "in-userinfo"
    assert url_password("redis://127.0.0.1:6379/0?password=") is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_decoded_replies_read_back_request_tokens_as_written(
    redis_prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL + "?decode_responses=True", protocol)
    store = RedisTokenStore(url, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT)
    try:
        await store.put_request_token(request_token("rt-read"))
        assert await store.request_token("rt-read") == request_token("rt-read")
    finally:
        await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("active", [True, False])
async def test_an_access_token_reads_back_active_or_not_as_stored(
    redis_prefix: str, protocol: int, active: bool
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    store = RedisTokenStore(url, prefix=redis_prefix, clock=Clock(), timeout=REDIS_TIMEOUT)
    try:
        token = Token("at-1", "at-secret", FLOW_KEY, entity="38", role="3", active=active)
        await store.put_access_token(token)
        found = await store.access_token("at-1")
        assert found is not None
        assert found.active is active
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("build", "setting"),
    [(RedisReplayStore, "replay_store"), (RedisTokenStore, "token_store")],
)
def test_a_bad_redis_url_names_the_setting_it_came_from(build: Any, setting: str) -> None:
    with pytest.raises(ValueError, match=rf"^{setting} "):
        build("nosuchscheme://127.0.0.1:6379/0")
