"""Development hints: one line in an error response with the reason, the fix and, for a bad
signature, the server's base string and the mistakes that reproduce it; for OAuth 2.0, the
likely cause read from the token or assertion. Loaded only when `development_hints` is on,
never in production."""

from __future__ import annotations

import time

from ..core.errors import BEARER_CODES, GRANT_CODES, ErrorCode, TBAError
from ..core.request import OAuthRequest
from ..core.settings import GuardSettings
from ..core.signature import request_base_string
from .causes import CAUSES, fix_for
from .mistakes import search
from .operator import findings_for

_HINT_MAX = 2048  # a hint is one header-sized line, not a document


def development_hint(
    error: TBAError,
    request: OAuthRequest,
    *,
    settings: GuardSettings | None = None,
    now: float | None = None,
) -> str:
    """One line for an error response in development: the reason, the fix and, for a bad
    signature, the server's base string (which holds no secret) and, given the settings, the
    catalogued mistakes that reproduce the signature; for an OAuth 2.0 code, the likely cause
    (never the token). `now` is the server's clock (the wall clock if not given).
    Never switched on in production.
    """
    parts = [error.reason or error.code.value]
    if error.code in BEARER_CODES or error.code in GRANT_CODES:
        parts += _oauth2_parts(error, request, settings or GuardSettings(), now)
    else:
        parts.append(fix_for(error))
    if error.code is ErrorCode.INVALID_SIGNATURE and request.oauth:
        parts.append(f"the server's base string: {request_base_string(request)}")
        if settings is not None:
            parts += _hint_causes(settings, request)
    if request.oauth and settings is not None:
        clock = time.time() if now is None else now
        secrets = _secrets(settings, request)
        found = findings_for(error, request, settings, now=clock, secrets=secrets)
        parts += [f"likely cause: {f.explanation}; fix: {f.fix}" for f in found]
    parts.append("run `tba-guard explain` for the likely cause")
    hint = "; ".join(parts)
    hint = "".join(c if c.isprintable() else " " for c in hint)
    return hint if len(hint) <= _HINT_MAX else hint[:_HINT_MAX] + "…"


def _oauth2_parts(
    error: TBAError, request: OAuthRequest, settings: GuardSettings, now: float | None
) -> list[str]:
    """The cause read from the bearer token or assertion, and its fix; the code's fix when no
    cause is known. Imported here: it needs the oauth2 extra, which these codes imply."""
    from .oauth2 import oauth2_cause, sent_by

    sent = sent_by(request, error.code)
    clock = time.time() if now is None else now
    finding = oauth2_cause(error, request, settings, sent, now=clock)
    if finding is None:
        return [CAUSES[error.code].fix]
    return [f"likely cause: {finding.explanation}", finding.fix]


def _secrets(settings: GuardSettings, request: OAuthRequest) -> tuple[str, str] | None:
    """The consumer and token secrets of the settings' own credentials (looked up without
    awaiting a store; a token only a token store holds is not found)."""
    oauth = request.oauth
    key, token_id = oauth.get("oauth_consumer_key"), oauth.get("oauth_token")
    integration = next((i for i in settings.integrations if i.consumer_key == key), None)
    token = next((t for t in settings.tokens if t.token_id == token_id), None)
    if integration is None or (token_id is not None and token is None):
        return None
    return integration.consumer_secret, token.token_secret if token else ""


def _hint_causes(settings: GuardSettings, request: OAuthRequest) -> list[str]:
    """The mistake search with the settings' own credentials."""
    secrets = _secrets(settings, request)
    if secrets is None:
        return []
    findings, _ = search(
        request,
        client_uri=request.uri,
        consumer_secret=secrets[0],
        token_secret=secrets[1],
        realm=settings.realm,
    )
    if not findings:
        return ["no known client mistake reproduces the signature"]
    return [f"likely cause ({' + '.join(f.names)}): {f.explanation}" for f in findings]
