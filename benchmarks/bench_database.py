"""The credential database's costs: warm-cache verification against the settings-file store,
cold lookups on PostgreSQL (and SQLite), and the queries a flood of unknown consumer keys costs.

- Warm: `Guard.verify_request` on a signed GET, the settings-file store and the database store
  (its cache warm) taking turns in rounds; each call timed on its own (perf_counter_ns), the
  median of each round and the ratio database/settings per round.
- Cold: `store.token(id)` with the cache off (`ttl=0`), so each call is one query on a pooled
  connection: median and p99 in µs.
- Flood: 10,000 requests, each with a consumer key nobody issued, through the guard (code and
  opaque error detail): the store's query counter afterwards.

    python benchmarks/bench_database.py [--postgres URL] [--requests N] [--rounds R] [--json F]

`--postgres` names a server where the benchmark may create and drop a database of its own
(default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg
from oauthlib.oauth1 import Client

from tba_guard import Guard, GuardSettings, Integration, Token
from tba_guard.stores.database import connect, migrate
from tba_guard.stores.database.admin import CredentialAdmin
from tba_guard.stores.database.sealing import Sealer, new_key
from tba_guard.stores.database.store import DatabaseCredentials

URL = "https://123456.restlets.example.com/app/site/hosting/restlet.nl?script=1&deploy=1"
REALM = "123456"
CONSUMER_KEY, CONSUMER_SECRET = "ck-bench", "cs-bench-consumer-secret-0123456789"
TOKEN_ID, TOKEN_SECRET = "tk-bench", "ts-bench-token-secret-0123456789"


def signed(consumer_key: str = CONSUMER_KEY, token: str = TOKEN_ID) -> dict[str, str]:
    client = Client(
        consumer_key,
        client_secret=CONSUMER_SECRET,
        resource_owner_key=token,
        resource_owner_secret=TOKEN_SECRET,
        signature_method="HMAC-SHA256",
        realm=REALM,
    )
    return dict(client.sign(URL, http_method="GET")[1])


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    name = f"tba_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield (
                connect.sqlalchemy_url(server)
                .set(database=name, drivername="postgresql")
                .render_as_string(hide_password=False)
            )
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fill(url: str, key: str) -> None:
    engine = connect.create(url, timeout=10)
    migrate.upgrade(engine)
    admin = CredentialAdmin(engine, Sealer([key]))
    admin.import_records(
        [Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Bench")],
        [Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3")],
    )
    engine.dispose()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_verify(guard: Guard, batch: list[dict[str, str]]) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for headers in batch:
        start = clock()
        await guard.verify_request("GET", URL, headers)
        samples.append((clock() - start) / 1000)
    return samples


async def warm(url: str, key: str, requests: int, rounds: int) -> dict[str, Any]:
    base = GuardSettings(realm=REALM)
    settings_guard = Guard(
        base.replace(
            integrations=(Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Bench"),),
            tokens=(Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),),
        )
    )
    store = DatabaseCredentials(url, [key], ttl=3600, listen=False)
    database_guard = Guard(base, credentials=store)
    await database_guard.verify_request("GET", URL, signed())  # warms the cache
    warmed = store.queries
    result: dict[str, Any] = {"settings": [], "database": [], "ratio": []}
    for round_number in range(rounds):
        medians = {}
        guards = [("settings", settings_guard), ("database", database_guard)]
        for name, guard in guards[:: 1 if round_number % 2 else -1]:  # each goes first in turn
            batch = [signed() for _ in range(requests)]
            medians[name] = statistics.median(await time_verify(guard, batch))
            result[name].append(medians[name])
        result["ratio"].append(medians["database"] / medians["settings"])
    result["queries_while_warm"] = store.queries - warmed
    store.close()
    return result


async def cold(url: str, key: str, lookups: int) -> dict[str, float]:
    store = DatabaseCredentials(url, [key], ttl=0, listen=False)
    await store.token(TOKEN_ID)  # the pool's first connection is not a lookup's cost
    samples = []
    clock = time.perf_counter_ns
    for _ in range(lookups):
        start = clock()
        await store.token(TOKEN_ID)
        samples.append((clock() - start) / 1000)
    store.close()
    return {"median": statistics.median(samples), "p99": percentile(samples, 0.99)}


async def flood(
    url: str, key: str, requests: int, detail: Literal["code", "opaque"]
) -> dict[str, float]:
    store = DatabaseCredentials(url, [key], listen=False)  # the default TTL, 5 s
    guard = Guard(GuardSettings(realm=REALM, error_detail=detail), credentials=store)
    batch = [signed(f"ck-unknown-{uuid.uuid4().hex}", uuid.uuid4().hex) for _ in range(requests)]
    started = time.perf_counter()
    rejected = 0
    for headers in batch:
        try:
            await guard.verify_request("GET", URL, headers)
        except Exception:  # every one is rejected: counted below
            rejected += 1
    seconds = time.perf_counter() - started
    store.close()
    assert rejected == requests
    return {"requests": requests, "queries": store.queries, "seconds": seconds}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=5000, help="per round and guard")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    key = new_key()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder, postgres_database(args.postgres) as pg:
        sqlite = f"sqlite:///{folder}/tba.db"
        for name, url in (("postgresql", pg), ("sqlite", sqlite)):
            fill(url, key)
            report[name] = {
                "warm": await warm(url, key, args.requests, args.rounds),
                "cold": await cold(url, key, args.lookups),
                "flood_code": await flood(url, key, 10_000, "code"),
                "flood_opaque": await flood(url, key, 10_000, "opaque"),
            }
    for name, figures in report.items():
        warm_figures = figures["warm"]
        print(f"== {name}")
        print(
            "warm verify, median µs per round: settings "
            + " ".join(f"{v:.1f}" for v in warm_figures["settings"])
            + " | database "
            + " ".join(f"{v:.1f}" for v in warm_figures["database"])
        )
        ratios = warm_figures["ratio"]
        print(
            f"  database/settings: median {statistics.median(ratios):.3f}, "
            f"worst round {max(ratios):.3f}; queries while warm: "
            f"{warm_figures['queries_while_warm']}"
        )
        print(
            f"cold lookup: median {figures['cold']['median']:.0f} µs, "
            f"p99 {figures['cold']['p99']:.0f} µs"
        )
        for mode in ("code", "opaque"):
            f = figures[f"flood_{mode}"]
            print(
                f"10,000 unknown consumer keys ({mode}): {f['queries']} queries "
                f"in {f['seconds']:.2f} s"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
