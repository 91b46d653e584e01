"""`tba-guard token deactivate|activate|revoke` and the STATE and LAST USED columns of `token
list` and `integration list`, end to end: the commands against a real PostgreSQL database,
changing what a running `tba-guard serve` accepts (pushed to it), with requests signed by
oauthlib's `Client`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.databases import (
    postgres_database,
    printed,
    serving,
    signed_get,
    tba_guard,
    upgraded_config,
)

RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with postgres_database() as url:
        # Changes bite by the push, not the TTL; usage is written after every request.
        yield upgraded_config(tmp_path, url, credential_cache_ttl=600, usage_flush_interval=0)


def column(listing: str, row_key: str, name: str) -> str:
    """The cell under `name` in the row starting with `row_key` (the table's columns line up)."""
    header, *rows = listing.splitlines()
    start = header.index(name)
    row = next(line for line in rows if line.startswith(row_key))
    return row[start:].split("  ", 1)[0].strip()


def verdict(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "OK"
    challenge = response.headers["www-authenticate"]
    problem = challenge.split('oauth_problem="', 1)[1].split('"', 1)[0]
    return f"{response.json()['error']['code']} {problem}"


def until(probe: Callable[[], str], expected: str) -> None:
    deadline = time.monotonic() + 15  # a bound, not a timing assertion
    while (seen := probe()) != expected:
        assert time.monotonic() < deadline, f"still {seen!r}, never {expected!r}"
        time.sleep(0.05)


def test_deactivate_activate_and_revoke_from_the_cli_change_what_serve_accepts(
    config: Path, tmp_path: Path
) -> None:
    added = tba_guard("integration", "add", "--name", "Order sync", "--config", str(config))
    assert added.returncode == 0, added.stderr
    consumer_key = printed(added.stdout, "consumer key")
    consumer_secret = printed(added.stdout, "consumer secret")
    issued = tba_guard(
        "token", "issue", "--consumer-key", consumer_key, "--entity", "38", "--role", "3",
        "--config", str(config),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    token_id, token_secret = (
        printed(issued.stdout, "token id"),
        printed(issued.stdout, "token secret"),
    )
    secrets = (consumer_secret, token_secret)
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, str, str]:
        done = tba_guard(*args, "--config", str(config))
        outputs.append(done.stdout + done.stderr)
        return done.returncode, done.stdout, done.stderr

    def tokens(name: str) -> str:
        code, stdout, stderr = run("token", "list")
        assert code == 0, stderr
        return column(stdout, token_id, name)

    def last_use_of_integration() -> str:
        code, stdout, stderr = run("integration", "list")
        assert code == 0, stderr
        return column(stdout, consumer_key, "LAST USED")

    assert (tokens("STATE"), tokens("LAST USED")) == ("active", "-")
    assert last_use_of_integration() == "-"
    with serving(config) as (base, _):

        def request() -> str:
            url = base + RESTLET
            return verdict(signed_get(url, consumer_key, consumer_secret, token_id, token_secret))

        assert request() == "OK"
        # Written by the guard after the request (usage_flush_interval = 0), then listed.
        until(lambda: "-" if tokens("LAST USED") == "-" else "used", "used")
        assert tokens("LAST USED").endswith("Z")
        assert last_use_of_integration() == tokens("LAST USED")

        code, stdout, stderr = run("token", "deactivate", token_id)
        assert code == 0, stderr
        assert stdout.strip() == f"Token {token_id} inactive."
        assert "token.deactivate" in stderr  # on the audit log
        assert tokens("STATE") == "inactive"
        until(request, "TokenRejected token_inactive")

        code, stdout, stderr = run("token", "activate", token_id)
        assert code == 0, stderr
        assert "token.activate" in stderr
        assert tokens("STATE") == "active"
        until(request, "OK")

        code, _, stderr = run("token", "revoke", token_id)
        assert code == 0, stderr
        until(request, "TokenRejected token_revoked")
        for action in ("activate", "deactivate"):
            code, stdout, stderr = run("token", action, token_id)
            assert code == 2
            assert f"token {token_id!r} is revoked, and a revocation is final" in stderr
            assert "tba-guard token issue" in stderr
            assert tokens("STATE") == "revoked"
        assert request() == "TokenRejected token_revoked"  # still: revoke stays final
        log = next(tmp_path.glob("tba-*.log")).read_text()
    for text in (*outputs, log):
        assert all(secret not in text for secret in secrets)


def test_activate_or_deactivate_an_unknown_token_exits_2(config: Path) -> None:
    for action in ("activate", "deactivate"):
        done = tba_guard("token", action, "tk-nobody", "--config", str(config))
        assert done.returncode == 2
        assert "no token with id 'tk-nobody'" in done.stderr
