"""OAuth 2.0 end to end, as an operator and a client meet it: `tba-guard serve` on the
credential database, integrations, tokens and mappings registered with the CLI, a client that
makes its key and certificate with `cryptography`, signs assertions with PyJWT and calls over
HTTP; TBA beside it on the same routes, a brownout, and `tba-guard usage` counting both."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest

from tests.support import free_port, oauth_header, run_cli, running_server
from tests.support.oauth2 import (
    assertion,
    certificate_pem,
    ec_key,
    guard_key,
    private_pem,
    rsa_key,
    token_form,
)

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"
REST = "/services/rest/record/v1/customer/7"
CLIENT_ID = "client-order-sync"
LEGACY_CLIENT_ID = "client-legacy"


class Account:
    """One `tba-guard serve` on a SQLite credential database, and the CLI against it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "tba.toml"
        self.key_file = folder / "guard.pem"
        self.key_file.write_text(private_pem(guard_key()))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        credential_key = self.cli("db", "keygen", config=False).strip().splitlines()[-1]
        now = time.time()
        self.config.write_text(
            f"""
[protocol]
realm = "123456"
[credentials]
credential_store = "sqlite:///{folder / "tba.db"}"
credential_key = "{credential_key}"
credential_cache_ttl = 1
usage_flush_interval = 0
[oauth2]
oauth2_signing_keys_file = "{self.key_file}"
[[brownouts]]
start = {now - 60}
length = 3600
consumer_key = "ck-legacy"
"""
        )
        self.cli("db", "upgrade")

    def cli(self, *args: str, config: bool = True) -> str:
        given = [*args, "--config", str(self.config)] if config else list(args)
        done = run_cli(*given)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def account(tmp_path: Path) -> Iterator[tuple[Account, dict[str, Any]]]:
    account = Account(tmp_path)
    made: dict[str, Any] = {}
    for consumer_key, client_id in (("ck-order-sync", CLIENT_ID), ("ck-legacy", LEGACY_CLIENT_ID)):
        added = account.cli(
            "integration",
            "add",
            "--name",
            consumer_key,
            "--consumer-key",
            consumer_key,
            "--client-id",
            client_id,
        )
        made[consumer_key] = re.search(r"consumer secret: (\S+)", added)[1]  # type: ignore[index]
        issued = account.cli(
            "token", "issue", "--consumer-key", consumer_key, "--entity", "38", "--role", "3"
        )
        made[f"{consumer_key} token"] = (
            re.search(r"token id:\s+(\S+)", issued)[1],  # type: ignore[index]
            re.search(r"token secret:\s+(\S+)", issued)[1],  # type: ignore[index]
        )
    for name, key, client_id in (
        ("cert-rsa", rsa_key(), CLIENT_ID),
        ("cert-ec", ec_key("secp384r1"), CLIENT_ID),
        ("cert-legacy", ec_key(), LEGACY_CLIENT_ID),
    ):
        pem = account.folder / f"{name}.pem"
        pem.write_text(certificate_pem(key, not_before=time.time() - 3600))
        shown = account.cli(
            "certificate",
            "add",
            "--client-id",
            client_id,
            "--entity",
            "38",
            "--role",
            "3",
            "--certificate",
            str(pem),
            "--certificate-id",
            name,
        )
        assert name in shown
    command = [
        sys.executable,
        "-m",
        "tba_guard.tools.cli",
        "serve",
        "--config",
        str(account.config),
    ]
    command += ["--host", "127.0.0.1", "--port", str(account.port)]
    log = account.folder / "serve.log"
    with running_server(command, log, port=account.port, env={"PYTHONUNBUFFERED": "1"}):
        yield account, made


def fetch_token(account: Account, client_assertion: str) -> httpx.Response:
    return httpx.post(account.url(TOKEN_PATH), data=token_form(client_assertion), timeout=10)


def signed(key: Any, kid: str, account: Account, **claims: Any) -> str:
    algorithm = "PS256" if kid == "cert-rsa" else ("ES384" if kid == "cert-ec" else "ES256")
    claims.setdefault("issuer", LEGACY_CLIENT_ID if kid == "cert-legacy" else CLIENT_ID)
    return assertion(
        key, kid, algorithm=algorithm, now=time.time(), audience=account.url(TOKEN_PATH), **claims
    )


def call(account: Account, path: str, token: str) -> httpx.Response:
    return httpx.get(account.url(path), headers={"authorization": f"Bearer {token}"}, timeout=10)


def tba_call(account: Account, consumer_key: str, made: dict[str, Any]) -> httpx.Response:
    url = account.url(RESTLET)
    token_id, token_secret = made[f"{consumer_key} token"]
    header = oauth_header(
        "GET",
        url,
        consumer_key=consumer_key,
        consumer_secret=made[consumer_key],
        token=token_id,
        token_secret=token_secret,
        realm="123456",
        timestamp=int(time.time()),
    )
    return httpx.get(url, headers={"authorization": header}, timeout=10)


@pytest.mark.parametrize(
    ("kid", "key"),
    [("cert-rsa", rsa_key()), ("cert-ec", ec_key("secp384r1"))],
    ids=["PS256", "ES384"],
)
def test_a_client_of_each_algorithm_family_gets_a_token_and_calls_both_surfaces(
    account: tuple[Account, dict[str, Any]], kid: str, key: Any
) -> None:
    server, _ = account
    answer = fetch_token(server, signed(key, kid, server))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    for path in (RESTLET, REST):
        response = call(server, path, token)
        assert response.status_code == 200, response.text
        identity = response.json()
        assert identity["consumer_key"] == "ck-order-sync"
        assert identity["token_id"] == kid
        assert identity["scheme"] == "oauth2"
        assert (identity["entity"], identity["role"]) == ("38", "3")
    restlets_only = fetch_token(server, signed(key, kid, server, scope="restlets")).json()
    refused = call(server, REST, restlets_only["access_token"])
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]


def test_expired_tokens_long_assertions_replays_and_forged_algorithms_are_refused(
    account: tuple[Account, dict[str, Any]],
) -> None:
    server, _ = account
    token = fetch_token(server, signed(rsa_key(), "cert-rsa", server)).json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(
        iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=int(time.time()) - 3600
    )
    expired = jwt.encode(claims, guard_key(), "PS256", headers=jwt.get_unverified_header(token))
    response = call(server, RESTLET, expired)
    assert response.status_code == 401
    assert "expired" in response.headers["www-authenticate"]

    long = fetch_token(server, signed(rsa_key(), "cert-rsa", server, lifetime=3700))
    assert long.json()["error"] == "invalid_grant"

    once = signed(rsa_key(), "cert-rsa", server)
    assert fetch_token(server, once).status_code == 200
    again = fetch_token(server, once)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")

    from tests.asgi.test_oauth2_token_endpoint import unsigned

    payload = jwt.decode(signed(rsa_key(), "cert-rsa", server), options={"verify_signature": False})
    for header in (
        {"alg": "none", "typ": "JWT", "kid": "cert-rsa"},
        {"alg": "HS256", "typ": "JWT", "kid": "cert-rsa"},
    ):
        forged = fetch_token(server, unsigned(header, payload, b"x" * 32))
        assert (forged.status_code, forged.json()["error"]) == (400, "invalid_client")


def test_a_revoked_certificate_refuses_its_tokens_within_the_cache_ttl(
    account: tuple[Account, dict[str, Any]],
) -> None:
    server, _ = account
    token = fetch_token(server, signed(rsa_key(), "cert-rsa", server)).json()["access_token"]
    assert call(server, RESTLET, token).status_code == 200
    server.cli("certificate", "revoke", "cert-rsa")
    deadline = time.monotonic() + 1 + 2  # credential_cache_ttl, and a margin for the machine
    while call(server, RESTLET, token).status_code == 200:
        assert time.monotonic() < deadline, "the revoked mapping's token still passes"
        time.sleep(0.1)
    assert (
        fetch_token(server, signed(rsa_key(), "cert-rsa", server)).json()["error"]
        == "invalid_client"
    )


def test_a_brownout_refuses_tba_and_lets_oauth2_through_and_usage_counts_both(
    account: tuple[Account, dict[str, Any]],
) -> None:
    server, made = account
    refused = tba_call(server, "ck-legacy", made)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "TBABrownout"
    token = fetch_token(server, signed(ec_key(), "cert-legacy", server)).json()["access_token"]
    assert call(server, RESTLET, token).status_code == 200
    for _ in range(2):
        assert tba_call(server, "ck-order-sync", made).status_code == 200
    oauth2 = fetch_token(server, signed(rsa_key(), "cert-rsa", server)).json()["access_token"]
    assert call(server, REST, oauth2).status_code == 200
    deadline = time.monotonic() + 5
    while True:  # the counts are written off the request's path, just after it
        usage = server.cli("usage")
        rows = [line.split() for line in usage.splitlines()]
        counts = {(r[0], r[2], r[3]): r[4] for r in rows if len(r) >= 5 and r[0].startswith("ck-")}
        order_sync_token = made["ck-order-sync token"][0]
        expected = {
            ("ck-order-sync", order_sync_token, "tba"): "2",
            ("ck-order-sync", "cert-rsa", "oauth2"): "1",
            ("ck-legacy", "cert-legacy", "oauth2"): "1",
        }
        if counts == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts == expected, usage
