"""The Redis replay store against a real Redis: the store alone, then through the middleware.

Normal tests use the shared server under a key prefix of their own, deleted afterwards; tests
that stop Redis or change its configuration start a private `redis-server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tba_guard import GuardSettings, ReplayKey, ReplayStoreError, SettingsError, TBAGuardMiddleware
from tba_guard.guard import Guard
from tba_guard.stores.redis_replay import RedisReplayStore
from tba_guard.stores.urls import redact_url
from tests.support import (
    BASE_URL,
    NOW,
    REDIS_TIMEOUT,
    SHARED_REDIS_URL,
    TOKEN_ID,
    Clock,
    delete_prefix,
    echo_app,
    free_port,
    keys_under,
    make_settings,
    oauth_header,
    private_cluster,
    private_redis,
    shared_redis,
    unique_prefix,
)
from tests.support.redis_servers import PROTOCOLS, close_client, spoken_protocol, with_protocol

PATH = "/services/rest/record/v1/salesOrder"
URL = BASE_URL + PATH
HANG_GUARD = 10.0  # seconds: only to turn a hang into a failure, never a performance bound
PASSWORD = "hunter2-redis-password"
NO_RETRY = Retry(NoBackoff(), 0)  # what docs/replay-protection.md asks of from_client


@pytest.fixture
def shared() -> Iterator[redis.Redis]:
    client = shared_redis()
    yield client
    client.close()


@pytest.fixture
def prefix(shared: redis.Redis) -> Iterator[str]:
    name = unique_prefix()
    yield name
    delete_prefix(shared, name)


@pytest.fixture(params=PROTOCOLS, ids=lambda protocol: f"resp{protocol}")
async def store(prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[RedisReplayStore]:
    """The store on the shared Redis, under RESP2 (its default) and under RESP3."""
    protocol: int = request.param
    replay_store = RedisReplayStore(
        with_protocol(SHARED_REDIS_URL, protocol), prefix=prefix, timeout=REDIS_TIMEOUT
    )
    assert await spoken_protocol(replay_store.redis) == protocol
    yield replay_store
    await replay_store.aclose()


def key(nonce: str = "nonce-0001", **changes: Any) -> ReplayKey:
    return ReplayKey("ck-order-sync", TOKEN_ID, nonce, NOW)._replace(**changes)


@asynccontextmanager
async def guarded(settings: GuardSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the echo app behind the middleware; closes the store afterwards."""
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings, clock=Clock()))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
    finally:
        replay_store = app.guard.replay_store
        assert isinstance(replay_store, RedisReplayStore)
        await replay_store.aclose()


def signed(nonce: str | None = None, **bend: Any) -> dict[str, str]:
    return {"Authorization": oauth_header("GET", URL, nonce=nonce, **bend)}


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- the store alone --------------------------------------------------------------------------


async def test_claim_succeeds_once_and_seen_reports_it(store: RedisReplayStore) -> None:
    assert await store.seen(key()) is False
    assert await store.claim(key(), 600) is True
    assert await store.seen(key()) is True
    assert await store.claim(key(), 600) is False


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(
    store: RedisReplayStore,
) -> None:
    results = await asyncio.gather(*(store.claim(key("raced-nonce"), 600) for _ in range(64)))
    assert results.count(True) == 1


async def test_claim_stores_one_bounded_key_holding_1_with_the_ttl(
    store: RedisReplayStore, shared: redis.Redis, prefix: str
) -> None:
    long_key = key("n" * 64, consumer_key="c" * 2000, token="t" * 2000)
    assert await store.claim(long_key, 600)
    stored = keys_under(shared, prefix)
    assert stored == [store.redis_key(long_key).encode()]
    assert len(stored[0]) == len(prefix) + 27  # a fixed-length digest, whatever was sent
    assert shared.get(stored[0]) == b"1"
    assert 0 < shared.pttl(stored[0]) <= 600_000
    assert b"nnnnnn" not in stored[0]
    assert b"cccccc" not in stored[0]


async def test_replay_keys_differing_in_any_part_are_distinct(store: RedisReplayStore) -> None:
    variants = [
        key(),
        key(nonce="nonce-0002"),
        key(token=""),
        key(timestamp=NOW + 1),
        key(consumer_key="ck-other"),
        ReplayKey("ab", "c", "nonce-0001", NOW),
        ReplayKey("a", "bc", "nonce-0001", NOW),  # same characters, split differently
    ]
    assert len({store.redis_key(variant) for variant in variants}) == len(variants)
    for variant in variants:
        assert await store.claim(variant, 600) is True


async def test_seen_writes_nothing(
    store: RedisReplayStore, shared: redis.Redis, prefix: str
) -> None:
    assert await store.seen(key()) is False
    assert keys_under(shared, prefix) == []


async def test_keys_are_gone_after_their_ttl(
    store: RedisReplayStore, shared: redis.Redis, prefix: str
) -> None:
    assert await store.claim(key(), 1)
    redis_key = store.redis_key(key())
    # Redis expires keys in real time: wait for it, bounded, then check the key is gone.
    for _ in range(60):
        if not shared.exists(redis_key):
            break
        await asyncio.sleep(0.05)
    assert keys_under(shared, prefix) == []
    assert await store.seen(key()) is False
    assert await store.claim(key(), 1) is True


async def test_unreachable_redis_raises_replay_store_error_without_the_password() -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    store = RedisReplayStore(url, timeout=0.2)
    for call in (store.seen(key()), store.claim(key(), 600)):
        with pytest.raises(ReplayStoreError) as caught:
            await asyncio.wait_for(call, HANG_GUARD)
        message = str(caught.value)
        assert "ConnectionError" in message
        assert "127.0.0.1" in message
        assert PASSWORD not in message
    assert PASSWORD not in repr(store)
    await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_error_reply_raises_replay_store_error(prefix: str, protocol: int) -> None:
    url = with_protocol(SHARED_REDIS_URL.rsplit("/", 1)[0] + "/99999", protocol)
    store = RedisReplayStore(url, prefix=prefix, timeout=REDIS_TIMEOUT)
    with pytest.raises(ReplayStoreError, match="DB index is out of range"):
        await asyncio.wait_for(store.claim(key(), 600), HANG_GUARD)
    await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_password_is_a_replay_store_error_that_hides_it(
    tmp_path: Path, protocol: int
) -> None:
    # Under RESP3 the password goes with HELLO (HELLO 3 AUTH), under RESP2 with AUTH.
    with private_redis(tmp_path, "--requirepass", "the-right-one") as server:
        url = with_protocol(server.url.replace("redis://", f"redis://:{PASSWORD}@"), protocol)
        store = RedisReplayStore(url, timeout=0.5)
        with pytest.raises(ReplayStoreError) as caught:
            await asyncio.wait_for(store.seen(key()), HANG_GUARD)
        assert "AuthenticationError" in str(caught.value)
        assert PASSWORD not in str(caught.value)
        await store.aclose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers; yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_silent_redis_times_out_into_replay_store_error() -> None:
    """A server that accepts the connection and never answers: the timeout must end it."""
    async with silent_server() as port:
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            with pytest.raises(ReplayStoreError, match=r"no answer within 0\.2 s|Timeout"):
                await asyncio.wait_for(store.claim(key(), 600), HANG_GUARD)
        finally:
            await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_store_reconnects_after_redis_restarts(tmp_path: Path, protocol: int) -> None:
    with private_redis(tmp_path) as server:
        store = RedisReplayStore(with_protocol(server.url, protocol), timeout=0.5)
        assert await store.claim(key("before-stop"), 600)
        server.stop()
        with pytest.raises(ReplayStoreError):
            await asyncio.wait_for(store.claim(key("while-down"), 600), HANG_GUARD)
        server.start()
        assert await store.claim(key("after-restart"), 600) is True
        assert await store.claim(key("after-restart"), 600) is False
        await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unix_socket_url_works(tmp_path: Path, protocol: int) -> None:
    with private_redis(tmp_path, transport="unix") as server:
        store = RedisReplayStore(with_protocol(server.url, protocol), timeout=REDIS_TIMEOUT)
        assert await store.claim(key(), 600) is True
        assert await store.seen(key()) is True
        await store.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rediss_url_speaks_tls(tmp_path: Path, protocol: int) -> None:
    with private_redis(tmp_path, transport="tls") as server:
        store = RedisReplayStore(with_protocol(server.url, protocol), timeout=REDIS_TIMEOUT)
        assert await store.claim(key(), 600) is True
        assert await store.claim(key(), 600) is False
        await store.aclose()
        # The same port without TLS is refused by the server: the store really spoke TLS.
        plain = RedisReplayStore(f"redis://localhost:{server.port}/0", timeout=0.5)
        with pytest.raises(ReplayStoreError):
            await asyncio.wait_for(plain.seen(key()), HANG_GUARD)
        await plain.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_from_client_uses_the_given_client(prefix: str, protocol: int) -> None:
    client = redis.asyncio.Redis.from_url(SHARED_REDIS_URL, retry=NO_RETRY, protocol=protocol)
    store = RedisReplayStore.from_client(client, prefix=prefix)
    assert await store.claim(key(), 600) is True
    assert await client.get(store.redis_key(key())) == b"1"
    await store.aclose()
    assert await client.ping()  # the store did not close a client it does not own
    await close_client(client)


async def test_from_client_warns_about_a_client_that_retries_claims() -> None:
    # Asked for: redis-py retries by default only from 6.0 on.
    client = redis.asyncio.Redis(host="127.0.0.1", retry=Retry(NoBackoff(), 3))
    with pytest.warns(RuntimeWarning, match="NonceUsed"):
        RedisReplayStore.from_client(client)
    await close_client(client)


async def test_one_store_serves_successive_event_loops(prefix: str) -> None:
    """A guard built once and used from several loops (test clients, sync wrappers)."""
    store = RedisReplayStore(SHARED_REDIS_URL, prefix=prefix, timeout=REDIS_TIMEOUT)

    def claim_in_new_loop(nonce: str) -> bool:
        return asyncio.run(store.claim(key(nonce), 600))

    first = await asyncio.to_thread(claim_in_new_loop, "loop-one")
    second = await asyncio.to_thread(claim_in_new_loop, "loop-two")
    assert (first, second) == (True, True)
    assert await store.claim(key("loop-one"), 600) is False
    await store.aclose()


# --- settings ---------------------------------------------------------------------------------


def test_settings_select_the_redis_store_with_its_options(tmp_path: Path) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "redis://:{PASSWORD}@127.0.0.1:6379/3"\n'
        'replay_store_key_prefix = "myapp:nonce:"\n'
        "replay_store_pool_size = 7\n"
        "replay_store_timeout = 0.1\n"
    )
    from_file = GuardSettings.from_toml(config)
    from_env = GuardSettings.from_env(
        {
            "TBA_GUARD_REPLAY_STORE": f"redis://:{PASSWORD}@127.0.0.1:6379/3",
            "TBA_GUARD_REPLAY_STORE_KEY_PREFIX": "myapp:nonce:",
            "TBA_GUARD_REPLAY_STORE_POOL_SIZE": "7",
            "TBA_GUARD_REPLAY_STORE_TIMEOUT": "0.1",
        }
    )
    assert from_file == from_env
    store = Guard(from_file).replay_store
    assert isinstance(store, RedisReplayStore)
    assert (store.prefix, store.pool_size, store.timeout) == ("myapp:nonce:", 7, 0.1)
    assert PASSWORD not in repr(from_file)
    assert PASSWORD not in repr(store)


def test_redis_defaults_are_a_short_timeout_and_the_documented_prefix() -> None:
    settings = GuardSettings()
    assert settings.replay_store_key_prefix == "tba_guard:nonce:"
    assert settings.replay_store_timeout < 1
    assert settings.replay_store_pool_size >= 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TBA_GUARD_REPLAY_STORE_POOL_SIZE", "0"),
        ("TBA_GUARD_REPLAY_STORE_TIMEOUT", "soon"),
        ("TBA_GUARD_REPLAY_STORE_TIMEOUT", "0"),
        ("TBA_GUARD_REPLAY_STORE_KEY_PREFIX", ""),
        ("TBA_GUARD_REPLAY_STORE", "memcached://127.0.0.1"),
    ],
)
def test_bad_redis_settings_name_the_key(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match="(?i)" + variable.removeprefix("TBA_GUARD_")):
        GuardSettings.from_env({variable: value})


def test_malformed_redis_url_fails_at_startup_without_the_password() -> None:
    settings = GuardSettings(replay_store=f"redis://:{PASSWORD}@127.0.0.1:notaport/0")
    with pytest.raises(ValueError, match="replay_store") as caught:
        Guard(settings)
    assert PASSWORD not in str(caught.value)


def test_redact_url_hides_passwords_in_every_form() -> None:
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("rediss://:pw@h") == "rediss://:***@h"
    assert (
        redact_url("unix:///run/r.sock?db=1&password=pw") == "unix:///run/r.sock?db=1&password=***"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# --- through the middleware -------------------------------------------------------------------


async def test_ten_thousand_signed_requests_accepted_and_their_replays_get_nonce_used(
    shared: redis.Redis, prefix: str
) -> None:
    headers = [signed(f"bulk-{i:06d}") for i in range(10_000)]
    # The client runs in the server's event loop here, so a batch loads that loop twice over:
    # a generous timeout keeps this test about acceptance, not about a busy machine's latency.
    settings = make_settings(
        replay_store=SHARED_REDIS_URL, replay_store_key_prefix=prefix, replay_store_timeout=2.0
    )
    async with guarded(settings) as client:
        statuses: list[int] = []
        for start in range(0, len(headers), 100):
            batch = headers[start : start + 100]
            responses = await asyncio.gather(*(client.get(PATH, headers=h) for h in batch))
            statuses += [response.status_code for response in responses]
        assert statuses.count(200) == 10_000
        assert len(keys_under(shared, prefix)) == 10_000

        sample = headers[::50]  # 200 of them, spread over the run
        replays = await asyncio.gather(*(client.get(PATH, headers=h) for h in sample))
    assert [r.status_code for r in replays] == [401] * len(sample)
    assert {error_code(r) for r in replays} == {"NonceUsed"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_request_with_a_bad_signature_writes_nothing(
    shared: redis.Redis, prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    settings = make_settings(replay_store=url, replay_store_key_prefix=prefix)
    async with guarded(settings) as client:
        forged = await client.get(PATH, headers=signed("forged-nonce", token_secret="guess"))
        unknown = await client.get(PATH, headers=signed("unknown-nonce", token="tk-nobody"))
        assert (error_code(forged), error_code(unknown)) == ("InvalidSignature", "TokenRejected")
        assert keys_under(shared, prefix) == []
        # The nonce was not burned: its owner can still use it.
        genuine = await client.get(PATH, headers=signed("forged-nonce"))
        assert genuine.status_code == 200
        assert len(keys_under(shared, prefix)) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_concurrent_copies_of_one_request_are_accepted_once(
    prefix: str, protocol: int
) -> None:
    url = with_protocol(SHARED_REDIS_URL, protocol)
    settings = make_settings(replay_store=url, replay_store_key_prefix=prefix)
    headers = signed("sent-24-times")
    async with guarded(settings) as client:
        responses = await asyncio.gather(*(client.get(PATH, headers=headers) for _ in range(24)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [401] * 23
    assert {error_code(r) for r in responses if r.status_code == 401} == {"NonceUsed"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_redis_down_answers_503_with_retry_after_and_back_up_accepts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: int
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    with private_redis(tmp_path, "--requirepass", PASSWORD) as server:
        url = with_protocol(server.url.replace("redis://", f"redis://:{PASSWORD}@"), protocol)
        settings = make_settings(replay_store=url, replay_store_timeout=0.2)
        async with guarded(settings) as client:
            assert (await client.get(PATH, headers=signed())).status_code == 200
            server.stop()

            down = await asyncio.wait_for(client.get(PATH, headers=signed()), HANG_GUARD)
            assert down.status_code == 503
            assert down.headers["retry-after"] == "1"
            assert error_code(down) == "ReplayStoreUnavailable"
            assert PASSWORD not in down.text

            server.start()
            back = await client.get(PATH, headers=signed())
            assert back.status_code == 200
    events = [record.tba_audit for record in caplog.records if hasattr(record, "tba_audit")]
    unavailable = [e for e in events if e["code"] == "ReplayStoreUnavailable"]
    assert len(unavailable) == 1
    assert "ConnectionError" in unavailable[0]["reason"]
    assert f"127.0.0.1:{server.port}" in unavailable[0]["reason"]
    assert [e["outcome"] for e in events] == ["accepted", "rejected", "accepted"]
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in str(e) for e in events)


async def test_silent_redis_answers_503_instead_of_hanging() -> None:
    async with silent_server() as port:
        settings = make_settings(
            replay_store=f"redis://127.0.0.1:{port}/0", replay_store_timeout=0.2
        )
        async with guarded(settings) as client:
            response = await asyncio.wait_for(client.get(PATH, headers=signed()), HANG_GUARD)
    assert response.status_code == 503
    assert error_code(response) == "ReplayStoreUnavailable"


async def test_store_works_unchanged_on_a_redis_cluster(tmp_path: Path) -> None:
    """One key per command: a cluster client routes each claim to its slot's node."""
    with private_cluster(tmp_path) as nodes:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=nodes[0].port, retry=NO_RETRY)
        # A bound, not a measure: a cluster just formed may take longer than the default
        # 0.25 s to route its first 60 concurrent commands (seen on a loaded 2-CPU machine).
        store = RedisReplayStore.from_client(client, prefix="tba_guard_test:cluster:", timeout=5.0)
        keys = [key(f"cluster-{i:04d}") for i in range(60)]
        assert await asyncio.gather(*(store.claim(k, 600) for k in keys)) == [True] * 60
        assert await asyncio.gather(*(store.claim(k, 600) for k in keys)) == [False] * 60
        assert all(await asyncio.gather(*(store.seen(k) for k in keys)))
        await close_client(client)
        per_node = [redis.Redis(port=node.port).dbsize() for node in nodes]
    assert sum(per_node) == 60
    assert sum(1 for count in per_node if count) >= 2  # the keys really are spread out
