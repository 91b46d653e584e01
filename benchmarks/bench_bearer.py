"""OAuth 2.0 bearer tokens through the ASGI middleware, beside PyJWT and Authlib, and beside TBA.

The guard verifies its own access tokens (JWTs it signs, PS256 with an RSA 3072 key): the first
time a token is seen that is one RSA-PSS signature verification plus the claims and the
integration's and mapping's lookups; a token seen again comes from the guard's cache of verified
tokens (`AccessTokens.cache`), and the claim is that it then costs no more than a TBA GET. Five
cases, each driven exactly as `bench_middleware.py` drives the middleware (uvicorn's `http`
scope, a `receive` that hands over the body in one message, a collecting `send`, the same no-op
app behind every middleware, the app driven bare subtracted):

- `bearer, new token`: `TBAGuardMiddleware` with a token issued for this request alone (by
  `AccessTokens.issue`, before the request's timing starts), never seen by the guard before;
- `bearer, seen again`: the same middleware with tokens it verified before (cache hits);
- `TBA GET`: the same middleware (OAuth 2.0 on) with a signed OAuth 1.0 GET with a query, a
  fresh nonce each, as `bench_middleware.py`'s GET;
- `PyJWT`: a pure ASGI middleware written here around `jwt.decode(token, public_key,
  algorithms=["PS256"], audience=..., issuer=...)` and the route's scope, on the same tokens;
- `Authlib`: a pure ASGI middleware around Authlib's `ResourceProtector` with an RFC 6750
  `BearerTokenValidator` whose `authenticate_token` decodes with joserfc (Authlib's JOSE
  library) and validates the claims with its `JWTClaimsRegistry`, on the same tokens.

PyJWT and Authlib keep no cache: every request decodes and verifies the signature, so they get
the `bearer, new token` case's tokens, and their figures compare with both bearer rows. Both are
handed the public key already loaded (not a PEM to parse per request), so that if anything they
look a little faster than a user's code would. Authlib's RFC 9068 `JWTBearerTokenValidator` is not
used: it decodes with joserfc's recommended algorithms only (RS256, ES256, HS256), so it refuses
PS256, and it requires `typ: at+jwt`, where the guard's tokens say `JWT`.

The six (bare, the three tba_guard cases, PyJWT, Authlib) take turns in every round; the figure is
the median of the rounds' medians with the worst round beside it, never the best. Every request
must come back 200 with the app reached; a tampered signature and a token without the route's
scope must be refused by every verifier.

    python benchmarks/bench_bearer.py [--requests N] [--rounds R] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import jwt
from authlib.oauth2 import OAuth2Error, ResourceProtector
from authlib.oauth2.rfc6749 import JsonRequest, TokenMixin
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from bench_middleware import Cycle, check, check_refusal, noop_app, request_scope, time_batch
from competitors import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    HOST,
    REALM,
    SHAPES,
    TOKEN_ID,
    TOKEN_SECRET,
    Shape,
    signed_headers,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc import jwt as joserfc_jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.types import ASGIApp, Receive, Scope, Send

import tba_guard.asgi.middleware
from tba_guard import GuardSettings, Integration, TBAGuardMiddleware, Token
from tba_guard.core.oauth2 import AccessTokens
from tba_guard.core.records import Certificate

# The GET with a query of bench_middleware.py: a RESTlet, which needs the `restlets` scope.
GET = SHAPES[0]
CLIENT_ID = "client-benchmark-order-sync"
CERTIFICATE_ID = "cert-benchmark-rsa-3072"
ISSUER = HOST  # the access tokens' `iss`: the service's URL, as the settings advise
SCOPES = ("restlets", "rest_webservices")
# The route scopes the guard's defaults give (`oauth2_route_scopes`), for the competitors.
ROUTE_SCOPES = (
    ("/app/site/hosting/restlet.nl", "restlets"),
    ("/services/rest/", "rest_webservices"),
)
SEEN_POOL = 8  # distinct tokens in the `seen again` case, each verified once before
CASES = ("bearer, new token", "bearer, seen again", "TBA GET", "PyJWT", "Authlib")
IMPLEMENTATIONS = ("bare", *CASES)
COMPETITORS = ("PyJWT", "Authlib")


# --- the keys, the certificate and the guard --------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    """RSA 3072: the guard's keys need 3072 bits or more (and NetSuite's certificates)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate_pem(key: rsa.RSAPrivateKey) -> str:
    """The client's self-signed certificate, valid from yesterday for a year: the mapping's."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "order-sync")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class Material:
    """The guard's settings with OAuth 2.0 on (its own signing key; one integration that may use
    TBA and OAuth 2.0, its TBA token and its client-credentials mapping), and what issues and
    verifies the access tokens."""

    def __init__(self) -> None:
        self.mapping = Certificate(CERTIFICATE_ID, CLIENT_ID, "38", "3", certificate_pem(rsa_key()))
        self.settings = GuardSettings(
            realm=REALM,
            integrations=(Integration(CONSUMER_KEY, CONSUMER_SECRET, client_id=CLIENT_ID),),
            tokens=(Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),),
            certificates=(self.mapping,),
            oauth2_signing_keys=(private_pem(rsa_key()),),
            oauth2_issuer=ISSUER,
        )
        self.guard = TBAGuardMiddleware(noop_app, self.settings)
        tokens = self.guard.guard.limits.oauth2
        assert isinstance(tokens, AccessTokens), "OAuth 2.0 is off in the benchmark's settings"
        self.tokens = tokens
        self.public_key = tokens.keys[0].public

    def issue(self, scopes: tuple[str, ...] = SCOPES) -> str:
        return self.tokens.issue(self.mapping, scopes, time.time())


# --- PyJWT and Authlib as ASGI middlewares ----------------------------------------------------


def bearer_token(scope: Scope) -> str | None:
    """The token of the one `Authorization: Bearer` header, else None."""
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(found) != 1:
        return None
    word, _, rest = found[0].decode("latin-1").partition(" ")
    token = rest.strip()
    if word.lower() != "bearer" or not token:
        return None
    return token


def route_scope(path: str) -> str | None:
    """The scope the path needs: the longest prefix of ROUTE_SCOPES that matches."""
    for prefix, needed in sorted(ROUTE_SCOPES, key=lambda pair: -len(pair[0])):
        if path.startswith(prefix):
            return needed
    return None


async def refuse(send: Send, status: int) -> None:
    challenge = (
        b'Bearer error="invalid_token"' if status == 401 else b'Bearer error="insufficient_scope"'
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"www-authenticate", challenge)],
        }
    )
    await send({"type": "http.response.body", "body": b"rejected"})


class PyJWTMiddleware:
    """Bearer tokens verified by PyJWT on every request: signature, `exp`, `nbf`, `iat`, `aud`
    and `iss` (PyJWT's own checks), then the route's scope against the `scope` claim."""

    def __init__(self, app: ASGIApp, public_key: Any, audience: str, issuer: str) -> None:
        self.app = app
        self.public_key = public_key
        self.audience = audience
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            await refuse(send, 401)
            return
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["PS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError:
            await refuse(send, 401)
            return
        needed = route_scope(scope["path"])
        if needed is None or needed not in str(claims.get("scope", "")).split():
            await refuse(send, 403)
            return
        scope["user"] = claims
        await self.app(scope, receive, send)


class AccessToken(TokenMixin):  # type: ignore[misc]
    """A verified JWT's claims as Authlib's token model (`TokenMixin`)."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    def check_client(self, client: Any) -> bool:
        return bool(self.claims.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        return bool(self.claims["exp"] <= time.time())

    def is_revoked(self) -> bool:
        return False


class JWTValidator(BearerTokenValidator):  # type: ignore[misc]
    """Authlib's RFC 6750 validator: `authenticate_token` decodes the JWT with joserfc (PS256
    only) and validates its claims with joserfc's registry; `validate_token` (Authlib's) then
    checks expiry, revocation and scope."""

    def __init__(self, key: RSAKey, audience: str, issuer: str) -> None:
        super().__init__(realm=REALM)
        self.key = key
        self.claims = joserfc_jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
        )

    def authenticate_token(self, token_string: str) -> AccessToken:
        try:
            token = joserfc_jwt.decode(token_string, self.key, algorithms=["PS256"])
            self.claims.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise InvalidTokenError(
                realm=self.realm, extra_attributes=self.extra_attributes
            ) from exc
        return AccessToken(token.claims)


class AuthlibMiddleware:
    """Authlib's `ResourceProtector` in front of an ASGI app, as its Flask integration drives it:
    a `JsonRequest` from the request (title-cased headers: Authlib reads `Authorization` from a
    plain dict), `validate_request` with the route's scope, its error's status if refused."""

    def __init__(self, app: ASGIApp, public_key: Any, audience: str, issuer: str) -> None:
        self.app = app
        pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.protector = ResourceProtector()
        self.protector.register_token_validator(
            JWTValidator(RSAKey.import_key(pem), audience, issuer)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("Host") or "{}:{}".format(*scope["server"])
        url = f"{scope['scheme']}://{host}{scope['raw_path'].decode('latin-1')}"
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        needed = route_scope(scope["path"])
        if needed is None:
            await refuse(send, 403)
            return
        try:
            token = self.protector.validate_request(
                [needed], JsonRequest(scope["method"], url, headers)
            )
        except OAuth2Error as error:
            await refuse(send, error.status_code or 401)
            return
        scope["user"] = token
        await self.app(scope, receive, send)


# --- measurement ------------------------------------------------------------------------------

Batch = list[tuple[Scope, Cycle]]


def bearer_batch(tokens: list[str]) -> Batch:
    return [
        (request_scope(GET, {"Authorization": f"Bearer {token}"}), Cycle(b"")) for token in tokens
    ]


def tba_batch(count: int) -> Batch:
    return [(request_scope(GET, signed_headers(GET)), Cycle(b"")) for _ in range(count)]


def tampered(token: str) -> str:
    """The token with one character in the middle of its signature changed."""
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "B" if signature[middle] == "A" else "A"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


async def check_bearer_refusals(name: str, app: ASGIApp, material: Material) -> None:
    """A tampered signature is refused, and so is a valid token without the route's scope
    (`rest_webservices` only, on a RESTlet): a verifier that lets everything through, or checks
    no scope, must not look fast."""
    for token, what in (
        (tampered(material.issue()), "a tampered signature"),
        (material.issue(("rest_webservices",)), "a token without the restlets scope"),
    ):
        [(scope, cycle)] = bearer_batch([token])
        await app(scope, cycle.receive, cycle.send)
        status, _ = cycle.response()
        assert status in (401, 403), f"{name} answered {status} to {what}"


class Case:
    """One row: the app it drives and how it gets a round's requests."""

    def __init__(self, app: ASGIApp, prepare: Callable[[int], Batch], shape: Shape = GET) -> None:
        self.app = app
        self.prepare = prepare
        self.shape = shape


async def measure(count: int, rounds: int) -> dict[str, Any]:
    material = Material()
    tokens = material.tokens
    guard = material.guard
    fresh: list[str] = []  # this round's new tokens: the guard's, then PyJWT's and Authlib's

    def new_tokens(share: int) -> Batch:
        fresh[:] = [material.issue() for _ in range(share)]
        assert not any(token in tokens.cache for token in fresh)
        return bearer_batch(fresh)

    seen = [material.issue() for _ in range(SEEN_POOL)]

    async def see(pool: list[str]) -> None:
        """Through the guard once, untimed, each token of the pool that is not in its cache
        (before the first round; again only if the new tokens pushed one out of the cache)."""
        for token in pool:
            if token not in tokens.cache:
                [(scope, cycle)] = bearer_batch([token])
                await guard(scope, cycle.receive, cycle.send)
                assert cycle.response()[0] == 200, "the guard refused one of its own tokens"
        assert all(token in tokens.cache for token in pool)

    def seen_tokens(share: int) -> Batch:
        return bearer_batch([seen[index % SEEN_POOL] for index in range(share)])

    def same_tokens(share: int) -> Batch:
        return bearer_batch(fresh[:share])

    audience, issuer = tokens.audience, tokens.issuer
    cases: dict[str, Case] = {
        "bare": Case(noop_app, tba_batch),
        "bearer, new token": Case(guard, new_tokens),
        "bearer, seen again": Case(guard, seen_tokens),
        "TBA GET": Case(guard, tba_batch),
        "PyJWT": Case(
            PyJWTMiddleware(noop_app, material.public_key, audience, issuer), same_tokens
        ),
        "Authlib": Case(
            AuthlibMiddleware(noop_app, material.public_key, audience, issuer), same_tokens
        ),
    }
    share = max(1, count // rounds)
    # Warm-up: first-call caches, imports, the event loop; the seen tokens enter the cache here.
    for name, case in cases.items():
        if name == "bearer, seen again":
            await see(seen)
        batch = case.prepare(min(share, 50))
        await time_batch(case.app, batch)
        check(name, case.shape, batch)
    for name in ("bearer, new token", "PyJWT", "Authlib"):
        await check_bearer_refusals(name, cases[name].app, material)
    await check_refusal("TBA GET", guard, GET)

    medians: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            if name == "bearer, seen again":
                await see(seen)
            batch = case.prepare(share)
            gc.collect()
            samples = await time_batch(case.app, batch)
            check(name, case.shape, batch)
            medians[name].append(statistics.median(samples) / 1000)
        assert all(token in tokens.cache for token in fresh), "the guard cached no new token"

    bare = medians["bare"]
    row: dict[str, Any] = {"bare": {"median_us": statistics.median(bare), "worst_us": max(bare)}}
    net: dict[str, list[float]] = {}
    for name in CASES:
        net[name] = [max(0.0, m - b) for m, b in zip(medians[name], bare, strict=True)]
        row[name] = {
            "median_us": statistics.median(net[name]),
            "worst_us": max(net[name]),
            "rounds_us": net[name],
        }

    def ratio(over: str, under: str) -> dict[str, float]:
        # Per round, then the median and the worst (highest) of the rounds' ratios.
        ratios = [o / u if u else float("inf") for o, u in zip(net[over], net[under], strict=True)]
        return {"median": statistics.median(ratios), "worst": max(ratios)}

    for name in CASES:
        for other in COMPETITORS:
            row[name][f"/ {other}"] = ratio(name, other)
    row["seen again / TBA GET"] = ratio("bearer, seen again", "TBA GET")
    return row


def build() -> str:
    compiled = not (tba_guard.asgi.middleware.__file__ or "").endswith(".py")
    return "compiled" if compiled else "pure Python"


def run(count: int = 2000, rounds: int = 5) -> dict[str, Any]:
    results = asyncio.run(measure(count, rounds))
    results["_run"] = {
        "build": build(),
        "tba_guard": tba_guard.__file__,
        "requests": count,
        "rounds": rounds,
        "pyjwt": jwt.__version__,
    }
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| case | µs per request (worst round) | / PyJWT (worst round) | / Authlib (worst round) |",
        "|---|---:|---:|---:|",
    ]
    for name in CASES:
        figures = results[name]
        cells = [f"{figures['median_us']:.1f} ({figures['worst_us']:.1f})"]
        for other in COMPETITORS:
            ratio = figures[f"/ {other}"]
            cells.append(f"{ratio['median']:.3f} ({ratio['worst']:.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seen = results["seen again / TBA GET"]
    lines.append("")
    lines.append(
        f"bearer, seen again / TBA GET: {seen['median']:.3f} (worst round {seen['worst']:.3f});"
        f" bare app {results['bare']['median_us']:.1f} µs (worst round"
        f" {results['bare']['worst_us']:.1f})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per case over all rounds"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = run(args.requests, args.rounds)
    run_info = results["_run"]
    print(
        f"tba_guard {run_info['build']} ({run_info['tba_guard']}); {run_info['requests']} requests"
        f" per case over {run_info['rounds']} rounds; PS256, RSA 3072; µs per request minus"
        " bare, median of the round medians (worst round)"
    )
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
