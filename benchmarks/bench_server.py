"""The guard's cost in the server, beside its cost in the loop (bench_middleware.py).

bench_middleware.py times the guard driven in one event loop; over HTTP the same work costs
more (cold caches, the kernel's wake-ups). Here each of bench_middleware's request shapes (GET
with a query, form POST, JSON POST with `oauth_body_hash`) is sent by wrk (presigned.lua: every
request the next pre-signed header, with the shape's method, path, body and Content-Type) to
uvicorn h11, uvicorn httptools and granian (ASGI, one worker, one runtime thread), serving
http_apps' bare app, the app behind tba_guard and the 10 µs control. The server is held to one
CPU (its children inherit it) and wrk to the other. For each (server, shape, variant):

- requests/s from wrk, and the server's CPU per request: utime + stime of the server process and
  every process below it (/proc/<pid>/stat) over the measured run, after a warm-up run with other
  headers (a nonce is accepted once), divided by the requests wrk completed;
- the added server CPU µs per request (variant minus bare), the share of bare requests/s (median,
  worst round), and for tba_guard the ratio of its added CPU to its in-loop µs. The control's
  added CPU and share say what that much server time costs here, so a guard's share reads as time;
- for uvicorn h11, allocations and instructions per request from callgrind (callgrind_http.py).

Every run must answer all 2xx; a run with any other answer is flagged. `--workers-check` runs
`tba-guard serve --workers 1` and `2` (Redis stores) on the GET, keep-alive and a new
connection per request, and reports the CPU per request of all workers and the requests each
worker served (counted exactly by http_apps.counted). Only short runs on a shared machine.

    python benchmarks/bench_server.py [--duration S] [--rounds R] [--servers h11,httptools,granian]
        [--shapes "GET query,POST form,POST JSON body hash"] [--json F] [--workers-check]
        [--allocations] [--perf DIR] [--count-calls]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import bench_middleware
import callgrind_http
from bench_http import cpus_apart, free_port, held_to, latency_ms
from bench_middleware import MIDDLEWARE_SHAPES
from bench_redis import process_cpu_seconds
from competitors import CONSUMER_KEY, CONSUMER_SECRET, REALM, TOKEN_ID, TOKEN_SECRET, Shape
from http_apps import COUNT_ENV, PROFILE_ENV

HERE = Path(__file__).resolve().parent
SERVERS = ("h11", "httptools", "granian")
CONTROL = "busy_10us"
VARIANTS = ("bare", "tba_guard", CONTROL)
SHAPES = {shape.name: shape for shape in MIDDLEWARE_SHAPES}
CONNECTIONS = 32
WARM_SECONDS = 1
# Headers signed per second of a run: above what one worker serves here (about 11,000 a second
# bare under uvicorn); a run that used them all would replay, and its non-2xx count says so.
RATE = 20_000
FORM = "application/x-www-form-urlencoded"

# --- signing, fast enough for a run's worth of headers ------------------------------------------


def enc(value: str) -> str:
    return quote(value, safe="-._~")


def headers_for(shape: Shape, host: str, timestamp: int, count: int) -> list[str]:
    """`count` headers as oauthlib's Client sends them for `shape` (HMAC-SHA256, the realm, a
    form body's parameters signed, `oauth_body_hash` when the shape asks), signed here (RFC 5849
    §3.4): competitors.signed_headers takes about 0.2 ms a header, too slow for 100,000 of them.
    The nonces are hex of one length, so they sort in one place and need no escaping: the base
    string is built once around them, and each header costs one HMAC."""
    path, _, query = shape.path.partition("?")
    marker = "NONCE"
    oauth = {
        "oauth_nonce": marker,
        "oauth_timestamp": str(timestamp),
        "oauth_version": "1.0",
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_consumer_key": CONSUMER_KEY,
        "oauth_token": TOKEN_ID,
    }
    if shape.body_hash:
        digest = hashlib.sha1(shape.body.encode()).digest()  # the extension's hash
        oauth["oauth_body_hash"] = base64.b64encode(digest).decode()
    params = [*oauth.items(), *parse_qsl(query, keep_blank_values=True)]
    if shape.content_type == FORM:
        params += parse_qsl(shape.body, keep_blank_values=True)
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params))
    base = "&".join([shape.method, enc(host + path), enc(normalized)])
    base_left, base_right = base.split(marker)
    key = f"{enc(CONSUMER_SECRET)}&{enc(TOKEN_SECRET)}".encode()
    oauth["oauth_signature"] = "SIGNATURE"
    text = f'OAuth realm="{REALM}", ' + ", ".join(f'{k}="{enc(v)}"' for k, v in oauth.items())
    left, middle, right = re.split(r"NONCE|SIGNATURE", text)
    prefix = os.urandom(6).hex()
    lines = []
    for index in range(count):
        nonce = f"{prefix}{index:010d}"
        mac = hmac.digest(key, f"{base_left}{nonce}{base_right}".encode(), "sha256")
        lines.append(f"{left}{nonce}{middle}{enc(base64.b64encode(mac).decode())}{right}")
    return lines


def write_headers(path: Path, shape: Shape, host: str, count: int) -> Path:
    path.write_text("\n".join(headers_for(shape, host, int(time.time()), count)) + "\n")
    return path


# --- servers, wrk and the CPU they use ----------------------------------------------------------


def server_command(server: str, target: str, port: int) -> list[str]:
    """One worker, one event loop: uvicorn (asyncio loop) or granian with a single-threaded
    runtime and the asyncio loop, each serving an http_apps factory."""
    if server == "granian":
        granian = str(Path(sys.executable).with_name("granian"))
        return [
            *(granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--runtime-threads", "1", "--runtime-mode", "st"),
            *("--loop", "asyncio", "--no-ws", "--factory", "--no-access-log"),
            *("--log-level", "warning", "--working-dir", str(HERE), f"http_apps:{target}"),
        ]
    return [
        *(sys.executable, "-m", "uvicorn", f"http_apps:{target}", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--http", server, "--loop", "asyncio"),
        *("--workers", "1", "--no-access-log", "--log-level", "warning"),
    ]


def wait_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # 401 from a guard: it is up
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not start")


def run_wrk(
    port: int,
    shape: Shape,
    headers: Path,
    seconds: int,
    cpus: set[int] | None,
    *,
    connection: str = "-",
) -> dict[str, Any]:
    body = headers.with_suffix(".body")
    body.write_text(shape.body)
    args = [str(headers), shape.method, shape.path, str(body) if shape.body else "-"]
    args += [shape.content_type or "-", connection]
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(HERE / "presigned.lua"), f"http://127.0.0.1:{port}{shape.path}"]
    output = subprocess.run(
        [*command, "--", *args],
        preexec_fn=held_to(cpus),
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    assert found, output
    assert rps, output
    return {
        "requests": float(found.group(1)),
        "rps": float(rps.group(1)),
        "p99_ms": latency_ms(p99.group(1)) if p99 else float("nan"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
        "socket_errors": float(sum(map(int, errors.groups()))) if errors else 0.0,
    }


@contextmanager
def serving(
    command: list[str], port: int, cpus: set[int] | None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The server in its own session until the block ends; SIGINT stops it cleanly (uvicorn
    and granian shut down, atexit runs), SIGKILL to the group if it will not."""
    process = subprocess.Popen(
        command,
        cwd=HERE,
        env=env,
        preexec_fn=held_to(cpus),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(f"http://127.0.0.1:{port}/hello", process, " ".join(command[:4]))
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- optional profiles ---------------------------------------------------------------------------

#: DSO groups of the perf breakdown, by a test on perf's DSO name.
DSO_GROUPS = (
    ("kernel", lambda dso: dso.startswith("[kernel")),
    ("mypyc module", lambda dso: "__mypyc" in dso),
    ("_speedups", lambda dso: "_speedups" in dso),
    ("libcrypto", lambda dso: "libcrypto" in dso),
    ("libpython", lambda dso: "libpython" in dso or dso.startswith("python")),
    ("libc", lambda dso: dso.startswith("libc.so") or dso.startswith("libc-")),
)


def perf_start(pid: int, out: Path) -> subprocess.Popen[bytes]:
    command = ["perf", "record", "-q", "-e", "cpu-clock", "-p", str(pid), "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(recorder: subprocess.Popen[bytes]) -> None:
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=60)


def perf_shares(data: Path) -> dict[str, float]:
    """Each DSO group's share of the recorded samples (`other` for the rest)."""
    output = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso", "-q", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shares: dict[str, float] = {}
    for line in output.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S.*)$", line)
        if match:
            dso = match.group(2).strip()
            group = next((name for name, test in DSO_GROUPS if test(dso)), "other")
            shares[group] = shares.get(group, 0.0) + float(match.group(1)) / 100
    return shares


def read_calls(path: Path) -> dict[str, float]:
    """Python calls per request by `file: function`, from http_apps.profiled's file."""
    lines = path.read_text().splitlines()
    requests = max(1, int(lines[0]))
    calls: dict[str, float] = {}
    for line in lines[1:]:
        count, file, function = line.split("\t")
        calls[f"{file}: {function}"] = int(count) / requests
    return calls


# --- one measurement -------------------------------------------------------------------------


def measure(
    server: str,
    shape: Shape,
    variant: str,
    duration: int,
    headers: tuple[Path, Path],
    port: int,
    *,
    perf: Path | None = None,
    count_calls: Path | None = None,
) -> dict[str, Any]:
    """One server started afresh (a fresh replay store, so the round's headers are new to it):
    a warm-up run, then the measured run between two reads of its processes' CPU."""
    server_cpus, wrk_cpus = cpus_apart()
    target, env = variant, None
    if count_calls is not None:
        target, env = "profiled", {**os.environ, PROFILE_ENV: f"{variant}:{count_calls}"}
    with serving(server_command(server, target, port), port, server_cpus, env) as process:
        warm, measured = headers
        warmed = run_wrk(port, shape, warm, WARM_SECONDS, wrk_cpus)
        recorder = None
        if perf is not None:
            recorder = perf_start(process.pid, perf)
            time.sleep(0.3)  # perf attached before the clock starts
        before = process_cpu_seconds(process.pid)
        result = run_wrk(port, shape, measured, duration, wrk_cpus)
        after = process_cpu_seconds(process.pid)
        if recorder is not None:
            perf_stop(recorder)
    cpu = sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)
    result["cpu_us"] = 1e6 * cpu / max(result["requests"], 1.0)
    result["non_2xx"] += warmed["non_2xx"]
    result["socket_errors"] += warmed["socket_errors"]
    if perf is not None:
        result["perf"] = {g: s * result["cpu_us"] for g, s in perf_shares(perf).items()}
    if count_calls is not None:
        result["calls"] = read_calls(count_calls)
    return result


def run(
    duration: int = 3,
    rounds: int = 3,
    servers: tuple[str, ...] = SERVERS,
    shapes: tuple[str, ...] = tuple(SHAPES),
    *,
    in_loop: dict[str, Any] | None = None,
    loop_requests: int = 2000,
    allocations: int | None = 200,
    workers: bool = True,
    perf: Path | None = None,
    count_calls: bool = False,
) -> dict[str, Any]:
    """Rounds alternate the variants within each (server, shape), so that a burst of noise hits
    one round of each; figures are medians over the rounds, the worst round the lowest share.
    `in_loop` is a bench_middleware.run result (run here, with `loop_requests`, when None)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    if in_loop is None:
        in_loop = bench_middleware.run(loop_requests, 5)
    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(rounds):
            for server in servers:
                for name in shapes:
                    shape = SHAPES[name]
                    # Signed once for the round's variants: each is a server of its own.
                    ports = {variant: free_port() for variant in VARIANTS}
                    for variant in VARIANTS:
                        samples.setdefault((server, name, variant), []).append(
                            fresh(server, shape, variant, duration, folder, ports[variant])
                        )
        # Profiles in runs of their own (h11, bare and tba_guard), outside the rounds' figures:
        # perf's sampling and, far more, sys.setprofile slow the server they watch.
        profiles: dict[tuple[str, str], dict[str, Any]] = {}
        for name in shapes if perf or count_calls else ():
            for variant in VARIANTS[:2]:
                key = f"{variant}-{name.replace(' ', '_')}"
                found = profiles.setdefault((name, variant), {})
                if perf:
                    data = perf / f"{key}.data"
                    run_ = fresh("h11", SHAPES[name], variant, duration, folder, perf=data)
                    found["perf"] = run_["perf"]
                if count_calls:
                    calls = folder / f"{key}.calls"
                    run_ = fresh("h11", SHAPES[name], variant, duration, folder, calls=calls)
                    found["calls"] = run_["calls"]
    results: dict[str, Any] = {"_run": {"duration": duration, "rounds": rounds}, "rows": []}
    for server in servers:
        for name in shapes:
            results["rows"].append(summarise(server, name, samples, in_loop))
    for name in shapes if profiles else ():
        guard, base = profiles[name, "tba_guard"], profiles[name, "bare"]
        for extra in guard:
            keys = set(guard[extra]) | set(base[extra])
            diff = {k: guard[extra].get(k, 0.0) - base[extra].get(k, 0.0) for k in keys}
            results.setdefault("profiles", {}).setdefault(name, {})[extra] = dict(
                sorted(diff.items(), key=lambda item: -abs(item[1]))
            )
    if allocations and shutil.which("valgrind") is None:
        results["allocations_error"] = "valgrind is needed: apt-get install valgrind"
    elif allocations:
        results["allocations"] = {
            name: {
                variant: callgrind_http.allocations(SHAPES[name], variant, allocations)
                for variant in VARIANTS[:2]
            }
            for name in shapes
        }
    if workers:
        try:
            results["workers"] = workers_check(duration, 1)
        except (RuntimeError, OSError) as exc:  # no Redis here: say so rather than fail the run
            results["workers"] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def summarise(
    server: str,
    name: str,
    samples: dict[tuple[str, str, str], list[dict[str, Any]]],
    in_loop: dict[str, Any],
) -> dict[str, Any]:
    bare = samples[server, name, "bare"]
    row: dict[str, Any] = {"server": server, "shape": name}
    row["bare_rps"] = statistics.median(r["rps"] for r in bare)
    row["bare_cpu_us"] = statistics.median(r["cpu_us"] for r in bare)
    row["in_loop_us"] = in_loop[name]["tba_guard"]["median_us"]
    row["non_2xx"] = sum(r["non_2xx"] + r["socket_errors"] for r in bare)
    for variant in VARIANTS[1:]:
        runs = samples[server, name, variant]
        added = [r["cpu_us"] - b["cpu_us"] for r, b in zip(runs, bare, strict=True)]
        shares = [r["rps"] / b["rps"] for r, b in zip(runs, bare, strict=True)]
        row[variant] = {
            "added_cpu_us": statistics.median(added),
            "share": statistics.median(shares),
            "share_worst": min(shares),
            "rounds": runs,
        }
        row["non_2xx"] += sum(r["non_2xx"] + r["socket_errors"] for r in runs)
    row["ratio"] = row["tba_guard"]["added_cpu_us"] / max(row["in_loop_us"], 1e-9)
    row["bare_rounds"] = bare
    return row


def fresh(
    server: str,
    shape: Shape,
    variant: str,
    duration: int,
    folder: Path,
    port: int | None = None,
    *,
    perf: Path | None = None,
    calls: Path | None = None,
) -> dict[str, Any]:
    """`measure` with headers signed now for its port (warm-up and measured run apart)."""
    port = port or free_port()
    host = f"http://127.0.0.1:{port}"
    headers = (
        write_headers(folder / "warm.txt", shape, host, RATE * WARM_SECONDS),
        write_headers(folder / "run.txt", shape, host, RATE * duration),
    )
    return measure(server, shape, variant, duration, headers, port, perf=perf, count_calls=calls)


# --- several workers: tba-guard serve ----------------------------------------------------------


def write_config(folder: Path, prefix: str) -> Path:
    """Settings for `serve --workers 2`: the Redis stores (shared by the workers), a session
    secret, the benchmark's integration and token, the realm the headers carry."""
    config = folder / "serve.toml"
    config.write_text(
        f'[guard]\nrealm = "{REALM}"\n'
        f'replay_store = "redis://127.0.0.1:6379/0"\nreplay_store_key_prefix = "{prefix}"\n'
        f'token_store = "redis://127.0.0.1:6379/0"\ntoken_store_key_prefix = "{prefix}flow:"\n'
        'session_secret = "benchmark-session-secret-0123456"\n'
        f'\n[[integrations]]\nconsumer_key = "{CONSUMER_KEY}"\n'
        f'consumer_secret = "{CONSUMER_SECRET}"\n'
        f'\n[[tokens]]\ntoken_id = "{TOKEN_ID}"\ntoken_secret = "{TOKEN_SECRET}"\n'
        f'consumer_key = "{CONSUMER_KEY}"\nentity = "38"\nrole = "3"\n'
    )
    return config


def worker_counts(parent: int, workers: int, folder: Path) -> dict[int, int]:
    """Requests served so far by each worker (http_apps.counted, on SIGUSR1). One worker is the
    serve process itself; several are its multiprocessing children (not its resource tracker)."""
    if workers == 1:
        pids = [parent]
    else:
        pids = [
            pid
            for pid in process_cpu_seconds(parent)
            if pid != parent and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
    for pid in pids:
        (folder / str(pid)).unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not all((folder / str(pid)).exists() for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError("a worker did not write its request count")
        time.sleep(0.05)
    return {pid: int((folder / str(pid)).read_text()) for pid in pids}


def serve_once(
    folder: Path, config: Path, workers: int, connection: str, duration: int
) -> dict[str, Any]:
    """`tba-guard serve --workers N` (its main, the demo app counted per worker), unpinned:
    the workers and wrk share the machine's CPUs. stdout and stderr (the audit log, at INFO:
    serve has no switch for its level) go to /dev/null."""
    port = free_port()
    counts = folder / f"counts-{workers}-{connection}"
    counts.mkdir()
    command = [sys.executable, "-c", "import http_apps; http_apps.serve_counted()"]
    command += ["serve", "--config", str(config), "--port", str(port), "--workers", str(workers)]
    shape = SHAPES["GET query"]
    host = f"http://127.0.0.1:{port}"
    warm = write_headers(folder / "serve-warm.txt", shape, host, RATE * WARM_SECONDS)
    measured = write_headers(folder / "serve-run.txt", shape, host, RATE * duration)
    env = {**os.environ, COUNT_ENV: str(counts)}
    with serving(command, port, None, env) as process:
        time.sleep(1.0 if workers > 1 else 0.2)  # every worker through its start-up
        warmed = run_wrk(port, shape, warm, WARM_SECONDS, None, connection=connection)
        served_before = worker_counts(process.pid, workers, counts)
        before = process_cpu_seconds(process.pid)
        result = run_wrk(port, shape, measured, duration, None, connection=connection)
        after = process_cpu_seconds(process.pid)
        served_after = worker_counts(process.pid, workers, counts)
    cpu = sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)
    result["cpu_us"] = 1e6 * cpu / max(result["requests"], 1.0)
    result["per_worker"] = [served_after[pid] - served_before.get(pid, 0) for pid in served_after]
    result["non_2xx"] += warmed["non_2xx"] + warmed["socket_errors"] + result["socket_errors"]
    return result


def workers_check(duration: int, rounds: int = 1) -> dict[str, Any]:
    """One and two workers, keep-alive (wrk's 32 connections) and `Connection: close`, taking
    turns; medians over the rounds."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(folder, f"bench-server-{os.urandom(4).hex()}:")
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for index in range(rounds):
            for connection in ("keep-alive", "close"):
                for workers in (1, 2):
                    round_folder = folder / f"round{index}"
                    round_folder.mkdir(exist_ok=True)
                    wire = "-" if connection == "keep-alive" else "close"
                    runs.setdefault((connection, workers), []).append(
                        serve_once(round_folder, config, workers, wire, duration)
                    )
    for (connection, workers), results in runs.items():
        spreads = []
        for result in results:
            counts = result["per_worker"]
            mean = sum(counts) / len(counts)
            spreads.append(max(abs(count / mean - 1) for count in counts) if mean else 1.0)
        found[f"{connection}, {workers}"] = {
            "connection": connection,
            "workers": workers,
            "rps": statistics.median(r["rps"] for r in results),
            "cpu_us": statistics.median(r["cpu_us"] for r in results),
            "per_worker": results[-1]["per_worker"],
            "spread": statistics.median(spreads),
            "non_2xx": sum(r["non_2xx"] for r in results),
            "rounds": results,
        }
    for connection in ("keep-alive", "close"):
        one, two = found[f"{connection}, 1"], found[f"{connection}, 2"]
        two["cpu_ratio"] = two["cpu_us"] / one["cpu_us"]
    return found


# --- tables ----------------------------------------------------------------------------------


def flag(non_2xx: float) -> str:
    return "0" if not non_2xx else f"**{non_2xx:.0f}: not measuring verification**"


def table(results: dict[str, Any]) -> str:
    allocations = results.get("allocations", {})
    lines = [
        "| server | request | in-loop µs | added server CPU µs | ratio | allocations / request"
        " (h11, callgrind) | share of bare (worst) | control: added CPU µs, share (worst)"
        " | bare req/s, CPU µs | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        guard, control = row["tba_guard"], row[CONTROL]
        pair = allocations.get(row["shape"]) if row["server"] == "h11" else None
        added = (
            f"{pair['tba_guard']['allocations'] - pair['bare']['allocations']:+,.0f}"
            f" ({pair['tba_guard']['Ir'] - pair['bare']['Ir']:+,.0f} instructions)"
            if pair
            else ""
        )
        lines.append(
            f"| {row['server']} | {row['shape']} | {row['in_loop_us']:.1f}"
            f" | {guard['added_cpu_us']:.1f} | {row['ratio']:.2f} | {added}"
            f" | {guard['share']:.2f} ({guard['share_worst']:.2f})"
            f" | {control['added_cpu_us']:.1f}, {control['share']:.2f}"
            f" ({control['share_worst']:.2f})"
            f" | {row['bare_rps']:.0f}, {row['bare_cpu_us']:.1f} | {flag(row['non_2xx'])} |"
        )
    text = "\n".join(lines)
    if "allocations_error" in results:
        text += f"\n\nAllocations not counted: {results['allocations_error']}."
    for shape, row in results.get("profiles", {}).items():
        if "perf" in row:
            text += f"\n\nperf, {shape} (h11, a run of its own), server CPU µs per request by DSO,"
            text += " tba_guard - bare: "
            text += ", ".join(f"{group} {us:+.1f}" for group, us in row["perf"].items())
        if "calls" in row:
            text += f"\n\nPython calls per request, {shape} (h11, a run of its own; compiled"
            text += " functions raise no profile events), tba_guard - bare:\n\n"
            text += "| file: function | calls |\n|---|---:|\n"
            top = [(w, n) for w, n in row["calls"].items() if abs(n) >= 0.05][:15]
            text += "\n".join(f"| {where} | {n:+.1f} |" for where, n in top)
    if "workers" in results:
        text += "\n\n" + workers_table(results["workers"])
    return text


def workers_table(found: dict[str, Any]) -> str:
    if "error" in found:
        return f"Not measured ({found['error']}): needs Redis on 127.0.0.1:6379."
    lines = [
        "| connections | workers | requests/s | server CPU µs / request (all workers)"
        " | × 1 worker | requests per worker | spread | non-2xx |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in found.values():
        ratio = f"{row['cpu_ratio']:.2f}" if "cpu_ratio" in row else ""
        lines.append(
            f"| {row['connection']} | {row['workers']} | {row['rps']:.0f} | {row['cpu_us']:.1f}"
            f" | {ratio} | {' / '.join(map(str, row['per_worker']))} | ±{row['spread']:.0%}"
            f" | {flag(row['non_2xx'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians")
    parser.add_argument("--servers", default=",".join(SERVERS), help="h11,httptools,granian")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="of bench_middleware's")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--workers-check", action="store_true", help="tba-guard serve, 1 and 2")
    parser.add_argument("--allocations", action="store_true", help="callgrind, uvicorn h11")
    parser.add_argument("--alloc-requests", type=int, default=200, help="requests counted")
    parser.add_argument("--perf", type=Path, help="perf record the h11 runs into this folder")
    parser.add_argument("--count-calls", action="store_true", help="Python calls per request")
    parser.add_argument("--loop-requests", type=int, default=2000, help="bench_middleware's")
    args = parser.parse_args()
    servers = tuple(s for s in args.servers.split(",") if s)
    shapes = tuple(s for s in args.shapes.split(",") if s)
    unknown = [s for s in servers if s not in SERVERS] + [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    if args.perf:
        args.perf.mkdir(parents=True, exist_ok=True)
    results = run(
        args.duration,
        args.rounds,
        servers,
        shapes,
        loop_requests=args.loop_requests,
        allocations=args.alloc_requests if args.allocations else None,
        workers=args.workers_check,
        perf=args.perf,
        count_calls=args.count_calls,
    )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
