"""OAuth 2.0's checks, beside TBA's: each a small function named after what it checks, raising
its code. The token endpoint's (the client credentials grant with a JWT assertion, RFC 7523)
answer RFC 6749's errors; the bearer token's on protected resources answer RFC 6750's.
`oauth2_sequence.py` declares their order.

The access tokens are the guard's own JWTs, signed with its keys (`jose.py`); a verified token
is remembered until its `exp` (`AccessTokens`), so a token seen again costs a dictionary lookup,
while the integration and the mapping are looked up on every request, as TBA's token is, so
that a block or a revocation bites within the credential cache's TTL.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final, cast

from .checks import credentials_unavailable
from .errors import ErrorCode, TBAError
from .jose import (
    CompactJWS,
    JoseError,
    SigningKey,
    load_signing_keys,
    read_certificate,
    unverified_header,
)
from .jose import verified_claims as jws_claims
from .protocols import ClientStore, CredentialStore, ReplayKey, ReplayStore, serves_clients
from .records import Certificate, Integration
from .request import OAuthRequest, form_pairs
from .settings import OAUTH2_SCOPES, GuardSettings

GRANT_TYPE: Final = "client_credentials"
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: An assertion lives at most an hour from its `iat` (NetSuite's rule for M2M assertions).
ASSERTION_MAX_SECONDS: Final = 3600
ASSERTION_ALGORITHMS: Final = frozenset({"PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
_BEARER: Final = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)
_SCOPE_SEPARATORS: Final = re.compile(r"[\s,]+")
_C = ErrorCode


class AccessTokens:
    """What OAuth 2.0 needs per settings object: the guard's keys, the routes' scopes, and the
    access tokens verified so far, each remembered until its `exp` (bounded: the oldest go)."""

    __slots__ = (
        "audience",
        "cache",
        "cache_size",
        "issuer",
        "keys",
        "keys_by_id",
        "route_scopes",
        "ttl",
    )

    def __init__(self, settings: GuardSettings) -> None:
        self.keys: tuple[SigningKey, ...] = load_signing_keys(
            settings.oauth2_signing_keys, settings.oauth2_signing_algorithm
        )
        self.keys_by_id = {key.kid: key for key in self.keys}
        self.issuer = settings.oauth2_issuer
        self.audience = settings.oauth2_audience or settings.realm or "tba-guard"
        self.ttl = settings.oauth2_access_token_ttl
        # Longest prefix first, so that the first match is the one that wins.
        pairs = [entry.partition("=")[::2] for entry in settings.oauth2_route_scopes]
        self.route_scopes = sorted(pairs, key=lambda pair: -len(pair[0]))
        self.cache: dict[str, VerifiedToken] = {}
        self.cache_size = settings.oauth2_token_cache_size

    def issue(self, certificate: Certificate, scopes: tuple[str, ...], now: float) -> str:
        """A signed access token for the mapping, by the newest key."""
        issued = int(now)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"{certificate.role};{certificate.entity}",
            "scope": " ".join(scopes),
            "client_id": certificate.client_id,
            "certificate_id": certificate.certificate_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl,
            "jti": secrets.token_urlsafe(16),
        }
        return self.keys[0].sign(claims)

    def remember(self, token: str, verified: VerifiedToken) -> None:
        cache = self.cache
        if len(cache) >= self.cache_size:
            # Dictionaries keep insertion order: the first is the oldest.
            del cache[next(iter(cache))]
        cache[token] = verified

    def scope_for(self, path: str) -> str | None:
        for prefix, scope in self.route_scopes:
            if path.startswith(prefix):
                return scope
        return None


class VerifiedToken:
    """An access token whose signature and claims verified: what later requests reuse."""

    __slots__ = ("certificate_id", "client_id", "entity", "expires", "not_before", "role", "scopes")

    def __init__(self, claims: Mapping[str, Any]) -> None:
        self.client_id: str = claims["client_id"]
        self.certificate_id: str = claims["certificate_id"]
        role, _, entity = str(claims["sub"]).partition(";")
        self.role, self.entity = role, entity
        self.scopes = tuple(str(claims["scope"]).split())
        self.expires = float(claims["exp"])
        self.not_before = float(claims.get("nbf", claims["iat"]))


# --- the token endpoint: RFC 6749 section 4.4 with an RFC 7523 client assertion --------------


def check_token_request_form(request: OAuthRequest) -> dict[str, str]:
    """A POSTed form, each parameter at most once: anything else is `invalid_request`."""
    if request.method != "POST" or not request.is_form:
        raise TBAError(
            _C.INVALID_REQUEST, "expected a POST of an application/x-www-form-urlencoded form"
        )
    try:
        text = request.body.decode("ascii")
        pairs = form_pairs(text)
    except (UnicodeDecodeError, TBAError):
        raise TBAError(_C.INVALID_REQUEST, "the form is not plain URL-encoded ASCII") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TBAError(_C.INVALID_REQUEST, f"{name} given twice")
        form[name] = value
    return form


def check_grant_type(form: Mapping[str, str]) -> None:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise TBAError(_C.INVALID_REQUEST, "grant_type is missing")
    if grant_type != GRANT_TYPE:
        raise TBAError(_C.UNSUPPORTED_GRANT_TYPE, f"grant_type {grant_type[:40]!r} is not served")


def check_client_assertion_present(form: Mapping[str, str]) -> str:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise TBAError(_C.INVALID_REQUEST, f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion", "")
    if not assertion:
        raise TBAError(_C.INVALID_REQUEST, "client_assertion is missing")
    return assertion


def check_assertion_header(assertion: str) -> dict[str, Any]:
    """`typ` JWT, an asymmetric `alg` of the accepted six (never `none`, never HMAC), a `kid`."""
    try:
        header = unverified_header(assertion)
    except JoseError as exc:
        raise TBAError(_C.INVALID_CLIENT, f"client_assertion: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise TBAError(_C.INVALID_CLIENT, f"alg {str(algorithm)[:20]!r} is not accepted")
    if str(header.get("typ", "")).upper() != "JWT":
        raise TBAError(_C.INVALID_CLIENT, "typ must be JWT")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise TBAError(_C.INVALID_CLIENT, "kid (the mapping's certificate ID) is missing")
    return header


async def look_up_certificate(
    credentials: CredentialStore, certificate_id: str
) -> Certificate | None:
    """The mapping, or None; a store of one's own that is no `ClientStore` knows none."""
    if not serves_clients(credentials):
        return None
    try:
        return await cast(ClientStore, credentials).certificate(certificate_id)
    except Exception as exc:  # fails closed, as every lookup does
        raise credentials_unavailable(exc) from exc


async def look_up_client(credentials: CredentialStore, client_id: str) -> Integration | None:
    if not serves_clients(credentials):
        return None
    try:
        return await cast(ClientStore, credentials).client(client_id)
    except Exception as exc:
        raise credentials_unavailable(exc) from exc


def check_certificate_usable(
    certificate: Certificate | None, algorithm: str, now: float, *, code: ErrorCode
) -> Any:
    """The mapping exists, is active, its certificate is within its validity and its key may
    sign with `algorithm`: the key to verify with."""
    if certificate is None:
        raise TBAError(code, "no mapping has this certificate ID")
    if certificate.state != "active":
        raise TBAError(code, "the mapping's certificate is revoked")
    info = read_certificate(certificate.certificate)
    if info.problem:
        raise TBAError(code, f"the mapping's certificate has {info.problem}")
    if not info.not_before <= now <= info.not_after:
        raise TBAError(code, "the mapping's certificate is outside its validity")
    if algorithm not in info.algorithms:
        raise TBAError(code, f"alg {algorithm} does not match the certificate's {info.kind} key")
    return info.key


def check_assertion_signature(assertion: str, key: Any, algorithm: str) -> dict[str, Any]:
    try:
        return jws_claims(assertion, key, algorithm)
    except JoseError as exc:
        raise TBAError(_C.INVALID_CLIENT, f"client_assertion: {exc}") from None


def check_assertion_issuer(claims: Mapping[str, Any], certificate: Certificate) -> str:
    if claims.get("iss") != certificate.client_id:
        raise TBAError(_C.INVALID_CLIENT, "iss is not the client ID of the kid's mapping")
    return certificate.client_id


def check_client_may_use_oauth2(integration: Integration | None) -> Integration:
    if integration is None:
        raise TBAError(_C.UNAUTHORIZED_CLIENT, "no integration has this client ID")
    if integration.state != "enabled":
        raise TBAError(_C.UNAUTHORIZED_CLIENT, "the integration record is blocked")
    if "oauth2" not in integration.schemes:
        raise TBAError(_C.UNAUTHORIZED_CLIENT, "the integration allows TBA only")
    return integration


def check_assertion_audience(claims: Mapping[str, Any], endpoint: str) -> None:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if endpoint not in audiences:
        raise TBAError(_C.INVALID_GRANT, f"aud is not this token endpoint's URL, {endpoint}")


def check_assertion_lifetime(claims: Mapping[str, Any], *, now: float, tolerance: int) -> None:
    """`iat` and `exp` numbers, `exp` within an hour of `iat`, and now inside the window."""
    issued, expires = _number(claims.get("iat")), _number(claims.get("exp"))
    if issued is None or expires is None:
        raise TBAError(_C.INVALID_GRANT, "iat and exp must be numbers of epoch seconds")
    if expires - issued > ASSERTION_MAX_SECONDS:
        raise TBAError(_C.INVALID_GRANT, "exp is more than 60 minutes after iat")
    if issued > now + tolerance:
        raise TBAError(_C.INVALID_GRANT, "iat is in the future: check the client's clock")
    if expires <= now - tolerance:
        raise TBAError(_C.INVALID_GRANT, "the assertion expired")
    if "nbf" in claims:
        not_before = _number(claims["nbf"])
        if not_before is None or not_before > now + tolerance:
            raise TBAError(_C.INVALID_GRANT, "the assertion is not valid yet (nbf)")


def check_scope_requested(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """`restlets`, `rest_webservices` or both, separated by commas or spaces."""
    scope = claims.get("scope")
    if isinstance(scope, list):
        scope = " ".join(str(item) for item in scope)
    names = tuple(name for name in _SCOPE_SEPARATORS.split(str(scope or "")) if name)
    if not names:
        raise TBAError(_C.INVALID_SCOPE, "scope is missing")
    unknown = [name for name in names if name not in OAUTH2_SCOPES]
    if unknown:
        raise TBAError(_C.INVALID_SCOPE, f"unknown scope {unknown[0][:40]!r}")
    return tuple(dict.fromkeys(names))


def assertion_replay_key(claims: Mapping[str, Any], assertion: str, client_id: str) -> ReplayKey:
    """An assertion is usable once: its `jti`, or its signature when it has none."""
    jti = claims.get("jti")
    used = str(jti) if isinstance(jti, str) and jti else assertion.rpartition(".")[2]
    digest = hashlib.sha256(used.encode()).hexdigest()
    return ReplayKey(client_id, "oauth2:assertion", digest, int(claims["iat"]))


async def claim_assertion(store: ReplayStore, key: ReplayKey, ttl: int) -> None:
    try:
        fresh = await store.claim(key, ttl)
    except Exception as exc:  # fails closed, as the nonce's claim does
        raise TBAError(
            _C.REPLAY_STORE_UNAVAILABLE, f"replay store failed: {type(exc).__name__}"
        ) from exc
    if not fresh:
        raise TBAError(_C.INVALID_GRANT, "the assertion was used before (its jti or signature)")


# --- bearer tokens on protected resources: RFC 6750 --------------------------------------------


def check_bearer_header(authorization: str | None, count: int) -> str:
    """One `Authorization: Bearer <token>` header, the token in RFC 6750's characters."""
    if count != 1 or authorization is None:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "expected one Authorization header")
    match = _BEARER.fullmatch(authorization)
    if match is None:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the Bearer header holds no well-formed token")
    return match.group(1)


def check_access_token(
    token: str, tokens: AccessTokens, *, now: float, tolerance: int
) -> VerifiedToken:
    """Signed by one of the guard's keys (`kid`), for this audience and issuer, and live;
    a token verified before is taken from the cache, its `exp` checked again."""
    verified = tokens.cache.get(token)
    if verified is None:
        verified = _verify_access_token(token, tokens)
        tokens.remember(token, verified)
    return check_token_live(verified, now=now, tolerance=tolerance)


def check_token_live(verified: VerifiedToken, *, now: float, tolerance: int) -> VerifiedToken:
    """Within `nbf` and `exp`, give or take the tolerance: checked on every use, cached or not."""
    if verified.expires <= now - tolerance:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the access token expired")
    if verified.not_before > now + tolerance:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the access token is not valid yet")
    return verified


def _verify_access_token(token: str, tokens: AccessTokens) -> VerifiedToken:
    try:
        jws = CompactJWS(token)
    except JoseError as exc:
        raise TBAError(_C.INVALID_BEARER_TOKEN, f"access token: {exc}") from None
    header = jws.header
    key = tokens.keys_by_id.get(str(header.get("kid")))
    if key is None:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "kid names none of the guard's keys")
    if header.get("alg") != key.algorithm:
        raise TBAError(_C.INVALID_BEARER_TOKEN, f"alg is not {key.algorithm}, the kid's")
    try:
        claims = jws.verify(key.public, key.algorithm)
    except JoseError as exc:
        raise TBAError(_C.INVALID_BEARER_TOKEN, f"access token: {exc}") from None
    if claims.get("iss") != tokens.issuer:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "iss is not this guard's")
    if claims.get("aud") != tokens.audience:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "aud is not this service's")
    try:
        return VerifiedToken(claims)
    except (KeyError, TypeError, ValueError):
        raise TBAError(_C.INVALID_BEARER_TOKEN, "a claim is missing or malformed") from None


def check_client_still_authorized(
    integration: Integration | None, certificate: Certificate | None, now: float
) -> Integration:
    """Blocked, moved to TBA only, or its mapping revoked or expired since: refused."""
    if integration is None or integration.state != "enabled":
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the integration is unknown or blocked")
    if "oauth2" not in integration.schemes:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the integration allows TBA only")
    if certificate is None or certificate.state != "active":
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the mapping's certificate is revoked")
    if read_certificate(certificate.certificate).not_after < now:
        raise TBAError(_C.INVALID_BEARER_TOKEN, "the mapping's certificate expired")
    return integration


def check_scope_covers(path: str, scopes: tuple[str, ...], tokens: AccessTokens) -> None:
    needed = tokens.scope_for(path)
    if needed is None:
        raise TBAError(_C.INSUFFICIENT_SCOPE, "no scope covers this path (oauth2_route_scopes)")
    if needed not in scopes:
        raise TBAError(_C.INSUFFICIENT_SCOPE, f"this path needs the {needed} scope")


# --- helpers ------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (a bool is no number here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
