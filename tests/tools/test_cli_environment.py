"""The CLI reads its settings as the library does; short secrets are refused; `| head` is quiet.

Each test runs the real `tba-guard` as a subprocess, with an environment of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tba_guard import GuardSettings, SettingsError, verify_signature
from tba_guard.core.settings import MIN_SECRET_LENGTH
from tba_guard.tools.demo import load_settings
from tests.support import ROOT

URL = "https://1234567.restlets.example.com/app/site/hosting/restlet.nl?script=1&deploy=1"
CONSUMER_KEY, CONSUMER_SECRET = "ck-env", "cs-env-0123456789abcdef"
TOKEN_ID, TOKEN_SECRET = "tk-env", "ts-env-0123456789abcdef"
TOML = f"""
[guard]
realm = "1234567"

[[integrations]]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"

[[tokens]]
token_id = "{TOKEN_ID}"
token_secret = "{TOKEN_SECRET}"
consumer_key = "{CONSUMER_KEY}"
"""


def command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "tba-guard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tba_guard.tools.cli"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any TBA_GUARD_* setting, plus `extra`."""
    keep = {"TBA_GUARD_BUILD", "TBA_GUARD_REQUIRE_REDIS", "TBA_GUARD_REQUIRE_BROWSER"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TBA_GUARD_") or k in keep}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def assert_signed_with_the_env_secrets(header: str) -> None:
    headers = {"Authorization": header}
    assert 'realm="1234567"' in header
    assert verify_signature("GET", URL, headers, "", CONSUMER_SECRET, TOKEN_SECRET)


def test_sign_reads_the_file_named_by_tba_guard_config(tmp_path: Path) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(TOML)
    env = clean_environment(TBA_GUARD_CONFIG=str(config))
    done = run_cli("sign", "--consumer-key", CONSUMER_KEY, "--token", TOKEN_ID, "GET", URL, env=env)
    assert done.returncode == 0, done.stderr
    assert_signed_with_the_env_secrets(done.stdout.strip())


def test_sign_reads_tba_guard_variables() -> None:
    env = clean_environment(
        TBA_GUARD_REALM="1234567",
        TBA_GUARD_INTEGRATIONS=json.dumps(
            [{"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET}]
        ),
        TBA_GUARD_TOKENS=json.dumps(
            [{"token_id": TOKEN_ID, "token_secret": TOKEN_SECRET, "consumer_key": CONSUMER_KEY}]
        ),
    )
    done = run_cli("sign", "--consumer-key", CONSUMER_KEY, "--token", TOKEN_ID, "GET", URL, env=env)
    assert done.returncode == 0, done.stderr
    assert_signed_with_the_env_secrets(done.stdout.strip())


def test_the_variables_layer_over_the_config_file_and_the_demo_is_the_last_resort(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(TOML)
    env = clean_environment(TBA_GUARD_CONFIG=str(tmp_path / "missing.toml"), TBA_GUARD_REALM="9")
    args = ["sign", "--consumer-key", CONSUMER_KEY, "--token", TOKEN_ID, "GET", URL]
    flag = run_cli(*args[:1], "--config", str(config), *args[1:], env=env)
    assert flag.returncode == 0, flag.stderr
    header = flag.stdout.strip()
    assert 'realm="9"' in header  # the variable over the file's realm
    assert verify_signature(
        "GET", URL, {"Authorization": header}, "", CONSUMER_SECRET, TOKEN_SECRET
    )
    # Without --config, TBA_GUARD_CONFIG names the file: its missing file is the error.
    named = run_cli(*args, env=env)
    assert named.returncode == 2
    assert "missing.toml" in named.stderr
    demo = load_settings(None)
    nothing = run_cli(
        "sign", "--consumer-key", demo.integrations[0].consumer_key, "GET", URL,
        env=clean_environment(),
    )  # fmt: skip
    assert nothing.returncode == 0, nothing.stderr


def test_help_states_the_order() -> None:
    done = run_cli("--help", env=clean_environment())
    text = " ".join(done.stdout.split())
    assert "the file of --config FILE (else $TBA_GUARD_CONFIG)" in text
    assert "then every TBA_GUARD_* variable over it" in text


def test_a_short_secret_is_refused_with_its_key_named(tmp_path: Path) -> None:
    config = tmp_path / "tba.toml"
    config.write_text(TOML.replace(TOKEN_SECRET, "…"))
    args = ["explain", "--config", str(config), "GET", URL, "--header", "x"]
    done = run_cli(*args, env=clean_environment())
    assert done.returncode == 2
    assert "tokens[0].token_secret" in done.stderr
    assert f"at least {MIN_SECRET_LENGTH} characters" in done.stderr
    assert "Traceback" not in done.stderr
    assert "…" not in done.stderr  # the message never repeats a secret


def test_the_minimum_holds_in_code_and_the_environment_and_spares_the_demo() -> None:
    with pytest.raises(SettingsError, match=r"integrations\[0\]\.consumer_secret"):
        GuardSettings.from_env(
            {"TBA_GUARD_INTEGRATIONS": '[{"consumer_key": "k", "consumer_secret": "changeme"}]'}
        )
    with pytest.raises(SettingsError, match=r"integrations\[0\]\.consumer_secret"):
        GuardSettings.from_mapping(
            {"integrations": [{"consumer_key": "k", "consumer_secret": "x" * 15}]}
        )
    GuardSettings.from_mapping(
        {"integrations": [{"consumer_key": "k", "consumer_secret": "x" * 16}]}
    )
    demo = load_settings(None)  # published demo secrets: long enough, and labelled as demo only
    assert all(len(i.consumer_secret) >= MIN_SECRET_LENGTH for i in demo.integrations)
    assert all("published" in i.consumer_secret for i in demo.integrations)


def test_a_pipe_closed_early_ends_without_a_traceback() -> None:
    # The reading end is closed before the CLI writes: its first write meets a broken pipe,
    # as under `tba-guard explain ... | head -0`.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*command(), "explain", "GET", URL, "--header", 'OAuth oauth_consumer_key="x"'],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            env=clean_environment(),
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141


def test_make_demo_takes_a_port() -> None:
    done = subprocess.run(
        ["make", "-n", "demo", "PORT=9999"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [serve] = [line for line in done.stdout.splitlines() if "tba-guard serve" in line]
    assert re.search(r"--port 9999\b", serve)
