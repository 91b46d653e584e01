"""Real Redis for the Redis replay-store tests: the shared server, or a private one we may stop.

The shared server on 127.0.0.1:6379 serves the normal tests, each under its own key prefix that
is deleted afterwards. A test that stops Redis starts its own `redis-server` on a free port and
never touches the shared one. Where no Redis is reachable the tests skip with the reason, unless
`TBA_GUARD_REQUIRE_REDIS=1` (CI), where they fail.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio

from tests.support.environment import REDIS_TLS_FLAG, missing, require_tools
from tests.support.servers import free_port

if TYPE_CHECKING:
    from tba_guard.stores.redis import RedisConnection

SHARED_REDIS_URL = os.environ.get("TBA_GUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# RESP2, the stores' default, and RESP3 (`?protocol=3`): the store tests run under both.
PROTOCOLS = (2, 3)
# The stores' own 0.25 s fails fast in production; a loaded CI machine can stall a first
# connect longer than that, which is not what these tests are about.
REDIS_TIMEOUT = 5.0


async def close_client(client: redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
    """`aclose()` came with redis-py 5.0.1; 5.0.0, the lowest allowed, has `close()` only."""
    closing = getattr(client, "aclose", None) or client.close
    await closing()


def with_protocol(url: str, protocol: int) -> str:
    """The URL asking for this protocol, its other options kept."""
    return f"{url}{'&' if '?' in url else '?'}protocol={protocol}"


async def spoken_protocol(connection: RedisConnection) -> int:
    """The protocol Redis says the connection speaks (`resp=` of CLIENT INFO, Redis 7)."""
    info = await connection.call("CLIENT", "INFO")
    text = info.decode() if isinstance(info, bytes) else info
    found = re.search(r"\bresp=(\d)", text)
    assert found, f"CLIENT INFO without resp= (Redis older than 7?): {text}"
    return int(found.group(1))


def redis_required() -> bool:
    return os.environ.get("TBA_GUARD_REQUIRE_REDIS") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when CI requires Redis."""
    if redis_required():
        pytest.fail(f"{reason} (TBA_GUARD_REQUIRE_REDIS=1)")
    pytest.skip(reason)


def shared_redis() -> redis.Redis:
    """A synchronous client of the shared server (for inspecting keys), or skip."""
    client = redis.Redis.from_url(SHARED_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unavailable(f"no Redis server reachable at {SHARED_REDIS_URL}: {exc}")
    return client


def unique_prefix() -> str:
    return f"tba_guard_test:{uuid.uuid4().hex[:12]}:"


def keys_under(client: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=prefix + "*", count=1000))


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch = list(client.scan_iter(match=prefix + "*", count=1000))
    while batch:
        client.delete(*batch[:1000])
        batch = batch[1000:]


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 29999)  # a port, not a secret
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class PrivateRedis:
    """A `redis-server` of our own on a free loopback port (TCP, TLS or a unix socket):
    stopped and restarted at will, on the same address."""

    def __init__(self, directory: Path, *extra: str, transport: str = "tcp") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.binary = str(binary)
        self.directory = directory
        self.extra = extra
        self.transport = transport
        self.port = cluster_port() if transport == "cluster" else free_port()
        self.socket_path = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        if transport == "tls":
            self.ca_file = make_certificate(directory)

    @property
    def url(self) -> str:
        if self.transport == "unix":
            return f"unix://{self.socket_path}?db=0"
        if self.transport == "tls":
            return f"rediss://localhost:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        command = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.directory)]
        if self.transport == "unix":
            command += ["--port", "0", "--unixsocket", str(self.socket_path)]
        elif self.transport == "tls":
            cert, key = str(self.directory / "cert.pem"), str(self.directory / "key.pem")
            command += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            command += ["--tls-cert-file", cert, "--tls-key-file", key]
            command += ["--tls-ca-cert-file", cert]
        else:
            command += ["--port", str(self.port)]
        if self.transport == "cluster":
            command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        return [*command, *self.extra]

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    client.ping()
                    return
                except redis.AuthenticationError:
                    return  # up, and asking for the password it was started with
                except (redis.RedisError, OSError):
                    time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"redis-server at {self.url} did not come up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for localhost, which the client trusts as its CA."""
    require_tools("openssl", why="it makes the certificate of the TLS test")
    key, cert = str(directory / "key.pem"), str(directory / "cert.pem")
    names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-addext", names]
    subprocess.run(command, check=True, capture_output=True)
    return directory / "cert.pem"


@contextmanager
def private_cluster(directory: Path, nodes: int = 3) -> Iterator[list[PrivateRedis]]:
    """A Redis Cluster of `nodes` masters of our own, the slots spread over all of them."""
    servers: list[PrivateRedis] = []
    try:
        for index in range(nodes):
            node_dir = directory / f"node{index}"
            node_dir.mkdir()
            servers.append(PrivateRedis(node_dir, transport="cluster"))
            servers[-1].start()
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        create = ["redis-cli", "--cluster", "create", *addresses]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for_cluster(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def wait_for_cluster(servers: list[PrivateRedis]) -> None:
    deadline = time.monotonic() + 20
    for server in servers:
        client = redis.Redis(port=server.port, socket_timeout=1)
        try:
            while client.cluster("INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        finally:
            client.close()


@contextmanager
def private_redis(directory: Path, *extra: str, transport: str = "tcp") -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory, *extra, transport=transport)
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        if transport == "tls":
            missing(f"this redis-server does not serve TLS ({exc})", REDIS_TLS_FLAG)
        raise
    try:
        yield server
    finally:
        server.stop()
