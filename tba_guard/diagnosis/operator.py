"""What operators are told about a rejection, in the audit record's detail, the development
hint and `explain`: the URL a bad signature would verify under, the client's clock skew, a
resend told from a nonce collision, the realm against the account in the host. Bounded work
(a handful of re-signings, one store read), run only after a rejection someone reads; it
never changes a verdict, and opaque mode keeps all of it off the wire."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from ..core.checks import realm_sent
from ..core.errors import ErrorCode, TBAError
from ..core.request import OAuthRequest, base_string_uri
from ..core.scheme import Verification
from ..core.settings import GuardSettings
from ..guard import DESCRIBERS, Guard
from .causes import Finding, found
from .mistakes import verifies_as

_C = ErrorCode

#: At most this many URLs are re-signed for a bad signature: the other scheme, the port left
#: out, the allowed host names. A rejection must stay cheap, even a flood of them.
MAX_URL_VARIANTS: Final = 8
_ALLOWED_HOSTS_TRIED: Final = 2
_OTHER_SCHEME: Final = {"http": "https", "https": "http"}
#: The account in a NetSuite host name: `123456-sb1.restlets.api.netsuite.com` is 123456_SB1's.
_ACCOUNT_HOST: Final = re.compile(
    r"([0-9a-z][0-9a-z_-]*)\.(?:restlets\.api|suitetalk\.api|app)\.netsuite\.com", re.IGNORECASE
)
#: The codes a realm decides or could explain: the realm is unsigned, so a bad signature too.
REALM_CODES: Final = frozenset(
    {_C.UNKNOWN_INTEGRATION, _C.TOKEN_REJECTED, _C.INVALID_SIGNATURE, _C.INTEGRATION_BLOCKED}
)
_MILLISECOND_DIGITS: Final = 13


def url_variants(uri: str, allowed_hosts: Iterable[str] = ()) -> list[str]:
    """The base string URIs a proxy or another way in could have made of `uri`: the other
    scheme first (a proxy ending TLS), each with the port kept and left out, and a couple of
    `allowed_hosts` names (a proxy that rewrote Host). `uri` itself is not among them."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address, written in brackets in a URL
        host = f"[{host}]"
    named = [h for h in allowed_hosts if "*" not in h and h.lower() != host][:_ALLOWED_HOSTS_TRIED]
    netlocs = [parts.netloc, host, *(h.lower() for h in named)]
    schemes = [_OTHER_SCHEME.get(parts.scheme, parts.scheme), parts.scheme]
    variants = [base_string_uri(s, n, parts.path or "/") for s in schemes for n in netlocs]
    return [v for v in dict.fromkeys(variants) if v != uri][:MAX_URL_VARIANTS]


def url_findings(
    request: OAuthRequest, settings: GuardSettings, consumer_secret: str, token_secret: str
) -> list[Finding]:
    """A bad signature that verifies under another scheme, host or port: the server built
    another URL than the client signed, which the configuration, not the client, should fix."""
    variants = url_variants(request.uri, settings.allowed_hosts)
    hits = verifies_as(
        request, variants, consumer_secret=consumer_secret, token_secret=token_secret
    )
    return [found(["url-variant"], named=False, uri=uri, server_uri=request.uri) for uri in hits]


def timestamp_findings(raw: str, now: float, *, tolerance: int) -> list[Finding]:
    """A 13-digit timestamp is milliseconds; any other number tells the client's skew, the
    server's clock minus the timestamp (positive: the client is behind)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 16):
        return []
    if len(raw) == _MILLISECOND_DIGITS:
        return [found(["timestamp-in-milliseconds"], named=False)]
    skew = int(now) - int(raw)
    direction = "behind" if skew > 0 else "ahead of"
    return [
        found(
            ["clock-skew"],
            named=False,
            offset=abs(skew),
            direction=direction,
            skew=f"{skew:+d}",
            tolerance=tolerance,
        )
    ]


def nonce_finding(alike: bool | None) -> Finding:
    """A used nonce, from what the replay store kept of the signature that first claimed it."""
    if alike is None:
        return found(["nonce-untold"], named=False)
    return found(["nonce-resent" if alike else "nonce-collision"], named=False)


def host_account(uri: str) -> tuple[str, str] | None:
    """The host of a NetSuite URL and its account as a realm (`123456_SB1`), or None."""
    host = urlsplit(uri).hostname or ""
    match = _ACCOUNT_HOST.fullmatch(host)
    if match is None:
        return None
    return host, match.group(1).upper().replace("-", "_")


def realm_findings(request: OAuthRequest) -> list[Finding]:
    """The realm sent against the account the host names: the same account spelled otherwise
    (case, `-` for `_`), or another account altogether."""
    sent = realm_sent(request.oauth)
    account = host_account(request.uri)
    if not sent or account is None or sent == account[1]:
        return []
    host, realm = account
    fields = {"realm": repr(sent), "host": host, "account": realm}
    if sent.upper().replace("-", "_") == realm:
        return [found(["realm-host-spelling"], named=False, **fields)]
    return [found(["realm-host-other"], named=False, **fields)]


def findings_for(
    error: TBAError,
    request: OAuthRequest,
    settings: GuardSettings,
    *,
    now: float,
    secrets: tuple[str, str] | None,
) -> list[Finding]:
    """What a rejection tells an operator, all but the nonce (which needs the store):
    `secrets` are the consumer and token secrets, when the checks found the integration."""
    oauth, code = request.oauth, error.code
    findings: list[Finding] = []
    if code is _C.INVALID_SIGNATURE and secrets is not None:
        findings += url_findings(request, settings, *secrets)
    elif code is _C.INVALID_TIMESTAMP:
        raw = oauth.get("oauth_timestamp", "")
        findings += timestamp_findings(raw, now, tolerance=settings.timestamp_tolerance)
    if code in REALM_CODES:
        findings += realm_findings(request)
    return findings


def detail_of(findings: Iterable[Finding]) -> str:
    """One line for the audit record: each cause with its fix."""
    return " | ".join(f"{f.explanation}; fix: {f.fix}" for f in findings)


async def describe(guard: Guard, verification: Verification, error: TBAError) -> str:
    """The audit record's detail of one rejection (`Guard.rejection_detail` asks for it)."""
    request = verification.request
    if not request.oauth:  # unparsed, or another scheme's: nothing here speaks of it
        return ""
    integration = verification.integration
    secrets = None
    # Opaque mode makes every credential rejection cost the same work (`Guard.equal_work`):
    # re-signing a bad signature under other URLs would tell a known consumer key by its time.
    if integration is not None and guard.settings.error_detail != "opaque":
        secrets = (integration.consumer_secret, verification.token_secret or "")
    findings = findings_for(error, request, guard.settings, now=verification.now, secrets=secrets)
    if error.code is _C.NONCE_USED and verification.key is not None:
        alike = await signed_alike(guard, verification, request.oauth["oauth_signature"])
        findings.insert(0, nonce_finding(alike))
    return detail_of(findings)


async def signed_alike(guard: Guard, verification: Verification, signature: str) -> bool | None:
    """What the replay store kept of the signature that claimed the key; None when it keeps
    nothing (a store of one's own with only `seen` and `claim`) or cannot answer now."""
    reader = getattr(guard.replay_store, "signed_alike", None)
    if reader is None or verification.key is None:
        return None
    try:
        alike: bool | None = await reader(verification.key, signature)
    except Exception:  # the store failing now says nothing about the request
        return None
    return alike


def install() -> None:
    """Give every guard this diagnosis for its audit records (once; building a guarded app
    does it). The guard cannot import it: it is the layer above."""
    if describe not in DESCRIBERS:
        DESCRIBERS.append(describe)
