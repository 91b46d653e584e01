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

`allocations(shape, variant)` (bench_server.py's allocations column) runs the same server without
the cache simulation on one of bench_middleware's request shapes and counts, from callgrind's
call graph, the calls to CPython's object allocator and to libc's malloc family per request:

    python benchmarks/callgrind_http.py --allocations [--requests 200]
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
from collections import Counter
from pathlib import Path

from bench_http import HELLO, VARIANTS, free_port
from competitors import Shape, signed_headers

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


# --- allocations per request ------------------------------------------------------------------

#: CPython's object allocator (pymalloc), and libc's allocator below it and below PyMem_Raw*.
PYTHON_ALLOCATORS = frozenset({"_PyObject_Malloc", "_PyObject_Calloc", "_PyObject_Realloc"})
LIBC_ALLOCATORS = {
    "malloc": "malloc",
    "__libc_malloc": "malloc",
    "calloc": "calloc",
    "__libc_calloc": "calloc",
    "realloc": "realloc",
    "__libc_realloc": "realloc",
}


def call_counts(text: str) -> Counter[tuple[str, str]]:
    """Calls by (caller, callee) from a callgrind output file's `calls=` lines.

    Names are compressed: the first `fn=(id) name` or `cfn=(id) name` defines an id, which later
    lines give alone as `(id)`; `fn` and `cfn` share one table."""
    names: dict[str, str] = {}
    counts: Counter[tuple[str, str]] = Counter()
    caller = callee = ""

    def name(spec: str) -> str:
        spec = spec.strip()
        if spec.startswith("("):
            ident, _, rest = spec.partition(")")
            ident += ")"
            if rest.strip():
                names[ident] = rest.strip()
            return names.get(ident, ident)
        return spec

    for line in text.splitlines():
        if line.startswith("fn="):
            caller = name(line[3:])
        elif line.startswith("cfn="):
            callee = name(line[4:])
        elif line.startswith("calls="):
            counts[(caller, callee)] += int(line[6:].split()[0])
    return counts


def allocation_calls(counts: Counter[tuple[str, str]]) -> int:
    """Calls into the object allocator, plus libc allocations not made by it (pymalloc hands
    large requests to malloc: counted once, as the object allocation)."""
    total = 0
    for (caller, callee), n in counts.items():
        libc = callee in LIBC_ALLOCATORS and caller not in PYTHON_ALLOCATORS
        if callee in PYTHON_ALLOCATORS or libc:
            total += n
    return total


def dump_totals(text: str) -> dict[str, int]:
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M)
    assert events, text[-2000:]
    assert totals, text[-2000:]
    return dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))


def send_shape(connection: http.client.HTTPConnection, shape: Shape, host: str, count: int) -> None:
    """`count` freshly signed requests of `shape`, one after another, each answered 200."""
    body = shape.body.encode() or None
    for headers in [signed_headers(shape, host=host) for _ in range(count)]:
        connection.request(shape.method, shape.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, (shape.name, response.status)


def allocations(
    shape: Shape, variant: str, requests: int = 200, warm: int = WARM
) -> dict[str, float]:
    """Allocations and instructions per request of `variant` (an http_apps factory) serving
    `shape` under uvicorn h11: callgrind (no cache simulation) is told to dump after `warm`
    requests and again after `requests` more, and the second dump holds only those (a dump
    zeroes the counters). The event loop's 0.1 s ticks between requests fall in it too."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
            *(sys.executable, "-m", "uvicorn", f"http_apps:{variant}", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--http", "h11", "--loop", "asyncio"),
            *("--no-access-log", "--log-level", "warning"),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        server = subprocess.Popen(
            command, cwd=HERE, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        try:
            connection = connect(f"127.0.0.1:{port}", deadline=time.monotonic() + 180)
            host = f"http://127.0.0.1:{port}"
            send_shape(connection, shape, host, warm)
            dump(server.pid, Path(f"{out}.1"))
            send_shape(connection, shape, host, requests)
            dump(server.pid, Path(f"{out}.2"))
            connection.close()
            text = Path(f"{out}.2").read_text()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=300)
    return {
        "allocations": allocation_calls(call_counts(text)) / requests,
        "Ir": dump_totals(text)["Ir"] / requests,
    }


def dump(pid: int, expected: Path) -> None:
    """Ask callgrind for a dump, and wait until the file is written whole."""
    subprocess.run(
        ["callgrind_control", "--dump", str(pid)], check=True, capture_output=True, timeout=120
    )
    deadline = time.monotonic() + 120
    while not (expected.exists() and "totals:" in expected.read_text()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"callgrind wrote no {expected}")
        time.sleep(0.2)


def allocations_table(counts: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| request | allocations, bare | tba_guard | added | instructions, bare | added |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, pair in counts.items():
        bare, guard = pair["bare"], pair["tba_guard"]
        lines.append(
            f"| {shape} | {bare['allocations']:,.0f} | {guard['allocations']:,.0f}"
            f" | {guard['allocations'] - bare['allocations']:,.0f} | {bare['Ir']:,.0f}"
            f" | {guard['Ir'] - bare['Ir']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--competitors", action="store_true", help="oauthlib and Authlib too")
    parser.add_argument(
        "--allocations", action="store_true", help="allocations per request, each shape"
    )
    args = parser.parse_args()
    if args.allocations:
        from bench_middleware import MIDDLEWARE_SHAPES

        print(
            allocations_table(
                {
                    shape.name: {v: allocations(shape, v, args.requests) for v in VARIANTS[:2]}
                    for shape in MIDDLEWARE_SHAPES
                }
            )
        )
        return
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
