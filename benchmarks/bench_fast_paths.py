"""Whether each fast path of the core pays: one row per implementation, beside the plain way.

"Plain" is the simplest straightforward code for the step (the grammar parser alone, the
standard library's `quote`, `unquote`, `hmac` and `hashlib`); the others are what the guard
runs. The build is the one imported: run it on the source tree for the pure build and on the
installed package for the compiled one, where the Python twins of `core/_speedups.c` are
compiled by mypyc ("mypyc") and the C is there too ("mypyc + C"):

    PYTHONPATH=. python benchmarks/bench_fast_paths.py        # pure (from the checkout)
    cd benchmarks && python bench_fast_paths.py               # the installed, compiled build

Rounds alternate between the variants; the medians and the worst round are printed, never the
best, in ns per call.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from types import ModuleType
from urllib.parse import quote, unquote

from tba_guard.core import _native, header, signature

# What the benchmarks' clients send (competitors.py): a GET's header list and its parameters.
SIGNATURE = "51aub4S6MxeJ7LKlj7933rz9NaXZw2QMb%2F979UI6lbo%3D"
HEADER_LIST = (
    'realm="1234567", oauth_nonce="00000000000000000000", oauth_timestamp="1796624325", '
    'oauth_version="1.0", oauth_signature_method="HMAC-SHA256", '
    'oauth_consumer_key="ck-benchmark-0123456789abcdef", '
    f'oauth_token="tk-benchmark-0123456789abcdef", oauth_signature="{SIGNATURE}"'
)
OAUTH = header.parse_authorization("OAuth " + HEADER_LIST)
QUERY = [("script", "123"), ("deploy", "1"), ("id", "42")]
FORM = [("script", "123"), ("deploy", "1"), ("name", "Acme & Co"), ("qty", "3")]
URI = "http://127.0.0.1:8000/app/site/hosting/restlet.nl"
CONSUMER_SECRET = "cs-benchmark-0123456789abcdef0123456789"
TOKEN_SECRET = "ts-benchmark-0123456789abcdef0123456789"
KEY = signature.signing_key(CONSUMER_SECRET, TOKEN_SECRET)
BASE = signature.base_string("GET", URI, [*OAUTH.items(), *QUERY]).encode()
BODY = b'{"entity": {"id": "38"}, "item": {"items": [{"item": {"id": "7"}, "quantity": 3}]}}'


def encoded(text: str) -> str:
    return quote(text, safe="", errors="surrogateescape")


def plain_normalized(oauth: dict[str, str], params: list[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.3.2 through the standard library, encoded again for the base
    string: what `normalized_for_base_string` computes."""
    signed = [(n, v) for n, v in oauth.items() if n not in {"realm", "oauth_signature"}]
    pairs = sorted((encoded(name), encoded(value)) for name, value in [*signed, *params])
    return encoded("&".join(f"{name}={value}" for name, value in pairs))


@lru_cache(maxsize=1024)
def _keyed(key: str, digest: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod=digest)


def hmac_copied(key: str, message: bytes, digest: str) -> bytes:
    """The standard library's way to key once: copy a cached keyed `hmac.HMAC` per message."""
    keyed = _keyed(key, digest).copy()
    keyed.update(message)
    return keyed.digest()


_FRESH_SHA1 = hashlib.new("sha1")


def body_hash_copied(body: bytes) -> bytes:
    """signature.py's way (`_EMPTY_HASHES`): a fresh state made once, copied per body."""
    hashed = _FRESH_SHA1.copy()
    hashed.update(body)
    return hashed.digest()


@dataclass(frozen=True)
class Variant:
    fast_path: str
    name: str
    call: Callable[[], object]


def new_sha1(body: bytes) -> bytes:
    return hashlib.new("sha1", body).digest()


def plain_key(consumer_secret: str, token_secret: str) -> str:
    return f"{encoded(consumer_secret)}&{encoded(token_secret)}"


def variants(speedups: ModuleType | None) -> list[Variant]:
    """Each step's plain way first, then what the guard runs: the Python twin (pure, or compiled
    by mypyc) and, where built, the C. Every call is a `partial`, so each row pays the same
    overhead for the call itself."""
    rows = [
        Variant("header list", "plain: the grammar alone", partial(grammar, HEADER_LIST, 32)),
        Variant("header list", "Python twin", partial(_native.header_parameters, HEADER_LIST)),
    ]
    if speedups is not None:
        rows.append(Variant("header list", "C", partial(speedups.header_parameters, HEADER_LIST)))
    for shape, params in (("GET", QUERY), ("form", FORM)):
        step = f"normalized parameters, {shape}"
        rows += [
            Variant(step, "plain: quote each", partial(plain_normalized, OAUTH, params)),
            Variant(
                step, "Python twin", partial(_native.normalized_for_base_string, OAUTH, params)
            ),
        ]
        if speedups is not None:
            c_call = partial(speedups.normalized_for_base_string, OAUTH, params)
            rows.append(Variant(step, "C", c_call))
    hmac_step, sha256 = "HMAC-SHA256", "sha256"
    return [
        *rows,
        Variant("base64 escapes", "plain: unquote", partial(unquote, SIGNATURE)),
        Variant("base64 escapes", "decode_printable_escapes", partial(printable, SIGNATURE)),
        Variant(hmac_step, "plain: hmac.digest", partial(hmac.digest, KEY.encode(), BASE, sha256)),
        Variant(hmac_step, "cached hmac.new(key).copy()", partial(hmac_copied, KEY, BASE, sha256)),
        Variant(
            hmac_step, "keyed states copied", partial(signature.hmac_digest, KEY, BASE, sha256)
        ),
        Variant("body hash", "plain: hashlib.new(name, body)", partial(new_sha1, BODY)),
        Variant("body hash", "fresh state copied", partial(body_hash_copied, BODY)),
        Variant("method", "plain: quote", partial(encoded, "GET")),
        Variant("method", "percent_encode", partial(signature.percent_encode, "GET")),
        Variant("URI", "plain: quote", partial(encoded, URI)),
        Variant("URI", "cached", partial(signature._encoded_uri, URI)),
        Variant("signing key", "plain: quote both", partial(plain_key, CONSUMER, TOKEN)),
        Variant("signing key", "cached", partial(signature.signing_key, CONSUMER, TOKEN)),
    ]


grammar = header._parameters_by_grammar
printable = _native.decode_printable_escapes
CONSUMER, TOKEN = CONSUMER_SECRET, TOKEN_SECRET


def nanoseconds_per_call(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e9


def check(rows: list[Variant]) -> None:
    """Every variant of a step answers alike: the benchmark compares equals."""
    answers: dict[str, object] = {}
    for row in rows:
        answer = row.call()
        if isinstance(answer, dict):
            answer = list(answer.items())
        expected = answers.setdefault(row.fast_path, answer)
        assert answer == expected, (row.fast_path, row.name, answer, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    try:
        speedups: ModuleType | None = importlib.import_module("tba_guard.core._speedups")
    except ImportError:
        speedups = None
    compiled = not (header.__file__ or "").endswith(".py")
    rows = variants(speedups)
    check(rows)
    rounds: list[list[float]] = [[] for _ in rows]
    for _ in range(args.rounds):
        for row, values in zip(rows, rounds, strict=True):
            values.append(nanoseconds_per_call(row.call, args.calls))
    build = "compiled (mypyc" + (" + C)" if speedups else ")") if compiled else "pure"
    print(f"{build} build, ns per call; {args.rounds} alternating rounds of {args.calls:,} calls")
    print("| fast path | implementation | median | worst round |\n|---|---|---:|---:|")
    for row, values in zip(rows, rounds, strict=True):
        median, worst = statistics.median(values), max(values)
        print(f"| {row.fast_path} | {row.name} | {median:,.0f} | {worst:,.0f} |")


if __name__ == "__main__":
    main()
