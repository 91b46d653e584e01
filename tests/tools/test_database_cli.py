"""The credential database from the command line, against real servers: `tba-guard` commands
change what a running `tba-guard serve` accepts, on SQLite and on PostgreSQL (where changes are
pushed), across two worker processes, and a token the flow issued outlives every process and
Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx2 as httpx
import pytest
from oauthlib.oauth1 import Client

from tba_guard.stores.redis_tokens import RedisTokenStore
from tests.support.databases import (
    REALM,
    database_url,
    free_port,
    postgres_database,
    printed,
    serving,
    signed_get,
    tba_guard,
    upgraded_config,
)

RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"


def code_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"]) if response.status_code != 200 else "OK"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as found:
        yield found


def add_integration_and_token(config: Path) -> tuple[str, str, str, str]:
    added = tba_guard("integration", "add", "--name", "Order sync", "--config", str(config))
    assert added.returncode == 0, added.stderr
    consumer_key = printed(added.stdout, "consumer key")
    consumer_secret = printed(added.stdout, "consumer secret")
    issued = tba_guard(
        "token", "issue", "--consumer-key", consumer_key, "--entity", "38", "--role", "3",
        "--config", str(config),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    return (
        consumer_key,
        consumer_secret,
        printed(issued.stdout, "token id"),
        printed(issued.stdout, "token secret"),
    )


def test_cli_round_trip_add_issue_sign_accept_revoke_reject(url: str, tmp_path: Path) -> None:
    ttl = 1.0
    config = upgraded_config(tmp_path, url, credential_cache_ttl=ttl)
    consumer_key, consumer_secret, token_id, token_secret = add_integration_and_token(config)
    # Secrets are printed once, at creation; listings and the audit lines never show them.
    listings = [
        tba_guard("integration", "list", "--config", str(config)),
        tba_guard("token", "list", "--config", str(config)),
    ]
    assert consumer_key in listings[0].stdout
    assert token_id in listings[1].stdout
    for done in listings:
        assert consumer_secret not in done.stdout + done.stderr
        assert token_secret not in done.stdout + done.stderr
    with serving(config) as (base, _):
        signed = tba_guard(
            "sign", "--config", str(config), "--consumer-key", consumer_key, "--token", token_id,
            "GET", base + RESTLET,
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        accepted = httpx.get(base + RESTLET, headers={"Authorization": signed.stdout.strip()})
        assert accepted.status_code == 200
        assert accepted.json()["entity"] == "38"

        revoked = tba_guard("token", "revoke", token_id, "--config", str(config))
        assert revoked.returncode == 0, revoked.stderr
        assert "token.revoke" in revoked.stderr  # on the audit log
        assert token_secret not in revoked.stderr
        started = time.monotonic()
        while True:
            response = signed_get(
                base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
            )
            if code_of(response) == "TokenRejected":
                break
            assert response.status_code == 200
            took = time.monotonic() - started
            # Within the TTL (plus a second for the CLI's exit); PostgreSQL pushes: 1 s.
            assert took < (1.0 if url.startswith("postgresql") else ttl + 1.0), took
            time.sleep(0.02)
        log = next(tmp_path.glob("tba-*.log")).read_text()
        assert consumer_secret not in log
        assert token_secret not in log


def test_two_worker_processes_sharing_postgresql_see_a_block_made_through_the_cli(
    tmp_path: Path,
) -> None:
    with postgres_database() as url:
        config = upgraded_config(tmp_path, url, credential_cache_ttl=60)  # push, not the TTL
        consumer_key, consumer_secret, token_id, token_secret = add_integration_and_token(config)
        with serving(config) as (first, _), serving(config) as (second, _):
            for base in (first, second):
                response = signed_get(
                    base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
                )
                assert response.status_code == 200
            blocked = tba_guard("integration", "block", consumer_key, "--config", str(config))
            assert blocked.returncode == 0, blocked.stderr
            started = time.monotonic()
            for base in (first, second):
                while True:
                    response = signed_get(
                        base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
                    )
                    if code_of(response) == "IntegrationBlocked":
                        break
                    assert time.monotonic() - started < 1.0, "the block took over a second"
                    time.sleep(0.02)
            enabled = tba_guard("integration", "enable", consumer_key, "--config", str(config))
            assert enabled.returncode == 0, enabled.stderr
            for base in (first, second):
                deadline = time.monotonic() + 5
                while (
                    signed_get(
                        base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
                    ).status_code
                    != 200
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)


class PrivateRedis:
    """A `redis-server` keeping nothing on disk, on a free port: a restart loses every key."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def flow_request(url: str, client: Client) -> dict[str, str]:
    _, headers, _ = client.sign(url, http_method="POST")
    response = httpx.post(url, headers=headers)
    assert response.status_code == 200, response.text
    return dict(parse_qsl(response.text))


def test_a_flow_issued_token_survives_a_restart_of_every_process_and_of_redis(
    url: str, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        config = upgraded_config(
            tmp_path,
            url,
            replay_store=redis.url,
            token_store=redis.url,
            session_secret="s" * 32,
            users=[{"entity": "38", "name": "alice", "password": "p" * 16, "roles": ["3"]}],
        )
        added = tba_guard(
            "integration", "add", "--name", "Flow app", "--authorization-flow",
            "--callback-url", "https://app.example/callback", "--config", str(config),
        )  # fmt: skip
        consumer_key = printed(added.stdout, "consumer key")
        consumer_secret = printed(added.stdout, "consumer secret")
        with serving(config) as (base, _):
            step_one = Client(
                consumer_key,
                client_secret=consumer_secret,
                callback_uri="https://app.example/callback",
                signature_method="HMAC-SHA256",
                realm=REALM,
            )
            request_token = flow_request(base + "/rest/requesttoken", step_one)
            # Step two is the user's consent page; its decision is what the store records.
            tokens = RedisTokenStore(redis.url)
            verifier = "v" * 32
            assert asyncio.run(
                tokens.decide(
                    request_token["oauth_token"], "allowed", verifier=verifier, entity="38",
                    role="3",
                )
            )  # fmt: skip
            step_three = Client(
                consumer_key,
                client_secret=consumer_secret,
                resource_owner_key=request_token["oauth_token"],
                resource_owner_secret=request_token["oauth_token_secret"],
                verifier=verifier,
                signature_method="HMAC-SHA256",
                realm=REALM,
            )
            access = flow_request(base + "/rest/accesstoken", step_three)
            token_id, token_secret = access["oauth_token"], access["oauth_token_secret"]
            first = signed_get(
                base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
            )
            assert first.status_code == 200
        redis.stop()  # Redis keeps nothing on disk: every key is gone
        redis.start()
        with serving(config) as (base, _):
            again = signed_get(
                base + RESTLET, consumer_key, consumer_secret, token_id, token_secret
            )
            assert again.status_code == 200, again.text
            assert again.json()["token_id"] == token_id
        listed = tba_guard("token", "list", "--config", str(config))
        assert token_id in listed.stdout
        assert token_secret not in listed.stdout
    finally:
        redis.stop()
