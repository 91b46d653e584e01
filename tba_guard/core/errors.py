"""The error catalog: every code a rejection can carry, and how it goes on the wire.

One table (`CATALOG`) holds each code's HTTP status, OAuth Problem Reporting value and message,
so that the checks only ever say *which* code applies and never how it is rendered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

ErrorDetail = Literal["code", "opaque"]


class ErrorCode(StrEnum):
    """NetSuite's TBA error codes (NetSuite rule N1, docs/netsuite-behaviour.md), plus the
    project's own."""

    FEATURE_DISABLED = "FeatureDisabled"
    MISSING_REQUIRED_PARAMETER = "MissingRequiredParameter"
    VERSION_REJECTED = "VersionRejected"
    UNKNOWN_ALGORITHM = "UnknownAlgorithm"
    INVALID_TIMESTAMP = "InvalidTimestamp"
    NONCE_REJECTED = "NonceRejected"
    NONCE_USED = "NonceUsed"
    UNKNOWN_INTEGRATION = "UnknownIntegration"
    INTEGRATION_BLOCKED = "IntegrationBlocked"
    AUTHORIZATION_FLOW_REQUIRED = "AuthorizationFlowRequired"
    TOKEN_REJECTED = "TokenRejected"
    ENTITY_OR_ROLE_DISABLED = "EntityOrRoleDisabled"
    INVALID_SIGNATURE = "InvalidSignature"
    INVALID_CALLBACK = "InvalidCallback"
    INVALID_VERIFIER = "InvalidVerifier"
    # The project's own codes: operational limits that are not an OAuth verdict.
    REPLAY_STORE_UNAVAILABLE = "ReplayStoreUnavailable"
    CREDENTIAL_STORE_UNAVAILABLE = "CredentialStoreUnavailable"
    REQUEST_BODY_TOO_LARGE = "RequestBodyTooLarge"
    REQUEST_BODY_TIMEOUT = "RequestBodyTimeout"
    REQUEST_BUFFERS_FULL = "RequestBuffersFull"
    AMBIGUOUS_REQUEST = "AmbiguousRequest"
    HOST_NOT_ALLOWED = "HostNotAllowed"
    REQUEST_TOKEN_LIMIT = "RequestTokenLimit"
    # The move to OAuth 2.0: TBA refused for an integration that left it, or in a brownout.
    TBA_NOT_ALLOWED = "TBANotAllowed"
    TBA_BROWNOUT = "TBABrownout"
    # OAuth 2.0 bearer tokens on protected resources (RFC 6750's `error` is the problem).
    INVALID_BEARER_TOKEN = "InvalidBearerToken"
    INSUFFICIENT_SCOPE = "InsufficientScope"
    # The token endpoint's refusals: RFC 6749's `error` values, each its own code.
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    INVALID_SCOPE = "invalid_scope"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    # Concurrency governance: too many requests in flight, as each surface says it.
    REQUEST_LIMIT_EXCEEDED = "SSS_REQUEST_LIMIT_EXCEEDED"  # a RESTlet's SuiteScript error
    CONCURRENCY_LIMIT_EXCEEDED = "CONCURRENCY_LIMIT_EXCEEDED"  # REST web services'
    GOVERNANCE_STORE_UNAVAILABLE = "GovernanceStoreUnavailable"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    status: int
    problem: str
    message: str  # what the client is told, in NetSuite's wording where it has one (N1)


_C = ErrorCode
CATALOG: dict[ErrorCode, CatalogEntry] = {
    _C.FEATURE_DISABLED: CatalogEntry(
        401,
        "permission_denied",
        "Token-based authentication is switched off for this account. "
        "Enable the feature before sending OAuth requests.",
    ),
    _C.MISSING_REQUIRED_PARAMETER: CatalogEntry(
        400,
        "parameter_absent",
        "The OAuth Authorization header is missing, malformed, or lacks a required parameter. "
        "Send 'Authorization: OAuth' with each required parameter exactly once.",
    ),
    _C.VERSION_REJECTED: CatalogEntry(
        400,
        "version_rejected",
        "oauth_version must be exactly 1.0. Send 1.0 or leave the parameter out.",
    ),
    _C.UNKNOWN_ALGORITHM: CatalogEntry(
        400,
        "signature_method_rejected",
        "The oauth_signature_method is not accepted here. Sign with HMAC-SHA256.",
    ),
    _C.INVALID_TIMESTAMP: CatalogEntry(
        400,
        "timestamp_refused",
        "oauth_timestamp must be the current time in whole seconds since the epoch, within "
        "the accepted window. Check the client's clock and that it does not send milliseconds.",
    ),
    _C.NONCE_REJECTED: CatalogEntry(
        400,
        "parameter_rejected",
        "oauth_nonce has the wrong length. Send a fresh random nonce of about 20 characters.",
    ),
    _C.NONCE_USED: CatalogEntry(
        401,
        "nonce_used",
        "This combination of nonce and timestamp was already used. "
        "Generate a new nonce and timestamp, and sign again, for every request.",
    ),
    _C.UNKNOWN_INTEGRATION: CatalogEntry(
        401,
        "consumer_key_unknown",
        "No integration record matches this consumer key for this account. "
        "Check the consumer key and the realm (account ID).",
    ),
    _C.INTEGRATION_BLOCKED: CatalogEntry(
        401,
        "consumer_key_rejected",
        "The integration record is blocked. Enable it on the integration record.",
    ),
    _C.AUTHORIZATION_FLOW_REQUIRED: CatalogEntry(
        401,
        "permission_denied",
        "The integration does not use the TBA authorization flow. "
        "Check the 'TBA: Authorization Flow' box on the integration record.",
    ),
    _C.TOKEN_REJECTED: CatalogEntry(
        401,
        "token_rejected",
        "The token could not be found or is not usable: check that it exists, belongs to this "
        "integration and account, and has not expired or been revoked.",
    ),
    _C.ENTITY_OR_ROLE_DISABLED: CatalogEntry(
        401,
        "permission_denied",
        "The entity or role of this token is not usable. "
        "Check that the user and role are active and may use web services.",
    ),
    _C.INVALID_SIGNATURE: CatalogEntry(
        401,
        "signature_invalid",
        "The signature is incorrect. Rebuild the base string (method, URL, sorted parameters) "
        "and sign it with the consumer secret and token secret.",
    ),
    _C.INVALID_CALLBACK: CatalogEntry(
        400,
        "parameter_rejected",
        "The callback URL is not valid for this integration. "
        "Use the callback URL of the integration record.",
    ),
    _C.INVALID_VERIFIER: CatalogEntry(
        401,
        "verifier_invalid",
        "oauth_verifier does not match the verifier given at the authorization step. "
        "Send the verifier that came back with the authorized request token.",
    ),
    _C.REPLAY_STORE_UNAVAILABLE: CatalogEntry(
        503,
        "temporarily_unavailable",
        "The replay-protection store is unavailable, so the request cannot be checked. "
        "Retry later.",
    ),
    _C.CREDENTIAL_STORE_UNAVAILABLE: CatalogEntry(
        503,
        "temporarily_unavailable",
        "The credential store is unavailable, so the request cannot be checked. Retry later.",
    ),
    _C.REQUEST_BODY_TOO_LARGE: CatalogEntry(
        413,
        "parameter_rejected",
        "The form body is larger than the guard reads for signing. Send a smaller body.",
    ),
    _C.REQUEST_BODY_TIMEOUT: CatalogEntry(
        408,
        "parameter_rejected",
        "The request body did not arrive in time. Send the whole body promptly.",
    ),
    _C.REQUEST_BUFFERS_FULL: CatalogEntry(
        503,
        "temporarily_unavailable",
        "The server is holding as many request bodies as it may. Retry later.",
    ),
    _C.AMBIGUOUS_REQUEST: CatalogEntry(
        400,
        "parameter_rejected",
        "The request could be read in more than one way: a repeated Content-Type or Host "
        "header, Content-Length with Transfer-Encoding, or a form body that is not plain "
        "ASCII URL-encoding of UTF-8. Send each header once and percent-encode the form.",
    ),
    _C.HOST_NOT_ALLOWED: CatalogEntry(
        400,
        "parameter_rejected",
        "This service does not answer for the host named in the request. "
        "Send the request to the service's own host name.",
    ),
    _C.REQUEST_TOKEN_LIMIT: CatalogEntry(
        503,
        "temporarily_unavailable",
        "This integration holds as many unused request tokens as it may. Finish or abandon "
        "the authorizations in progress, and retry when their request tokens expire.",
    ),
    _C.TBA_NOT_ALLOWED: CatalogEntry(
        401,
        "permission_denied",
        "This integration no longer accepts token-based authentication. Use OAuth 2.0: "
        "request a token with the client credentials grant and send it as a Bearer token.",
    ),
    _C.TBA_BROWNOUT: CatalogEntry(
        401,
        "permission_denied",
        "Token-based authentication is switched off for this integration during a scheduled "
        "brownout before its retirement. Move the integration to OAuth 2.0 (client "
        "credentials grant, Bearer tokens); TBA works again after the window.",
    ),
    _C.INVALID_BEARER_TOKEN: CatalogEntry(
        401,
        "invalid_token",
        "The bearer token is malformed, expired, revoked, or not issued by this service. "
        "Request a new token with the client credentials grant.",
    ),
    _C.INSUFFICIENT_SCOPE: CatalogEntry(
        403,
        "insufficient_scope",
        "The bearer token's scope does not cover this resource: RESTlets need 'restlets', "
        "REST web services 'rest_webservices'. Request a token with that scope.",
    ),
    _C.INVALID_REQUEST: CatalogEntry(
        400,
        "invalid_request",
        "The token request is malformed: send a form with grant_type, client_assertion_type "
        "and client_assertion, each once.",
    ),
    _C.INVALID_CLIENT: CatalogEntry(
        400,
        "invalid_client",
        "The client assertion was not accepted: check its kid (the certificate ID of a "
        "mapping), its iss (the client ID), its signature and that the mapping is active.",
    ),
    _C.INVALID_GRANT: CatalogEntry(
        400,
        "invalid_grant",
        "The client assertion is expired, not yet valid, used before, or meant for another "
        "token endpoint (aud). Sign a fresh assertion for each token request.",
    ),
    _C.INVALID_SCOPE: CatalogEntry(
        400,
        "invalid_scope",
        "The scope is missing or unknown: ask for restlets, rest_webservices or both.",
    ),
    _C.UNAUTHORIZED_CLIENT: CatalogEntry(
        400,
        "unauthorized_client",
        "The integration may not use OAuth 2.0 client credentials: it is blocked, or "
        "allowed TBA only.",
    ),
    _C.UNSUPPORTED_GRANT_TYPE: CatalogEntry(
        400,
        "unsupported_grant_type",
        "Only the client_credentials grant with a JWT client assertion is served here.",
    ),
    _C.REQUEST_LIMIT_EXCEEDED: CatalogEntry(
        400,
        "temporarily_unavailable",
        "The account is serving as many requests at once as its concurrency limit allows. "
        "Retry after the Retry-After seconds, or send fewer requests at once.",
    ),
    _C.GOVERNANCE_STORE_UNAVAILABLE: CatalogEntry(
        503,
        "temporarily_unavailable",
        "The service cannot count the requests in flight right now. Retry shortly.",
    ),
    _C.CONCURRENCY_LIMIT_EXCEEDED: CatalogEntry(
        429,
        "temporarily_unavailable",
        "The account is serving as many requests at once as its concurrency limit allows. "
        "Retry after the Retry-After seconds, or send fewer requests at once.",
    ),
}

#: The codes of bearer tokens on protected resources: answered with a `Bearer` challenge.
BEARER_CODES = frozenset({_C.INVALID_BEARER_TOKEN, _C.INSUFFICIENT_SCOPE})
#: The token endpoint's codes: answered as RFC 6749 says, `{"error": …, "error_description": …}`.
GRANT_CODES = frozenset(
    {
        _C.INVALID_REQUEST,
        _C.INVALID_CLIENT,
        _C.INVALID_GRANT,
        _C.INVALID_SCOPE,
        _C.UNAUTHORIZED_CLIENT,
        _C.UNSUPPORTED_GRANT_TYPE,
    }
)

#: Codes of the project's own: an operational limit or a request that cannot be read one way,
#: never a verdict on credentials, so opaque mode shows them as they are.
OPERATIONAL_CODES = frozenset(
    {
        _C.REPLAY_STORE_UNAVAILABLE,
        _C.CREDENTIAL_STORE_UNAVAILABLE,
        _C.REQUEST_BODY_TOO_LARGE,
        _C.REQUEST_BODY_TIMEOUT,
        _C.REQUEST_BUFFERS_FULL,
        _C.AMBIGUOUS_REQUEST,
        _C.HOST_NOT_ALLOWED,
        _C.REQUEST_TOKEN_LIMIT,  # only after the signature verified: the caller holds the secret
        _C.GOVERNANCE_STORE_UNAVAILABLE,
    }
)
#: The move to OAuth 2.0, told after the signature verified: opaque mode shows them as they
#: are, since the caller holds the secrets and must learn that it is to move.
MIGRATION_CODES = frozenset({_C.TBA_NOT_ALLOWED, _C.TBA_BROWNOUT})
#: Concurrency governance's refusals, after the request verified: a RESTlet answers NetSuite's
#: SuiteScript error (400), REST web services an RFC 9457 problem (429); both `Retry-After`.
GOVERNANCE_CODES = frozenset({_C.REQUEST_LIMIT_EXCEEDED, _C.CONCURRENCY_LIMIT_EXCEEDED})
RETRY_AFTER_SECONDS = 1


class TBAError(Exception):
    """A rejection: one catalog code, plus what the challenge header needs to explain it.

    `reason` is for the audit log and `tba-guard explain`: it may name parameters but never
    carries a secret. `problem` overrides the catalog's `oauth_problem` where the catalog allows a
    more precise value (`parameter_rejected`, `token_expired`, ...).
    """

    def __init__(
        self,
        code: ErrorCode,
        reason: str = "",
        *,
        problem: str | None = None,
        parameters_absent: tuple[str, ...] = (),
        parameters_rejected: tuple[str, ...] = (),
        acceptable_timestamps: tuple[int, int] | None = None,
        callback: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}" if reason else str(code))
        self.code = code
        self._status = status
        self.reason = reason
        self.problem = problem
        self.parameters_absent = parameters_absent
        self.parameters_rejected = parameters_rejected
        self.acceptable_timestamps = acceptable_timestamps
        self.callback = callback

    @property
    def status(self) -> int:
        return self._status or CATALOG[self.code].status

    @property
    def oauth_problem(self) -> str:
        if self.problem is not None:
            return self.problem
        if self.parameters_rejected and not self.parameters_absent:
            return "parameter_rejected"
        return CATALOG[self.code].problem

    @property
    def message(self) -> str:
        message = CATALOG[self.code].message
        if self.code is ErrorCode.INVALID_CALLBACK and self.callback is not None:
            # NetSuite rule N3 (docs/netsuite-behaviour.md).
            return f"InvalidCallback {self.callback}. {message}"
        if self.parameters_absent:
            return f"{message} Absent: {', '.join(self.parameters_absent)}."
        if self.parameters_rejected:
            return f"{message} Rejected: {', '.join(self.parameters_rejected)}."
        return message


def missing(*names: str, reason: str = "", status: int | None = None) -> TBAError:
    return TBAError(
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        reason or f"absent: {', '.join(names)}",
        parameters_absent=names,
        status=status,
    )


def rejected(*names: str, reason: str = "") -> TBAError:
    return TBAError(
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        reason or f"rejected: {', '.join(names)}",
        parameters_rejected=names,
    )


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_OPAQUE_LOGIN = {"code": "INVALID_LOGIN_ATTEMPT", "message": "Invalid login attempt."}
_OPAQUE_BAD_REQUEST = {"code": "INVALID_REQUEST", "message": "Invalid request."}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _quote(value: str) -> str:
    # Values are our own codes and integers, but a realm comes from settings and a rejected
    # parameter name from the client (percent-decoded, so `%0D%0A` is a real CR LF): escape
    # control characters so that no value can end the header line or inject another header.
    value = _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(error: TBAError, realm: str) -> str:
    """The `WWW-Authenticate` value: OAuth Problem Reporting parameters for this rejection."""
    parts = [
        f"OAuth realm={_quote(realm)}",
        f"error={_quote(error.code.value)}",
        f"oauth_problem={_quote(error.oauth_problem)}",
    ]
    code = error.code
    if error.parameters_absent:
        parts.append(f"oauth_parameters_absent={_quote('&'.join(error.parameters_absent))}")
    if error.parameters_rejected:
        parts.append(f"oauth_parameters_rejected={_quote('&'.join(error.parameters_rejected))}")
    if code is ErrorCode.VERSION_REJECTED:
        parts.append('oauth_acceptable_versions="1.0-1.0"')
    elif code is ErrorCode.INVALID_TIMESTAMP and error.acceptable_timestamps is not None:
        low, high = error.acceptable_timestamps
        parts.append(f'oauth_acceptable_timestamps="{low}-{high}"')
    elif code is ErrorCode.NONCE_REJECTED:
        parts.append('oauth_parameters_rejected="oauth_nonce"')
    elif code is ErrorCode.INVALID_CALLBACK and not error.parameters_rejected:
        parts.append('oauth_parameters_rejected="oauth_callback"')
    return ", ".join(parts)


def bearer_challenge(error: TBAError, realm: str, *, detail: ErrorDetail = "code") -> str:
    """RFC 6750's `WWW-Authenticate`: the realm, the error, and in code mode what was wrong."""
    parts = [f"Bearer realm={_quote(realm)}", f"error={_quote(error.oauth_problem)}"]
    if detail == "code" and error.reason:
        parts.append(f"error_description={_quote(_description(error.reason))}")
    return ", ".join(parts)


_DESCRIPTION_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _description(text: str) -> str:
    """RFC 6749's `error_description` allows printable ASCII but `"` and `\\`."""
    return _DESCRIPTION_UNSAFE.sub("?", text)


def grant_error_body(
    error: TBAError, *, detail: ErrorDetail = "code", hint: str | None = None
) -> bytes:
    """The token endpoint's refusal (RFC 6749 section 5.2); in opaque mode the code alone."""
    payload = {"error": error.code.value}
    if detail == "code":
        payload["error_description"] = _description(error.reason or error.message)
        if hint:
            payload["hint"] = hint
    return json.dumps(payload, ensure_ascii=True).encode()


def error_response(
    error: TBAError,
    *,
    realm: str = "",
    detail: ErrorDetail = "code",
    hint: str | None = None,
    retry_after: int = RETRY_AFTER_SECONDS,
) -> ErrorResponse:
    """Render a rejection as status, headers and the RESTlet-style JSON body.

    In opaque mode the wire says only what NetSuite says (NetSuite rule N4,
    docs/netsuite-behaviour.md); operational answers (413, 408, 503) stay as they are because
    they reveal nothing about credentials and clients need them to back off. `retry_after` is
    what a governance refusal tells the client to wait.
    """
    status = error.status
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
    ]
    if error.code in GOVERNANCE_CODES:
        return governance_response(error, retry_after)
    if error.code in OPERATIONAL_CODES:
        payload: dict[str, str] = {"code": error.code.value, "message": error.message}
        if error.status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    elif error.code in BEARER_CODES:
        # RFC 6750 tells 401 from 403 on the wire, so opaque mode keeps the status; its body
        # says no more than the error already does.
        payload = {"code": error.code.value, "message": error.message}
        if hint and detail == "code":
            payload["hint"] = hint
        www = bearer_challenge(error, realm, detail=detail)
        headers.append((b"www-authenticate", www.encode("latin-1", "replace")))
    elif detail == "opaque" and error.code not in MIGRATION_CODES:
        if status == 400:
            payload = dict(_OPAQUE_BAD_REQUEST)
            www = f'OAuth realm={_quote(realm)}, error="parameter_rejected"'
        else:
            status = 401
            payload = dict(_OPAQUE_LOGIN)
            www = f'OAuth realm={_quote(realm)}, error="token_rejected"'
        headers.append((b"www-authenticate", www.encode("latin-1", "replace")))
    else:
        payload = {"code": error.code.value, "message": error.message}
        if hint:
            payload["hint"] = hint
        headers.append((b"www-authenticate", challenge(error, realm).encode("latin-1", "replace")))
    body = json.dumps({"error": payload}, ensure_ascii=True).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    return ErrorResponse(status, headers, body)


def governance_response(error: TBAError, retry_after: int) -> ErrorResponse:
    """Over the concurrency limit, as NetSuite answers on each surface: a RESTlet's SuiteScript
    error, or REST web services' problem details with `o:errorDetails`."""
    if error.code is ErrorCode.REQUEST_LIMIT_EXCEEDED:
        document: dict[str, object] = {
            "error": {"code": error.code.value, "message": error.message}
        }
        content_type = b"application/json"
    else:
        document = {
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.30",
            "title": "Too Many Requests",
            "status": 429,
            "o:errorDetails": [{"detail": error.message, "o:errorCode": error.code.value}],
        }
        content_type = b"application/vnd.oracle.resource+json; type=error"
    body = json.dumps(document, ensure_ascii=True).encode()
    headers = [
        (b"content-type", content_type),
        (b"cache-control", b"no-store"),
        (b"retry-after", str(retry_after).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return ErrorResponse(error.status, headers, body)
