"""Over HTTP: a Starlette hello-world under uvicorn (one worker, h11), bare and behind each guard.

A load generator on loopback (wrk, one thread, bounded in time) sends pre-signed requests, each
with its own nonce, so every request is verified in full. Requests per second and p50/p99
latency (medians over alternating rounds) are reported as ratios to the bare app measured in
the same run, with each app's worst round. A run in which a guarded app answered anything but
200 is flagged: it would not be measuring verification.

Where the machine has two CPUs or more, the server and wrk are each held to a CPU of their own,
so that neither migrates onto the other's caches mid-run. With `--control`, a further app
spends a fixed 10 µs per request on the clock and nothing else (`http_apps.busy_10us`): its
share of bare says what that much server time costs here, so that a guard's share can be read
as a time rather than as a figure of this machine.

    python benchmarks/bench_http.py [--duration 10] [--rounds 3] [--connections 32] [--control]
        [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from competitors import Shape, signed_headers

HERE = Path(__file__).resolve().parent
VARIANTS = ("bare", "tba_guard", "oauthlib", "authlib")
CONTROL = "busy_10us"
HELLO = Shape("hello", "GET", "/hello", "", None)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpus_apart() -> tuple[set[int] | None, set[int] | None]:
    """One CPU for the server and another for wrk, or (None, None) where there are not two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    available = sorted(os.sched_getaffinity(0))
    return ({available[-1]}, {available[0]}) if len(available) >= 2 else (None, None)


def held_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that holds the child to `cpus` before it starts any thread."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(variant: str, port: int, cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", f"http_apps:{variant}", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--http", "h11", "--loop", "asyncio",
        "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=HERE, preexec_fn=held_to(cpus))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=1)
            return server
        except urllib.error.HTTPError:
            return server  # 401 from a guard: it is up
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{variant} did not start")


def latency_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = latency_ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = latency_ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def wrk_command(host: str, duration: int, connections: int, headers_file: Path) -> list[str]:
    script = str(HERE / "presigned.lua")
    return [
        *("wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script),
        *(f"{host}/hello", "--", str(headers_file)),
    ]


def measure(variant: str, duration: int, connections: int, workdir: Path) -> dict[str, float]:
    port = free_port()
    server_cpus, wrk_cpus = cpus_apart()
    server = start_server(variant, port, server_cpus)
    try:
        # Enough fresh headers for the fastest run, signed before the clock starts.
        count = (
            16000 * duration
        )  # well above what one worker serves here (about 11,000 a second bare)
        host = f"http://127.0.0.1:{port}"
        lines = [signed_headers(HELLO, host=host)["Authorization"] for _ in range(count)]
        headers_file = workdir / f"{variant}.txt"
        headers_file.write_text("\n".join(lines) + "\n")
        output = subprocess.run(
            wrk_command(host, duration, connections, headers_file),
            preexec_fn=held_to(wrk_cpus),
            check=True,
            capture_output=True,
            text=True,
            timeout=duration + 60,
        ).stdout
        return parse_wrk(output)
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(duration: int, connections: int, rounds: int, *, control: bool = False) -> dict[str, Any]:
    """Rounds alternate the apps, so that a burst of noise on a shared machine hits one round
    of each rather than all of one; each figure is the median over the rounds, and the worst
    round is the lowest of the round-by-round shares of bare."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    variants = (*VARIANTS, CONTROL) if control else VARIANTS
    samples: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for variant in variants:
                samples[variant].append(measure(variant, duration, connections, Path(tmp)))
    results: dict[str, Any] = {
        variant: {
            name: statistics.median(run[name] for run in runs)
            for name in ("rps", "p50_ms", "p99_ms")
        }
        | {"non_2xx": sum(run["non_2xx"] for run in runs), "rounds": runs}
        for variant, runs in samples.items()
    }
    bare = results["bare"]
    for figures in results.values():
        figures["rps_ratio"] = figures["rps"] / bare["rps"]
        figures["p50_ratio"] = figures["p50_ms"] / bare["p50_ms"]
        figures["p99_ratio"] = figures["p99_ms"] / bare["p99_ms"]
        figures["rps_ratio_worst"] = min(
            own["rps"] / base["rps"]
            for own, base in zip(figures["rounds"], bare["rounds"], strict=True)
        )
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| app | requests/s | × bare (worst round) | p50 ms | × bare | p99 ms | × bare | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, f in results.items():
        name = f"{variant} (control)" if variant == CONTROL else variant
        lines.append(
            f"| {name} | {f['rps']:.0f} | {f['rps_ratio']:.2f} ({f['rps_ratio_worst']:.2f})"
            f" | {f['p50_ms']:.2f}"
            f" | {f['p50_ratio']:.2f} | {f['p99_ms']:.2f} | {f['p99_ratio']:.2f}"
            f" | {f['non_2xx']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per app")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians")
    parser.add_argument("--control", action="store_true", help="add the 10 µs control app")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = run(args.duration, args.connections, args.rounds, control=args.control)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
