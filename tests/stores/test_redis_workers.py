"""Two uvicorn workers (`tba-guard serve --workers 2`) sharing one Redis: a request sent 24 times
at once is accepted exactly once, whichever worker each copy lands on.

Which worker served a copy is read from the kernel, not guessed: each copy goes over its own
connection, kept open until the answer is in; the server side of that connection is a socket
inode (in /proc/net/tcp) that exactly one worker process holds among its file descriptors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.support import (
    SHARED_REDIS_URL,
    Server,
    cli_command,
    descendants,
    free_port,
    oauth_header,
    running_server,
    server_ends,
    shared_redis,
    socket_descriptors,
)
from tests.support.redis_servers import PROTOCOLS, with_protocol

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see which worker served"
)

CONSUMER_KEY, CONSUMER_SECRET = "ck-workers", "cs-workers-secret"
TOKEN_ID, TOKEN_SECRET = "tk-workers", "ts-workers-secret"
PATH = "/app/site/hosting/restlet.nl?script=7&deploy=1"
COPIES = 24
MAX_ROUNDS = 12  # fresh requests until one round's copies landed on both workers


def write_config(directory: Path, prefix: str, url: str) -> Path:
    config = directory / "workers.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "{url}"\n'
        f'token_store = "{url}"\n'
        f'token_store_key_prefix = "{prefix}flow:"\n'
        'session_secret = "workers-test-session-secret-0123"\n'
        f'replay_store_key_prefix = "{prefix}"\n'
        'exempt_paths = ["/healthz"]\n'
        "\n[[integrations]]\n"
        f'consumer_key = "{CONSUMER_KEY}"\nconsumer_secret = "{CONSUMER_SECRET}"\n'
        "\n[[tokens]]\n"
        f'token_id = "{TOKEN_ID}"\ntoken_secret = "{TOKEN_SECRET}"\n'
        f'consumer_key = "{CONSUMER_KEY}"\nentity = "38"\nrole = "3"\n'
    )
    return config


@contextmanager
def serve(config: Path, port: int, log: Path) -> Iterator[Server]:
    """`tba-guard serve --workers 2`, once both workers are up; stopped (and reaped) after."""
    command = [*cli_command(), "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", "2"]
    with running_server(command, log, port=port, workers=2) as server:
        yield server


async def send(port: int, authorization: str) -> tuple[int, bytes, asyncio.StreamWriter]:
    """One request on a connection of its own; the connection stays open for attribution."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\n\r\n"
    )
    writer.write(request.encode("latin-1"))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    return status, body, writer


async def one_round(port: int, server_pid: int) -> tuple[list[int], list[bytes], set[int]]:
    """A fresh signed request sent COPIES times at once: statuses, bodies, serving workers."""
    url = f"http://127.0.0.1:{port}{PATH}"
    authorization = oauth_header(
        "GET",
        url,
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        token=TOKEN_ID,
        token_secret=TOKEN_SECRET,
        realm=None,
        timestamp=int(time.time()),  # the served process checks against its own clock
    )
    results = await asyncio.gather(*(send(port, authorization) for _ in range(COPIES)))
    try:
        inodes = server_ends(port)
        holders = socket_descriptors(descendants(server_pid))
        served_by = {
            holders[inodes[writer.get_extra_info("sockname")[1]]][0]
            for _, _, writer in results
            if inodes.get(writer.get_extra_info("sockname")[1]) in holders
        }
    finally:
        for _, _, writer in results:
            writer.close()
    return [status for status, _, _ in results], [body for _, body, _ in results], served_by


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_two_workers_accept_one_request_sent_24_times_exactly_once(
    tmp_path: Path, redis_prefix: str, protocol: int
) -> None:
    client: redis.Redis = shared_redis()
    port = free_port()
    rounds, spread = 0, False
    config = write_config(tmp_path, redis_prefix, with_protocol(SHARED_REDIS_URL, protocol))
    with serve(config, port, tmp_path / "serve.log") as server:
        # Fresh requests until one round's copies landed on both workers (usually the first).
        while rounds < MAX_ROUNDS and not spread:
            statuses, bodies, served_by = await one_round(port, server.pid)
            rounds += 1
            assert sorted(statuses) == [200] + [401] * (COPIES - 1)
            rejected = [b for s, b in zip(statuses, bodies, strict=True) if s == 401]
            assert {json.loads(body)["error"]["code"] for body in rejected} == {"NonceUsed"}
            spread = len(served_by) == 2
        stored = list(client.scan_iter(match=redis_prefix + "*"))
    client.close()
    assert spread, "the kernel never spread one round's copies over both workers"
    assert len(stored) == rounds  # one key per accepted request, nothing else
