"""Rendering rejections: status, RESTlet JSON body, OAuth Problem Reporting header."""

from __future__ import annotations

import json

import pytest

from tba_guard import ErrorCode, TBAError
from tba_guard.core.errors import CATALOG, error_response, missing, rejected


def headers_of(response_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in response_headers}


# Written out here, never read back from CATALOG: NetSuite's codes (named as in its TBA error
# tables) with the status and OAuth Problem Reporting value answered, then the project's own.
NETSUITE_CODES = [
    (ErrorCode.FEATURE_DISABLED, 401, "permission_denied"),
    (ErrorCode.MISSING_REQUIRED_PARAMETER, 400, "parameter_absent"),
    (ErrorCode.VERSION_REJECTED, 400, "version_rejected"),
    (ErrorCode.UNKNOWN_ALGORITHM, 400, "signature_method_rejected"),
    (ErrorCode.INVALID_TIMESTAMP, 400, "timestamp_refused"),
    (ErrorCode.NONCE_REJECTED, 400, "parameter_rejected"),
    (ErrorCode.NONCE_USED, 401, "nonce_used"),
    (ErrorCode.UNKNOWN_INTEGRATION, 401, "consumer_key_unknown"),
    (ErrorCode.INTEGRATION_BLOCKED, 401, "consumer_key_rejected"),
    (ErrorCode.AUTHORIZATION_FLOW_REQUIRED, 401, "permission_denied"),
    (ErrorCode.TOKEN_REJECTED, 401, "token_rejected"),
    (ErrorCode.ENTITY_OR_ROLE_DISABLED, 401, "permission_denied"),
    (ErrorCode.INVALID_SIGNATURE, 401, "signature_invalid"),
    (ErrorCode.INVALID_CALLBACK, 400, "parameter_rejected"),
    (ErrorCode.INVALID_VERIFIER, 401, "verifier_invalid"),
]
OWN_CODES = [  # operational limits, not a verdict on credentials
    (ErrorCode.REPLAY_STORE_UNAVAILABLE, 503, "temporarily_unavailable"),
    (ErrorCode.CREDENTIAL_STORE_UNAVAILABLE, 503, "temporarily_unavailable"),
    (ErrorCode.REQUEST_BODY_TOO_LARGE, 413, "parameter_rejected"),
    (ErrorCode.REQUEST_BODY_TIMEOUT, 408, "parameter_rejected"),
    (ErrorCode.REQUEST_BUFFERS_FULL, 503, "temporarily_unavailable"),
    (ErrorCode.AMBIGUOUS_REQUEST, 400, "parameter_rejected"),
    (ErrorCode.HOST_NOT_ALLOWED, 400, "parameter_rejected"),
    (ErrorCode.REQUEST_TOKEN_LIMIT, 503, "temporarily_unavailable"),
]
OAUTH2_CODES = [  # the move to OAuth 2.0, bearer tokens (RFC 6750), the token endpoint (RFC 6749)
    (ErrorCode.TBA_NOT_ALLOWED, 401, "permission_denied"),
    (ErrorCode.TBA_BROWNOUT, 401, "permission_denied"),
    (ErrorCode.INVALID_BEARER_TOKEN, 401, "invalid_token"),
    (ErrorCode.INSUFFICIENT_SCOPE, 403, "insufficient_scope"),
    (ErrorCode.INVALID_REQUEST, 400, "invalid_request"),
    (ErrorCode.INVALID_CLIENT, 400, "invalid_client"),
    (ErrorCode.INVALID_GRANT, 400, "invalid_grant"),
    (ErrorCode.INVALID_SCOPE, 400, "invalid_scope"),
    (ErrorCode.UNAUTHORIZED_CLIENT, 400, "unauthorized_client"),
    (ErrorCode.UNSUPPORTED_GRANT_TYPE, 400, "unsupported_grant_type"),
]
GOVERNANCE_CODES = [  # concurrency governance: each surface's answer, and its store down
    (ErrorCode.REQUEST_LIMIT_EXCEEDED, 400, "temporarily_unavailable"),
    (ErrorCode.CONCURRENCY_LIMIT_EXCEEDED, 429, "temporarily_unavailable"),
    (ErrorCode.GOVERNANCE_STORE_UNAVAILABLE, 503, "temporarily_unavailable"),
]
STATUS_AND_PROBLEM = NETSUITE_CODES + OWN_CODES + OAUTH2_CODES + GOVERNANCE_CODES


@pytest.mark.parametrize(
    ("code", "status", "problem"),
    STATUS_AND_PROBLEM,
    ids=[c.value for c, _, _ in STATUS_AND_PROBLEM],
)
def test_every_code_has_a_status_a_problem_and_a_message(
    code: ErrorCode, status: int, problem: str
) -> None:
    entry = CATALOG[code]
    assert (entry.status, entry.problem) == (status, problem)
    assert len(entry.message) > 20
    # And so it goes on the wire, in code mode: the status, the challenge and the message.
    response = error_response(TBAError(code), realm="123456")
    assert response.status == status
    if (code, status, problem) in NETSUITE_CODES:
        www = headers_of(response.headers)["www-authenticate"]
        assert www.startswith(f'OAuth realm="123456", error="{code}", oauth_problem="{problem}"')
    body = json.loads(response.body)
    if code is ErrorCode.CONCURRENCY_LIMIT_EXCEEDED:  # REST web services' problem details
        assert body["o:errorDetails"] == [{"detail": entry.message, "o:errorCode": code.value}]
    else:
        assert body["error"] == {"code": code.value, "message": entry.message}


def test_the_table_above_names_every_code_once() -> None:
    """A code added to ErrorCode without its row here would go untested."""
    assert sorted(code for code, _, _ in STATUS_AND_PROBLEM) == sorted(ErrorCode)


def test_body_is_the_restlet_error_shape_and_never_cached() -> None:
    response = error_response(TBAError(ErrorCode.INVALID_SIGNATURE), realm="123456")
    assert response.status == 401
    body = json.loads(response.body)
    assert body["error"]["code"] == "InvalidSignature"
    assert "signature" in body["error"]["message"].lower()
    headers = headers_of(response.headers)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["content-length"] == str(len(response.body))
    assert headers["www-authenticate"] == (
        'OAuth realm="123456", error="InvalidSignature", oauth_problem="signature_invalid"'
    )


def test_missing_and_rejected_parameters_are_listed_ampersand_joined() -> None:
    absent = error_response(missing("oauth_nonce", "oauth_token"))
    assert 'oauth_problem="parameter_absent"' in headers_of(absent.headers)["www-authenticate"]
    assert (
        'oauth_parameters_absent="oauth_nonce&oauth_token"'
        in headers_of(absent.headers)["www-authenticate"]
    )
    twice = error_response(rejected("oauth_nonce"))
    www = headers_of(twice.headers)["www-authenticate"]
    assert 'oauth_problem="parameter_rejected"' in www
    assert 'oauth_parameters_rejected="oauth_nonce"' in www


def test_timestamp_rejection_carries_the_window_accepted_now() -> None:
    error = TBAError(ErrorCode.INVALID_TIMESTAMP, acceptable_timestamps=(700, 1300))
    www = headers_of(error_response(error).headers)["www-authenticate"]
    assert 'oauth_problem="timestamp_refused"' in www
    assert 'oauth_acceptable_timestamps="700-1300"' in www


def test_invalid_callback_message_names_the_url_sent() -> None:
    error = TBAError(ErrorCode.INVALID_CALLBACK, callback="https://evil.example/cb")
    response = error_response(error)
    assert response.status == 400
    message = json.loads(response.body)["error"]["message"]
    assert message.startswith("InvalidCallback https://evil.example/cb")
    assert (
        'oauth_parameters_rejected="oauth_callback"'
        in headers_of(response.headers)["www-authenticate"]
    )


def test_token_problem_can_be_more_precise() -> None:
    error = TBAError(ErrorCode.TOKEN_REJECTED, problem="token_expired")
    assert (
        'oauth_problem="token_expired"'
        in headers_of(error_response(error).headers)["www-authenticate"]
    )


@pytest.mark.parametrize(
    ("code", "status", "wire_code", "wire_error"),
    [
        (ErrorCode.INVALID_SIGNATURE, 401, "INVALID_LOGIN_ATTEMPT", "token_rejected"),
        (ErrorCode.UNKNOWN_INTEGRATION, 401, "INVALID_LOGIN_ATTEMPT", "token_rejected"),
        (ErrorCode.NONCE_USED, 401, "INVALID_LOGIN_ATTEMPT", "token_rejected"),
        (ErrorCode.VERSION_REJECTED, 400, "INVALID_REQUEST", "parameter_rejected"),
        (ErrorCode.MISSING_REQUIRED_PARAMETER, 400, "INVALID_REQUEST", "parameter_rejected"),
    ],
)
def test_opaque_mode_says_only_what_netsuite_says(
    code: ErrorCode, status: int, wire_code: str, wire_error: str
) -> None:
    response = error_response(TBAError(code), realm="123456", detail="opaque")
    assert response.status == status
    assert json.loads(response.body)["error"]["code"] == wire_code
    www = headers_of(response.headers)["www-authenticate"]
    assert www == f'OAuth realm="123456", error="{wire_error}"'
    assert code.value not in response.body.decode() + www


def test_replay_store_outage_is_a_503_with_retry_after_in_both_modes() -> None:
    for detail in ("code", "opaque"):
        response = error_response(TBAError(ErrorCode.REPLAY_STORE_UNAVAILABLE), detail=detail)  # type: ignore[arg-type]
        assert response.status == 503
        assert headers_of(response.headers)["retry-after"] == "1"
        assert json.loads(response.body)["error"]["code"] == "ReplayStoreUnavailable"


def test_a_realm_with_quotes_cannot_break_the_header() -> None:
    response = error_response(TBAError(ErrorCode.NONCE_USED), realm='a"b\\c')
    assert headers_of(response.headers)["www-authenticate"].startswith('OAuth realm="a\\"b\\\\c"')


def test_a_control_character_in_a_rejected_name_is_percent_escaped_in_the_challenge() -> None:
    # The name comes from the client, percent-decoded: a CR LF must not end the header line.
    www = headers_of(error_response(rejected("oauth_\r\nx-injected")).headers)["www-authenticate"]
    assert 'oauth_parameters_rejected="oauth_%0D%0Ax-injected"' in www


def test_a_realm_outside_latin1_is_sent_with_a_replacement_character() -> None:
    response = error_response(TBAError(ErrorCode.NONCE_USED), realm="Zürich €")
    (www,) = [value for name, value in response.headers if name == b"www-authenticate"]
    assert www.startswith(b'OAuth realm="Z\xfcrich ?"')


def test_an_error_raised_without_a_reason_has_none() -> None:
    # The audit log then writes `reason=-`, not a made-up text.
    error = TBAError(ErrorCode.NONCE_USED)
    assert error.reason == ""
    assert str(error) == str(ErrorCode.NONCE_USED)
