"""OAuth 2.0's orders of checks, declared once as TBA's are (`sequence.py`): the token
endpoint's client credentials grant (`CLIENT_CREDENTIALS`, run by the token endpoint through
`Guard.verifying`) and the bearer token on protected resources (`BEARER`, registered for the
`Authorization: Bearer …` header of a guard whose settings enable OAuth 2.0).

As in TBA, cheap checks come before lookups, the signature before anything it vouches for, and
only a verified assertion may write to the replay store.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from .checks import Step
from .errors import ErrorCode, TBAError
from .jose import read_certificate
from .oauth2 import (
    AccessTokens,
    VerifiedToken,
    assertion_replay_key,
    check_access_token,
    check_assertion_audience,
    check_assertion_header,
    check_assertion_issuer,
    check_assertion_lifetime,
    check_assertion_signature,
    check_bearer_header,
    check_certificate_usable,
    check_client_assertion_present,
    check_client_may_use_oauth2,
    check_client_still_authorized,
    check_grant_type,
    check_scope_covers,
    check_scope_requested,
    check_token_live,
    check_token_request_form,
    claim_assertion,
    look_up_certificate,
    look_up_client,
)
from .records import Identity
from .request import OAuthRequest
from .scheme import Check, Need, Scheme, Verification, register_scheme
from .settings import GuardSettings

_C = ErrorCode

FORM: Final = Need("form", "the form could not be read")
ASSERTION: Final = Need("assertion", "no client_assertion")
HEADER: Final = Need("header", "the assertion's header could not be read")
MAPPING: Final = Need("certificate", "no usable mapping for the kid")
CLAIMS: Final = Need("claims", "the assertion's signature did not verify")
ACCESS_TOKEN: Final = Need("access_token", "the access token did not verify")


def _tokens(v: Verification) -> AccessTokens:
    tokens = v.limits.oauth2
    assert isinstance(tokens, AccessTokens), "OAuth 2.0 is off: no oauth2_signing_keys"
    return tokens


# --- the token endpoint -------------------------------------------------------------------------


def token_request_form(v: Verification) -> None:
    v.form = check_token_request_form(v.request)


def grant_type_supported(v: Verification) -> None:
    assert v.form is not None
    check_grant_type(v.form)


def client_assertion_present(v: Verification) -> None:
    assert v.form is not None
    v.assertion = check_client_assertion_present(v.form)


def assertion_header_accepted(v: Verification) -> None:
    assert v.assertion is not None
    v.header = check_assertion_header(v.assertion)


async def mapping_usable(v: Verification) -> None:
    assert v.header is not None
    v.well_formed = True
    found = await look_up_certificate(v.credentials, v.header["kid"])
    check_certificate_usable(found, v.header["alg"], v.now, code=_C.INVALID_CLIENT)
    v.certificate = found  # only a usable one: explain's later checks need one to run


def assertion_signed(v: Verification) -> None:
    assert v.assertion is not None
    assert v.header is not None
    assert v.certificate is not None
    v.signed = True
    key = read_certificate(v.certificate.certificate).key
    v.claims = check_assertion_signature(v.assertion, key, v.header["alg"])
    v.verified = True


async def assertion_issued_by_client(v: Verification) -> None:
    assert v.claims is not None
    assert v.certificate is not None
    client_id = check_assertion_issuer(v.claims, v.certificate)
    v.integration = check_client_may_use_oauth2(await look_up_client(v.credentials, client_id))


def assertion_for_this_endpoint(v: Verification) -> None:
    assert v.claims is not None
    check_assertion_audience(v.claims, v.request.uri)


def assertion_live(v: Verification) -> None:
    assert v.claims is not None
    check_assertion_lifetime(v.claims, now=v.now, tolerance=v.limits.timestamp_tolerance)


def scope_known(v: Verification) -> None:
    assert v.claims is not None
    v.scopes = check_scope_requested(v.claims)


def assertion_unused(v: Verification) -> Awaitable[None]:
    assert v.claims is not None
    assert v.assertion is not None
    assert v.certificate is not None
    v.key = key = assertion_replay_key(v.claims, v.assertion, v.certificate.client_id)
    # Remembered until the assertion could no longer pass: its exp, plus the tolerance.
    ttl = max(1, int(v.claims["exp"] - v.now) + v.limits.timestamp_tolerance)
    return claim_assertion(v.replay_store, key, ttl)


#: The grant's checks run at the token step, the one OAuth 2.0 has.
GRANT_STEP: Final = frozenset({Step.ACCESS_TOKEN})

CLIENT_CREDENTIALS_SEQUENCE: Final[tuple[Check, ...]] = (
    Check("1", (_C.INVALID_REQUEST,), token_request_form, stops=FORM, steps=GRANT_STEP),
    Check(
        "2", (_C.UNSUPPORTED_GRANT_TYPE, _C.INVALID_REQUEST), grant_type_supported, steps=GRANT_STEP
    ),
    Check("3", (_C.INVALID_REQUEST,), client_assertion_present, stops=ASSERTION, steps=GRANT_STEP),
    Check("4", (_C.INVALID_CLIENT,), assertion_header_accepted, stops=HEADER, steps=GRANT_STEP),
    Check("5", (_C.INVALID_CLIENT,), mapping_usable, stops=MAPPING, steps=GRANT_STEP),
    Check(
        "6",
        (_C.INVALID_CLIENT,),
        assertion_signed,
        needs=(MAPPING,),
        stops=CLAIMS,
        steps=GRANT_STEP,
    ),
    Check(
        "7",
        (_C.INVALID_CLIENT, _C.UNAUTHORIZED_CLIENT),
        assertion_issued_by_client,
        needs=(CLAIMS,),
        steps=GRANT_STEP,
    ),
    Check("8", (_C.INVALID_GRANT,), assertion_for_this_endpoint, needs=(CLAIMS,), steps=GRANT_STEP),
    Check("9", (_C.INVALID_GRANT,), assertion_live, needs=(CLAIMS,), steps=GRANT_STEP),
    Check("10", (_C.INVALID_SCOPE,), scope_known, needs=(CLAIMS,), steps=GRANT_STEP),
    Check(
        "11",
        (_C.INVALID_GRANT,),
        assertion_unused,
        needs=(CLAIMS,),
        writes=True,
        label="the assertion is used once",
        steps=GRANT_STEP,
    ),
)


def grant_identity(v: Verification) -> Identity:
    """Who the issued token will speak for: the mapping's entity and role."""
    certificate, integration = v.certificate, v.integration
    assert certificate is not None
    assert integration is not None
    return Identity(
        integration.consumer_key,
        certificate.certificate_id,
        v.limits.realm or "",
        certificate.entity,
        certificate.role,
        scheme="oauth2",
        scopes=v.scopes,
    )


def grant_who(v: Verification) -> tuple[str, str]:
    """The audit's consumer key and token: the integration's, the mapping's certificate ID."""
    if v.integration is not None:
        consumer_key = v.integration.consumer_key
    else:
        consumer_key = str((v.claims or {}).get("iss", ""))
    certificate_id = str((v.header or {}).get("kid", ""))
    return consumer_key, certificate_id


def always_body(request: OAuthRequest) -> bool:
    return True


#: The token endpoint's grant: not an `Authorization` scheme, so never registered.
CLIENT_CREDENTIALS: Final = Scheme(
    "client_credentials",
    CLIENT_CREDENTIALS_SEQUENCE,
    body_from=0,
    identity=grant_identity,
    wants_body=always_body,
    codes=[code for check in CLIENT_CREDENTIALS_SEQUENCE for code in check.codes],
    who=grant_who,
    audit_name="oauth2",
)


# --- bearer tokens on protected resources -------------------------------------------------------


def bearer_token_read(v: Verification) -> None:
    if v.step is not Step.RESOURCE:
        raise TBAError(
            _C.INVALID_BEARER_TOKEN, "bearer tokens are for protected resources, not TBA's flow"
        )
    request, tokens = v.request, _tokens(v)
    tolerance = v.limits.timestamp_tolerance
    authorization = request.authorization or ""
    # A token verified before was well formed: its cache entry stands for the syntax check.
    seen = None
    if request.authorization_count == 1 and authorization.startswith("Bearer "):
        seen = tokens.cache.get(authorization[7:])
    if seen is not None:
        v.access_token = check_token_live(seen, now=v.now, tolerance=tolerance)
        return
    token = check_bearer_header(request.authorization, request.authorization_count)
    v.access_token = check_access_token(token, tokens, now=v.now, tolerance=tolerance)


async def client_still_authorized(v: Verification) -> None:
    verified: VerifiedToken = v.access_token
    v.well_formed = True
    integration = await look_up_client(v.credentials, verified.client_id)
    certificate = await look_up_certificate(v.credentials, verified.certificate_id)
    v.integration = check_client_still_authorized(integration, certificate, v.now)
    v.certificate = certificate


def scope_covers_route(v: Verification) -> None:
    verified: VerifiedToken = v.access_token
    check_scope_covers(v.request.path, verified.scopes, _tokens(v))
    v.verified = True


BEARER_SEQUENCE: Final[tuple[Check, ...]] = (
    Check("1", (_C.INVALID_BEARER_TOKEN,), bearer_token_read, stops=ACCESS_TOKEN),
    Check(
        "2",
        (_C.INVALID_BEARER_TOKEN,),
        client_still_authorized,
        steps=frozenset({Step.RESOURCE}),
        needs=(ACCESS_TOKEN,),
    ),
    Check(
        "3",
        (_C.INSUFFICIENT_SCOPE,),
        scope_covers_route,
        steps=frozenset({Step.RESOURCE}),
        needs=(ACCESS_TOKEN,),
    ),
)


def bearer_identity(v: Verification) -> Identity:
    verified: VerifiedToken = v.access_token
    integration = v.integration
    assert integration is not None
    return Identity(
        integration.consumer_key,
        verified.certificate_id,
        v.limits.realm or "",
        verified.entity,
        verified.role,
        scheme="oauth2",
        scopes=verified.scopes,
    )


def bearer_who(v: Verification) -> tuple[str, str]:
    verified: VerifiedToken | None = v.access_token
    if verified is None:
        return "", ""
    consumer_key = v.integration.consumer_key if v.integration is not None else verified.client_id
    return consumer_key, verified.certificate_id


def no_body(request: OAuthRequest) -> bool:
    return False


def oauth2_enabled(settings: GuardSettings) -> bool:
    return settings.oauth2_enabled


#: `Authorization: Bearer …`: the guard's own access tokens (RFC 6750).
BEARER: Final = register_scheme(
    Scheme(
        "Bearer",
        BEARER_SEQUENCE,
        body_from=len(BEARER_SEQUENCE),
        identity=bearer_identity,
        wants_body=no_body,
        codes=[code for check in BEARER_SEQUENCE for code in check.codes],
        who=bearer_who,
        audit_name="oauth2",
        enabled=oauth2_enabled,
    )
)
