"""Concurrency allocations from the command line, against real SQLite and PostgreSQL:
`integration add --concurrency`, `integration concurrency KEY N|none`, the CONCURRENCY column
of `integration list`, `db import` of `concurrency_limit`, and a running `tba-guard serve`
that learns an allocation once its cache TTL passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import (
    database_url,
    printed,
    serving,
    signed_get,
    tba_guard,
    upgraded_config,
    wait_for,
)

LIMITS = "/services/rest/system/v1/governanceLimits"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as found:
        yield found


def added(config: str, name: str, *options: str) -> str:
    done = tba_guard("integration", "add", "--name", name, *options, "--config", config)
    assert done.returncode == 0, done.stderr
    return printed(done.stdout, "consumer key")


def concurrency_column(config: str) -> dict[str, str]:
    """`integration list`'s CONCURRENCY per consumer key, read at the header's offsets (the
    cell is blank without an allocation)."""
    done = tba_guard("integration", "list", "--config", config)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    start = header.index("CONCURRENCY")
    end = header.index("FLOW")
    return {row.split()[0]: row[start:end].strip() for row in rows}


def test_an_allocation_is_given_at_add_changed_listed_and_taken_away(
    url: str, tmp_path: Path
) -> None:
    config = str(upgraded_config(tmp_path, url))
    adding = tba_guard(
        "integration", "add", "--name", "Order sync", "--concurrency", "2", "--config", config
    )
    assert adding.returncode == 0, adding.stderr
    assert printed(adding.stdout, "concurrency") == "2 concurrency slots of its own"
    order_sync = printed(adding.stdout, "consumer key")
    invoices = added(config, "Invoices")
    assert concurrency_column(config) == {order_sync: "2", invoices: ""}

    changed = tba_guard("integration", "concurrency", invoices, "5", "--config", config)
    assert changed.returncode == 0, changed.stderr
    assert "5 concurrency slots of its own" in changed.stdout
    assert "integration.concurrency" in changed.stderr  # on the audit log
    assert concurrency_column(config) == {order_sync: "2", invoices: "5"}

    taken = tba_guard("integration", "concurrency", order_sync, "none", "--config", config)
    assert taken.returncode == 0, taken.stderr
    assert "no allocation" in taken.stdout
    assert concurrency_column(config) == {order_sync: "", invoices: "5"}


def test_an_allocation_below_one_slot_or_of_an_unknown_key_exits_2(
    url: str, tmp_path: Path
) -> None:
    config = str(upgraded_config(tmp_path, url))
    consumer_key = added(config, "Order sync")
    for bad in ("0", "-3", "many"):
        done = tba_guard("integration", "concurrency", consumer_key, bad, "--config", config)
        assert done.returncode == 2
        assert "expected slots >= 1 or none" in done.stderr
    unknown = tba_guard("integration", "concurrency", "ck-unknown", "2", "--config", config)
    assert unknown.returncode == 2
    assert "no integration with consumer key 'ck-unknown'" in unknown.stderr
    assert concurrency_column(config) == {consumer_key: ""}


def test_db_import_copies_an_integrations_concurrency_limit(url: str, tmp_path: Path) -> None:
    config = str(upgraded_config(tmp_path, url))
    source = tmp_path / "old.toml"
    source.write_text(
        "[[integrations]]\n"
        'consumer_key = "ck-allocated"\n'
        'consumer_secret = "cs-allocated-secret-0001"\n'
        "concurrency_limit = 3\n"
        "[[integrations]]\n"
        'consumer_key = "ck-shared"\n'
        'consumer_secret = "cs-shared-secret-000002"\n'
    )
    done = tba_guard("db", "import", str(source), "--config", config)
    assert done.returncode == 0, done.stderr
    assert concurrency_column(config) == {"ck-allocated": "3", "ck-shared": ""}


def test_a_running_guard_learns_an_allocation_made_through_the_cli(
    url: str, tmp_path: Path
) -> None:
    """`governanceLimits` says what the guard counts with: the shared pool shrinks and the
    integration gets its own once the cache TTL passes (PostgreSQL's push drops the record
    sooner; the allocations follow the TTL on both)."""
    config = str(upgraded_config(tmp_path, url, credential_cache_ttl=0.5, governance_limit=10))
    added_integration = tba_guard("integration", "add", "--name", "Order sync", "--config", config)
    assert added_integration.returncode == 0, added_integration.stderr
    consumer_key = printed(added_integration.stdout, "consumer key")
    consumer_secret = printed(added_integration.stdout, "consumer secret")
    issued = tba_guard(
        "token", "issue", "--consumer-key", consumer_key, "--entity", "38", "--role", "3",
        "--config", config,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    token_id, token_secret = (
        printed(issued.stdout, "token id"),
        printed(issued.stdout, "token secret"),
    )

    with serving(Path(config)) as (base, _):

        def limits() -> dict[str, object]:
            response = signed_get(
                base + LIMITS, consumer_key, consumer_secret, token_id, token_secret
            )
            assert response.status_code == 200, response.text
            found: dict[str, object] = json.loads(response.text)
            return found

        assert limits() == {
            "accountConcurrencyLimit": 10,
            "accountUnallocatedConcurrencyLimit": 10,
            "limitType": "account",
        }
        changed = tba_guard("integration", "concurrency", consumer_key, "4", "--config", config)
        assert changed.returncode == 0, changed.stderr
        allocated = {
            "accountConcurrencyLimit": 10,
            "accountUnallocatedConcurrencyLimit": 6,
            "integrationConcurrencyLimit": 4,
            "limitType": "integrationSpecific",
        }
        wait_for(lambda: limits() == allocated, seconds=30)  # a bound on a hang only
        log = next(tmp_path.glob("tba-*.log")).read_text()
        assert consumer_secret not in log
        assert token_secret not in log
