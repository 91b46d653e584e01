"""In-process cost of verifying one request: tba_guard against oauthlib and Authlib.

Every request carries a fresh nonce; signing happens before timing starts. Each call is timed
on its own in CPU time of the thread (thread_time_ns: a shared, busy machine preempting the
process does not count) and the report gives the median and the 10th-90th percentile
spread, in µs, with every figure also as a ratio to oauthlib's median in the same run.

    python benchmarks/bench_verify.py [--requests N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import gc
import hmac
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from competitors import (
    CONSUMER_SECRET,
    HOST,
    SHAPES,
    TOKEN_SECRET,
    AuthlibProtector,
    Shape,
    oauthlib_endpoint,
    signed_headers,
    tba_guard_instance,
)

from tba_guard import Guard
from tba_guard.core.request import parse_parameters, request_from_url
from tba_guard.core.signature import request_base_string, signing_key


def percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {"median": statistics.median(ordered) / 1000, "p10": pick(0.10), "p90": pick(0.90)}


def prepare(shape: Shape, count: int) -> list[dict[str, str]]:
    return [signed_headers(shape) for _ in range(count)]


def time_sync(call: Callable[[dict[str, str]], Any], batch: list[dict[str, str]]) -> list[int]:
    samples = []
    clock = time.thread_time_ns
    for headers in batch:
        start = clock()
        call(headers)
        samples.append(clock() - start)
    return samples


async def time_tba_guard(guard: Guard, shape: Shape, batch: list[dict[str, str]]) -> list[int]:
    url = HOST + shape.path
    body = shape.body.encode()
    samples = []
    clock = time.thread_time_ns
    verify = guard.verify
    for headers in batch:
        start = clock()
        await verify(request_from_url(shape.method, url, headers, body))
        samples.append(clock() - start)
    return samples


def hmac_floor(shape: Shape, batch: list[dict[str, str]]) -> list[int]:
    """HMAC-SHA256 of the base string, base64, constant-time compare: the irreducible part."""
    url = HOST + shape.path
    key = signing_key(CONSUMER_SECRET, TOKEN_SECRET).encode()
    prepared = []
    for headers in batch:
        request = request_from_url(shape.method, url, headers, shape.body)
        parse_parameters(request)
        prepared.append((request_base_string(request).encode(), request.oauth["oauth_signature"]))
    samples = []
    clock = time.thread_time_ns
    for base, sent in prepared:
        start = clock()
        digest = hmac.digest(key, base, "sha256")
        hmac.compare_digest(binascii.b2a_base64(digest, newline=False), sent.encode())
        samples.append(clock() - start)
    return samples


ROUNDS = 10


def measure_shape(shape: Shape, count: int) -> dict[str, Any]:
    """The four implementations take turns, ROUNDS times a share of `count` each, so that a
    machine that slows down or speeds up during the run weighs on all of them alike."""
    url = HOST + shape.path
    endpoint = oauthlib_endpoint()
    protector = AuthlibProtector()
    guard = tba_guard_instance()

    def oauthlib_call(headers: dict[str, str]) -> None:
        valid, _ = endpoint.validate_protected_resource_request(
            url, shape.method, shape.body or None, headers
        )
        assert valid, "oauthlib rejected a valid request"

    def authlib_call(headers: dict[str, str]) -> None:
        protector.validate_request(shape.method, url, shape.body or None, headers)

    timers: dict[str, Callable[[list[dict[str, str]]], list[int]]] = {
        "HMAC floor": lambda batch: hmac_floor(shape, batch),
        "tba_guard": lambda batch: asyncio.run(time_tba_guard(guard, shape, batch)),
        "oauthlib ResourceEndpoint": lambda batch: time_sync(oauthlib_call, batch),
        "Authlib ResourceProtector": lambda batch: time_sync(authlib_call, batch),
    }
    samples: dict[str, list[int]] = {name: [] for name in timers}
    share = max(1, count // ROUNDS)
    for _ in range(ROUNDS):
        for name, timer in timers.items():
            batch = prepare(shape, share)
            gc.collect()
            samples[name] += timer(batch)
    row = {name: percentiles(values) for name, values in samples.items()}
    baseline = row["oauthlib ResourceEndpoint"]["median"]
    for figures in row.values():
        figures["ratio_to_oauthlib"] = figures["median"] / baseline
    return row


def run(count: int) -> dict[str, Any]:
    return {shape.name: measure_shape(shape, count) for shape in SHAPES}


def table(results: dict[str, Any]) -> str:
    lines = [
        "| request | implementation | median µs | p10-p90 µs | × oauthlib |",
        "|---|---|---:|---:|---:|",
    ]
    for shape, row in results.items():
        for name, f in row.items():
            lines.append(
                f"| {shape} | {name} | {f['median']:.1f} | {f['p10']:.1f}-{f['p90']:.1f}"
                f" | {f['ratio_to_oauthlib']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests per shape")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = run(args.requests)
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
