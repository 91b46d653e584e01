"""Several uvicorn workers: the connections they accept have `TCP_NODELAY` set.

Without it Nagle's algorithm holds each response's second write until the client's delayed ACK
(about 40 ms on Linux). The option is read from the worker's own socket, never inferred from
timing: `pidfd_getfd` (Linux 5.6+) copies the worker's file descriptor into this process, and
/proc/net/tcp says which descriptor is the server's end of each of our connections.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tba_guard.tools.listener import has_nodelay, tcp_listener
from tests.support import (
    ROOT,
    SHARED_REDIS_URL,
    Server,
    descendants,
    free_port,
    running_server,
    server_ends,
    socket_descriptors,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the workers' sockets through Linux /proc"
)

CONNECTIONS = 6  # spread over the workers by the kernel; every one of them is checked
PIDFD_GETFD = 438  # the same number on every Linux architecture


def write_config(directory: Path, prefix: str) -> Path:
    """What `--workers 2` asks for: Redis replay and token stores and a shared session key."""
    config = directory / "workers.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "{SHARED_REDIS_URL}"\n'
        f'token_store = "{SHARED_REDIS_URL}"\n'
        f'token_store_key_prefix = "{prefix}flow:"\n'
        f'redis_key_prefix = "{prefix}"\n'
        'session_secret = "nodelay-test-session-secret-0123"\n'
    )
    return config


@contextmanager
def started(
    command: list[str], log: Path, port: int, workers: int, config: Path | None = None
) -> Iterator[Server]:
    """A server process from the tree under test (not an installed build), once every worker
    is up; stopped after."""
    # TBA_GUARD_CONFIG is what the demo factory reads; a setting of the caller's never leaks in.
    env = {"PYTHONPATH": str(ROOT), "TBA_GUARD_CONFIG": str(config) if config else None}
    with running_server(command, log, port=port, env=env, workers=workers) as server:
        yield server


def healthy_connections(port: int, count: int, stack: ExitStack) -> list[socket.socket]:
    """`count` keep-alive connections, each of which has had one answer (so it was accepted and
    served by a worker), left open for inspection."""
    connections = []
    for _ in range(count):
        client = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b'"ok"' not in answer:
            chunk = client.recv(4096)
            assert chunk, f"the server closed the connection: {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        connections.append(client)
    return connections


def copy_socket(pid: int, fd: int) -> socket.socket:
    """The other process's socket, as a socket of ours (the same kernel object)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copied = libc.syscall(PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if copied < 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EPERM):
            pytest.skip(f"pidfd_getfd is not allowed here: {os.strerror(code)}")
        raise OSError(code, os.strerror(code))
    return socket.socket(fileno=copied)


def accepted_sockets(server: int, port: int, clients: list[socket.socket]) -> list[socket.socket]:
    """The server's end of each client connection, copied from whichever worker holds it."""
    ends = server_ends(port)
    held = socket_descriptors([server, *descendants(server)])
    found = []
    for client in clients:
        client_port = client.getsockname()[1]
        pid, fd = held[ends[client_port]]
        accepted = copy_socket(pid, fd)
        assert accepted.getpeername() == client.getsockname()
        found.append(accepted)
    return found


def test_a_multi_worker_serve_accepts_connections_with_tcp_nodelay(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "tba_guard.tools.cli", "serve", "--config"]
    command += [str(write_config(tmp_path, redis_prefix)), "--port", str(port), "--workers", "2"]
    with (
        started(command, tmp_path / "serve.log", port, workers=2) as server,
        ExitStack() as stack,
    ):
        clients = healthy_connections(port, CONNECTIONS, stack)
        accepted = accepted_sockets(server.pid, port, clients)
        try:
            assert [has_nodelay(sock) for sock in accepted] == [True] * CONNECTIONS
        finally:
            for sock in accepted:
                sock.close()


def test_the_readme_recipe_for_your_own_uvicorn_gives_workers_tcp_nodelay(
    tmp_path: Path, redis_prefix: str
) -> None:
    """`uvicorn.run(..., fd=tcp_listener(...).fileno(), workers=2)`, as docs/deployment.md shows it,
    on the Redis stores that several workers need."""
    port = free_port()
    recipe = (
        "import sys, uvicorn\n"
        "from tba_guard.tools.listener import tcp_listener\n"
        "listener = tcp_listener('127.0.0.1', int(sys.argv[1]))\n"
        "uvicorn.run('tba_guard.tools.demo:create_app', factory=True,\n"
        "            fd=listener.fileno(), workers=2)\n"
    )
    command = [sys.executable, "-c", recipe, str(port)]
    config = write_config(tmp_path, redis_prefix)
    with (
        started(command, tmp_path / "uvicorn.log", port, workers=2, config=config) as server,
        ExitStack() as stack,
    ):
        clients = healthy_connections(port, CONNECTIONS, stack)
        accepted = accepted_sockets(server.pid, port, clients)
        try:
            assert all(has_nodelay(sock) for sock in accepted)
        finally:
            for sock in accepted:
                sock.close()


def test_tcp_listener_reports_tcp_and_passes_nodelay_to_what_it_accepts() -> None:
    with tcp_listener("127.0.0.1", 0) as listener:
        assert listener.proto == socket.IPPROTO_TCP
        assert has_nodelay(listener)
        # Re-wrapped with protocol 0, as uvicorn's `fd=` does: the kernel still passes it on.
        rewrapped = socket.socket(listener.family, socket.SOCK_STREAM, 0, os.dup(listener.fileno()))
        with rewrapped, socket.create_connection(listener.getsockname()) as client:
            accepted, _ = rewrapped.accept()
            with accepted:
                assert accepted.proto == 0
                assert has_nodelay(accepted)
                assert accepted.getpeername() == client.getsockname()


def test_tcp_listener_raises_when_the_address_is_taken() -> None:
    with tcp_listener("127.0.0.1", 0) as taken, pytest.raises(OSError, match="in use"):
        tcp_listener("127.0.0.1", taken.getsockname()[1])
