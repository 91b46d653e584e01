"""Over HTTP, counted: the hello-world of bench_http.py under uvicorn (one worker, h11), bare and
behind each guard, run by valgrind's callgrind with its cache simulation.

The timed HTTP share moves by several hundredths between runs on a shared machine; these counts
do not, so two builds or two commits compare exactly. A client on loopback sends pre-signed GETs
one after another on one keep-alive connection, and each figure is the count of a run serving
`warm + requests` requests minus that of one serving `warm`, over `requests`: the server's
start-up and its first requests cancel out. Besides instructions, the counts give the L1
instruction-cache misses: between two requests the HTTP stack runs a few hundred thousand
instructions of its own, so the guard's code is fetched cold, which an in-process loop hides.
"Estimated cycles" is callgrind's own estimate (an instruction, plus 10 per L1 miss and 100 per
last-level miss); "share of bare" is bare's estimate over the app's, the model's answer to what
bench_http.py times. It leaves out branch prediction and the TLB, so it is an upper bound of
the timed share rather than a prediction of it. Needs valgrind (Debian: apt-get install
valgrind); about a minute and a half per app.

    python benchmarks/callgrind_http.py [--requests 300] [--competitors]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_http import HELLO, VARIANTS, free_port
from competitors import signed_headers

HERE = Path(__file__).resolve().parent
WARM = 50
MISSES = ("I1mr", "D1mr", "D1mw")
LAST_LEVEL_MISSES = ("ILmr", "DLmr", "DLmw")


def serve_and_count(variant: str, requests: int, out: Path) -> dict[str, int]:
    """Callgrind's totals for a server that answered `requests` signed GETs, then stopped."""
    port = free_port()
    command = [
        *("valgrind", "--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={out}"),
        *(sys.executable, "-m", "uvicorn", f"http_apps:{variant}", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--http", "h11", "--loop", "asyncio"),
        *("--no-access-log", "--log-level", "warning"),
    ]
    # One hash seed for every run: string hashing otherwise moves the count a little.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    server = subprocess.Popen(command, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True)
    try:
        connection = connect(f"127.0.0.1:{port}", deadline=time.monotonic() + 180)
        host = f"http://127.0.0.1:{port}"
        for headers in [signed_headers(HELLO, host=host) for _ in range(requests)]:
            connection.request("GET", HELLO.path, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, (variant, response.status)
        connection.close()
    finally:
        server.send_signal(signal.SIGINT)  # a clean exit, so that callgrind writes its totals
        server.communicate(timeout=300)
    text = out.read_text()
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M)
    assert events, text[-2000:]
    assert totals, text[-2000:]
    return dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))


def connect(address: str, *, deadline: float) -> http.client.HTTPConnection:
    """A connection once the server, slowed down by valgrind, listens."""
    while True:
        connection = http.client.HTTPConnection(address, timeout=120)
        try:
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def per_request(variant: str, requests: int, folder: Path) -> dict[str, float]:
    few = serve_and_count(variant, WARM, folder / f"{variant}.few")
    many = serve_and_count(variant, WARM + requests, folder / f"{variant}.many")
    counts = {event: (many[event] - few[event]) / requests for event in many}
    counts["estimated cycles"] = (
        counts["Ir"]
        + 10 * sum(counts[event] for event in MISSES)
        + 100 * sum(counts[event] for event in LAST_LEVEL_MISSES)
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--competitors", action="store_true", help="oauthlib and Authlib too")
    args = parser.parse_args()
    variants = VARIANTS if args.competitors else VARIANTS[:2]  # bare and tba_guard
    with tempfile.TemporaryDirectory() as folder:
        counts = {
            variant: per_request(variant, args.requests, Path(folder)) for variant in variants
        }
    bare = counts["bare"]
    print(
        "| app | instructions | L1i misses | L1d misses | estimated cycles | share of bare |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for variant, c in counts.items():
        print(
            f"| {variant} | {c['Ir']:,.0f} | {c['I1mr']:,.0f} | {c['D1mr'] + c['D1mw']:,.0f}"
            f" | {c['estimated cycles']:,.0f}"
            f" | {bare['estimated cycles'] / c['estimated cycles']:.3f} |"
        )


if __name__ == "__main__":
    main()
