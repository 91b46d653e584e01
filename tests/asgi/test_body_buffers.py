"""The bytes of bodies held for verification are capped per process, not only per request.

A real `tba-guard serve` process takes many concurrent form bodies that stall before their last
byte (each within `body_max_bytes`); past `body_buffer_max_bytes` the rest are answered 503 at
once, and the process's memory grows by about the cap, not by the sum of the bodies.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    REALM,
    TOKEN_ID,
    TOKEN_SECRET,
    oauth_header,
    read_response,
    serving,
)

FORM = "application/x-www-form-urlencoded"
CONNECTIONS = 60
BODY = 950_000  # each within body_max_bytes; 57 MB in all
BUFFER_CAP = 2_000_000

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's memory from /proc"
)


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    config = tmp_path_factory.mktemp("buffers") / "tba.toml"
    config.write_text(
        f"""
[guard]
realm = "{REALM}"
body_timeout = 3
body_max_bytes = 1000000
body_buffer_max_bytes = {BUFFER_CAP}
allowed_hosts = ["127.0.0.1"]

[[integrations]]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"

[[tokens]]
token_id = "{TOKEN_ID}"
token_secret = "{TOKEN_SECRET}"
consumer_key = "{CONSUMER_KEY}"
"""
    )
    with serving(config) as (port, process):
        yield port, process.pid


def memory_kb(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def stalled_form_post(port: int, index: int) -> bytes:
    """Headers that pass checks 1 to 9, then all of the body but its last byte."""
    url = f"http://127.0.0.1:{port}/services/rest/upload"
    header = oauth_header(
        "POST", url, nonce=f"buffers-{index:04d}-{time.time_ns()}", timestamp=int(time.time())
    )
    head = (
        f"POST /services/rest/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {header}\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: {BODY}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        with contextlib.suppress(OSError):  # refused mid-body: the answer is already waiting
            sock.sendall(head + b"a=" + b"x" * (BODY - 3))
        return read_response(sock)


def test_many_stalled_bodies_meet_503_beyond_the_process_cap(
    capped_server: tuple[int, int],
) -> None:
    port, pid = capped_server
    before = memory_kb(pid, "VmRSS")
    with ThreadPoolExecutor(max_workers=CONNECTIONS) as pool:
        answers = list(pool.map(lambda i: stalled_form_post(port, i), range(CONNECTIONS)))
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    full = statuses.count(b"503")
    timed_out = statuses.count(b"408")
    assert full + timed_out == CONNECTIONS, statuses
    assert timed_out <= BUFFER_CAP // BODY + 1  # only what fits under the cap was held
    assert all(
        b"RequestBuffersFull" in a and b"retry-after: 1" in a.lower()
        for a in answers
        if a.split(b" ", 2)[1] == b"503"
    )
    grown_mb = (memory_kb(pid, "VmHWM") - before) / 1024
    assert grown_mb < 25, f"the server grew by {grown_mb:.0f} MB for {CONNECTIONS} bodies"
