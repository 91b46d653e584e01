"""Why OAuth 2.0 refused a request: the bearer token or client assertion read without verifying
(its header and claims, never the token or its signature), and each refusal's likely cause,
from the reason the check gave and what was sent. Needs the `oauth2` extra (PyJWT), as the
checks that raise these codes do."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..core.errors import ErrorCode, TBAError
from ..core.jose import JoseError, unverified_claims, unverified_header
from ..core.records import Certificate
from ..core.request import OAuthRequest, form_pairs
from ..core.settings import GuardSettings
from .causes import CAUSES, Finding

_C = ErrorCode
_BEARER: Final = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)
_SHOWN_MAX: Final = 80  # a claim is the client's text: shown short, never whole if long
#: The claims shown by value, in this order; any other only by name (it may be anything).
_SHOWN_CLAIMS: Final = ("iss", "sub", "aud", "scope", "client_id", "certificate_id")
_TIMES: Final = ("iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class Sent:
    """A JWT as the client sent it, read without verifying: its JOSE header and claims (None
    when they cannot be read, and `problem` says why). Nothing in it is trusted."""

    header: Mapping[str, Any] | None
    claims: Mapping[str, Any] | None
    problem: str = ""

    def claim(self, name: str) -> Any:
        return (self.claims or {}).get(name)

    def field(self, name: str) -> Any:
        return (self.header or {}).get(name)


def bearer_token(request: OAuthRequest) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    match = _BEARER.fullmatch(request.authorization or "")
    return match.group(1) if match else None


def token_form(request: OAuthRequest) -> dict[str, str]:
    """The token request's form as sent (the first of a repeated name); empty if unreadable."""
    try:
        pairs = form_pairs(request.body.decode("ascii"))
    except (UnicodeDecodeError, TBAError):
        return {}
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def read_sent(token: str | None) -> Sent:
    """The token's header and claims, or why they cannot be read."""
    if not token:
        return Sent(None, None, "none was sent")
    try:
        header = unverified_header(token)
    except JoseError as exc:
        return Sent(None, None, str(exc))
    try:
        claims = unverified_claims(token)
    except JoseError as exc:
        return Sent(header, None, str(exc))
    return Sent(header, claims)


# --- what was sent, as explain prints it --------------------------------------------------------


def shown(value: object) -> str:
    """A header or claim value for a line: quoted, cut short; never the token itself."""
    if value is None:
        return "none"
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def when(value: object, now: float) -> str:
    """An epoch-seconds claim as `2026-12-07T10:00:00Z, 310 s ago` (or `in 310 s`)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{shown(value)} (not a number of epoch seconds)"
    try:
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    except (OverflowError, OSError, ValueError):
        return f"{shown(value)} (out of range)"
    offset = int(value - now)
    relative = "now" if offset == 0 else f"{-offset} s ago" if offset < 0 else f"in {offset} s"
    return f"{moment}, {relative}"


def summary(sent: Sent, now: float) -> list[str]:
    """What the token says, in up to three lines: its header, its claims, its times."""
    if sent.header is None:
        return [f"cannot be read: {sent.problem}"]
    header = sent.header
    named = [f"{name} {shown(header.get(name))}" for name in ("alg", "typ", "kid")]
    others = sorted(set(header) - {"alg", "typ", "kid"})
    lines = [", ".join(named) + (f"; also {', '.join(others)}" if others else "")]
    if sent.claims is None:
        return [*lines, f"claims cannot be read: {sent.problem}"]
    claims = sent.claims
    parts = [f"{name} {shown(claims[name])}" for name in _SHOWN_CLAIMS if name in claims]
    parts.append("jti present" if claims.get("jti") else "no jti")
    rest = sorted(set(claims) - {*_SHOWN_CLAIMS, *_TIMES, "jti"})
    if rest:
        parts.append(f"other claims: {', '.join(shown(name) for name in rest)}")
    lines.append(", ".join(parts))
    times = [f"{name} {when(claims[name], now)}" for name in _TIMES if name in claims]
    lines.append("; ".join(times) if times else "no iat, nbf or exp")
    return lines


# --- the causes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What a cause's fields are read from: the refusal, the request and what it sent."""

    error: TBAError
    request: OAuthRequest
    settings: GuardSettings
    sent: Sent
    now: float
    certificate: Certificate | None

    @property
    def reason(self) -> str:
        return self.error.reason

    def offset(self, claim: str) -> int:
        value = self.sent.claim(claim)
        return int(value - self.now) if isinstance(value, int | float) else 0


#: A rule's verdict: the cause's name and the fields its texts name, or None (not this one).
_Named = tuple[str, Mapping[str, object]] | None


def _bearer_cause(c: _Context) -> _Named:
    """INVALID_BEARER_TOKEN: which of the token's checks refused it (oauth2.py's reasons)."""
    reason, sent = c.reason, c.sent
    kid = shown(sent.field("kid"))
    if reason == "the access token expired":
        return "bearer-expired", {"exp": when(sent.claim("exp"), c.now)}
    if reason == "the access token is not valid yet":
        return "bearer-not-yet-valid", _clock(c, "nbf")
    if reason == "kid names none of the guard's keys":
        return "bearer-unknown-kid", {"kid": kid}
    if reason.startswith("alg is not "):
        expected = reason.removeprefix("alg is not ").partition(",")[0]
        return "bearer-alg", {"kid": kid, "alg": shown(sent.field("alg")), "expected": expected}
    if reason.startswith("access token: ") and "signature does not verify" in reason:
        return "bearer-bad-signature", {"kid": kid}
    if reason.startswith("access token: ") or "no well-formed token" in reason:
        return "bearer-malformed", {}
    if reason == "iss is not this guard's":
        return "bearer-issuer", _compared(sent.claim("iss"), c.settings.oauth2_issuer)
    if reason == "aud is not this service's":
        settings = c.settings
        expected = settings.oauth2_audience or settings.realm or "tba-guard"
        return "bearer-audience", _compared(sent.claim("aud"), expected)
    if reason == "a claim is missing or malformed":
        return "bearer-claims", {}
    client = {"client_id": shown(sent.claim("client_id"))}
    mapping = {"kid": shown(sent.claim("certificate_id"))}
    return _by_reason(
        reason,
        {
            "the integration is unknown or blocked": ("bearer-client-blocked", client),
            "the integration allows TBA only": ("bearer-tba-only", client),
            "the mapping's certificate is revoked": ("bearer-certificate-revoked", mapping),
            "the mapping's certificate expired": ("bearer-certificate-expired", mapping),
        },
    )


def _scope_cause(c: _Context) -> _Named:
    """INSUFFICIENT_SCOPE: the route's scope (oauth2_route_scopes) against the token's."""
    path = shown(c.request.path)
    if c.reason.startswith("no scope covers this path"):
        return "scope-no-route", {"path": path}
    match = re.fullmatch(r"this path needs the (\S+) scope", c.reason)
    if match is None:
        return None
    scopes = str(c.sent.claim("scope") or "").split()
    has = ", ".join(scopes) if scopes else "none"
    return "scope-short", {"path": path, "scope": match.group(1), "scopes": has}


def _request_cause(c: _Context) -> _Named:
    """INVALID_REQUEST and UNSUPPORTED_GRANT_TYPE: the form itself."""
    reason, form = c.reason, token_form(c.request)
    if reason.startswith("expected a POST"):
        return "token-not-form", {}
    if reason.startswith("the form is not plain"):
        return "token-form-unreadable", {}
    if reason == "grant_type is missing":
        return "grant-type-missing", {}
    if reason.startswith("grant_type ") and reason.endswith("is not served"):
        return "grant-type-other", {"sent": shown(form.get("grant_type"))}
    if reason.startswith("client_assertion_type must be"):
        return "assertion-type", {"sent": shown(form.get("client_assertion_type"))}
    return None


def _client_cause(c: _Context) -> _Named:
    """INVALID_CLIENT: the assertion's header, its mapping and its signature."""
    reason, sent = c.reason, c.sent
    kid, alg = shown(sent.field("kid")), sent.field("alg")
    if reason.startswith("alg ") and reason.endswith("is not accepted"):
        name = str(alg or "none")
        if name.lower() == "none":
            return "assertion-alg-none", {}
        kind = "assertion-alg-hmac" if name.upper().startswith("HS") else "assertion-alg-other"
        return kind, {"alg": shown(alg)}
    if reason.startswith("alg ") and "does not match" in reason:
        return "assertion-alg-key", {"alg": shown(alg), "kid": kid}
    if reason == "client_assertion: signature does not verify":
        return "assertion-bad-signature", {"kid": kid}
    if reason.startswith("client_assertion: "):
        return "assertion-malformed", {}
    if reason == "typ must be JWT":
        return "assertion-typ", {"sent": shown(sent.field("typ"))}
    if reason.startswith("the mapping's certificate has "):
        problem = reason.removeprefix("the mapping's certificate has ")
        return "mapping-certificate-unusable", {"kid": kid, "sent": problem}
    if reason == "iss is not the client ID of the kid's mapping":
        expected = c.certificate.client_id if c.certificate else "the mapping's client ID"
        fields = _compared(sent.claim("iss"), expected)
        return "assertion-issuer", {**fields, "kid": kid}
    return _by_reason(
        reason,
        {
            "kid (the mapping's certificate ID) is missing": ("assertion-kid-missing", {}),
            "no mapping has this certificate ID": ("assertion-unknown-kid", {"kid": kid}),
            "the mapping's certificate is revoked": ("mapping-revoked", {"kid": kid}),
            "the mapping's certificate is outside its validity": (
                "mapping-certificate-outside-validity",
                {"kid": kid},
            ),
        },
    )


def _unauthorized_cause(c: _Context) -> _Named:
    """UNAUTHORIZED_CLIENT: the integration of the assertion's iss."""
    client = {"client_id": shown(c.sent.claim("iss"))}
    return _by_reason(
        c.reason,
        {
            "no integration has this client ID": ("client-unknown", client),
            "the integration record is blocked": ("client-blocked", client),
            "the integration allows TBA only": ("client-tba-only", client),
        },
    )


def _grant_cause(c: _Context) -> _Named:
    """INVALID_GRANT: the assertion's audience, lifetime and single use."""
    reason, sent = c.reason, c.sent
    if reason.startswith("aud is not this token endpoint's URL"):
        return "assertion-audience", _compared(sent.claim("aud"), c.request.uri)
    if reason == "exp is more than 60 minutes after iat":
        span = sent.claim("exp") - sent.claim("iat")  # numbers: the check read them so
        return "assertion-too-long", {"span": int(span)}
    if reason.startswith("iat is in the future"):
        return "assertion-clock-ahead", _clock(c, "iat")
    if reason == "the assertion is not valid yet (nbf)":
        return "assertion-not-yet-valid", _clock(c, "nbf")
    if reason == "the assertion expired":
        return "assertion-expired", {"exp": when(sent.claim("exp"), c.now)}
    return _by_reason(
        reason,
        {
            "iat and exp must be numbers of epoch seconds": ("assertion-times-not-numbers", {}),
            "the assertion was used before (its jti or signature)": ("assertion-replayed", {}),
        },
    )


def _scope_requested_cause(c: _Context) -> _Named:
    """INVALID_SCOPE: the assertion's scope claim."""
    if c.reason == "scope is missing":
        return "scope-missing", {}
    if c.reason.startswith("unknown scope "):
        return "scope-unknown", {"scope": c.reason.removeprefix("unknown scope ")}
    return None


_RULES: Final[dict[ErrorCode, Callable[[_Context], _Named]]] = {
    _C.INVALID_BEARER_TOKEN: _bearer_cause,
    _C.INSUFFICIENT_SCOPE: _scope_cause,
    _C.INVALID_REQUEST: _request_cause,
    _C.UNSUPPORTED_GRANT_TYPE: _request_cause,
    _C.INVALID_CLIENT: _client_cause,
    _C.UNAUTHORIZED_CLIENT: _unauthorized_cause,
    _C.INVALID_GRANT: _grant_cause,
    _C.INVALID_SCOPE: _scope_requested_cause,
}


def _by_reason(reason: str, table: Mapping[str, tuple[str, Mapping[str, object]]]) -> _Named:
    """The cause for reasons that need no more than a lookup."""
    return table.get(reason)


def _compared(value: object, expected: object) -> dict[str, object]:
    return {"sent": shown(value), "expected": shown(expected)}


def _clock(c: _Context, claim: str) -> dict[str, object]:
    return {"offset": c.offset(claim), "tolerance": c.settings.timestamp_tolerance}


def oauth2_cause(
    error: TBAError,
    request: OAuthRequest,
    settings: GuardSettings,
    sent: Sent,
    *,
    now: float,
    certificate: Certificate | None = None,
) -> Finding | None:
    """The likely cause of one OAuth 2.0 refusal (or TBA's for the move to it), its fields
    filled in from what was sent; None when no more is known than the code's own fix."""
    rule = _RULES.get(error.code)
    if rule is None:
        return None
    context = _Context(error, request, settings, sent, now, _mapping(settings, sent, certificate))
    try:
        named = rule(context)
    except (TypeError, ValueError, OverflowError):  # a claim no number could be: say no more
        return None
    if named is None:
        return None
    name, fields = named
    cause = CAUSES[name]
    return Finding(cause.explanation.format(**fields), cause.fix.format(**fields))


def _mapping(
    settings: GuardSettings, sent: Sent, certificate: Certificate | None
) -> Certificate | None:
    """The mapping the assertion's kid names: the one the checks found, else the settings'."""
    if certificate is not None:
        return certificate
    kid = sent.field("kid")
    return next((c for c in settings.certificates if c.certificate_id == kid), None)


def sent_by(request: OAuthRequest, code: ErrorCode) -> Sent:
    """What the refused request sent: its bearer token for a resource's codes, else the
    token endpoint's client assertion."""
    if code in (_C.INVALID_BEARER_TOKEN, _C.INSUFFICIENT_SCOPE):
        return read_sent(bearer_token(request))
    return read_sent(token_form(request).get("client_assertion"))
