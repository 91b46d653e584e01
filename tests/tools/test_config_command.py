"""`tba-guard config show|check`, and every command reading the layered settings: a settings
file with the environment over it, as a deployment keeps its Fernet key outside the file.

Each test runs the real CLI in a process of its own."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.support.databases import tba_guard

CONSUMER_SECRET = "cs-config-0123456789abcdef"
TOKEN_SECRET = "ts-config-0123456789abcdef"
SESSION_SECRET = "ss-config-0123456789abcdef"
REDIS_PASSWORD = "rp-config-hunter2"


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def settings_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tba.toml"
    path.write_text(
        f'[guard]\nrealm = "1234567"\n'
        f'replay_store = "redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"\n'
        f'session_secret = "{SESSION_SECRET}"\n{extra}'
        f'[[integrations]]\nconsumer_key = "ck-config"\nconsumer_secret = "{CONSUMER_SECRET}"\n'
        f'[[tokens]]\ntoken_id = "tk-config"\ntoken_secret = "{TOKEN_SECRET}"\n'
        'consumer_key = "ck-config"\n'
    )
    return path


def shown_settings(output: str) -> dict[str, tuple[str, str]]:
    """`config show`'s lines as name -> (value, source)."""
    rows = {}
    for line in output.splitlines():
        setting, _, source = line.partition("  # ")
        name, _, value = setting.partition(" = ")
        rows[name.strip()] = (value.strip(), source.strip())
    return rows


def test_config_show_names_each_settings_source(tmp_path: Path) -> None:
    config = settings_file(tmp_path)
    env = {"TBA_GUARD_NONCE_MIN_LENGTH": "12", "TBA_GUARD_REALM": "7654321"}
    shown = tba_guard("config", "show", "--config", str(config), env=env)
    assert shown.returncode == 0, shown.stderr
    rows = shown_settings(shown.stdout)
    assert rows["realm"] == ('"7654321"', "environment (TBA_GUARD_REALM)")
    assert rows["nonce_min_length"] == ("12", "environment (TBA_GUARD_NONCE_MIN_LENGTH)")
    assert rows["integrations"] == ('["ck-config"]', f"file {config}")
    assert rows["timestamp_tolerance"] == ("300", "default")
    tables = [line for line in shown.stdout.splitlines() if line.startswith("[")]
    assert tables == [
        "[protocol]",
        "[request]",
        "[replay]",
        "[credentials]",
        "[flow]",
        "[oauth2]",
        "[governance]",
        "[metrics]",
    ]


def test_config_show_never_prints_a_secret(tmp_path: Path) -> None:
    key = fernet_key()
    config = settings_file(tmp_path, f'credential_store = "sqlite:///{tmp_path}/tba.db"\n')
    shown = tba_guard(
        "config", "show", "--config", str(config), env={"TBA_GUARD_CREDENTIAL_KEY": key}
    )
    assert shown.returncode == 0, shown.stderr
    output = shown.stdout + shown.stderr
    for secret in (key, CONSUMER_SECRET, TOKEN_SECRET, SESSION_SECRET, REDIS_PASSWORD):
        assert secret not in output
    rows = shown_settings(shown.stdout)
    assert rows["replay_store"][0] == '"redis://:***@127.0.0.1:6379/0"'
    assert rows["credential_key"] == ("***", "environment (TBA_GUARD_CREDENTIAL_KEY)")
    assert rows["session_secret"][0] == "***"


def test_config_check_names_every_bad_key_at_once_and_exits_2(tmp_path: Path) -> None:
    config = settings_file(tmp_path, "relam = 1\nnonce_max_length = 0\n")
    checked = tba_guard(
        "config",
        "check",
        "--config",
        str(config),
        env={"TBA_GUARD_BODY_TIMEOUT": "slow", "TBA_GUARD_SESSION_SECRET": "short"},
    )
    assert checked.returncode == 2
    problems = [line for line in checked.stderr.splitlines() if "config check:" in line]
    assert len(problems) == 4, checked.stderr
    for named in ("'relam'", "nonce_max_length", "TBA_GUARD_BODY_TIMEOUT", "session_secret"):
        assert any(named in line for line in problems), named
    assert "Traceback" not in checked.stderr
    assert "short" not in checked.stderr  # a bad secret is named, never shown


def test_config_check_passes_good_settings(tmp_path: Path) -> None:
    checked = tba_guard("config", "check", "--config", str(settings_file(tmp_path)))
    assert checked.returncode == 0, checked.stderr
    assert "valid" in checked.stdout


def test_db_upgrade_takes_the_key_from_the_environment_beside_a_file(tmp_path: Path) -> None:
    database = tmp_path / "tba.db"
    config = tmp_path / "tba.toml"
    config.write_text(f'[guard]\ncredential_store = "sqlite:///{database}"\n')
    env = {"TBA_GUARD_CREDENTIAL_KEY": fernet_key()}
    upgraded = tba_guard("db", "upgrade", "--config", str(config), env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "revision" in upgraded.stdout
    listed = tba_guard("integration", "list", "--config", str(config), env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("CONSUMER KEY")
