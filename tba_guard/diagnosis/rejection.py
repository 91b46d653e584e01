"""Why `explain` found a request rejected: the known causes of the deciding code, its fix, and
for a bad signature the server's base string and the mistakes that reproduce the signature."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from ..core.checks import realm_sent
from ..core.errors import ErrorCode, TBAError
from ..core.records import Integration, Token
from ..core.request import OAuthRequest
from ..core.settings import GuardSettings
from ..core.signature import SIGNATURE_METHODS, request_base_string, sign
from .causes import Finding, fix_for, found
from .mistakes import REALM_SPELLING, search
from .operator import REALM_CODES, realm_findings

_C = ErrorCode

_REALM_NOTE: Final = (
    "the realm is not signed, so no signature shows this mistake: explain compared the realm "
    "sent with the configured one"
)


@dataclass(frozen=True, slots=True)
class SignatureDiagnosis:
    """A bad signature: the base string the server built (it holds no secret) and each
    catalogued mistake, or pair, that reproduces the signature sent; when none does
    (`matched` false), the one finding that says so."""

    base_string: str
    findings: tuple[Finding, ...]
    matched: bool
    complete: bool  # false: the search ran out of its budget before every pair was tried


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What is known about one rejection: the causes of the deciding code, the code's own fix
    when none is known (and the signature does not decide), the bad signature's diagnosis."""

    causes: tuple[Finding, ...]
    fix: str | None
    signature: SignatureDiagnosis | None


def diagnose(
    error: TBAError,
    request: OAuthRequest,
    settings: GuardSettings,
    *,
    now: float,
    client_uri: str,
    integration: Integration | None = None,
    token: Token | None = None,
    signature_failed: bool = False,
) -> Diagnosis:
    """The diagnosis of `error`, the deciding rejection of `request`, given what the checks
    found (the credentials) and the URL the client called; `signature_failed` when the
    signature check failed as well (it always has when it decided)."""
    causes = tuple(_causes_of(error, settings, request, integration, token, now))
    if error.code in REALM_CODES:  # the realm against the host's account: unsigned, so here
        causes += tuple(realm_findings(request))
    decided_by_signature = error.code is _C.INVALID_SIGNATURE
    fix = None if causes or decided_by_signature else fix_for(error)
    signature = None
    if signature_failed or decided_by_signature:
        signature = _signature_diagnosis(settings, request, client_uri, integration, token)
    return Diagnosis(causes, fix, signature)


def _signature_diagnosis(
    settings: GuardSettings,
    request: OAuthRequest,
    client_uri: str,
    integration: Integration | None,
    token: Token | None,
) -> SignatureDiagnosis:
    """Re-sign the request as each catalogued mistake, and each pair of them, would; keep those
    that reproduce the sent signature, or say honestly that none does."""
    findings: list[Finding] = []
    complete = True
    if integration is not None:
        findings, complete = search(
            request,
            client_uri=client_uri,
            consumer_secret=integration.consumer_secret,
            token_secret=token.token_secret if token else "",
            realm=settings.realm,
        )
    matched = bool(findings)
    if not matched:
        findings = [found(["no-known-mistake"], named=False)]
    return SignatureDiagnosis(request_base_string(request), tuple(findings), matched, complete)


def _causes_of(
    error: TBAError,
    settings: GuardSettings,
    request: OAuthRequest,
    integration: Integration | None,
    token: Token | None,
    now: float,
) -> list[Finding]:
    """The known causes of the deciding code other than a bad signature."""
    oauth, code = request.oauth, error.code
    if code is _C.UNKNOWN_ALGORITHM and oauth.get("oauth_signature_method") == "HMAC-SHA1":
        return [found(["hmac-sha1-default"], named=False)]
    if code is _C.INVALID_TIMESTAMP:
        secrets = None
        if integration is not None:
            secrets = (integration.consumer_secret, token.token_secret if token else "")
        return _timestamp_causes(oauth["oauth_timestamp"], settings, request, secrets, now)
    if code in (_C.UNKNOWN_INTEGRATION, _C.TOKEN_REJECTED) and settings.realm:
        sent = realm_sent(oauth)
        if sent and sent != settings.realm:
            fields = {"realm": repr(sent), "configured": settings.realm}
            if sent.upper().replace("-", "_") != settings.realm.upper():
                return [found(["realm-other-account"], named=False, **fields)]
            return [found([REALM_SPELLING.name], named=True, note=_REALM_NOTE, **fields)]
    if code is _C.TBA_NOT_ALLOWED and error.reason == "the integration allows OAuth 2.0 only":
        return [found(["tba-oauth2-only"], named=False)]
    if code is _C.MISSING_REQUIRED_PARAMETER and "given in the header and in" in error.reason:
        return _duplicate_causes(error.parameters_rejected)
    return []


def _duplicate_causes(names: tuple[str, ...]) -> list[Finding]:
    """Names sent in the header and again in the query or body (step 2 refuses them)."""
    protocol = [name for name in names if name.startswith("oauth_")]
    others = [name for name in names if not name.startswith("oauth_")]
    causes = []
    if others:
        parameters = ", ".join(others)
        causes.append(found(["query-parameters-in-header"], named=False, parameters=parameters))
    if protocol:
        parameters = ", ".join(protocol)
        causes.append(found(["protocol-parameters-repeated"], named=False, parameters=parameters))
    return causes


def _timestamp_causes(
    raw: str,
    settings: GuardSettings,
    request: OAuthRequest,
    secrets: tuple[str, str] | None,
    now: float,
) -> list[Finding]:
    tolerance = settings.timestamp_tolerance
    value = timestamp_value(raw)
    if value is None:
        return []
    if len(raw) == 13 or (len(raw) > 13 and abs(value // 1000 - now) <= tolerance):
        return [found(["timestamp-in-milliseconds"], named=False)]
    if value < now - tolerance and secrets is not None and _signed_right(request, *secrets):
        return [found(["header-reused"], named=False, age=int(now - value))]
    if value > 0:
        direction = "behind" if value < now else "ahead of"
        offset = abs(int(now - value))
        return [
            found(
                ["clock-off"],
                named=False,
                offset=offset,
                direction=direction,
                tolerance=tolerance,
                note=f"skew {int(now) - value:+d} s: the server's clock minus oauth_timestamp",
            )
        ]
    return []


def timestamp_value(raw: str) -> int | None:
    """The timestamp as a number when it is one a clock could give (seconds or milliseconds);
    None for anything else, including digit strings too long for `int` to take."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 16:
        return int(raw)
    return None


def _signed_right(request: OAuthRequest, consumer_secret: str, token_secret: str) -> bool:
    """Whether the core, signing this very request with these secrets, gives the signature
    that was sent (the body hash aside: a header reused for another body still signs right)."""
    sent = request.oauth.get("oauth_signature", "")
    signature_method = request.oauth.get("oauth_signature_method", "")
    if signature_method not in SIGNATURE_METHODS or not consumer_secret:
        return False
    expected = sign(signature_method, request_base_string(request), consumer_secret, token_secret)
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))
