"""Server processes for the tests that need a real one, and the `tba-guard` command line.

Every server starts the same way: in its own process group on a free loopback port, its output
in a log file, and it is stopped with its whole group, so uvicorn's workers go with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

STARTUP_LIMIT = 60.0  # seconds a server process gets to start or fail (a bound, not a measure)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    command: list[str], log: Path, *, port: int, env: Mapping[str, str | None] | None = None
) -> Server:
    """Run `command` in a process group of its own; `env` overrides (None removes) variables."""
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    return Server(process, port, log)


def wait_until_up(server: Server, *, workers: int = 0) -> str:
    """'served' once /healthz answers 200 (or, given `workers`, once that many workers have
    logged their startup), 'exited' once the process ends, 'neither' after STARTUP_LIMIT."""
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return "exited"
        if workers:
            if server.output().count("Application startup complete") >= workers:
                return "served"
        else:
            with suppress(httpx.TransportError):
                if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                    return "served"
        time.sleep(0.05)
    return "neither"


def stop_server(server: Server) -> None:
    """Stop the whole process group, killing it if it will not end."""
    process = server.process
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextmanager
def running_server(
    command: list[str],
    log: Path,
    *,
    port: int,
    env: Mapping[str, str | None] | None = None,
    workers: int = 0,
) -> Iterator[Server]:
    """A server that is up (see `wait_until_up`), stopped on leaving; the test fails with the
    server's output if it does not come up."""
    server = start_server(command, log, port=port, env=env)
    try:
        result = wait_until_up(server, workers=workers)
        if result != "served":
            pytest.fail(f"{command[:4]} did not come up ({result}):\n{server.output()}")
        yield server
    finally:
        stop_server(server)


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "tba-guard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tba_guard.tools.cli"]


@contextmanager
def serving(config: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`tba-guard serve --config config` (from the tree under test) on a free loopback port."""
    port = free_port()
    command = [sys.executable, "-m", "tba_guard.tools.cli", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = config.with_suffix(".log")
    with running_server(command, log, port=port, env={"PYTHONUNBUFFERED": "1"}) as server:
        yield server.port, server.process


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response: the head, then content-length bytes of body."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# --- which worker holds a connection: read from Linux /proc, never guessed -------------------


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


def server_ends(port: int) -> dict[int, int]:
    """Client port -> socket inode of the server's end of that loopback connection."""
    ends: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local == port and remote != 0:
            ends[remote] = int(fields[9])
    return ends


def socket_descriptors(pids: list[int]) -> dict[int, tuple[int, int]]:
    """Socket inode -> (pid, file descriptor) holding it."""
    held: dict[int, tuple[int, int]] = {}
    for pid in pids:
        with suppress(OSError):
            for entry in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    target = os.readlink(entry)
                    if target.startswith("socket:["):
                        held[int(target[8:-1])] = (pid, int(entry.name))
    return held


# --- the `tba-guard` command line ------------------------------------------------------------

CLI_CONFIG = """
[guard]
realm = "7654321_SB1"
signature_methods = {methods}
replay_store = "{store}"
token_store = "{store}"
session_secret = "cli-test-session-secret-0123456789"

[[integrations]]
name = "Order sync"
consumer_key = "ck-order-sync"
consumer_secret = "cs-order-sync-secret"

[[integrations]]
name = "Other"
consumer_key = "ck-other"
consumer_secret = "cs-other-integration-secret"

[[tokens]]
token_id = "tk-alice"
token_secret = "ts-alice-token-secret"
consumer_key = "ck-order-sync"
entity = "38"
role = "3"
"""


def write_config(
    directory: Path,
    *,
    methods: str = '["HMAC-SHA256"]',
    store: str = "memory",
    text: str | None = None,
) -> Path:
    path = directory / "tba.toml"
    path.write_text(text if text is not None else CLI_CONFIG.format(methods=methods, store=store))
    return path


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
