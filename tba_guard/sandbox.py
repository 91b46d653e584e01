"""A NetSuite-like account for a client library's tests (docs/sandbox.md): `running_sandbox()`
starts `tba-guard sandbox` in a process of its own, and the `netsuite_sandbox` pytest fixture
gives one per test session.

The `pytest11` entry point loads this module into every pytest run of an environment that has
tba-guard installed; it only declares the fixture, and starts nothing until a test asks for it.
`pytest -p tba_guard.sandbox` loads it where the entry point is not installed, and
`-p no:tba_guard.sandbox` keeps it out.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .tools.demo import HEALTH_PATH
from .tools.sandbox import DEVELOPER_ACCOUNT_LIMIT, SANDBOX_ACCOUNT, SandboxAccount

__all__ = ["SandboxAccount", "SandboxError", "netsuite_sandbox", "running_sandbox"]

STARTUP_LIMIT = 60.0  # seconds the sandbox gets to answer /healthz (a bound, not a measure)


class SandboxError(RuntimeError):
    """The sandbox process did not come up; the text carries what it printed."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_sandbox(
    *,
    account: str = SANDBOX_ACCOUNT,
    governance_limit: int = DEVELOPER_ACCOUNT_LIMIT,
    redis_url: str | None = None,
) -> Iterator[SandboxAccount]:
    """A sandbox on a free loopback port, up and answering, stopped on leaving."""
    with tempfile.TemporaryDirectory(prefix="tba-guard-sandbox-") as directory:
        port = _free_port()
        credentials = Path(directory, "credentials.json")
        log = Path(directory, "sandbox.log")
        command = [sys.executable, "-m", "tba_guard.tools.cli", "sandbox", "--port", str(port)]
        command += ["--credentials-file", str(credentials), "--account", account]
        command += ["--governance-limit", str(governance_limit)]
        if redis_url is not None:
            command += ["--redis", redis_url]
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603 - our own CLI
        try:
            _wait_until_up(process, f"http://127.0.0.1:{port}{HEALTH_PATH}", log)
            yield SandboxAccount.from_json(credentials.read_text())
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], health: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        try:
            with urllib.request.urlopen(health, timeout=1) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SandboxError(f"tba-guard sandbox did not start:\n{log.read_text()}")
        time.sleep(0.05)


try:
    import pytest
except ImportError:  # pragma: no cover - running_sandbox needs no pytest
    pass
else:

    @pytest.fixture(scope="session")
    def netsuite_sandbox() -> Iterator[SandboxAccount]:
        """A NetSuite-like account for the session: `base_url`, `account`, `consumer_key`,
        `consumer_secret`, `token_id`, `token_secret`; governance at `governance_limit` (5)."""
        with running_sandbox() as sandbox:
            yield sandbox
