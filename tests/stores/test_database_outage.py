"""A credential database that goes away and comes back, on a private PostgreSQL server this
test stops and starts: the guard answers 503 with Retry-After while it is down (never a token
from a cache older than the TTL) and accepts again once it is back, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import psycopg

from tests.support.databases import (
    REALM,
    fresh_key,
    prepared,
    private_postgres,
    serving,
    signed_get,
    with_database,
    write_config,
)

RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"


def test_the_database_stopped_gives_503_then_started_again_recovers(tmp_path: Path) -> None:
    ttl, timeout = 1.0, 0.5
    with private_postgres() as server:
        with psycopg.connect(server.url, autocommit=True) as connection:
            connection.execute("CREATE DATABASE tba")
        url = with_database(server.url, "tba")
        key = fresh_key()
        admin = prepared(url, key)
        integration = admin.add_integration("Order sync")
        token = admin.issue_token(integration.consumer_key, entity="38", role="3")
        admin.engine.dispose()
        config = write_config(
            tmp_path / "tba.toml",
            realm=REALM,
            credential_store=url,
            credential_key=key,
            credential_cache_ttl=ttl,
            credential_store_timeout=timeout,
        )
        secrets = (integration.consumer_secret, token.token_secret)

        def get() -> httpx.Response:
            return signed_get(
                base + RESTLET, integration.consumer_key, secrets[0], token.token_id, secrets[1]
            )

        with serving(config) as (base, _):
            assert get().status_code == 200
            server.stop()
            stopped = time.monotonic()
            while True:
                started = time.monotonic()
                response = get()
                # Each answer is bounded: the lookup's timeout, plus slack for a busy machine.
                assert time.monotonic() - started < timeout + 2.0
                if response.status_code == 503:
                    break
                assert response.status_code == 200
                # A cached record is served for the TTL at most, never longer.
                assert time.monotonic() - stopped < ttl + 1.0
                time.sleep(0.05)
            assert response.json()["error"]["code"] == "CredentialStoreUnavailable"
            assert response.headers["retry-after"] == "1"
            time.sleep(ttl)
            assert get().status_code == 503  # still down: still 503
            server.start()
            deadline = time.monotonic() + 15  # a recovery bound, generous for CI
            while get().status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                time.sleep(0.1)
