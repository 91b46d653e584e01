"""Several uvicorn workers: the connections they accept have `TCP_NODELAY` set, and under
`tba-guard serve --workers N` each worker listens on a socket of its own (`SO_REUSEPORT`), is
replaced when it dies and stops with its supervisor.

Without `TCP_NODELAY` Nagle's algorithm holds each response's second write until the client's
delayed ACK (about 40 ms on Linux); on one shared listener keep-alive connections pile up on one
worker. Options are read from the worker's own socket, never inferred from timing: `pidfd_getfd`
(Linux 5.6+) copies the worker's file descriptor into this process, and /proc/net/tcp says which
descriptor is the server's end of each of our connections, or a listening socket.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tba_guard.asgi.flow import WORKERS_ENV
from tba_guard.tools.listener import has_nodelay, has_reuse_port, tcp_listener
from tba_guard.tools.supervisor import STARTUP_FAILURE, worker_listeners
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
SPREAD_CONNECTIONS = 32  # all on one of two workers by chance: once in 2**31 runs
CHANGE_LIMIT = 60.0  # seconds for a worker to be replaced or the server to stop (a bound)
PIDFD_GETFD = 438  # the same number on every Linux architecture


def write_config(directory: Path, prefix: str) -> Path:
    """What `--workers 2` asks for: Redis replay and token stores and a shared session key."""
    config = directory / "workers.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "{SHARED_REDIS_URL}"\n'
        f'token_store = "{SHARED_REDIS_URL}"\n'
        f'token_store_key_prefix = "{prefix}flow:"\n'
        f'replay_store_key_prefix = "{prefix}"\n'
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


# --- `tba-guard serve --workers N`: its own supervisor, a listening socket per worker -----------


def serve_command(config: Path, port: int) -> list[str]:
    command = [sys.executable, "-m", "tba_guard.tools.cli", "serve", "--config", str(config)]
    return [*command, "--port", str(port), "--workers", "2"]


def listening_inodes(port: int) -> set[int]:
    """Socket inodes of every socket listening on `port` (state 0A in /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            found.add(int(fields[9]))
    return found


def worker_listeners_held(server: int, port: int) -> dict[int, list[int]]:
    """Worker pid -> the inodes of the listening sockets it holds; only processes below the
    supervisor that hold one (multiprocessing's resource tracker holds none)."""
    listening = listening_inodes(port)
    held: dict[int, list[int]] = {}
    for pid in descendants(server):
        for inode in socket_descriptors([pid]):
            if inode in listening:
                held.setdefault(pid, []).append(inode)
    return held


RUN_WORKERS_RECIPE = (
    "import sys\n"
    "from tba_guard.tools.supervisor import run_workers\n"
    "raise SystemExit(run_workers('tba_guard.tools.demo:create_app', factory=True,\n"
    "                             host='127.0.0.1', port=int(sys.argv[1]), workers=2))\n"
)


@pytest.mark.parametrize("how", ["serve", "run_workers"])
def test_each_worker_listens_on_a_socket_of_its_own_with_reuse_port_and_nodelay(
    tmp_path: Path, redis_prefix: str, how: str
) -> None:
    """`tba-guard serve --workers 2`, and `run_workers` as docs/deployment.md shows it."""
    port = free_port()
    config = write_config(tmp_path, redis_prefix)
    if how == "serve":
        command, app_config = serve_command(config, port), None
    else:
        command, app_config = [sys.executable, "-c", RUN_WORKERS_RECIPE, str(port)], config
    log = tmp_path / "serve.log"
    with started(command, log, port, workers=2, config=app_config) as server:
        held = worker_listeners_held(server.pid, port)
        assert len(held) == 2
        assert all(len(inodes) == 1 for inodes in held.values())
        assert len({inodes[0] for inodes in held.values()}) == 2  # not one socket shared
        descriptors = socket_descriptors(list(held))
        for inodes in held.values():
            pid, fd = descriptors[inodes[0]]
            with copy_socket(pid, fd) as listener:
                assert listener.getsockname()[1] == port
                assert has_reuse_port(listener)
                assert has_nodelay(listener)


def test_keep_alive_connections_from_several_clients_reach_both_workers(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, redis_prefix)
    with (
        started(serve_command(config, port), tmp_path / "serve.log", port, workers=2) as server,
        ExitStack() as stack,
    ):
        workers = set(worker_listeners_held(server.pid, port))
        clients = healthy_connections(port, SPREAD_CONNECTIONS, stack)
        ends = server_ends(port)
        held = socket_descriptors(list(workers))
        serving = {held[ends[client.getsockname()[1]]][0] for client in clients}
        assert serving == workers


def test_a_killed_worker_is_replaced_on_the_same_listening_socket(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, redis_prefix)
    with (
        started(serve_command(config, port), tmp_path / "serve.log", port, workers=2) as server,
        ExitStack() as stack,
    ):
        before = worker_listeners_held(server.pid, port)
        killed, survivor = sorted(before)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + CHANGE_LIMIT
        after = before
        while time.monotonic() < deadline:
            after = worker_listeners_held(server.pid, port)
            replaced = killed not in after and len(after) == 2
            if replaced and server.output().count("Application startup complete") == 3:
                break
            time.sleep(0.1)
        replacement = set(after) - {survivor}
        assert killed not in after, server.output()
        assert len(replacement) == 1, server.output()
        assert after[replacement.pop()] == before[killed]  # the dead worker's very socket
        assert server.process.poll() is None
        healthy_connections(port, CONNECTIONS, stack)


def test_sigterm_to_serve_stops_every_worker_and_exits_0(tmp_path: Path, redis_prefix: str) -> None:
    port = free_port()
    config = write_config(tmp_path, redis_prefix)
    with started(serve_command(config, port), tmp_path / "serve.log", port, workers=2) as server:
        workers = set(worker_listeners_held(server.pid, port))
        assert len(workers) == 2
        os.kill(server.pid, signal.SIGTERM)  # the supervisor alone, not its process group
        assert server.process.wait(timeout=CHANGE_LIMIT) == 0
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
        assert server.output().count("Application shutdown complete") == 2
        assert not listening_inodes(port)


def memory_config(directory: Path) -> Path:
    """The in-process replay and token stores, with a shared session_secret."""
    config = directory / "memory.toml"
    config.write_text('[guard]\nsession_secret = "memory-stores-session-secret-0123"\n')
    return config


def test_serve_exits_3_when_its_workers_refuse_per_process_stores(tmp_path: Path) -> None:
    """The command's own refusal skipped, the flow in each worker still learns it runs in two:
    `serve` sets WEB_CONCURRENCY to its --workers for them, over the caller's 1."""
    unchecked = (
        "import sys, tba_guard.tools.cli as cli; cli.check_workers = lambda *_: None; "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    config = memory_config(tmp_path)
    command = [sys.executable, "-c", unchecked, *serve_command(config, free_port())[3:]]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), WORKERS_ENV: "1"}
    environment.pop("TBA_GUARD_ALLOW_PER_PROCESS_STORES", None)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CHANGE_LIMIT, env=environment, check=False
    )
    assert done.returncode == STARTUP_FAILURE, done.stdout + done.stderr
    assert "tba_guard refuses to serve: this app runs in 2 worker processes" in done.stderr


def test_serve_with_one_worker_serves_per_process_stores_whatever_web_concurrency_says(
    tmp_path: Path,
) -> None:
    """`--workers 1` (the default) is what runs: a WEB_CONCURRENCY of the caller's that says 4
    does not make the one worker refuse its in-process stores."""
    port = free_port()
    command = [sys.executable, "-m", "tba_guard.tools.cli", "serve", "--config"]
    command += [str(memory_config(tmp_path)), "--port", str(port)]
    env = {"PYTHONPATH": str(ROOT), WORKERS_ENV: "4", "TBA_GUARD_ALLOW_PER_PROCESS_STORES": None}
    with running_server(command, tmp_path / "serve.log", port=port, env=env) as server:
        assert "refuses to serve" not in server.output()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_tcp_listener_with_reuse_port_lets_another_such_socket_listen_on_the_port() -> None:
    with tcp_listener("127.0.0.1", 0, reuse_port=True) as first:
        port = first.getsockname()[1]
        with tcp_listener("127.0.0.1", port, reuse_port=True) as second:
            assert has_reuse_port(first)
            assert has_reuse_port(second)
            assert has_nodelay(second)


def test_worker_listeners_refuse_a_port_another_server_listens_on_even_with_reuse_port() -> None:
    with (
        tcp_listener("127.0.0.1", 0, reuse_port=True) as taken,
        pytest.raises(OSError, match="in use"),
    ):
        worker_listeners("127.0.0.1", taken.getsockname()[1], 2)


def test_worker_listeners_give_each_worker_a_socket_on_one_port() -> None:
    listeners = worker_listeners("127.0.0.1", 0, 3)
    try:
        assert len(listeners) == 3
        assert len({sock.getsockname()[1] for sock in listeners}) == 1
        assert all(has_reuse_port(sock) and has_nodelay(sock) for sock in listeners)
    finally:
        for sock in listeners:
            sock.close()
