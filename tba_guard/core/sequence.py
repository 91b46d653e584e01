"""The order of checks, declared once. `Guard` runs it fail-fast for protected resources and the
flow's steps one and three; `tba-guard explain` runs it to the end and reports every verdict.

Each entry names the steps it belongs to and adapts one function of `checks` to a
`Verification`, the state of one request as it passes: what a check establishes (the timestamp,
the integration, the token) is what a later one reads. The entries before `BODY` need no body,
so a request they refuse is answered before its body is read; cheap checks run before lookups,
and only a request whose signature verified may write to the replay store.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final, cast

from .checks import (
    Step,
    check_authorization_flow,
    check_callback,
    check_entity_and_role,
    check_feature_enabled,
    check_form_body,
    check_integration_enabled,
    check_integration_known,
    check_integration_known_now,
    check_nonce_length,
    check_nonce_unused,
    check_nonce_unused_now,
    check_request_token,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_tba_permitted,
    check_timestamp,
    check_token_usable,
    check_user_active,
    check_verifier,
    check_version,
    claim_nonce,
    claim_nonce_now,
    credentials_unavailable,
    immediacy,
    look_up_token,
    look_up_token_now,
    realm_sent,
    replay_key,
    token_store_unavailable,
)
from .errors import ErrorCode, TBAError
from .protocols import ImmediateCredentialStore, ImmediateReplayStore
from .records import Identity, Token
from .request import parse_parameters, wants_body
from .scheme import Check, Need, Scheme, Verification, register_scheme

RESOURCE: Final = frozenset({Step.RESOURCE})
FLOW: Final = frozenset({Step.REQUEST_TOKEN, Step.ACCESS_TOKEN})
REQUEST_TOKEN: Final = frozenset({Step.REQUEST_TOKEN})
ACCESS_TOKEN: Final = frozenset({Step.ACCESS_TOKEN})


PARAMETERS: Final = Need("oauth", "the parameters could not be read")
TIMESTAMP: Final = Need("timestamp", "the timestamp is not a number")
REPLAY_KEY: Final = Need("key", "no replay key: the nonce was not read")
INTEGRATION: Final = Need("integration", "no integration")
TOKEN: Final = Need("token", "no token")
REQUEST_TOKEN_FOUND: Final = Need("request_token", "no request token (explain has no token store)")
CONSUMER_SECRET: Final = Need("integration", "no consumer secret for an unknown consumer key")
TOKEN_SECRET: Final = Need("token_secret", "no token secret for an unknown token")


# --- the entries: each adapts one check to the state of the request ----------------------------


def feature_enabled(v: Verification) -> None:
    check_feature_enabled(v.limits.feature_enabled)


def parameters_present(v: Verification) -> None:
    s = v.limits
    parse_parameters(
        v.request,
        header_max_length=s.header_max_length,
        header_max_parameters=s.header_max_parameters,
    )
    check_required_parameters(v.request, v.step)


def version_supported(v: Verification) -> None:
    check_version(v.request.oauth)


def signature_method_accepted(v: Verification) -> None:
    request = v.request
    check_signature_method(request.oauth, v.limits.signature_methods, secure=request.secure)


def timestamp_in_window(v: Verification) -> None:
    v.timestamp = check_timestamp(
        v.request.oauth, now=v.now, tolerance=v.limits.timestamp_tolerance
    )


def nonce_length(v: Verification) -> None:
    s = v.limits
    check_nonce_length(v.request.oauth, minimum=s.nonce_min_length, maximum=s.nonce_max_length)


def nonce_unused(v: Verification) -> Awaitable[None] | None:
    assert v.timestamp is not None
    v.key = key = replay_key(v.request.oauth, v.timestamp)
    store = v.replay_store
    if immediacy(store).seen:  # an in-process store: no coroutine to make and await
        check_nonce_unused_now(cast(ImmediateReplayStore, store), key)
        return None
    return check_nonce_unused(store, key)  # the check's own coroutine: one layer less


def integration_known(v: Verification) -> Awaitable[None] | None:
    v.well_formed = True  # checks 1 to 7 passed: credentials are looked up from here on
    credentials, s = v.credentials, v.limits
    if immediacy(credentials).integration:
        v.integration = check_integration_known_now(
            cast(ImmediateCredentialStore, credentials), v.request.oauth, realm=s.realm, step=v.step
        )
        return None
    return integration_looked_up(v)


async def integration_looked_up(v: Verification) -> None:
    v.integration = await check_integration_known(
        v.credentials, v.request.oauth, realm=v.limits.realm, step=v.step
    )


def integration_enabled(v: Verification) -> None:
    assert v.integration is not None
    check_integration_enabled(v.integration, v.request.oauth, step=v.step)


def authorization_flow_allowed(v: Verification) -> None:
    assert v.integration is not None
    check_authorization_flow(v.integration)


def token_usable(v: Verification) -> Awaitable[None] | None:
    credentials = v.credentials
    v.looked_up_token = True
    if immediacy(credentials).token:
        token_id = v.request.oauth["oauth_token"]
        token_found(v, look_up_token_now(cast(ImmediateCredentialStore, credentials), token_id))
        return None
    return token_looked_up(v)


async def token_looked_up(v: Verification) -> None:
    token_found(v, await look_up_token(v.credentials, v.request.oauth["oauth_token"]))


def token_found(v: Verification, token: Token | None) -> None:
    assert v.integration is not None
    v.token = token
    if token is not None:  # known to explain even when the token is unusable
        v.token_secret = token.token_secret
    check_token_usable(token, v.request.oauth, v.integration, realm=v.limits.realm, now=v.now)


def no_token_yet(v: Verification) -> None:
    """Step one signs with the consumer secret alone: the token secret is empty (rule N21)."""
    v.token_secret = ""


def token_entity_and_role_active(v: Verification) -> None:
    assert v.token is not None
    check_entity_and_role(v.token)


async def request_token_usable(v: Verification) -> None:
    assert v.integration is not None
    oauth = v.request.oauth
    v.looked_up_token = True
    found = None
    if v.tokens is not None:
        try:
            found = await v.tokens.request_token(oauth["oauth_token"])
        except Exception as exc:
            raise token_store_unavailable(exc) from exc
    if found is not None:
        v.request_token, v.token_secret = found, found.token_secret
    check_request_token(found, oauth, v.integration, realm=v.limits.realm, now=v.now)


async def consenting_user_active(v: Verification) -> None:
    """The user who allowed must still be usable in the role they chose (Deny is step 11's)."""
    token = v.request_token
    assert token is not None
    if token.decision != "allowed" or v.user_lookup is None:
        return
    v.looked_up_user = True
    try:
        user = await v.user_lookup(token.entity)
    except Exception as exc:  # a failing directory fails closed, never a 500
        raise credentials_unavailable(exc, "user lookup") from exc
    check_user_active(user, token.role)


def form_body_read(v: Verification) -> None:
    check_form_body(v.request)


def signature_matches(v: Verification) -> None:
    assert v.integration is not None
    assert v.token_secret is not None
    v.signed = True
    check_signature(v.request, v.integration.consumer_secret, v.token_secret)
    v.verified = True


def tba_permitted(v: Verification) -> None:
    assert v.integration is not None
    check_tba_permitted(v.integration, v.limits.brownouts, v.now)


def callback_registered(v: Verification) -> None:
    assert v.integration is not None
    v.callback = check_callback(v.request.oauth, v.integration)


async def verifier_matches(v: Verification) -> None:
    """A verifier can be tried once: a wrong one, signed correctly, uses the request token up."""
    assert v.request_token is not None
    try:
        check_verifier(v.request_token, v.request.oauth)
    except TBAError:
        # Always true: a request token was found, so there is a token store (explain, which
        # has none, stops at check 9 and never runs this writing check).
        if v.tokens is not None:  # pragma: no branch
            try:
                await v.tokens.consume(v.request_token.token_id)
            except Exception as exc:
                raise token_store_unavailable(exc) from exc
        raise


def nonce_claimed(v: Verification) -> Awaitable[None] | None:
    assert v.key is not None
    signature = v.request.oauth["oauth_signature"]  # its fingerprint tells a resend later
    store = v.replay_store
    if immediacy(store).claim_signed and signature:
        claim_nonce_now(cast(ImmediateReplayStore, store), v.key, v.limits.replay_ttl, signature)
        return None
    return claim_nonce(store, v.key, v.limits.replay_ttl, signature)


# --- the declaration ----------------------------------------------------------------------------

_C = ErrorCode
_INTEGRATION = (_C.UNKNOWN_INTEGRATION, _C.INTEGRATION_BLOCKED)
_TOKEN = (_C.TOKEN_REJECTED, _C.ENTITY_OR_ROLE_DISABLED)


def timestamp_as_sent(v: Verification) -> None:
    """For explain: a timestamp outside the window, in seconds or milliseconds, still makes the
    replay key of check 7."""
    raw = v.request.oauth.get("oauth_timestamp", "")
    v.timestamp = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 16 else None


#: Every check, in order (rule N30 of docs/netsuite-behaviour.md); the numbers are the
#: project's, one number may span several entries.
SEQUENCE: Final[tuple[Check, ...]] = (
    Check("1", (_C.FEATURE_DISABLED,), feature_enabled),
    Check("2", (_C.MISSING_REQUIRED_PARAMETER,), parameters_present, stops=PARAMETERS),
    Check("3", (_C.VERSION_REJECTED,), version_supported),
    Check("4", (_C.UNKNOWN_ALGORITHM,), signature_method_accepted),
    Check("5", (_C.INVALID_TIMESTAMP,), timestamp_in_window, recover=timestamp_as_sent),
    Check("6", (_C.NONCE_REJECTED,), nonce_length),
    Check(
        "7",
        (_C.NONCE_USED,),
        nonce_unused,
        needs=(TIMESTAMP,),
        note="(explain keeps no history; the real store may have seen it)",
    ),
    Check("8", _INTEGRATION, integration_known),
    Check("8", _INTEGRATION, integration_enabled, needs=(INTEGRATION,)),
    Check("8", _INTEGRATION, authorization_flow_allowed, steps=FLOW, needs=(INTEGRATION,)),
    Check("9", _TOKEN, token_usable, steps=RESOURCE, needs=(INTEGRATION,)),
    Check("9", _TOKEN, token_entity_and_role_active, steps=RESOURCE, needs=(TOKEN,)),
    Check("9", (), no_token_yet, steps=REQUEST_TOKEN, label="no token at step one"),
    Check(
        "9",
        _TOKEN,
        request_token_usable,
        steps=ACCESS_TOKEN,
        needs=(INTEGRATION,),
    ),
    Check(
        "9",
        _TOKEN,
        consenting_user_active,
        steps=ACCESS_TOKEN,
        needs=(REQUEST_TOKEN_FOUND,),
    ),
    # BODY: what follows reads the body, when the signature covers it.
    Check("10", (_C.INVALID_SIGNATURE,), form_body_read),
    Check(
        "10",
        (_C.INVALID_SIGNATURE,),
        signature_matches,
        needs=(CONSUMER_SECRET, TOKEN_SECRET),
    ),
    Check("10", (_C.TBA_NOT_ALLOWED, _C.TBA_BROWNOUT), tba_permitted, needs=(INTEGRATION,)),
    Check(
        "11",
        (_C.INVALID_CALLBACK,),
        callback_registered,
        steps=REQUEST_TOKEN,
        needs=(INTEGRATION,),
    ),
    Check(
        "11",
        (_C.INVALID_VERIFIER,),
        verifier_matches,
        steps=ACCESS_TOKEN,
        needs=(REQUEST_TOKEN_FOUND,),
        writes=True,
    ),
    Check(
        "12",
        (),
        nonce_claimed,
        needs=(REPLAY_KEY,),
        writes=True,
        label="claim the replay key",
    ),
)
BODY: Final = next(i for i, check in enumerate(SEQUENCE) if check.run is form_body_read)


def oauth_identity(v: Verification) -> Identity:
    """Who a verified request for a protected resource speaks for."""
    token, integration = v.token, v.integration
    assert integration is not None
    assert token is not None
    return Identity(
        consumer_key=integration.consumer_key,
        token_id=token.token_id,
        realm=v.limits.realm or realm_sent(v.request.oauth),
        entity=token.entity,
        role=token.role,
    )


#: TBA: OAuth 1.0 as NetSuite checks it (rules N1, N14), the scheme of `Authorization: OAuth …`
#: and of a request with no credentials at all (which its check 2 answers with the challenge).
OAUTH: Final = register_scheme(
    Scheme(
        "OAuth",
        SEQUENCE,
        body_from=BODY,
        identity=oauth_identity,
        wants_body=wants_body,
        codes=[code for check in SEQUENCE for code in check.codes],
    )
)
