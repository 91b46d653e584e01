"""Whether the hand-written HMAC pays: `signature.hmac_digest` (the key's padded blocks hashed
once and the states copied per request) against `hmac.new(key, digestmod=…).copy()` per request
from a cached keyed object, and against `hmac.digest`, on a base string of a usual size.

Rounds alternate between the three; the medians and the worst round are printed, never the
best. Run it on the installed build (compiled where a C compiler was there):

    python benchmarks/bench_hmac.py [--rounds 9] [--calls 100000]
"""

from __future__ import annotations

import argparse
import hmac
import statistics
import time
from collections.abc import Callable
from functools import lru_cache

from tba_guard.core import signature

KEY = "consumer-secret-0123456789abcdef&token-secret-0123456789abcdef"
BASE = (
    b"GET&https%3A%2F%2F1234567.restlets.api.netsuite.com%2Fapp%2Fsite%2Fhosting%2Frestlet.nl&"
    b"deploy%3D1%26oauth_consumer_key%3Dck%26oauth_nonce%3Dabcdefabcdef1234%26"
    b"oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D1700000000%26oauth_token%3Dtk%26"
    b"oauth_version%3D1.0%26script%3D7"
)
Digest = Callable[[str, bytes, str], bytes]


@lru_cache(maxsize=1024)
def _keyed(key: str, digest: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod=digest)


def copied(key: str, message: bytes, digest: str) -> bytes:
    """The standard library's way to key once: copy a keyed `hmac.HMAC` per message."""
    keyed = _keyed(key, digest).copy()
    keyed.update(message)
    return keyed.digest()


def keyed_each_time(key: str, message: bytes, digest: str) -> bytes:
    return hmac.digest(key.encode(), message, digest)


VARIANTS: dict[str, Digest] = {
    "hand-written (signature.hmac_digest)": signature.hmac_digest,
    "hmac.new(key).copy() per request": copied,
    "hmac.digest per request": keyed_each_time,
}


def nanoseconds_per_call(digest: Digest, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        digest(KEY, BASE, "sha256")
    return (time.perf_counter() - start) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    expected = hmac.digest(KEY.encode(), BASE, "sha256")
    assert all(digest(KEY, BASE, "sha256") == expected for digest in VARIANTS.values())
    rounds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, digest in VARIANTS.items():
            rounds[name].append(nanoseconds_per_call(digest, args.calls))
    build = "compiled" if signature.__file__.endswith(".so") else "plain Python"
    print(f"HMAC-SHA256 of a {len(BASE)}-byte base string, {build} build, ns per call:")
    print("| variant | median | worst round |\n|---|---:|---:|")
    for name, values in rounds.items():
        print(f"| {name} | {statistics.median(values):.0f} | {max(values):.0f} |")


if __name__ == "__main__":
    main()
