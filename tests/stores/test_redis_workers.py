"""Two uvicorn workers (`tba-guard serve --workers 2`) sharing one Redis: a request sent 24 times
at once is accepted exactly once, whichever worker each copy lands on.

Which worker served a copy is read from the kernel, not guessed: each copy goes over its own
connection, kept open until the answer is in; the server side of that connection is a socket
inode (in /proc/net/tcp) that exactly one worker process holds among its file descriptors.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import redis

from tests.conftest import oauth_header
from tests.redis_support import (
    SHARED_REDIS_URL,
    delete_prefix,
    free_port,
    shared_redis,
    unique_prefix,
)

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see which worker served"
)

CONSUMER_KEY, CONSUMER_SECRET = "ck-workers", "cs-workers-secret"
TOKEN_ID, TOKEN_SECRET = "tk-workers", "ts-workers-secret"
PATH = "/app/site/hosting/restlet.nl?script=7&deploy=1"
COPIES = 24
MAX_ROUNDS = 12  # fresh requests until one round's copies landed on both workers


@pytest.fixture
def prefix() -> Iterator[str]:
    client = shared_redis()
    name = unique_prefix()
    yield name
    delete_prefix(client, name)
    client.close()


def write_config(directory: Path, prefix: str) -> Path:
    config = directory / "workers.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "{SHARED_REDIS_URL}"\n'
        f'token_store = "{SHARED_REDIS_URL}"\n'
        f'token_store_key_prefix = "{prefix}flow:"\n'
        'session_secret = "workers-test-session-secret-0123"\n'
        f'redis_key_prefix = "{prefix}"\n'
        'exempt_paths = ["/healthz"]\n'
        "\n[[integrations]]\n"
        f'consumer_key = "{CONSUMER_KEY}"\nconsumer_secret = "{CONSUMER_SECRET}"\n'
        "\n[[tokens]]\n"
        f'token_id = "{TOKEN_ID}"\ntoken_secret = "{TOKEN_SECRET}"\n'
        f'consumer_key = "{CONSUMER_KEY}"\nentity = "38"\nrole = "3"\n'
    )
    return config


@contextmanager
def serve(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`tba-guard serve --workers 2` in its own process group, stopped (and reaped) after."""
    script = Path(sys.executable).with_name("tba-guard")  # the installed console script
    program = [str(script)] if script.exists() else [sys.executable, "-m", "tba_guard.tools.cli"]
    command = [*program, "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_workers(process, log, 2)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_for_workers(process: subprocess.Popen[bytes], log: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if text.count("Application startup complete") >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"tba-guard serve exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    pytest.fail(f"the workers did not start:\n{log.read_text(errors='replace')}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (uvicorn's workers are its children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                pending += children
    return found


def server_socket_inodes(server_port: int) -> dict[int, int]:
    """Client port -> inode of the server's end of that loopback connection."""
    inodes: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port:
            inodes[remote_port] = int(fields[9])
    return inodes


def socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> the pid holding it."""
    owners: dict[int, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = pid
    return owners


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
        inodes = server_socket_inodes(port)
        owners = socket_owners(descendants(server_pid))
        served_by = {
            owners[inodes[writer.get_extra_info("sockname")[1]]]
            for _, _, writer in results
            if inodes.get(writer.get_extra_info("sockname")[1]) in owners
        }
    finally:
        for _, _, writer in results:
            writer.close()
    return [status for status, _, _ in results], [body for _, body, _ in results], served_by


async def test_two_workers_accept_one_request_sent_24_times_exactly_once(
    tmp_path: Path, prefix: str
) -> None:
    client: redis.Redis = shared_redis()
    port = free_port()
    rounds, spread = 0, False
    with serve(write_config(tmp_path, prefix), port, tmp_path / "serve.log") as process:
        # Fresh requests until one round's copies landed on both workers (usually the first).
        while rounds < MAX_ROUNDS and not spread:
            statuses, bodies, served_by = await one_round(port, process.pid)
            rounds += 1
            assert sorted(statuses) == [200] + [401] * (COPIES - 1)
            rejected = [b for s, b in zip(statuses, bodies, strict=True) if s == 401]
            assert {json.loads(body)["error"]["code"] for body in rejected} == {"NonceUsed"}
            spread = len(served_by) == 2
        stored = list(client.scan_iter(match=prefix + "*"))
    client.close()
    assert spread, "the kernel never spread one round's copies over both workers"
    assert len(stored) == rounds  # one key per accepted request, nothing else
