"""The checks, each a small function named after what it checks, raising the code the catalog
assigns. `sequence.py` declares their order; `Guard` runs it.

The first failing check decides the code. Cheap checks run before lookups, and nothing touches
the replay store before the request is known to be well formed; only a request whose signature
verified may write to it.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from .errors import ErrorCode, TBAError, missing, rejected
from .protocols import (
    CredentialStore,
    ImmediateCredentialStore,
    ImmediateReplayStore,
    ReplayKey,
    ReplayStore,
    RequestTokenQuotaExceeded,
    SignedReplayStore,
)
from .records import Brownout, Integration, RequestToken, Token, User
from .request import OAuthRequest, ambiguous, form_body_pairs
from .signature import PLAINTEXT, signature_matches

Clock = Callable[[], float]


class Step(StrEnum):
    """Where a request is in TBA: a protected resource, or step one or three of the flow."""

    RESOURCE = "resource"
    REQUEST_TOKEN = "request_token"
    ACCESS_TOKEN = "access_token"


REQUIRED_PARAMETERS: Final = (
    "oauth_consumer_key",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_signature_method",
    "oauth_signature",
)
STEP_PARAMETERS: Final[dict[Step, tuple[str, ...]]] = {
    Step.RESOURCE: ("oauth_token",),
    Step.REQUEST_TOKEN: ("oauth_callback",),
    Step.ACCESS_TOKEN: ("oauth_token", "oauth_verifier"),
}
_REQUIRED: Final = {step: REQUIRED_PARAMETERS + names for step, names in STEP_PARAMETERS.items()}
_RESOURCE_REQUIRED: Final = _REQUIRED[Step.RESOURCE]  # looked up without hashing the enum
#: Required, yet may be empty: after Deny the callback carries an empty verifier, and a client
#: that sends it on gets `InvalidVerifier` (check 11), which says what happened (rule N23).
MAY_BE_EMPTY: Final = frozenset({"oauth_verifier"})
_MAX_TIMESTAMP_DIGITS: Final = 12  # past year 30000: anything longer is not a clock


# --- 1. FeatureDisabled -----------------------------------------------------------------------


def check_feature_enabled(enabled: bool) -> None:
    if not enabled:
        raise TBAError(ErrorCode.FEATURE_DISABLED, "token-based authentication is switched off")


# --- 2. MissingRequiredParameter --------------------------------------------------------------


def check_required_parameters(request: OAuthRequest, step: Step = Step.RESOURCE) -> None:
    """Each required parameter of the step once, in a request `parse_parameters` has parsed."""
    required = _RESOURCE_REQUIRED if step is Step.RESOURCE else _REQUIRED[step]
    if request.authorization is None:
        # No credentials at all: a 401 challenge, as HTTP authentication expects.
        raise missing(*required, reason="no Authorization header", status=401)
    oauth = request.oauth
    twice = _also_in_header(request.params, oauth)
    if twice:
        raise rejected(*twice, reason="given in the header and in the query")
    if all([oauth.get(name) for name in required]):
        return  # the common case: everything present and non-empty
    empty = tuple(name for name in required if oauth.get(name) == "" and name not in MAY_BE_EMPTY)
    if empty:
        raise rejected(*empty, reason="empty")
    absent = tuple(name for name in required if name not in oauth)
    if absent:
        raise missing(*absent)


def _also_in_header(pairs: list[tuple[str, str]], oauth: Mapping[str, str]) -> list[str]:
    """The names of `pairs` the header gave already, sorted; the realm may repeat (unsigned)."""
    if not any(name in oauth and name != "realm" for name, _ in pairs):
        return []  # the usual case, without building a set
    return sorted({name for name, _ in pairs if name in oauth and name != "realm"})


_PERCENT: Final = ord("%")


def check_form_body(request: OAuthRequest) -> None:
    """Add a form body's parameters to the signed ones, once the body is read.

    Only plain ASCII URL-encoding of UTF-8 is accepted: every form parser decodes that alike,
    so the application reads the very form the signature covers. A protocol parameter given
    again in the body is a duplicate, as in the query.
    """
    if not (request.is_form and request.body):
        return
    if not request.body.isascii():
        raise ambiguous("a form body with bytes outside ASCII")
    pairs = form_body_pairs(request)
    # Decoding keeps bytes that are not UTF-8 as lone surrogates, which no concatenation
    # pairs up: one look at all names and values together finds any. (`_PERCENT` is an int:
    # `bytes in bytes` first tries its needle as an int, raising and clearing a TypeError.)
    if _PERCENT in request.body and not _is_utf8("".join([name + value for name, value in pairs])):
        raise ambiguous("a form body with an escape that is not UTF-8")
    twice = _also_in_header(pairs, request.oauth)
    if twice:
        raise rejected(*twice, reason="given in the header and in the body")
    request.params += pairs


def _is_utf8(text: str) -> bool:
    """False where percent-decoding left bytes that are not UTF-8 (kept as surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- 3. VersionRejected -----------------------------------------------------------------------


def check_version(oauth: Mapping[str, str]) -> None:
    version = oauth.get("oauth_version")
    if version is not None and version != "1.0":
        raise TBAError(ErrorCode.VERSION_REJECTED, "oauth_version is not 1.0")


# --- 4. UnknownAlgorithm ----------------------------------------------------------------------


def check_signature_method(
    oauth: Mapping[str, str], allowed: Iterable[str], *, secure: bool
) -> str:
    method = oauth["oauth_signature_method"]
    if method not in allowed:
        raise TBAError(ErrorCode.UNKNOWN_ALGORITHM, f"{method[:32]!r} is not an accepted method")
    if method == PLAINTEXT and not secure:
        raise TBAError(ErrorCode.UNKNOWN_ALGORITHM, "PLAINTEXT is accepted over HTTPS only")
    if method == PLAINTEXT and "oauth_body_hash" in oauth:
        # The body hash is computed with the signature's own hash, and PLAINTEXT has none.
        raise TBAError(ErrorCode.UNKNOWN_ALGORITHM, "PLAINTEXT cannot sign a body hash")
    return method


# --- 5. InvalidTimestamp ----------------------------------------------------------------------


def check_timestamp(oauth: Mapping[str, str], *, now: float, tolerance: int) -> int:
    raw = oauth["oauth_timestamp"]
    low, high = int(now) - tolerance, int(now) + tolerance
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_TIMESTAMP_DIGITS):
        raise TBAError(
            ErrorCode.INVALID_TIMESTAMP,
            "not a decimal number of seconds",
            acceptable_timestamps=(low, high),
        )
    timestamp = int(raw)
    if timestamp <= 0 or not low <= timestamp <= high:
        raise TBAError(
            ErrorCode.INVALID_TIMESTAMP,
            f"{timestamp} is outside {low}-{high}",
            acceptable_timestamps=(low, high),
        )
    return timestamp


# --- 6. NonceRejected -------------------------------------------------------------------------


def check_nonce_length(oauth: Mapping[str, str], *, minimum: int, maximum: int) -> str:
    nonce = oauth["oauth_nonce"]
    if not minimum <= len(nonce) <= maximum:
        raise TBAError(
            ErrorCode.NONCE_REJECTED,
            f"nonce of {len(nonce)} characters, not {minimum}-{maximum}",
        )
    return nonce


# --- 7. NonceUsed (read) and 12. the claim ----------------------------------------------------


def replay_key(oauth: Mapping[str, str], timestamp: int) -> ReplayKey:
    # tuple.__new__ is what ReplayKey._make calls: the named tuple without the generated
    # Python __new__, which costs more than the rest of this step.
    consumer_key, token = oauth["oauth_consumer_key"], oauth.get("oauth_token", "")
    return tuple.__new__(ReplayKey, (consumer_key, token, oauth["oauth_nonce"], timestamp))


def _store_unavailable(exc: Exception) -> TBAError:
    return TBAError(
        ErrorCode.REPLAY_STORE_UNAVAILABLE, f"replay store failed: {type(exc).__name__}: {exc}"
    )


async def check_nonce_unused(store: ReplayStore, key: ReplayKey) -> None:
    try:
        used = await store.seen(key)
    except Exception as exc:  # any store failure fails closed, never a 500
        raise _store_unavailable(exc) from exc
    if used:
        raise _nonce_used()


def check_nonce_unused_now(store: ImmediateReplayStore, key: ReplayKey) -> None:
    """`check_nonce_unused` for a store that answers at once (`Immediacy.seen`)."""
    try:
        used = store.seen_now(key)
    except Exception as failure:
        raise _store_unavailable(failure) from failure
    if used:
        raise _nonce_used()


def _nonce_used() -> TBAError:
    return TBAError(ErrorCode.NONCE_USED, "nonce and timestamp already used")


def _defines_alongside(kind: type, method: str, companion: str) -> bool:
    """Whether the class of `kind`'s MRO that defines `method` also defines `companion`."""
    owner = next((k for k in kind.__mro__ if method in k.__dict__), None)
    return owner is not None and companion in owner.__dict__


def _claims_signed(kind: type) -> bool:
    owners = [k for k in kind.__mro__ if "claim" in k.__dict__ or "claim_signed" in k.__dict__]
    return bool(owners) and "claim_signed" in owners[0].__dict__


class Immediacy:
    """Which of a store class's calls the guard makes without a coroutine: those the class
    answers at once (`ImmediateReplayStore`, `ImmediateCredentialStore`). Decided once per
    class; an override of the awaitable method alone keeps the awaitable one called."""

    __slots__ = ("claim_signed", "integration", "seen", "token")

    def __init__(self, kind: type) -> None:
        self.seen = _defines_alongside(kind, "seen", "seen_now")
        self.claim_signed = _claims_signed(kind) and _defines_alongside(
            kind, "claim_signed", "claim_signed_now"
        )
        self.integration = _defines_alongside(kind, "integration", "integration_now")
        self.token = _defines_alongside(kind, "token", "token_now")


_IMMEDIACY: Final[dict[type, Immediacy]] = {}


def immediacy(store: object) -> Immediacy:
    kind = type(store)
    known = _IMMEDIACY.get(kind)
    if known is None:
        known = _IMMEDIACY[kind] = Immediacy(kind)
    return known


#: Per store class, whether the guard claims through its `claim_signed`: decided once, so the
#: accepted path pays one dict lookup for the signature's fingerprint.
_CLAIMS_SIGNED: Final[dict[type, bool]] = {}


def claims_signed(store: object) -> bool:
    """Whether `store` keeps a fingerprint of the signature (`SignedReplayStore`) through the
    `claim` its class uses: a subclass that overrides `claim` alone keeps it called."""
    kind = type(store)
    known = _CLAIMS_SIGNED.get(kind)
    if known is None:
        known = _CLAIMS_SIGNED[kind] = _claims_signed(kind)
    return known


async def claim_nonce(store: ReplayStore, key: ReplayKey, ttl: int, signature: str = "") -> None:
    signed = _CLAIMS_SIGNED.get(type(store))  # inline: a call costs more than the lookup
    if signed is None:
        signed = claims_signed(store)
    try:
        if signed and signature:
            fingerprinted: SignedReplayStore = store  # type: ignore[assignment]
            first = await fingerprinted.claim_signed(key, ttl, signature)
        else:
            first = await store.claim(key, ttl)
    except Exception as exc:
        raise _store_unavailable(exc) from exc
    if not first:
        raise _claimed_concurrently()


def claim_nonce_now(store: ImmediateReplayStore, key: ReplayKey, ttl: int, signature: str) -> None:
    """`claim_nonce` with a signature, for a store that claims at once (`Immediacy`)."""
    try:
        first = store.claim_signed_now(key, ttl, signature)
    except Exception as failure:
        raise _store_unavailable(failure) from failure
    if not first:
        raise _claimed_concurrently()


def _claimed_concurrently() -> TBAError:
    return TBAError(ErrorCode.NONCE_USED, "nonce claimed by a concurrent request")


# --- 8. UnknownIntegration, IntegrationBlocked, AuthorizationFlowRequired ---------------------


def realm_sent(oauth: Mapping[str, str]) -> str:
    return oauth.get("realm", "")


def realm_mismatch(oauth: Mapping[str, str], configured: str | None) -> bool:
    """A realm that differs from the configured one, compared exactly (NetSuite rule N12)."""
    sent = realm_sent(oauth)
    return configured is not None and bool(sent) and sent != configured


def credentials_unavailable(exc: Exception, what: str = "credential store") -> TBAError:
    return TBAError(
        ErrorCode.CREDENTIAL_STORE_UNAVAILABLE, f"{what} failed: {type(exc).__name__}: {exc}"
    )


def token_store_unavailable(exc: Exception) -> TBAError:
    """A failing token store fails closed, as a failing credential store does. An integration
    at its request-token quota gets a code of its own, for it alone."""
    if isinstance(exc, RequestTokenQuotaExceeded):
        return TBAError(ErrorCode.REQUEST_TOKEN_LIMIT, str(exc))
    return credentials_unavailable(exc, "token store")


async def check_integration_known(
    credentials: CredentialStore, oauth: Mapping[str, str], *, realm: str | None, step: Step
) -> Integration:
    try:
        integration = await credentials.integration(oauth["oauth_consumer_key"])
    except Exception as exc:  # any store failure fails closed, never a 500
        raise credentials_unavailable(exc) from exc
    return known_integration(integration, oauth, realm=realm, step=step)


def check_integration_known_now(
    credentials: ImmediateCredentialStore,
    oauth: Mapping[str, str],
    *,
    realm: str | None,
    step: Step,
) -> Integration:
    """`check_integration_known` for a store that answers at once (`Immediacy.integration`)."""
    try:
        integration = credentials.integration_now(oauth["oauth_consumer_key"])
    except Exception as failure:
        raise credentials_unavailable(failure) from failure
    return known_integration(integration, oauth, realm=realm, step=step)


def known_integration(
    integration: Integration | None, oauth: Mapping[str, str], *, realm: str | None, step: Step
) -> Integration:
    """The integration found for the consumer key, refused when there is none (or, at step
    one, when the realm names another account)."""
    if integration is None:
        raise TBAError(ErrorCode.UNKNOWN_INTEGRATION, "no integration has this consumer key")
    if step is Step.REQUEST_TOKEN and realm_mismatch(oauth, realm):
        raise TBAError(ErrorCode.UNKNOWN_INTEGRATION, "the realm is not this account")
    return integration


def check_integration_enabled(
    integration: Integration, oauth: Mapping[str, str], *, step: Step
) -> None:
    if integration.state == "enabled":
        return
    if step is Step.REQUEST_TOKEN and not realm_sent(oauth):
        # NetSuite rule N16 (docs/netsuite-behaviour.md).
        raise TBAError(ErrorCode.UNKNOWN_INTEGRATION, "integration blocked, no realm sent")
    raise TBAError(ErrorCode.INTEGRATION_BLOCKED, "the integration record is blocked")


def check_authorization_flow(integration: Integration) -> None:
    if not integration.authorization_flow:
        raise TBAError(
            ErrorCode.AUTHORIZATION_FLOW_REQUIRED, "the integration does not use the flow"
        )


# --- 9. TokenRejected, EntityOrRoleDisabled ---------------------------------------------------


async def look_up_token(credentials: CredentialStore, token_id: str) -> Token | None:
    """The store's token, or None; a failing store fails closed (503), never a 500."""
    try:
        return await credentials.token(token_id)
    except Exception as exc:
        raise credentials_unavailable(exc) from exc


def look_up_token_now(credentials: ImmediateCredentialStore, token_id: str) -> Token | None:
    """`look_up_token` for a store that answers at once (`Immediacy.token`)."""
    try:
        return credentials.token_now(token_id)
    except Exception as failure:
        raise credentials_unavailable(failure) from failure


async def check_token(
    credentials: CredentialStore,
    oauth: Mapping[str, str],
    integration: Integration,
    *,
    realm: str | None,
    now: float,
) -> Token:
    token = await look_up_token(credentials, oauth["oauth_token"])
    check_token_usable(token, oauth, integration, realm=realm, now=now)
    assert token is not None
    return token


def check_token_usable(
    token: Token | None,
    oauth: Mapping[str, str],
    integration: Integration,
    *,
    realm: str | None,
    now: float,
) -> None:
    if token is None:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "unknown token")
    if token.consumer_key != integration.consumer_key:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "the token belongs to another integration")
    if realm_mismatch(oauth, realm) or (realm and token.account and token.account != realm):
        raise TBAError(ErrorCode.TOKEN_REJECTED, "the token is not of this account")
    if token.revoked or token.state != "active":
        raise _not_active(token)
    if token.expires_at is not None and now >= token.expires_at:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "expired token", problem="token_expired")


def _not_active(token: Token) -> TBAError:
    """NetSuite answers an inactive token as a revoked one, TokenRejected; the reason and the
    problem say which, so that the audit log and explain tell them apart. A state a store of
    one's own made up is refused as inactive: only "active" is accepted."""
    if token.current_state == "revoked":
        return TBAError(ErrorCode.TOKEN_REJECTED, "revoked token", problem="token_revoked")
    return TBAError(ErrorCode.TOKEN_REJECTED, "inactive token", problem="token_inactive")


def check_entity_and_role(token: Token) -> None:
    if not token.active:
        raise TBAError(ErrorCode.ENTITY_OR_ROLE_DISABLED, "the token's entity or role is inactive")


def check_user_active(user: User | None, role: str) -> None:
    """At step three: the user who allowed is still active and may still use the role."""
    if user is None or not user.may_use(role):
        raise TBAError(ErrorCode.ENTITY_OR_ROLE_DISABLED, "the token's entity or role is inactive")


def check_request_token(
    token: RequestToken | None,
    oauth: Mapping[str, str],
    integration: Integration,
    *,
    realm: str | None,
    now: float,
) -> RequestToken:
    """Step 9 of the access-token step: the request token exists, is this integration's and
    account's, is unused and unexpired, and its user has decided (Deny is judged at step 11)."""
    as_token = token.as_token() if token else None
    check_token_usable(as_token, oauth, integration, realm=realm, now=now)
    assert token is not None
    sent_realm = realm_sent(oauth)
    if sent_realm and token.realm and sent_realm != token.realm:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "the token is not of this account")
    if token.uses:
        raise TBAError(ErrorCode.TOKEN_REJECTED, "request token already used", problem="token_used")
    if token.decision == "pending":
        raise TBAError(
            ErrorCode.TOKEN_REJECTED,
            "request token not authorized yet",
            problem="permission_unknown",
        )
    return token


# --- 10. InvalidSignature ---------------------------------------------------------------------


def check_signature(request: OAuthRequest, consumer_secret: str, token_secret: str = "") -> None:
    if not signature_matches(request, consumer_secret, token_secret):
        raise TBAError(ErrorCode.INVALID_SIGNATURE, "the signature does not match")


# --- 11. InvalidCallback (request-token step), InvalidVerifier (access-token step) -----------

_MAX_CALLBACK_LENGTH: Final = 2048
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def check_tba_permitted(
    integration: Integration, brownouts: Iterable[Brownout], now: float
) -> None:
    """TBA for an integration that moved to OAuth 2.0 alone, or inside a brownout window, is
    refused; only after the signature verified, so that only its holder learns it."""
    if "tba" not in integration.schemes:
        raise TBAError(ErrorCode.TBA_NOT_ALLOWED, "the integration allows OAuth 2.0 only")
    for window in brownouts:
        if window.covers(integration.consumer_key, now):
            end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(window.start + window.length))
            raise TBAError(ErrorCode.TBA_BROWNOUT, f"in a TBA brownout window until {end}")


def _callback_parts(url: str, *, wildcard: bool = False) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path?query) of an absolute URL without userinfo or fragment."""
    if len(url) > _MAX_CALLBACK_LENGTH or any(c <= " " or c == "\x7f" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if not parts.scheme or not host or "@" in parts.netloc or "#" in url:
        return None
    if "*" in host and not (wildcard and host.startswith("*.") and "*" not in host[2:]):
        return None
    scheme = parts.scheme.lower()
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    return scheme, host, port, f"{parts.path or '/'}?{parts.query}"


def callback_allowed(callback: str, registered: str | None) -> bool:
    """The integration's callback URL (scheme, host, port, path and query exactly; a host
    `*.example.com` stands for one label), or `http://localhost` on any port and path, where
    native and command-line clients listen (NetSuite rule N25, widened)."""
    sent = _callback_parts(callback)
    if sent is None:
        return False
    scheme, host, port, rest = sent
    if scheme == "http" and host == "localhost":
        return True
    record = _callback_parts(registered, wildcard=True) if registered else None
    if record is None or (scheme, port, rest) != (record[0], record[2], record[3]):
        return False
    if record[1].startswith("*."):
        label, dot, domain = host.partition(".")
        return bool(label) and bool(dot) and domain == record[1][2:]
    return host == record[1]


def check_callback(oauth: Mapping[str, str], integration: Integration) -> str:
    callback = oauth["oauth_callback"]
    if not callback_allowed(callback, integration.callback_url):
        raise TBAError(
            ErrorCode.INVALID_CALLBACK,
            "not the integration's callback URL",
            callback=callback,
        )
    return callback


def check_verifier(token: RequestToken, oauth: Mapping[str, str]) -> None:
    """The verifier the consent page gave on Allow, compared in constant time."""
    if token.decision != "allowed" or not token.verifier:
        raise TBAError(ErrorCode.INVALID_VERIFIER, "the user denied access")
    sent = oauth["oauth_verifier"].encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(token.verifier.encode(), sent):
        raise TBAError(ErrorCode.INVALID_VERIFIER, "the verifier does not match")


# --- the pipeline -----------------------------------------------------------------------------
