"""Real databases for the credential-database tests: SQLite files in a temporary folder, and
PostgreSQL: the machine's server on 127.0.0.1:5432 (each test in a database of its own, dropped
afterwards) or a private server a test may stop and start.

Where no PostgreSQL is reachable the tests skip with the reason, unless
`TBA_GUARD_REQUIRE_POSTGRES=1` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from oauthlib.oauth1 import Client

from tba_guard.stores.database import connect, migrate
from tba_guard.stores.database.admin import CredentialAdmin
from tba_guard.stores.database.sealing import Sealer, new_key
from tests.support.servers import free_port

SHARED_POSTGRES = os.environ.get(
    "TBA_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BINARIES = Path("/usr/local/bin")
REALM = "123456_SB1"
CLI = (sys.executable, "-m", "tba_guard.tools.cli")


def postgres_required() -> bool:
    return os.environ.get("TBA_GUARD_REQUIRE_POSTGRES") == "1"


def unavailable(reason: str) -> None:
    if postgres_required():
        pytest.fail(f"{reason} (TBA_GUARD_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def with_database(url: str, name: str) -> str:
    return (
        connect.sqlalchemy_url(url)
        .set(database=name)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


@contextmanager
def postgres_database(server: str = SHARED_POSTGRES) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards (with whoever is still connected)."""
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"no PostgreSQL reachable at {connect.shown(server)}: {exc}")
    name = f"tba_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield with_database(server, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'tba.db'}"
    else:
        with postgres_database() as url:
            yield url


def prepared(url: str, key: str) -> CredentialAdmin:
    """The database migrated to the head revision, and an admin on it."""
    engine = connect.create(url, timeout=10.0)
    migrate.upgrade(engine)
    return CredentialAdmin(engine, Sealer([key]))


def fresh_key() -> str:
    return new_key()


def write_config(path: Path, **guard: Any) -> Path:
    """A settings file: `[guard]` with the given keys, and `users` tables if given."""
    users = guard.pop("users", [])
    lines = ["[guard]"]
    for name, value in guard.items():
        lines.append(f"{name} = {toml_value(value)}")
    for user in users:
        lines.append("[[users]]")
        lines += [f"{name} = {toml_value(value)}" for name, value in user.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def upgraded_config(directory: Path, url: str, **extra: Any) -> Path:
    """`directory/tba.toml` naming the credential database at `url`, with a fresh key and the
    suite's realm, its schema upgraded by `tba-guard db upgrade`."""
    config = write_config(
        directory / "tba.toml",
        realm=REALM,
        credential_store=url,
        credential_key=fresh_key(),
        **extra,
    )
    done = tba_guard("db", "upgrade", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return config


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def tba_guard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "tba_guard.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def printed(output: str, label: str) -> str:
    """The value after `label:` in the CLI's output."""
    for line in output.splitlines():
        if line.startswith(f"{label}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {label!r} in {output!r}")


@contextmanager
def serving(config: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tba-guard serve --config config` on a loopback port; stopped afterwards."""
    port = port or free_port()
    log_path = config.with_name(f"{config.stem}-{port}.log")
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30  # a startup bound, not a timing assertion
            while True:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("tba-guard serve did not start: " + log_path.read_text())
                time.sleep(0.05)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def signed_get(
    url: str,
    consumer_key: str,
    consumer_secret: str,
    token_id: str,
    token_secret: str,
) -> httpx.Response:
    """A GET signed by oauthlib (not by tba_guard), sent at once."""
    client = Client(
        consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=token_id,
        resource_owner_secret=token_secret,
        signature_method="HMAC-SHA256",
        realm=REALM,
    )
    _, headers, _ = client.sign(url, http_method="GET")
    return httpx.get(url, headers=headers)


def wait_for(predicate: Any, seconds: float, interval: float = 0.02) -> float:
    """Poll until `predicate()` is true; the seconds it took. Fails past the deadline."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(interval)
    return time.monotonic() - started


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb, pg_ctl) in a temporary folder, on a free port:
    stopped and started at will. Run as the `postgres` user when we are root, as PostgreSQL
    refuses to run as root."""

    def __init__(self, directory: Path) -> None:
        for binary in ("initdb", "pg_ctl"):
            if not (BINARIES / binary).exists() and shutil.which(binary) is None:
                unavailable(f"{binary} is not installed: no private PostgreSQL server")
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            if shutil.which("su") is None:
                unavailable("running as root without su: cannot start PostgreSQL as postgres")
            shutil.chown(directory, "postgres")
            directory.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: str) -> None:
        argv = ["su", "postgres", "-c", command] if self.root else ["bash", "-c", command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            unavailable(f"private PostgreSQL: {command!r} failed: {result.stderr.strip()}")

    def _binary(self, name: str) -> str:
        found = BINARIES / name
        return str(found) if found.exists() else str(shutil.which(name))

    def init(self) -> None:
        self._run(f"{self._binary('initdb')} -D {self.data} -U postgres --auth=trust -E UTF8")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"
        self._run(
            f"{self._binary('pg_ctl')} -D {self.data} -w -o '{options}' "
            f"-l {self.directory / 'server.log'} start"
        )

    def stop(self) -> None:
        self._run(f"{self._binary('pg_ctl')} -D {self.data} -w -m fast stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Started in a folder of /tmp: pytest's own are closed to the `postgres` user."""
    directory = Path(tempfile.mkdtemp(prefix="tba_guard_pg_"))
    try:
        server = PrivatePostgres(directory)
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Timer:
    """The caches' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
