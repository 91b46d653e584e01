"""`tba-guard sandbox` and the `netsuite_sandbox` fixture, used as a client library's project
would: its own tests through the pytest plugin, and a JavaScript client (oauth-1.0a) that
retries past the concurrency limit."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tba_guard.sandbox import SandboxAccount, running_sandbox
from tests.support import ROOT, free_port, oauth_header, require_tools
from tests.support.servers import running_server

EXAMPLE = ROOT / "examples" / "netsuite-client"
CLIENT_TESTS = 4  # the example project's tests


def signed_get(sandbox: SandboxAccount, url: str, secret: str | None = None) -> httpx.Response:
    header = oauth_header(
        "GET",
        url,
        consumer_key=sandbox.consumer_key,
        consumer_secret=secret or sandbox.consumer_secret,
        token=sandbox.token_id,
        token_secret=sandbox.token_secret,
        realm=sandbox.account,
        timestamp=int(time.time()),
    )
    return httpx.get(url, headers={"Authorization": header})


def test_the_sandbox_serves_both_surfaces_with_fresh_credentials_at_a_developer_limit() -> None:
    with running_sandbox() as first, running_sandbox() as second:
        assert first.consumer_key != second.consumer_key  # throw-away, made at each start
        assert first.governance_limit == 5
        assert len(first.consumer_key) == len(first.token_secret) == 64
        restlet = signed_get(first, first.restlet_url + "?script=1&deploy=1")
        rest = signed_get(first, first.rest_url + "/record/v1/customer/1")
        assert (restlet.status_code, rest.status_code) == (200, 200)
        assert rest.json()["realm"] == "1234567_SB1"
        # The credentials of one sandbox mean nothing to another.
        other = signed_get(first, second.rest_url + "/record/v1/customer/1")
        assert other.json()["error"]["code"] == "UnknownIntegration"
        limits = signed_get(first, first.rest_url + "/system/v1/governanceLimits")
        assert limits.json()["accountConcurrencyLimit"] == 5
    assert "consumer_secret=" not in repr(first)


def test_the_credentials_go_to_stdout_as_json_or_to_a_file_for_its_owner_only(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "tba_guard.tools.cli", "sandbox"]
    port = free_port()
    with running_server([*command, "--port", str(port)], tmp_path / "out.log", port=port) as server:
        printed = server.output()
        document = printed[: printed.index("\n}") + 2]
        sandbox = SandboxAccount.from_json(document)
        assert sandbox.base_url == f"http://127.0.0.1:{port}"
        assert signed_get(sandbox, sandbox.rest_url + "/record/v1/x").status_code == 200

    credentials, port = tmp_path / "credentials.json", free_port()
    arguments = [*command, "--port", str(port), "--credentials-file", str(credentials)]
    arguments += ["--governance-limit", "2", "--account", "7654321"]
    with running_server(arguments, tmp_path / "file.log", port=port) as server:
        sandbox = SandboxAccount.from_json(credentials.read_text())
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert (sandbox.account, sandbox.governance_limit) == ("7654321", 2)
        for secret in (sandbox.consumer_secret, sandbox.token_secret):
            assert secret not in server.output()
        assert str(credentials) in server.output()


def client_project(tmp_path: Path) -> Path:
    """The example project, copied: its runs write nothing into the repository."""
    project = tmp_path / "netsuite-client"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
    return project


@pytest.mark.parametrize("load", [["-p", "tba_guard.sandbox"], []], ids=["-p", "entry-point"])
def test_a_client_projects_own_tests_get_the_fixture_from_the_plugin(
    tmp_path: Path, load: list[str]
) -> None:
    project = client_project(tmp_path)
    command = [sys.executable, "-m", "pytest", *load, "-q", "-p", "no:cacheprovider", "-p"]
    command += ["no:asyncio", "-W", "error::pytest.PytestUnknownMarkWarning"]
    ran = subprocess.run(
        command,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{CLIENT_TESTS} passed" in ran.stdout


def test_a_javascript_client_signs_with_oauth_1_0a_and_retries_past_the_limit(
    tmp_path: Path,
) -> None:
    require_tools("node", "npm", why="the JavaScript client of docs/sandbox.md")
    project = client_project(tmp_path)
    npm_cache = ROOT / ".cache" / "npm"  # the project's own, as pip's is
    subprocess.run(
        ["npm", "ci", "--cache", str(npm_cache), "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=project,
        check=True,
        timeout=300,
        capture_output=True,
    )
    with running_sandbox() as sandbox:
        credentials = project / "credentials.json"
        credentials.write_text(sandbox.as_json())
        ran = subprocess.run(
            ["node", "client.mjs", str(credentials)],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert ran.returncode == 0, ran.stderr
    outcome = json.loads(ran.stdout)
    assert (outcome["restlet"], outcome["created"]) == (200, 200)
    assert outcome["created_body_bytes"] > 0
    assert outcome["burst"] == [200] * (2 * sandbox.governance_limit)
    assert outcome["retries"] > 0  # the burst met the limit, and waited its turn
