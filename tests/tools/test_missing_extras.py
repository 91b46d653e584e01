"""A command or setting whose extra is not installed names the extra in one line and exits 2,
without a traceback; `python -m tba_guard` is the command too.

Each case runs the CLI in a fresh interpreter (the build under test, as the suite's environment
selects it) where a finder on `sys.meta_path` refuses the extra's packages as the import system
refuses a package that is not installed: the fake sits at the boundary we do not own.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

#: Code that makes the packages named (comma-separated) in `sys.argv[1]` unimportable.
NOT_INSTALLED = """
import sys

hidden = set(sys.argv[1].split(","))


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


for name in [name for name in sys.modules if name.partition(".")[0] in hidden]:
    del sys.modules[name]
sys.meta_path.insert(0, NotInstalled())
"""
#: `python -c CLI PACKAGES ARGS...`: the command line with PACKAGES missing.
CLI = NOT_INSTALLED + (
    "from tba_guard.tools.cli import main\nraise SystemExit(main(sys.argv[2:]))\n"
)
DATABASE = ("sqlalchemy", "alembic", "psycopg", "cryptography")
DATABASE_LINE = "needs the database extra: pip install 'tba-guard[database]'"
LIMIT = 60.0  # seconds a command that fails at once gets (a bound, not a measure)


def run_without(
    packages: tuple[str, ...], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "TBA_GUARD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-c", CLI, ",".join(packages), *args],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def database_config(directory: Path) -> Path:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    path = directory / "tba.toml"
    path.write_text(
        f'[guard]\ncredential_store = "sqlite:///{directory}/tba.db"\ncredential_key = ["{key}"]\n'
    )
    return path


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.stderr.splitlines() == [expected]
    assert done.returncode == 2


@pytest.mark.parametrize(
    "hidden",
    [("cryptography",), ("sqlalchemy",), DATABASE],
    ids=["cryptography", "sqlalchemy", "all"],
)
def test_db_keygen_without_the_database_extra_names_it(
    hidden: tuple[str, ...], tmp_path: Path
) -> None:
    done = run_without(hidden, "db", "keygen", cwd=tmp_path)
    assert_one_line(done, f"tba-guard db: error: db keygen {DATABASE_LINE}")
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("hidden", "command"),
    [
        (DATABASE, ("db", "upgrade")),
        (("alembic",), ("db", "upgrade")),
        (("alembic",), ("db", "current")),
        (DATABASE, ("integration", "list")),
        (("cryptography",), ("integration", "list")),
        (DATABASE, ("token", "list")),
    ],
    ids=lambda value: "-".join(value),
)
def test_database_commands_without_the_database_extra_name_it(
    hidden: tuple[str, ...], command: tuple[str, ...], tmp_path: Path
) -> None:
    config = database_config(tmp_path)
    done = run_without(hidden, *command, "--config", str(config), cwd=tmp_path)
    expected = f"tba-guard {command[0]}: error: the credential database {DATABASE_LINE}"
    assert_one_line(done, expected)


def test_serve_without_uvicorn_names_the_cli_extra(tmp_path: Path) -> None:
    done = run_without(("uvicorn",), "serve", "--port", str(free_port()), cwd=tmp_path)
    expected = "tba-guard serve: error: serve needs the cli extra: pip install 'tba-guard[cli]'"
    assert_one_line(done, expected)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_a_redis_store_without_redis_py_names_the_redis_extra(
    workers: str, tmp_path: Path
) -> None:
    # Nothing listens at this Redis: the missing package is found before any connection.
    port = free_port()
    config = tmp_path / "tba.toml"
    config.write_text(
        f'[guard]\nreplay_store = "redis://127.0.0.1:{port}/0"\n'
        f'token_store = "redis://127.0.0.1:{port}/0"\n'
        'session_secret = "missing-extras-session-secret-0123456789"\n'
    )
    command = ["serve", "--config", str(config), "--port", str(free_port()), "--workers", workers]
    done = run_without(("redis",), *command, cwd=tmp_path)
    expected = (
        'tba-guard serve: error: replay_store = "redis://…" needs the redis extra: '
        "pip install 'tba-guard[redis]'"
    )
    assert_one_line(done, expected)


def test_the_library_raises_an_import_error_naming_the_extra(tmp_path: Path) -> None:
    code = NOT_INSTALLED + (
        "try:\n"
        "    import tba_guard.database\n"
        "except ImportError as exc:\n"
        "    assert exc.__cause__ is None and exc.__suppress_context__, 'a chained traceback'\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, ",".join(DATABASE)],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"tba_guard.database {DATABASE_LINE}"]


def test_python_m_tba_guard_runs_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tba_guard", "--help"],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tba-guard ")
    for command in ("serve", "sign", "explain", "db", "integration", "token"):
        assert f"\n    {command}" in done.stdout, command


def test_python_m_tba_guard_exits_with_the_command_s_status(tmp_path: Path) -> None:
    command = ["sign", "--consumer-key", "nobody", "GET", "https://h/"]
    done = subprocess.run(
        [sys.executable, "-m", "tba_guard", *command],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TBA_GUARD_CONFIG"},
    )
    assert done.returncode == 2
    assert done.stderr.startswith("tba-guard sign: error: --consumer-key 'nobody'")
