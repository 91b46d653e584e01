"""What the Redis replay store costs: one claim, and requests per second of the demo service.

1. `claims`: the median (and p90/p99) µs of one `claim` with the Redis store on loopback against
   the in-process store, in the same run, each call timed on its own over distinct keys.
2. `protocols`: the median µs of one `seen` (EXISTS), one `claim` (SET NX PX) and one
   connection opening (a fresh store's first `seen`: connect, handshake, EXISTS) through
   `RedisReplayStore`, under RESP2 (the default) and RESP3 (`?protocol=3`), in alternating
   rounds: the median of the rounds' medians and the worst round's.
3. `serve`: `tba-guard serve` with 1 and 2 workers, the in-process and the Redis stores, loaded
   the way clients load it: keep-alive connections (what every HTTP client library uses), and
   beside them a new connection per request (`Connection: close`). Requests per second and
   p50/p99 latency, the ratios between setups, medians over alternating rounds and the worst
   round. The load generator is `wrk` (apt-get install wrk), bounded in time and connections,
   sending pre-signed requests that each carry a fresh nonce, read from a file, so every
   request is a full accepted verification with one replay read and one claim. Each run also
   counts the CPU seconds of the server's processes, of wrk and of Redis (INFO cpu: use a Redis
   of the benchmark's own, or other clients' work counts too), and from them the most a second
   worker can give on this machine's CPUs (the "CPU ceiling" ratio).

    python benchmarks/bench_redis.py [claims|protocols|serve|all] [--claims N] [--rounds R]
        [--calls N] [--opens N] [--duration S]
        [--connections C] [--repeats R] [--connection close|keep-alive|both] [--redis-url URL]
        [--json out.json]

`serve` refuses the in-process store with 2 workers (each worker would keep its own nonces, so
a replay to the other passes); this benchmark starts that setup anyway, through the same
command, to show what a second worker costs or gains without Redis. Never run it so.

Requests are signed here with a few lines of `hmac` (not with tba_guard): a 200 proves each one.
It measures the tba_guard that `python -m tba_guard.tools.cli` imports: the installed build, or the
source tree with `PYTHONPATH=.`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from tba_guard.core.protocols import ReplayKey, ReplayStore
from tba_guard.stores.memory import MemoryReplayStore
from tba_guard.stores.redis_replay import RedisReplayStore

CONSUMER_KEY, CONSUMER_SECRET = "ck-bench", "cs-bench-redis-secret"
TOKEN_ID, TOKEN_SECRET = "tk-bench", "ts-bench-redis-secret"
PATH, QUERY = "/app/site/hosting/restlet.nl", (("script", "1"), ("deploy", "1"))


# --- 1. one claim -----------------------------------------------------------------------------


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {
        "median_us": statistics.median(ordered) / 1000,
        "p90_us": pick(0.9),
        "p99_us": pick(0.99),
    }


async def time_claims(store: ReplayStore, count: int, tag: str) -> list[int]:
    now = int(time.time())
    keys = [ReplayKey(CONSUMER_KEY, TOKEN_ID, f"{tag}-{i:08d}", now) for i in range(count)]
    for key in keys[:200]:  # warm up: connections open, code paths hot
        await store.claim(key._replace(nonce="warm-" + key.nonce), 600)
    clock = time.perf_counter_ns
    samples = []
    for key in keys:
        start = clock()
        first = await store.claim(key, 600)
        samples.append(clock() - start)
        assert first, "a distinct key must be claimed"
    return samples


async def bench_claims(count: int, redis_url: str) -> dict[str, Any]:
    prefix = f"tba_guard_bench:{uuid.uuid4().hex[:8]}:"
    memory = MemoryReplayStore()
    store = RedisReplayStore(redis_url, prefix=prefix)
    try:
        results: dict[str, Any] = {
            "memory": summary(await time_claims(memory, count, "m")),
            "redis": summary(await time_claims(store, count, "r")),
        }
    finally:
        await store.aclose()
        client = redis.Redis.from_url(redis_url)
        for batch in _chunks(list(client.scan_iter(match=prefix + "*", count=1000)), 1000):
            client.delete(*batch)
        client.close()
    results["claims"] = count
    return results


# --- 2. the protocol: RESP2 (the stores' default) against RESP3 (`?protocol=3`) ------------


def with_protocol(url: str, protocol: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}protocol={protocol}"


async def spoken_protocol(store: RedisReplayStore) -> int:
    """The protocol Redis says this store's connection speaks (CLIENT INFO's `resp=`)."""
    info = await store.redis.call("CLIENT", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return int(re.search(r"\bresp=(\d)", text).group(1))  # type: ignore[union-attr]


async def time_calls(store: RedisReplayStore, keys: list[ReplayKey], seen: bool) -> list[int]:
    """Each `seen` (EXISTS) or `claim` (SET NX PX) timed on its own, one after the other."""
    clock = time.perf_counter_ns
    samples = []
    for key in keys:
        start = clock()
        if seen:
            await store.seen(key)
        else:
            assert await store.claim(key, 600), "a distinct key must be claimed"
        samples.append(clock() - start)
    return samples


async def time_opens(url: str, prefix: str, count: int) -> list[int]:
    """A fresh store's first `seen`: TCP connect, redis-py's handshake (CLIENT SETINFO, after
    HELLO 3 under RESP3), then the EXISTS: what a request pays on a connection opened anew."""
    key = ReplayKey(CONSUMER_KEY, TOKEN_ID, "open", int(time.time()))
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        store = RedisReplayStore(url, prefix=prefix, pool_size=1)
        start = clock()
        await store.seen(key)
        samples.append(clock() - start)
        await store.aclose()
    return samples


async def protocol_round(
    redis_url: str, protocol: int, prefix: str, tag: str, calls: int, opens: int
) -> dict[str, float]:
    """One round of one protocol: the median µs of a seen, a claim and a connection opening."""
    now = int(time.time())
    keys = [ReplayKey(CONSUMER_KEY, TOKEN_ID, f"{tag}-{i}", now) for i in range(calls)]
    url = with_protocol(redis_url, protocol)
    store = RedisReplayStore(url, prefix=prefix)
    try:
        assert await spoken_protocol(store) == protocol, "not the protocol asked for"
        await time_calls(store, [k._replace(nonce="warm-" + k.nonce) for k in keys[:200]], False)
        seen = await time_calls(store, keys, True)  # none claimed yet: each EXISTS finds nothing
        claim = await time_calls(store, keys, False)
    finally:
        await store.aclose()
    opened = await time_opens(url, prefix, opens)
    return {
        "seen_us": statistics.median(seen) / 1000,
        "claim_us": statistics.median(claim) / 1000,
        "open_us": statistics.median(opened) / 1000,
    }


async def bench_protocols(redis_url: str, rounds: int, calls: int, opens: int) -> dict[str, Any]:
    """Per protocol: the µs of one seen, one claim and one connection opening, as the median of
    alternating rounds' medians and the worst round's median; never the best."""
    prefix = f"tba_guard_bench:{uuid.uuid4().hex[:8]}:"
    protocols = (2, 3)
    per_round: dict[int, list[dict[str, float]]] = {protocol: [] for protocol in protocols}
    try:
        for index in range(rounds):
            # Alternating order, so that drift weighs on both protocols alike.
            for protocol in protocols if index % 2 == 0 else protocols[::-1]:
                tag = f"p{protocol}-r{index}"
                measured = await protocol_round(redis_url, protocol, prefix, tag, calls, opens)
                per_round[protocol].append(measured)
    finally:
        client = redis.Redis.from_url(redis_url)
        for batch in _chunks(list(client.scan_iter(match=prefix + "*", count=1000)), 1000):
            client.delete(*batch)
        client.close()
    result: dict[str, Any] = {
        "redis_py": redis.__version__,
        "options": {"rounds": rounds, "calls": calls, "opens": opens},
    }
    names = ("seen_us", "claim_us", "open_us")
    for protocol, rounds_of in per_round.items():
        result[f"resp{protocol}"] = {
            name: {
                "median": statistics.median(r[name] for r in rounds_of),
                "worst_round": max(r[name] for r in rounds_of),
            }
            for name in names
        }
    # Each round's RESP3 minus its RESP2, measured back to back: drift between rounds cancels.
    pairs = list(zip(per_round[2], per_round[3], strict=True))
    result["resp3_minus_resp2"] = {
        name: {
            "median": statistics.median(three[name] - two[name] for two, three in pairs),
            "worst_round": max(three[name] - two[name] for two, three in pairs),
        }
        for name in names
    }
    return result


def protocol_table(report: dict[str, Any]) -> str:
    lines = [
        f"redis-py {report['redis_py']}, {report['options']}",
        "| µs, median of rounds (worst round) | RESP2 | RESP3 | RESP3 − RESP2, per round |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (
        ("seen_us", "`seen` (EXISTS)"),
        ("claim_us", "`claim` (SET NX PX)"),
        ("open_us", "a fresh connection's first `seen`"),
    ):
        cells = [report[key][name] for key in ("resp2", "resp3", "resp3_minus_resp2")]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{c['median']:.1f} ({c['worst_round']:.1f})" for c in cells)
            + " |"
        )
    return "\n".join(lines)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- 3. requests per second of `tba-guard serve` ----------------------------------------------


def enc(value: str) -> str:
    return quote(value, safe="-._~")


def authorization(port: int, nonce: str, timestamp: int) -> str:
    """An HMAC-SHA256 OAuth 1.0 header for GET PATH?QUERY on 127.0.0.1:port (RFC 5849 §3.4)."""
    oauth = {
        "oauth_consumer_key": CONSUMER_KEY,
        "oauth_token": TOKEN_ID,
        "oauth_nonce": nonce,
        "oauth_timestamp": str(timestamp),
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_version": "1.0",
    }
    pairs = sorted((enc(k), enc(v)) for k, v in [*oauth.items(), *QUERY])
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join(["GET", enc(f"http://127.0.0.1:{port}{PATH}"), enc(normalized)])
    key = f"{enc(CONSUMER_SECRET)}&{enc(TOKEN_SECRET)}".encode()
    signature = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
    oauth["oauth_signature"] = signature
    return "OAuth " + ", ".join(f'{k}="{enc(v)}"' for k, v in oauth.items())


def write_headers(path: Path, port: int, count: int) -> None:
    timestamp = int(time.time())
    run = secrets.token_hex(4)
    with path.open("w") as out:
        for i in range(count):
            out.write(authorization(port, f"{run}{i:09d}", timestamp) + "\n")


WRK_SCRIPT = """
local file = nil
CONNECTION = "keep-alive"
init = function(args)
  file = assert(io.open(args[1], "r"))
  CONNECTION = args[2]
end
request = function()
  local header = file:read("*l")
  if header == nil then file:seek("set", 0); header = file:read("*l") end
  return wrk.format("GET", nil, {["Authorization"] = header, ["Connection"] = CONNECTION})
end
"""


def write_config(directory: Path, store: str, prefix: str) -> Path:
    config = directory / f"bench-{store.split(':')[0]}.toml"
    config.write_text(
        "[guard]\n"
        f'replay_store = "{store}"\nreplay_store_key_prefix = "{prefix}"\n'
        f'token_store = "{store}"\ntoken_store_key_prefix = "{prefix}flow:"\n'
        'session_secret = "benchmark-session-secret-0123456"\n'
        'exempt_paths = ["/healthz"]\n'
        f'\n[[integrations]]\nconsumer_key = "{CONSUMER_KEY}"\n'
        f'consumer_secret = "{CONSUMER_SECRET}"\n'
        f'\n[[tokens]]\ntoken_id = "{TOKEN_ID}"\ntoken_secret = "{TOKEN_SECRET}"\n'
        f'consumer_key = "{CONSUMER_KEY}"\nentity = "38"\nrole = "3"\n'
    )
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# `tba-guard serve` without its refusal of several workers on the in-process store.
UNCHECKED_SERVE = (
    "import sys, tba_guard.tools.cli as cli; cli.check_workers = lambda *_: None; "
    "sys.exit(cli.main(sys.argv[1:]))"
)


@contextmanager
def serving(config: Path, port: int, workers: int, *, unchecked: bool = False) -> Iterator[int]:
    """`tba-guard serve` in its own process group until the block ends; yields its pid."""
    program = ["-c", UNCHECKED_SERVE] if unchecked else ["-m", "tba_guard.tools.cli"]
    command = [sys.executable, *program, "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", str(workers)]
    # Unchecked also lets the flow serve per-process stores from several workers (measuring only).
    environment = {**os.environ, "TBA_GUARD_ALLOW_PER_PROCESS_STORES": "1"} if unchecked else None
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"tba-guard serve did not start ({command})") from None
                time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker finish its startup
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def check_accepted(port: int, header: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}?script=1&deploy=1", headers={"Authorization": header}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # raises on 401/503
        assert response.status == 200


def run_wrk(
    port: int, headers: Path, script: Path, seconds: int, connections: int, connection: str
) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}{PATH}?script=1&deploy=1"]
    command += ["--", str(headers), connection]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    return {
        "requests_per_s": rps,
        "requests": total,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
        "p50_ms": milliseconds(p50.group(1)) if p50 else float("nan"),
        "p99_ms": milliseconds(p99.group(1)) if p99 else float("nan"),
        "wrk_cpu_s": round(wrk_cpu, 2),
    }


def milliseconds(text: str) -> float:
    """wrk's `812.00us`, `3.10ms` or `1.02s` in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]


def process_cpu_seconds(parent: int) -> dict[int, float]:
    """CPU seconds used so far by `parent` and each process below it (Linux /proc; else
    empty): shows whether both workers took a share of the load."""
    tick = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    pending = [parent]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / tick
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                pending += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return result


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used so far (INFO cpu: its main thread and children)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bench_setup(
    directory: Path, setup: Setup, prefix: str, args: argparse.Namespace
) -> dict[str, Any]:
    script = directory / "fresh.lua"
    script.write_text(WRK_SCRIPT)
    port = free_port()
    store = args.redis_url if setup.store == "redis" else "memory"
    config = write_config(directory, store, prefix)
    headers, warm = directory / "headers.txt", directory / "warm.txt"
    # More fresh headers than a run can send: no request is a replay (the 200s prove it).
    write_headers(headers, port, args.duration * 12_000 + 20_000)
    write_headers(warm, port, 5_000)
    unchecked = setup.workers > 1 and setup.store == "memory"
    with serving(config, port, setup.workers, unchecked=unchecked) as parent:
        check_accepted(port, authorization(port, secrets.token_hex(8), int(time.time())))
        run_wrk(port, warm, script, 1, args.connections, setup.connection)
        client = redis.Redis.from_url(args.redis_url)
        redis_before, load_before = redis_cpu_seconds(client), os.getloadavg()[0]
        before = process_cpu_seconds(parent)
        result = run_wrk(port, headers, script, args.duration, args.connections, setup.connection)
        after = process_cpu_seconds(parent)
        result["redis_cpu_s"] = round(redis_cpu_seconds(client) - redis_before, 2)
        client.close()
    busy = [round(after[pid] - before.get(pid, 0.0), 2) for pid in sorted(after)]
    result["process_cpu_s"] = [cpu for cpu in busy if cpu > 0.05]
    # Every CPU second this run cost (server, load generator, Redis), per second of the run:
    # against the machine's CPU count it says whether the run was bound by the machine.
    spent = sum(result["process_cpu_s"]) + result["wrk_cpu_s"] + result["redis_cpu_s"]
    result["cpus_busy"] = round(spent / args.duration, 2)
    result["cpu_ms_per_request"] = round(1000 * spent / max(result["requests"], 1), 3)
    server = sum(result["process_cpu_s"])
    result["server_cpu_ms_per_request"] = round(1000 * server / max(result["requests"], 1), 3)
    result["load_average_before"] = round(load_before, 2)
    return result


@dataclass(frozen=True)
class Setup:
    connection: str  # "keep-alive" or "close"
    store: str  # "memory" or "redis"
    workers: int

    @property
    def name(self) -> str:
        return f"{self.connection}, {self.store}, {self.workers} worker" + "s" * (self.workers > 1)


def setups_for(connection: str) -> list[Setup]:
    connections = ["keep-alive", "close"] if connection == "both" else [connection]
    return [
        Setup(kind, store, workers)
        for kind in connections
        for store in ("memory", "redis")
        for workers in (1, 2)
    ]


def bench_serve(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("the serve benchmark needs wrk: apt-get install wrk")
    prefix = f"tba_guard_bench:{uuid.uuid4().hex[:8]}:"
    setups = setups_for(args.connection)
    runs: dict[Setup, list[dict[str, Any]]] = {setup: [] for setup in setups}
    try:
        for repeat in range(args.repeats):
            # Alternating rounds, every other one in reverse order, so that drift on a shared
            # machine weighs on every setup alike rather than on the ones measured last.
            for setup in setups if repeat % 2 == 0 else setups[::-1]:
                with tempfile.TemporaryDirectory() as scratch:
                    result = bench_setup(Path(scratch), setup, prefix, args)
                runs[setup].append(result)
                print(f"  [{repeat + 1}/{args.repeats}] {setup.name}: {result}", file=sys.stderr)
    finally:
        client = redis.Redis.from_url(args.redis_url)
        for batch in _chunks(list(client.scan_iter(match=prefix + "*", count=5000)), 5000):
            client.delete(*batch)
        client.close()
    figures = {setup: summarize(results) for setup, results in runs.items()}
    options = {"duration_s": args.duration, "connections": args.connections}
    options |= {"connection": args.connection, "repeats": args.repeats}
    return {
        "options": options,
        "setups": {setup.name: figures[setup] for setup in setups},
        "ratios": ratios(figures),
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, and the worst round: the fewest requests/s, the highest p99."""
    return {
        "requests_per_s": statistics.median(r["requests_per_s"] for r in results),
        "p50_ms": statistics.median(r["p50_ms"] for r in results),
        "p99_ms": statistics.median(r["p99_ms"] for r in results),
        "worst_requests_per_s": min(r["requests_per_s"] for r in results),
        "worst_p99_ms": max(r["p99_ms"] for r in results),
        "cpus_busy": statistics.median(r["cpus_busy"] for r in results),
        "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in results),
        "server_cpu_ms_per_request": statistics.median(
            r["server_cpu_ms_per_request"] for r in results
        ),
        "non_2xx": sum(r["non_2xx"] for r in results),
        "runs": results,
    }


def ratios(figures: dict[Setup, dict[str, Any]]) -> dict[str, float]:
    """What the issue's targets compare, from this run's medians."""
    found: dict[str, float] = {}
    for kind in ("keep-alive", "close"):
        rps = {(s.store, s.workers): f["requests_per_s"] for s, f in figures.items()
               if s.connection == kind}  # fmt: skip
        if len(rps) < 4:
            continue
        found[f"{kind}: redis 1 worker / memory 1 worker"] = rps["redis", 1] / rps["memory", 1]
        found[f"{kind}: redis 2 workers / redis 1 worker"] = rps["redis", 2] / rps["redis", 1]
        found[f"{kind}: memory 2 workers / memory 1 worker"] = rps["memory", 2] / rps["memory", 1]
        # The most two workers can give over one on this machine's CPUs, from the one-worker
        # run's CPU cost per request: one worker is bound by its own CPU, two by every CPU,
        # which the load generator and Redis share with them. Independent of other load.
        one = next(f for s, f in figures.items() if s == Setup(kind, "redis", 1))
        share = one["server_cpu_ms_per_request"] / one["cpu_ms_per_request"]
        found[f"{kind}: CPU ceiling, redis 2 workers / redis 1 worker"] = min(
            2.0, (os.cpu_count() or 1) * share
        )
    return found


def serve_table(report: dict[str, Any]) -> str:
    lines = [
        "| connections | store | workers | requests/s | p50 ms | p99 ms | worst round: req/s,"
        " p99 ms | non-2xx | CPUs busy | CPU ms/request: all, server | server CPU s per process |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for name, f in report["setups"].items():
        kind, store, workers = name.split(", ")
        cpu = "; ".join(" / ".join(f"{c:g}" for c in r["process_cpu_s"]) for r in f["runs"])
        lines.append(
            f"| {kind} | {store} | {workers.split()[0]} | {f['requests_per_s']:.0f}"
            f" | {f['p50_ms']:.2f} | {f['p99_ms']:.2f}"
            f" | {f['worst_requests_per_s']:.0f}, {f['worst_p99_ms']:.2f} | {f['non_2xx']}"
            f" | {f['cpus_busy']:.2f}"
            f" | {f['cpu_ms_per_request']:.3f}, {f['server_cpu_ms_per_request']:.3f} | {cpu} |"
        )
    lines += ["", "| ratio (medians, same run) | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in report["ratios"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ["claims", "protocols", "serve", "all"]
    parser.add_argument("what", nargs="?", choices=what, default="all")
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=21, help="protocols: alternating rounds")
    parser.add_argument("--calls", type=int, default=1000, help="protocols: seens and claims")
    parser.add_argument("--opens", type=int, default=100, help="protocols: connections opened")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setup")
    parser.add_argument(
        "--connection",
        choices=["both", "keep-alive", "close"],
        default="both",
        help="keep-alive connections as clients use them, a new connection per request "
        "(close), or both side by side",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.what in ("claims", "all"):
        report["claim"] = asyncio.run(bench_claims(args.claims, args.redis_url))
        m, r = report["claim"]["memory"], report["claim"]["redis"]
        print(f"one claim, median µs: memory {m['median_us']:.2f}, redis {r['median_us']:.2f}")
    if args.what in ("protocols", "all"):
        report["protocols"] = asyncio.run(
            bench_protocols(args.redis_url, args.rounds, args.calls, args.opens)
        )
        print(protocol_table(report["protocols"]))
    if args.what in ("serve", "all"):
        report["serve"] = bench_serve(args)
        print(serve_table(report["serve"]))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
