"""What concurrency governance costs a request, through the middleware driven as uvicorn drives
it (bench_middleware.py's scopes, channels and no-op app): governance off, slots in process, and
slots in Redis on loopback, in alternating rounds, minus the bare app.

The Redis figure also counts the round trips: Redis' own `INFO commandstats` calls of the
governance commands (EVAL to take a slot, ZREM to give it back) before and after, divided by the
requests. Use a Redis of the benchmark's own (`--redis-url`), or other clients' calls count too.

    python benchmarks/bench_governance.py [--requests N] [--rounds R] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import uuid
from typing import Any

import redis
from bench_middleware import MIDDLEWARE_SHAPES, build, check, noop_app, prepare, time_batch
from competitors import SETTINGS, Shape
from starlette.types import ASGIApp

from tba_guard import TBAGuardMiddleware

GOVERNANCE_COMMANDS = ("eval", "zrem")


def apps(redis_url: str, prefix: str) -> dict[str, ASGIApp]:
    limit = {"governance_limit": 15, "governance_key_prefix": prefix}
    return {
        "bare": noop_app,
        "off": TBAGuardMiddleware(noop_app, SETTINGS),
        "memory": TBAGuardMiddleware(noop_app, SETTINGS.replace(**limit)),
        "redis": TBAGuardMiddleware(
            noop_app, SETTINGS.replace(governance_store=redis_url, **limit)
        ),
    }


def command_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    counts = [stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in GOVERNANCE_COMMANDS]
    return sum(int(count) for count in counts)


async def measure_shape(
    shape: Shape, count: int, rounds: int, redis_url: str, client: redis.Redis
) -> dict[str, Any]:
    prefix = f"bench_governance:{uuid.uuid4().hex[:8]}:"
    variants = apps(redis_url, prefix)
    share = max(1, count // rounds)
    for name, app in variants.items():  # warm-up: connections, first-call caches
        batch = prepare(shape, min(share, 50))
        await time_batch(app, batch)
        check(name, shape, batch)
    medians: dict[str, list[float]] = {name: [] for name in variants}
    trips: list[float] = []
    for _ in range(rounds):
        for name, app in variants.items():
            batch = prepare(shape, share)
            gc.collect()
            before = command_calls(client) if name == "redis" else 0
            samples = await time_batch(app, batch)
            if name == "redis":
                trips.append((command_calls(client) - before) / share)
            check(name, shape, batch)
            medians[name].append(statistics.median(samples) / 1000)
    bare = medians["bare"]
    row: dict[str, Any] = {}
    for name in ("off", "memory", "redis"):
        net = [max(0.0, m - b) for m, b in zip(medians[name], bare, strict=True)]
        row[name] = {"median_us": statistics.median(net), "worst_us": max(net)}
    for name in ("memory", "redis"):
        added = [m - o for m, o in zip(medians[name], medians["off"], strict=True)]
        row[f"{name} added"] = {"median_us": statistics.median(added), "worst_us": max(added)}
    row["redis round trips"] = statistics.median(trips)
    return row


def run(count: int, rounds: int, redis_url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)

    async def all_shapes() -> dict[str, Any]:
        return {
            shape.name: await measure_shape(shape, count, rounds, redis_url, client)
            for shape in MIDDLEWARE_SHAPES
        }

    try:
        results = asyncio.run(all_shapes())
    finally:
        client.close()
    results["_run"] = {"build": build(), "requests": count, "rounds": rounds}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| request | governance off µs | in process µs (added) | Redis µs (added)"
        " | Redis round trips |",
        "|---|---:|---:|---:|---:|",
    ]
    for shape, row in results.items():
        if shape.startswith("_"):
            continue
        cells = [f"{row['off']['median_us']:.1f} (worst {row['off']['worst_us']:.1f})"]
        for name in ("memory", "redis"):
            added = row[f"{name} added"]
            cells.append(
                f"{row[name]['median_us']:.1f} (+{added['median_us']:.1f}, "
                f"worst +{added['worst_us']:.1f})"
            )
        cells.append(f"{row['redis round trips']:.2f}")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per shape and variant")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    results = run(args.requests, args.rounds, args.redis_url)
    info = results["_run"]
    print(
        f"tba_guard {info['build']}; {info['requests']} requests per shape and variant over"
        f" {info['rounds']} rounds; µs per request minus bare, median of the round medians"
        " (worst round); added: minus governance off"
    )
    print(table(results))


if __name__ == "__main__":
    main()
