"""`tba-guard explain`: run every check, in order, on one request and say what is wrong.

NetSuite answers a bad request with "Invalid login attempt" and nothing else, and its users lose
days to it. This module runs the same standalone checks the guard runs, in the same order, and
prints each verdict; on a rejection it names the code, the reason and the likely fix. For a bad
signature it prints the base string the server built and finds the likely cause by re-signing
the request the ways clients are known to get wrong (with the configured secrets) and comparing
with the signature that was sent.

It never touches a real replay store (a throwaway in-memory one answers step 7, and step 12 is
skipped) and never prints a secret, a signature or the header itself: a PLAINTEXT signature *is*
the secrets.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .checks import (
    Step,
    check_authorization_flow,
    check_entity_and_role,
    check_feature_enabled,
    check_form_body,
    check_integration_enabled,
    check_integration_known,
    check_nonce_length,
    check_nonce_unused,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_timestamp,
    check_token_usable,
    check_version,
    credential_store_for,
    realm_sent,
    replay_key,
)
from .credentials import Integration, Token
from .errors import CATALOG, OPERATIONAL_CODES, ErrorCode, TBAError
from .replay import MemoryReplayStore
from .request import OAuthRequest, base_string_uri, form_pairs, request_from_url
from .settings import GuardSettings
from .signature import (
    SIGNATURE_METHODS,
    base_string,
    percent_encode,
    request_base_string,
    sign,
    signed_parameters,
)

_C = ErrorCode

#: The likely fix for each code, one line: what the client (or the operator) should change.
FIXES: dict[ErrorCode, str] = {
    _C.FEATURE_DISABLED: "switch feature_enabled on in the guard's settings",
    _C.MISSING_REQUIRED_PARAMETER: (
        "send one 'Authorization: OAuth ...' header with every required oauth_* parameter "
        'exactly once, each as name="percent-encoded value", and oauth_* parameters nowhere '
        "else (not in the query or the body)"
    ),
    _C.VERSION_REJECTED: 'send oauth_version="1.0" or leave it out',
    _C.UNKNOWN_ALGORITHM: (
        "configure the client to sign with HMAC-SHA256 (or add its method to signature_methods)"
    ),
    _C.INVALID_TIMESTAMP: (
        "send the current time in whole seconds since the epoch and keep the client's clock "
        "in sync (NTP)"
    ),
    _C.NONCE_REJECTED: "send a fresh random nonce of about 20 characters with every request",
    _C.NONCE_USED: "generate a new nonce and timestamp, and sign again, for every request",
    _C.UNKNOWN_INTEGRATION: (
        "check the consumer key, and send the realm (account ID) exactly as configured"
    ),
    _C.INTEGRATION_BLOCKED: 'enable the integration record (state = "enabled")',
    _C.AUTHORIZATION_FLOW_REQUIRED: "switch authorization_flow on for the integration",
    _C.TOKEN_REJECTED: (
        "check the token ID, that it belongs to this consumer key and account, and that it is "
        "neither revoked nor expired; send the realm exactly as configured"
    ),
    _C.ENTITY_OR_ROLE_DISABLED: "make the token's entity and role active",
    _C.INVALID_SIGNATURE: (
        "rebuild the base string exactly as the server does (tba-guard explain prints it) and "
        "sign it with the consumer secret and the token secret"
    ),
    _C.INVALID_CALLBACK: "send the callback URL of the integration record",
    _C.INVALID_VERIFIER: "send the verifier that came back with the authorized request token",
    _C.REPLAY_STORE_UNAVAILABLE: "bring the replay store (Redis) back, then retry",
    _C.CREDENTIAL_STORE_UNAVAILABLE: "bring the credential store back, then retry",
    _C.REQUEST_BODY_TOO_LARGE: "send a smaller form body, or raise max_body_bytes",
    _C.REQUEST_BODY_TIMEOUT: "send the whole body promptly, or raise body_timeout",
    _C.REQUEST_BUFFERS_FULL: "retry later, or raise max_buffered_bytes if memory allows",
    _C.AMBIGUOUS_REQUEST: "send Content-Type and Host once, and percent-encode the form as UTF-8",
    _C.HOST_NOT_ALLOWED: "call the service's own host name, or add it to allowed_hosts",
    _C.REQUEST_TOKEN_LIMIT: "wait for pending request tokens to expire, or raise the quota",
}

_OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_HINT_MAX = 2048  # a hint is one header-sized line, not a document


@dataclass(frozen=True, slots=True)
class Pitfall:
    """A known way clients get a request wrong, and what to do instead."""

    cause: str
    fix: str


# --- development hints (the middleware's `development_hints` setting) -------------------------


def development_hint(error: TBAError, request: OAuthRequest) -> str:
    """One line for an error response in development: the reason, the fix and, for a bad
    signature, the server's base string (which holds no secret). Never switched on in production.
    """
    parts = [error.reason or error.code.value, FIXES[error.code]]
    if error.code is ErrorCode.INVALID_SIGNATURE and request.oauth:
        parts.append(f"the server's base string: {request_base_string(request)}")
    parts.append("run `tba-guard explain` for the likely cause")
    hint = "; ".join(parts)
    hint = "".join(c if c.isprintable() else " " for c in hint)
    return hint if len(hint) <= _HINT_MAX else hint[:_HINT_MAX] + "…"


# --- the report -------------------------------------------------------------------------------


class _Report:
    """The verdict lines, in order, and the first failure (which decides the code)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.first: TBAError | None = None
        self.failed: dict[ErrorCode, TBAError] = {}

    def verdict(self, number: str, check: str, error: TBAError | None, note: str = "") -> None:
        result = "ok" if error is None else error.code.value
        if error is not None:
            self.failed.setdefault(error.code, error)
            if self.first is None:
                self.first = error
            elif not note:
                note = "(after the deciding check)"
        self.lines.append(f"{number:>4}. {check:<40} {result}{'  ' + note if note else ''}")

    def skip(self, number: str, check: str, why: str) -> None:
        self.lines.append(f"{number:>4}. {check:<40} not run: {why}")


def _attempt(run: Callable[[], object]) -> TBAError | None:
    try:
        run()
    except TBAError as error:
        return error
    return None


async def _attempt_async(check: Awaitable[object]) -> TBAError | None:
    try:
        await check
    except TBAError as error:
        return error
    return None


def _server_uri(settings: GuardSettings, request: OAuthRequest) -> str | None:
    """Behind a proxy (`public_url`) the server verifies public_url's scheme and host with the
    path the client sent: point the request there, and say so when that differs from the URL
    given (which is the one the client called)."""
    if settings.public_url is None:
        return None
    public = urlsplit(settings.public_url)
    given = request.uri
    path = "/" + given.partition("://")[2].partition("/")[2]
    request.uri = base_string_uri(public.scheme, public.netloc, path)
    if request.uri == given:
        return None
    return f"public_url is set: the server verifies {request.uri}, not {given}"


def _printable(line: str) -> str:
    """A line safe for a terminal: arguments may carry control characters or undecodable bytes."""
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)


async def explain(
    settings: GuardSettings,
    method: str,
    url: str,
    header: str,
    body: str = "",
    now: float | None = None,
    *,
    content_type: str | None = None,
    step: Step = Step.RESOURCE,
) -> tuple[list[str], bool]:
    """Run every check on the request; return the lines to print and whether it is accepted."""
    clock = time.time() if now is None else now
    lines = [f"Request: {method.upper()} {url}"]
    lines.append(_describe_body(body, content_type))
    lines.append(f"Clock: {int(clock)} ({'--now' if now is not None else 'this machine'})")
    headers = [("Authorization", header)]
    if content_type:
        headers.append(("Content-Type", content_type))
    try:
        # Arguments may hold bytes that are not UTF-8 (surrogates): send them as they came.
        request = request_from_url(method, url, headers, body.encode("utf-8", "surrogateescape"))
    except ValueError as exc:
        lines.append(f"Rejected: the URL cannot be used: {exc}")
        return [_printable(line) for line in lines], False
    except TBAError as exc:
        lines.append(f"Rejected: {exc.code.value}: {exc.reason}")
        return [_printable(line) for line in lines], False
    client_uri = request.uri
    url_note = _server_uri(settings, request)
    if url_note:
        lines.append(f"Note: {url_note}")
    lines.append("")
    report = _Report()
    context = await _run_checks(report, settings, request, step, clock, client_uri)
    lines += report.lines
    lines.append("")
    accepted = report.first is None
    if accepted:
        lines.append(
            "Accepted: the request passes every check. The real server also claims the nonce, "
            "so sending this same header again is NonceUsed."
        )
    else:
        lines += _conclusion(report, settings, request, context, clock)
    return [_printable(line) for line in lines], accepted


def run_explain(
    settings: GuardSettings,
    method: str,
    url: str,
    header: str,
    body: str,
    now: float | None,
    content_type: str | None = None,
) -> tuple[list[str], bool]:
    """The command line's entry point: `explain` on a fresh event loop."""
    return asyncio.run(explain(settings, method, url, header, body, now, content_type=content_type))


def _describe_body(body: str, content_type: str | None) -> str:
    if not body:
        return "Body: none"
    size = len(body.encode("utf-8", "surrogateescape"))
    if content_type is None:
        return (
            f"Body: {size} bytes, no Content-Type given, so not signed "
            "(pass --content-type application/x-www-form-urlencoded for a form)"
        )
    return f"Body: {size} bytes, Content-Type {content_type} (from --content-type)"


@dataclass(slots=True)
class _Context:
    """What the checks found, for the diagnosis: the credentials and the URL the client used."""

    client_uri: str
    integration: Integration | None = None
    token: Token | None = None


async def _run_checks(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    step: Step,
    now: float,
    client_uri: str,
) -> _Context:
    """Steps 1 to 12 with the standalone checks. After a failure the later checks still run
    where they can, so the user sees every problem at once; the first failure decides."""
    s, context = settings, _Context(client_uri=client_uri)
    report.verdict(
        "1", "FeatureDisabled", _attempt(lambda: check_feature_enabled(s.feature_enabled))
    )
    parsed = _attempt(
        lambda: check_required_parameters(
            request,
            step,
            max_header_length=s.max_header_length,
            max_header_parameters=s.max_header_parameters,
        )
    )
    report.verdict("2", "MissingRequiredParameter", parsed)
    if parsed is not None:
        report.skip("3-12", "every later check", "the parameters could not be read")
        return context
    oauth = request.oauth
    report.verdict("3", "VersionRejected", _attempt(lambda: check_version(oauth)))
    report.verdict(
        "4",
        "UnknownAlgorithm",
        _attempt(lambda: check_signature_method(oauth, s.signature_methods, secure=request.secure)),
    )
    timestamp_error = _attempt(
        lambda: check_timestamp(oauth, now=now, tolerance=s.timestamp_tolerance)
    )
    report.verdict("5", "InvalidTimestamp", timestamp_error)
    report.verdict(
        "6",
        "NonceRejected",
        _attempt(
            lambda: check_nonce_length(
                oauth, minimum=s.nonce_min_length, maximum=s.nonce_max_length
            )
        ),
    )
    timestamp = _timestamp_value(oauth["oauth_timestamp"])
    if timestamp is not None:
        throwaway = MemoryReplayStore(1, clock=lambda: now)  # never the configured store
        key = replay_key(oauth, timestamp)
        report.verdict(
            "7",
            "NonceUsed",
            await _attempt_async(check_nonce_unused(throwaway, key)),
            "(explain keeps no history; the real store may have seen it)",
        )
    else:
        report.skip("7", "NonceUsed", "the timestamp is not a number")
    await _run_credential_checks(report, settings, request, step, now, context)
    report.skip("11", "InvalidCallback / InvalidVerifier", _flow_note(step))
    report.skip("12", "claim the replay key", "explain never writes to a replay store")
    return context


def _flow_note(step: Step) -> str:
    if step is Step.RESOURCE:
        return "not part of a protected-resource request"
    return "explain does not check the flow's callback or verifier"


async def _run_credential_checks(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    step: Step,
    now: float,
    context: _Context,
) -> None:
    """Steps 8 to 10, with the settings' own credentials (never a shared store)."""
    oauth, credentials = request.oauth, credential_store_for(settings)
    try:
        integration = await check_integration_known(
            credentials, oauth, realm=settings.realm, step=step
        )
    except TBAError as unknown:
        report.verdict("8", "UnknownIntegration / IntegrationBlocked", unknown)
        report.skip("9", "TokenRejected / EntityOrRoleDisabled", "no integration")
        report.skip("10", "InvalidSignature", "no consumer secret for an unknown consumer key")
        return
    context.integration = integration
    error = _attempt(lambda: check_integration_enabled(integration, oauth, step=step))
    if error is None and step is not Step.RESOURCE:
        error = _attempt(lambda: check_authorization_flow(integration))
    report.verdict("8", "UnknownIntegration / IntegrationBlocked", error)
    token_secret = ""
    if step is not Step.REQUEST_TOKEN:
        token = await credentials.token(oauth["oauth_token"])
        context.token = token
        error = _attempt(
            lambda: check_token_usable(token, oauth, integration, realm=settings.realm, now=now)
        )
        if error is None and token is not None:
            error = _attempt(lambda: check_entity_and_role(token))
        report.verdict("9", "TokenRejected / EntityOrRoleDisabled", error)
        if token is None:
            report.skip("10", "InvalidSignature", "no token secret for an unknown token")
            return
        token_secret = token.token_secret
    secret = integration.consumer_secret

    def form_then_signature() -> None:  # the form's parameters join once the body is read
        check_form_body(request)
        check_signature(request, secret, token_secret)

    report.verdict("10", "InvalidSignature", _attempt(form_then_signature))


# --- the conclusion and the known pitfalls ----------------------------------------------------


def _conclusion(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    context: _Context,
    now: float,
) -> list[str]:
    first = report.first
    assert first is not None
    status = first.status
    lines = [f"Rejected: {first.code.value} (HTTP {status})"]
    if settings.error_detail == "opaque" and first.code not in OPERATIONAL_CODES:
        lines.append("  (opaque mode: the client sees only INVALID_LOGIN_ATTEMPT or a bare 400)")
    lines.append(f"Reason: {first.reason or CATALOG[first.code].message}")
    causes = _pitfalls_for(first, settings, request, context, now)
    lines += _cause_lines(causes)
    bad_signature = _C.INVALID_SIGNATURE in report.failed
    if not causes and not (bad_signature and first.code is _C.INVALID_SIGNATURE):
        lines.append(f"Fix: {FIXES[first.code]}")
    if bad_signature:
        if first.code is not _C.INVALID_SIGNATURE:
            lines.append("The signature does not match either.")
        lines.append(f"Base string the server built: {request_base_string(request)}")
        signature_causes = [p for p in _signature_pitfalls(request, context) if p not in causes]
        lines += _cause_lines(signature_causes or [_NO_KNOWN_SIGNATURE_PITFALL])
    return lines


def _cause_lines(pitfalls: Iterable[Pitfall]) -> list[str]:
    lines = []
    for pitfall in pitfalls:
        lines += [f"Likely cause: {pitfall.cause}", f"  Fix: {pitfall.fix}"]
    return lines


_NO_KNOWN_SIGNATURE_PITFALL = Pitfall(
    "no known client mistake reproduces the signature with the configured secrets: the client "
    "signs with other secrets, or signed another request (a header reused from an earlier "
    "request, another URL or body)",
    "compare the base string above with the client's, byte for byte, and check both secrets",
)


def _pitfalls_for(
    error: TBAError,
    settings: GuardSettings,
    request: OAuthRequest,
    context: _Context,
    now: float,
) -> list[Pitfall]:
    """The known causes of the deciding code other than a bad signature."""
    oauth, code = request.oauth, error.code
    if code is _C.UNKNOWN_ALGORITHM and oauth.get("oauth_signature_method") == "HMAC-SHA1":
        return [
            Pitfall(
                "HMAC-SHA1 was left as the client library's default",
                "configure the client to sign with HMAC-SHA256 "
                "(oauthlib/requests-oauthlib: signature_method=SIGNATURE_HMAC_SHA256)",
            )
        ]
    if code is _C.INVALID_TIMESTAMP:
        return _timestamp_pitfalls(oauth["oauth_timestamp"], settings, request, context, now)
    if code in (_C.UNKNOWN_INTEGRATION, _C.TOKEN_REJECTED) and settings.realm:
        sent = realm_sent(oauth)
        if sent and sent != settings.realm:
            if sent.upper().replace("-", "_") == settings.realm.upper():
                cause = (
                    f"the realm {sent!r} is the account ID in the wrong case or with '-' for '_'"
                )
            else:
                cause = f"the realm {sent!r} is not this account"
            return [Pitfall(cause, f'send realm="{settings.realm}" exactly (or leave it out)')]
    if code is _C.MISSING_REQUIRED_PARAMETER and "given in the header and in" in error.reason:
        return _duplicate_pitfalls(error.parameters_rejected)
    return []


def _duplicate_pitfalls(names: tuple[str, ...]) -> list[Pitfall]:
    """Names sent in the header and again in the query or body (step 2 refuses them)."""
    protocol = [name for name in names if name.startswith("oauth_")]
    others = [name for name in names if not name.startswith("oauth_")]
    found = []
    if others:
        found.append(
            Pitfall(
                f"query parameters ({', '.join(others)}) were put into the Authorization header "
                "as well as the URL",
                "send parameters that are not oauth_* in the query string (or body) only",
            )
        )
    if protocol:
        found.append(
            Pitfall(
                f"protocol parameters ({', '.join(protocol)}) were sent in the query or body as "
                "well as in the header",
                "send oauth_* parameters in the Authorization header only",
            )
        )
    return found


def _timestamp_pitfalls(
    raw: str, settings: GuardSettings, request: OAuthRequest, context: _Context, now: float
) -> list[Pitfall]:
    tolerance = settings.timestamp_tolerance
    value = _timestamp_value(raw)
    if value is None:
        return []
    if len(raw) >= 13 and abs(value // 1000 - now) <= tolerance:
        return [
            Pitfall(
                "the timestamp is in milliseconds",
                "send whole seconds since the epoch (int(time.time()), Date.now() / 1000 | 0)",
            )
        ]
    if value < now - tolerance and _signature_is_right(request, context):
        return [
            Pitfall(
                f"the header was reused from an earlier request: its signature is right, but it "
                f"was made {int(now - value)} s ago",
                "sign every request afresh, with a new nonce and the current timestamp",
            )
        ]
    if value > 0:
        direction = "behind" if value < now else "ahead of"
        return [
            Pitfall(
                f"the client's clock is {abs(int(now - value))} s {direction} the server's",
                f"synchronise the clock (NTP); the window is ±{tolerance} s",
            )
        ]
    return []


def _timestamp_value(raw: str) -> int | None:
    """The timestamp as a number when it is one a clock could give (seconds or milliseconds);
    None for anything else, including digit strings too long for `int` to take."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 16:
        return int(raw)
    return None


def _signature_is_right(request: OAuthRequest, context: _Context) -> bool:
    if context.integration is None:
        return False
    token_secret = context.token.token_secret if context.token else ""
    return _matches(
        request,
        request.method,
        request.uri,
        signed_parameters(request),
        secrets=(context.integration.consumer_secret, token_secret),
    )


def _matches(
    request: OAuthRequest,
    method: str,
    uri: str,
    pairs: Iterable[tuple[str, str]],
    *,
    secrets: tuple[str, str],
    signature_method: str | None = None,
    base: str | None = None,
) -> bool:
    """Whether signing this variant of the request gives the signature that was sent."""
    sent = request.oauth.get("oauth_signature", "")
    signature_method = signature_method or request.oauth.get("oauth_signature_method", "")
    if signature_method not in SIGNATURE_METHODS:
        return False
    consumer_secret, token_secret = secrets
    if not consumer_secret:
        return False
    base = base if base is not None else base_string(method, uri, pairs)
    expected = sign(signature_method, base, consumer_secret, token_secret)
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))


def _plus_base_string(method: str, uri: str, pairs: Iterable[tuple[str, str]]) -> str:
    """A base string from a client that encodes a space as `+` (form style), not `%20`."""
    encoded = sorted(
        (percent_encode(n).replace("%20", "+"), percent_encode(v).replace("%20", "+"))
        for n, v in pairs
    )
    normalized = "&".join(f"{n}={v}" for n, v in encoded)
    return "&".join(
        (percent_encode(method.upper()), percent_encode(uri), percent_encode(normalized))
    )


def _literal_plus_pairs(data: str) -> list[tuple[str, str]]:
    """Query pairs decoded by a client that takes `+` literally instead of as a space."""
    pairs = []
    for item in data.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append(
                (unquote(name, errors="surrogateescape"), unquote(value, errors="surrogateescape"))
            )
    return pairs


def _signature_pitfalls(request: OAuthRequest, context: _Context) -> list[Pitfall]:
    """Re-sign the request as each known client mistake would, and keep those that match."""
    if context.integration is None:
        return []
    consumer_secret = context.integration.consumer_secret
    token_secret = context.token.token_secret if context.token else ""
    oauth, method, uri = request.oauth, request.method, request.uri
    header = [(n, v) for n, v in oauth.items() if n not in ("realm", "oauth_signature")]
    query = form_pairs(request.query) if request.query else []
    body_text = request.body.decode("utf-8", "surrogateescape")
    body = form_pairs(body_text) if request.is_form and request.body else []
    pairs = header + query + body
    found: list[Pitfall] = []

    def check(
        pitfall: Pitfall,
        variant: list[tuple[str, str]],
        *,
        method: str = method,
        uri: str = uri,
        secrets: tuple[str, str] = (consumer_secret, token_secret),
        signature_method: str | None = None,
        base: str | None = None,
    ) -> None:
        if pitfall in found:
            return
        if _matches(
            request,
            method,
            uri,
            variant,
            secrets=secrets,
            signature_method=signature_method,
            base=base,
        ):
            found.append(pitfall)

    if "oauth_body_hash" in oauth:
        check(_BODY_HASH, pairs)
    sent_method = oauth.get("oauth_signature_method", "")
    if sent_method != "HMAC-SHA1":
        sha1 = Pitfall(
            f"the client signed with HMAC-SHA1 (a library default) while the header names "
            f"{sent_method}",
            "configure the client to sign with HMAC-SHA256 (oauthlib: SIGNATURE_HMAC_SHA256)",
        )
        renamed = [(n, "HMAC-SHA1" if n == "oauth_signature_method" else v) for n, v in pairs]
        check(sha1, pairs, signature_method="HMAC-SHA1")
        check(sha1, renamed, signature_method="HMAC-SHA1")
    if query:
        check(_QUERY_UNSIGNED, header + body)
    if any(" " in name + value for name, value in pairs):
        check(_PLUS_FOR_SPACE, pairs, base=_plus_base_string(method, uri, pairs))
    if "+" in request.query:
        check(_LITERAL_PLUS, header + _literal_plus_pairs(request.query) + body)
    for variant in _uri_variants(uri, context.client_uri):
        pitfall = Pitfall(
            f"the client signed the URL {variant} but the server verifies {uri} "
            "(a proxy in between, or another scheme, host or port)",
            "sign the URL the clients call, and set public_url to it when a proxy stands in "
            "front (or trusted_proxies behind a proxy that sets X-Forwarded-*)",
        )
        check(pitfall, pairs, uri=variant)
    if request.body and not request.is_form:
        if body_text.lstrip()[:1] in ("{", "["):
            check(_JSON_SIGNED, header + query + form_pairs(body_text))
        else:
            check(_BODY_SIGNED_NOT_FORM, header + query + form_pairs(body_text))
    if body:
        check(_FORM_UNSIGNED, header + query)
    if "realm" in oauth:
        check(_REALM_SIGNED, [*pairs, ("realm", oauth["realm"])])
    for other in _OTHER_METHODS:
        if other != method:
            pitfall = Pitfall(
                f"the header was signed for a {other} request: reused from an earlier request",
                "sign every request afresh, for its own method, URL and parameters",
            )
            check(pitfall, pairs, method=other)
    if token_secret:
        check(_TOKEN_SECRET_LEFT_OUT, pairs, secrets=(consumer_secret, ""))
        check(_SECRETS_SWAPPED, pairs, secrets=(token_secret, consumer_secret))
    return found


_BODY_HASH = Pitfall(
    "the signature is right but oauth_body_hash does not match the body: the body sent is not "
    "the body that was hashed",
    "hash exactly the bytes sent (SHA-1, or the signature method's hash; base64)",
)
_QUERY_UNSIGNED = Pitfall(
    "the query parameters were left out of the signature",
    "sign the query string's parameters too (RFC 5849 section 3.4.1.3)",
)
_PLUS_FOR_SPACE = Pitfall(
    "a space was encoded as '+' in the base string",
    "percent-encode a space as %20 when signing (RFC 5849 section 3.6)",
)
_LITERAL_PLUS = Pitfall(
    "a '+' in the query string was signed as a plus sign, but in a query it means a space",
    "write a space as %20 in the URL and a plus sign as %2B",
)
_JSON_SIGNED = Pitfall(
    "the JSON body was signed",
    "sign only the header and query parameters: a body that is not "
    "application/x-www-form-urlencoded is never signed",
)
_BODY_SIGNED_NOT_FORM = Pitfall(
    "the body was signed as form parameters, but the request does not say it is a form",
    "send Content-Type: application/x-www-form-urlencoded, or do not sign the body",
)
_FORM_UNSIGNED = Pitfall(
    "the form body was not signed",
    "sign the form body's parameters too (RFC 5849 section 3.4.1.3)",
)
_REALM_SIGNED = Pitfall(
    "the realm was signed",
    "leave realm out of the base string (RFC 5849 section 3.4.1.3.1)",
)
_TOKEN_SECRET_LEFT_OUT = Pitfall(
    "the token secret was left out of the key", "sign with consumer_secret&token_secret"
)
_SECRETS_SWAPPED = Pitfall(
    "the consumer secret and the token secret were swapped",
    "the key is consumer_secret&token_secret, in that order",
)


def _uri_variants(uri: str, client_uri: str) -> list[str]:
    """Base string URIs a client may have signed instead: the URL it called (behind a proxy),
    the other scheme, and the default port written out."""
    scheme, _, rest = uri.partition("://")
    host, slash, path = rest.partition("/")
    path = slash + path
    other = "http" if scheme == "https" else "https"
    default = {"http": "80", "https": "443"}
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:
        name, port = host, ""
    variants = [client_uri, base_string_uri(other, host, path)]
    if port:
        variants += [f"{scheme}://{name}{path}", f"{other}://{name}{path}"]
    else:
        variants += [f"{scheme}://{host}:{default[scheme]}{path}"]
        variants += [f"{other}://{host}:{default[other]}{path}"]
    return [variant for variant in dict.fromkeys(variants) if variant != uri]
