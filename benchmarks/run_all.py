"""Every benchmark in one run, written to benchmarks/RESULTS.md with two PNG charts.

    python benchmarks/run_all.py [--quick]

In process (bench_verify.py), through the ASGI middleware (bench_middleware.py), OAuth 2.0
bearer tokens through it (bench_bearer.py), the replay store at scale (bench_replay.py), the
Redis store's claim latency (bench_redis.py claims), over HTTP (bench_http.py), and the guard's
cost in the server beside its cost in the loop (bench_server.py). Each figure
is a ratio to something measured in the same run, so the machine's speed cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bench_bearer
import bench_http
import bench_middleware
import bench_replay
import bench_server
import bench_verify
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("tba-guard", "oauthlib", "authlib", "starlette", "uvicorn", "redis")
    )
    import tba_guard.core.checks

    build = "pure Python" if (tba_guard.core.checks.__file__ or "").endswith(".py") else "compiled"
    return (
        f"- tba_guard build: {build} (the hot path compiled by mypyc unless `pure Python`; "
        "see setup.py)\n"
        f"- Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
        f"load average {load:.2f} when the run started\n"
        f"- Python {platform.python_version()}; {packages}\n"
        f"- Load generator: {wrk.strip() or 'wrk'}"
    )


def redis_claims(count: int) -> dict[str, Any] | None:
    """The Redis store's claim latency next to the in-process store's, if Redis is reachable."""
    try:
        import bench_redis

        result: dict[str, Any] = asyncio.run(
            bench_redis.bench_claims(count, "redis://127.0.0.1:6379/0")
        )
        return {name: figures for name, figures in result.items() if isinstance(figures, dict)}
    except Exception as exc:  # no Redis here: say so in the results rather than fail the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def chart_scaling(replay: dict[str, Any], path: Path) -> None:
    sizes = [int(size) for size in replay]
    rows = list(replay.values())
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, key in (
        ("tba_guard", "tba_guard MemoryReplayStore bytes/entry"),
        ("cachetools TTLCache", "cachetools TTLCache bytes/entry"),
        ("dict[str, float]", "dict[str, float] bytes/entry"),
    ):
        left.plot(sizes, [row[key] for row in rows], marker="o", label=label)
    left.axhline(150, color="grey", linestyle="--", label="target: 150 bytes")
    left.set(xscale="log", xlabel="live entries", ylabel="bytes per entry", title="Memory")
    left.legend()
    right.plot(sizes, [row["check median_us"] for row in rows], marker="o", label="median")
    right.plot(sizes, [row["check p90_us"] for row in rows], marker="o", label="p90")
    right.set(
        xscale="log",
        xlabel="live entries",
        ylabel="µs (seen + claim)",
        title="Cost per check",
        ylim=(0, None),
    )
    right.legend()
    figure.suptitle("In-process replay store at scale")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def chart_http(http: dict[str, Any], path: Path) -> None:
    names = list(http)
    figure, axis = plt.subplots(figsize=(7, 4))
    positions = range(len(names))
    axis.bar(
        [p - 0.2 for p in positions], [http[n]["rps_ratio"] for n in names], 0.4, label="req/s"
    )
    axis.bar(
        [p + 0.2 for p in positions],
        [1 / http[n]["p99_ratio"] for n in names],
        0.4,
        label="1 / p99 latency",
    )
    axis.axhline(0.85, color="grey", linestyle="--", label="target: 85 % of bare")
    axis.set_xticks(list(positions), names)
    axis.set(ylabel="× bare app (higher is better)", title="Hello-world behind each guard")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def targets(
    verify: dict[str, Any],
    middleware: dict[str, Any],
    bearer: dict[str, Any],
    replay: dict[str, Any],
    http: dict[str, Any],
) -> str:
    """Where each speed and memory target stands in this run."""
    worst_ratio = max(row["tba_guard"]["ratio_to_oauthlib"] for row in verify.values())
    shapes = [row["tba_guard / oauthlib"] for name, row in middleware.items() if name[0] != "_"]
    worst_shape = max(ratio["median"] for ratio in shapes)
    worst_shape_round = max(ratio["worst"] for ratio in shapes)
    kept = http["tba_guard"]["rps_ratio"]
    rounds = zip(http["bare"]["rounds"], http["tba_guard"]["rounds"], strict=True)
    worst_kept = min(guarded["rps"] / bare["rps"] for bare, guarded in rounds)
    seen = bearer["seen again / TBA GET"]
    largest = max(row["tba_guard MemoryReplayStore bytes/entry"] for row in replay.values())
    costs = [row["check median_us"] for row in replay.values()]

    def verdict(met: bool) -> str:
        return "met" if met else "**not met**"

    return "\n".join(
        [
            "| target | this run | |",
            "|---|---|---|",
            f"| whole verification ≤ 0.1 × oauthlib, every shape | worst {worst_ratio:.2f} ×"
            f" | {verdict(worst_ratio <= 0.1)} |",
            "| through the middleware ≤ 0.1 × oauthlib, every shape"
            f" | worst shape {worst_shape:.3f} × (worst round {worst_shape_round:.3f} ×)"
            f" | {verdict(worst_shape <= 0.1)} |",
            "| a bearer token seen again costs ≤ a TBA GET (through the middleware)"
            f" | {seen['median']:.3f} × (worst round {seen['worst']:.3f} ×)"
            f" | {verdict(seen['median'] <= 1)} |",
            f"| app keeps ≥ 85 % of bare requests/s | {kept:.0%} (worst round {worst_kept:.0%})"
            f" | {verdict(kept >= 0.85)} |",
            f"| ≤ 150 bytes per live replay entry | at most {largest:.0f} bytes"
            f" | {verdict(largest <= 150)} |",
            f"| cost per check does not grow from 10^3 to 10^6 entries"
            f" | {costs[0]:.1f} → {costs[-1]:.1f} µs (median) | see chart |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    quick = args.quick
    header = machine()
    verify = bench_verify.run(500 if quick else 5000)
    middleware = bench_middleware.run(500 if quick else 5000, 5)
    bearer = bench_bearer.run(500 if quick else 5000, 5)
    replay = bench_replay.run([1_000, 10_000] if quick else [1_000, 100_000, 1_000_000])
    redis = redis_claims(1000 if quick else 20_000)
    http = bench_http.run(2 if quick else 6, 32, 1 if quick else 5, control=True)
    # About 9 minutes on 2 vCPUs: 81 server runs of 3 s, 6 callgrind pairs, the workers check.
    server = bench_server.run(
        1 if quick else 3,
        1 if quick else 3,
        in_loop=middleware,
        allocations=50 if quick else 200,
        workers=True,
    )

    chart_scaling(replay, HERE / "scaling.png")
    chart_http(http, HERE / "http.png")
    if isinstance(redis, dict) and "error" not in redis:
        redis_table = "| store | median µs | p90 µs | p99 µs |\n|---|---:|---:|---:|\n" + "\n".join(
            f"| {name} | {figures['median_us']:.1f} | {figures['p90_us']:.1f}"
            f" | {figures['p99_us']:.1f} |"
            for name, figures in redis.items()
        )
    else:
        redis_table = f"Not measured: {redis.get('error') if redis else 'no result'}."
    command = "python benchmarks/run_all.py" + (" --quick" if quick else "")
    text = f"""# Benchmark results

Produced by `{command}` (or `make bench`). Every figure is a ratio to something measured in
the same run; absolute µs depend on the machine and on what else it was doing.

{header}

## In process, per request

Whole verification of one request with a fresh nonce (tba_guard: all checks in the documented order,
in-process stores, `Guard.verify`), CPU time of each call (`thread_time_ns`).

{bench_verify.table(verify)}

## Through the middleware (ASGI, as uvicorn drives it)

`TBAGuardMiddleware`, and oauthlib and Authlib wrapped as pure ASGI middlewares, each in front of
a no-op app, driven with uvicorn's scope, `receive` (the body as one message) and `send`; µs per
request (`perf_counter_ns`) minus the same app driven bare; the median of five alternating
rounds' medians, with the worst round after it.

{bench_middleware.table(middleware)}

## OAuth 2.0 bearer tokens through the middleware

The guard's own access tokens (PS256, RSA 3072) through `TBAGuardMiddleware`, driven as above:
a token seen for the first time (issued before its request's timing starts), a token seen again
(the guard's cache of verified tokens) and a TBA GET through the same middleware, beside PyJWT's
`jwt.decode` and Authlib's `ResourceProtector` (an RFC 6750 `BearerTokenValidator` decoding with
joserfc) as pure ASGI middlewares on the same tokens, neither of which caches; µs per request
minus bare, the median of five alternating rounds' medians, with the worst round after it.

{bench_bearer.table(bearer)}

## Targets

{targets(verify, middleware, bearer, replay, http)}

## Replay store at scale

{bench_replay.table(replay)}

![scaling](scaling.png)

### Redis store: one claim on loopback, beside the in-process store

{redis_table}

## Over HTTP

uvicorn, one worker, h11; a Starlette hello-world; wrk on loopback (one thread, 32
connections), every request pre-signed with its own nonce; the server and wrk each held to a CPU
of its own where there are two; medians over five alternating rounds of 6 s, the worst round's
share in brackets. The control spends a fixed 10 µs per request on the clock and nothing else:
its share is what that much server time costs in requests per second on this machine.

{bench_http.table(http)}

![http](http.png)

## The server's cost beside the loop's

Each request shape of the middleware table above, sent by wrk (one thread, 32 connections,
pre-signed) to uvicorn h11, uvicorn httptools and granian (one worker, one event loop), the
server held to one CPU and wrk to the other, bare, behind tba_guard and behind the 10 µs control;
medians over alternating rounds. "Added server CPU" is the server processes' utime + stime
(/proc, in 10 ms ticks) per request, minus bare's; "ratio" is that over the in-loop µs above
(target ≤ 2); "share of bare" is requests/s over bare's (target ≥ 0.85 on h11, ≥ 0.80 on
granian), the worst round in brackets. The control's columns say what that much server time
costs here. Allocations (calls to CPython's object allocator and libc's malloc family) and
instructions per request, tba_guard minus bare, come from callgrind (callgrind_http.py, uvicorn
h11 only).

{bench_server.table({key: value for key, value in server.items() if key != "workers"})}

### Several workers (`tba-guard serve`, Redis stores)

The GET shape, keep-alive and a new connection per request (`Connection: close`); the server
CPU per request of all worker processes, two workers over one (target ≤ 1.1), and the requests
each worker served (exact counts; target: keep-alive spread within ±20 %). Not pinned: the
workers and wrk share the machine's CPUs.

{bench_server.workers_table(server["workers"])}
"""
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
