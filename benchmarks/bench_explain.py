"""How long `tba-guard explain` takes to search its catalogue of client mistakes.

A signature that no mistake reproduces is the worst case: every mistake and every pair that
applies is re-signed. Each request has 20 query parameters, signed with secrets the server does
not hold; the report gives the catalogue's size, the signing inputs tried per request and the
median and worst wall time of the search alone and of the whole `explain`.

    python benchmarks/bench_explain.py [--requests N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from oauthlib.oauth1 import Client

from tba_guard import GuardSettings, Integration, Token
from tba_guard.core.request import parse_parameters, request_from_url
from tba_guard.diagnosis import mistakes
from tba_guard.diagnosis.mistakes import PAIR_COUNT, SEARCHED, search
from tba_guard.tools.explain import explain

NOW = 1_700_000_000
HOST = "https://123456-sb1.restlets.example.com"
PATH = "/app/site/hosting/restlet.nl"
SECRETS = ("cs+bench/consumer=secret", "ts&bench token~secret")  # reserved characters: all apply

#: 20 query parameters each: plain ones, and ones that give every query mistake of the
#: catalogue something to change (repeated names, non-ASCII, '+', encoded names, spaces, empty
#: items); a GET has no body, so the body mistakes do not apply.
SHAPES = {
    "plain": "&".join(f"param{i}=value{i}" for i in range(20)),
    "every query mistake": "&".join(
        [f"param{i}=value{i}" for i in range(12)]
        + ["tag=b", "tag=a", "city=K%C3%B6ln", "q=a+b", "n%5B0%5D=x", "s=a%20b", "t=c", "t=d"]
    )
    + "&&",
}


def settings() -> GuardSettings:
    return GuardSettings(
        realm="123456_SB1",
        integrations=(Integration("ck-bench", SECRETS[0]),),
        tokens=(Token("tk-bench", SECRETS[1], "ck-bench"),),
    )


def signed(url: str, index: int) -> str:
    """An Authorization value from oauthlib, with secrets the server does not hold."""
    client = Client(
        "ck-bench",
        client_secret="cs-not-the-server-one",
        resource_owner_key="tk-bench",
        resource_owner_secret="ts-not-the-server-one",
        signature_method="HMAC-SHA256",
        realm="123456_SB1",
        nonce=f"bench-nonce-{index:012d}",
        timestamp=str(NOW),
    )
    _, headers, _ = client.sign(url)
    return str(headers["Authorization"])


class _Counting(mistakes._Trials):
    """Counts the distinct signing inputs a search re-signs."""

    last = 0

    def __init__(self, sent: bytes) -> None:
        super().__init__(sent)
        _Counting.last = 0

    def reproduces(self, s: mistakes.Signing, *, new_only: bool) -> bool:
        before = len(self.results)
        result = super().reproduces(s, new_only=new_only)
        _Counting.last += len(self.results) - before
        return result


def measure(query: str, requests: int) -> dict[str, Any]:
    url = f"{HOST}{PATH}?{query}"
    config = settings()
    search_ms, explain_ms, tried = [], [], []
    for index in range(requests):
        header = signed(url, index)
        request = request_from_url("GET", url, {"Authorization": header})
        parse_parameters(request)
        start = time.perf_counter()
        found, complete = search(
            request,
            client_uri=request.uri,
            consumer_secret=SECRETS[0],
            token_secret=SECRETS[1],
            realm=config.realm,
        )
        search_ms.append((time.perf_counter() - start) * 1000)
        assert not found, "a wrong secret must match no mistake"
        assert complete, "the search must finish within its budget"
        tried.append(_Counting.last)
        start = time.perf_counter()
        _, accepted = asyncio.run(explain(config, "GET", url, header, "", NOW))
        explain_ms.append((time.perf_counter() - start) * 1000)
        assert not accepted
    return {
        "query parameters": len(query.split("&")) - query.split("&").count(""),
        "signings tried": max(tried),
        "search median ms": statistics.median(search_ms),
        "search worst ms": max(search_ms),
        "explain median ms": statistics.median(explain_ms),
        "explain worst ms": max(explain_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    # Count what each search re-signs: the search looks `_Trials` up in its module each time.
    mistakes._Trials = _Counting  # type: ignore[misc]
    results: dict[str, Any] = {
        "mistakes searched": len(SEARCHED),
        "pairs searched": PAIR_COUNT,
        "shapes": {name: measure(query, args.requests) for name, query in SHAPES.items()},
    }
    print(f"{results['mistakes searched']} mistakes and {results['pairs searched']} pairs")
    for name, figures in results["shapes"].items():
        print(
            f"{name:>22}: {figures['query parameters']} query parameters, "
            f"{figures['signings tried']} signings tried; search median "
            f"{figures['search median ms']:.1f} ms, worst {figures['search worst ms']:.1f} ms; "
            f"whole explain median {figures['explain median ms']:.1f} ms, "
            f"worst {figures['explain worst ms']:.1f} ms"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
