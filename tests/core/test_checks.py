"""Each public check of `tba_guard.core.checks` on its own, as the standalone API offers them:
one accepting case, then every way it rejects, with the exact code, status and oauth_problem.

Signed requests come from oauthlib (`tests.support.oauth_header`), never from tba_guard's own
signing, so a check cannot agree with a signer that shares its bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tba_guard.core.checks import (
    Step,
    callback_allowed,
    check_authorization_flow,
    check_callback,
    check_entity_and_role,
    check_feature_enabled,
    check_form_body,
    check_integration_enabled,
    check_integration_known,
    check_nonce_length,
    check_nonce_unused,
    check_request_token,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_timestamp,
    check_token,
    check_token_usable,
    check_user_active,
    check_verifier,
    check_version,
    claim_nonce,
    token_store_unavailable,
)
from tba_guard.core.errors import ErrorCode, TBAError
from tba_guard.core.protocols import ReplayKey, RequestTokenQuotaExceeded
from tba_guard.core.records import Integration, RequestToken, Token, User
from tba_guard.core.request import OAuthRequest, parse_parameters, request_from_url
from tba_guard.stores.memory import MemoryReplayStore, StaticCredentials
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    NOW,
    REALM,
    TOKEN_ID,
    TOKEN_SECRET,
    Clock,
    FailingStore,
    oauth_header,
)

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=7&deploy=1"
FORM = "application/x-www-form-urlencoded"
CALLBACK = "https://app.example.com/tba/callback"
ENABLED = Integration(CONSUMER_KEY, CONSUMER_SECRET, authorization_flow=True, callback_url=CALLBACK)
BLOCKED = Integration("ck-blocked", "cs-blocked-integration", state="blocked")
TOKEN = Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3")
SIGNED = {
    "oauth_consumer_key": CONSUMER_KEY,
    "oauth_token": TOKEN_ID,
    "oauth_nonce": "n0nce-0123456789",
    "oauth_timestamp": str(NOW),
    "oauth_signature_method": "HMAC-SHA256",
    "oauth_signature": "c2lnbmF0dXJl",
    "oauth_version": "1.0",
}


def rejects(
    call: Callable[[], object], code: ErrorCode, status: int, problem: str | None = None
) -> TBAError:
    """The call raises `code` with that status (and oauth_problem, where given)."""
    with pytest.raises(TBAError) as raised:
        call()
    error = raised.value
    assert error.code is code, error
    assert error.status == status
    if problem is not None:
        assert error.oauth_problem == problem
    return error


async def rejects_async(call: Any, code: ErrorCode, status: int, problem: str) -> TBAError:
    with pytest.raises(TBAError) as raised:
        await call
    error = raised.value
    assert (error.code, error.status, error.oauth_problem) == (code, status, problem), error
    return error


def parsed(
    method: str = "GET",
    url: str = URL,
    authorization: str | None = "signed",
    *,
    body: str = "",
    content_type: str | None = None,
) -> OAuthRequest:
    """A request as `parse_parameters` leaves it; by default one signed by oauthlib."""
    if authorization == "signed":
        authorization = oauth_header(method, url, body=body, form=content_type == FORM)
    headers = {} if authorization is None else {"Authorization": authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return parse_parameters(request_from_url(method, url, headers, body))


def oauth(**changes: str | None) -> dict[str, str]:
    """The protocol parameters of a signed resource request, some changed (None drops one)."""
    values = {**SIGNED, **changes}
    return {name: value for name, value in values.items() if value is not None}


class FailingCredentials:
    """A credential store that is down: every lookup raises, as a lost database does."""

    async def integration(self, consumer_key: str) -> Integration | None:
        raise ConnectionError("credential store down")

    async def token(self, token_id: str) -> Token | None:
        raise ConnectionError("credential store down")


# --- 1. check_feature_enabled -----------------------------------------------------------------


def test_feature_enabled_accepts_when_switched_on() -> None:
    check_feature_enabled(True)


def test_feature_enabled_refuses_when_switched_off() -> None:
    rejects(
        lambda: check_feature_enabled(False), ErrorCode.FEATURE_DISABLED, 401, "permission_denied"
    )


# --- 2. check_required_parameters -------------------------------------------------------------


def test_required_parameters_accepts_a_signed_resource_request() -> None:
    check_required_parameters(parsed())


def test_required_parameters_without_a_header_is_a_401_naming_every_parameter() -> None:
    error = rejects(
        lambda: check_required_parameters(parsed(authorization=None)),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        401,
        "parameter_absent",
    )
    assert error.parameters_absent == (
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_signature_method",
        "oauth_signature",
        "oauth_token",
    )
    assert error.reason == "no Authorization header"


def test_required_parameters_absent_token_is_named() -> None:
    request = parsed(authorization=oauth_header("GET", URL, token=None))
    error = rejects(
        lambda: check_required_parameters(request),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_absent",
    )
    assert error.parameters_absent == ("oauth_token",)


def test_required_parameters_empty_nonce_is_rejected_not_absent() -> None:
    request = parsed(authorization=oauth_header("GET", URL, nonce=""))
    error = rejects(
        lambda: check_required_parameters(request),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_rejected",
    )
    assert error.parameters_rejected == ("oauth_nonce",)
    assert error.reason == "empty"


def test_required_parameters_a_protocol_parameter_also_in_the_query_is_rejected() -> None:
    url = f"{URL}&oauth_nonce=again"
    request = parsed(url=url, authorization=oauth_header("GET", url))
    error = rejects(
        lambda: check_required_parameters(request),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_rejected",
    )
    assert error.parameters_rejected == ("oauth_nonce",)
    assert error.reason == "given in the header and in the query"


def test_required_parameters_a_realm_in_the_query_too_is_no_duplicate() -> None:
    """The realm is not signed, so a realm repeated in the query duplicates nothing."""
    url = f"{URL}&realm=123456"
    check_required_parameters(parsed(url=url, authorization=oauth_header("GET", url)))
    twice = f"{url}&oauth_nonce=again"
    error = rejects(
        lambda: check_required_parameters(
            parsed(url=twice, authorization=oauth_header("GET", twice))
        ),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_rejected",
    )
    assert error.parameters_rejected == ("oauth_nonce",)  # the realm is not among them


def test_required_parameters_of_the_request_token_step_want_a_callback_not_a_token() -> None:
    url = f"{BASE_URL}/rest/requesttoken"
    with_callback = oauth_header("POST", url, token=None, extra={"oauth_callback": CALLBACK})
    check_required_parameters(parsed("POST", url, with_callback), Step.REQUEST_TOKEN)
    error = rejects(
        lambda: check_required_parameters(
            parsed("POST", url, oauth_header("POST", url, token=None)), Step.REQUEST_TOKEN
        ),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_absent",
    )
    assert error.parameters_absent == ("oauth_callback",)


def test_required_parameters_of_the_access_token_step_take_an_empty_verifier_not_none() -> None:
    url = f"{BASE_URL}/rest/accesstoken"
    empty = oauth_header("POST", url, extra={"oauth_verifier": ""})
    check_required_parameters(parsed("POST", url, empty), Step.ACCESS_TOKEN)  # Deny's verifier
    error = rejects(
        lambda: check_required_parameters(
            parsed("POST", url, oauth_header("POST", url)), Step.ACCESS_TOKEN
        ),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_absent",
    )
    assert error.parameters_absent == ("oauth_verifier",)


# --- check_form_body --------------------------------------------------------------------------


def test_form_body_adds_the_forms_parameters_to_the_signed_ones() -> None:
    request = parsed("POST", body="a=1&b=x%20y", content_type=FORM)
    check_form_body(request)
    assert ("a", "1") in request.params
    assert ("b", "x y") in request.params


@pytest.mark.parametrize("body", ['{"a": 1}', '{"name": "Zo\u00eb"}'], ids=["ASCII", "UTF-8"])
def test_form_body_leaves_a_body_that_is_not_a_form_alone(body: str) -> None:
    request = parsed("POST", body=body, content_type="application/json")
    before = list(request.params)
    check_form_body(request)
    assert request.params == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [("a=\u00e9", "bytes outside ASCII"), ("a=%FF", "an escape that is not UTF-8")],
    ids=["raw bytes outside ASCII", "escape that is not UTF-8"],
)
def test_form_body_that_parsers_could_read_differently_is_ambiguous(body: str, reason: str) -> None:
    # Signed without the body: oauthlib will not sign such a form, and the body is refused first.
    request = parsed("POST", body=body, content_type=FORM, authorization=oauth_header("POST", URL))
    error = rejects(
        lambda: check_form_body(request), ErrorCode.AMBIGUOUS_REQUEST, 400, "parameter_rejected"
    )
    assert reason in error.reason


@pytest.mark.parametrize(
    "body", ["oauth_nonce=again", "realm=x&oauth_nonce=again"], ids=["alone", "beside realm"]
)
def test_form_body_repeating_a_protocol_parameter_is_rejected_and_named(body: str) -> None:
    """Named alone: a form's `realm` repeats nothing (the header's is not signed)."""
    request = parsed("POST", body=body, content_type=FORM, authorization=oauth_header("POST", URL))
    error = rejects(
        lambda: check_form_body(request),
        ErrorCode.MISSING_REQUIRED_PARAMETER,
        400,
        "parameter_rejected",
    )
    assert error.parameters_rejected == ("oauth_nonce",)
    assert "given in the header and in the body" in error.reason


def test_form_body_may_carry_a_realm_parameter_of_its_own() -> None:
    """The header's realm is not a signed parameter, so a form's `realm` repeats nothing."""
    request = parsed("POST", body="realm=elsewhere&a=1", content_type=FORM)
    assert request.oauth["realm"]
    check_form_body(request)
    assert ("realm", "elsewhere") in request.params


# --- 3. check_version -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", None], ids=["1.0", "left out"])
def test_version_accepts_1_0_or_none(version: str | None) -> None:
    check_version(oauth(oauth_version=version))


@pytest.mark.parametrize("version", ["1.0a", "2.0", "", "1"])
def test_version_refuses_anything_but_1_0(version: str) -> None:
    rejects(
        lambda: check_version(oauth(oauth_version=version)),
        ErrorCode.VERSION_REJECTED,
        400,
        "version_rejected",
    )


# --- 4. check_signature_method ----------------------------------------------------------------

METHODS = ("HMAC-SHA256", "PLAINTEXT")


@pytest.mark.parametrize(
    ("method", "extra", "secure"),
    [
        ("HMAC-SHA256", {}, False),
        ("HMAC-SHA256", {"oauth_body_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, True),
        ("PLAINTEXT", {}, True),
    ],
    ids=["HMAC-SHA256", "HMAC-SHA256 with a body hash", "PLAINTEXT over HTTPS"],
)
def test_signature_method_accepts_an_allowed_method(
    method: str, extra: dict[str, str], secure: bool
) -> None:
    params = oauth(oauth_signature_method=method, **extra)
    assert check_signature_method(params, METHODS, secure=secure) == method


@pytest.mark.parametrize(
    ("method", "extra", "secure"),
    [
        ("HMAC-SHA1", {}, True),
        ("RSA-SHA256", {}, True),
        ("hmac-sha256", {}, True),
        ("PLAINTEXT", {}, False),
        ("PLAINTEXT", {"oauth_body_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, True),
    ],
    ids=[
        "not allowed",
        "unknown",
        "spelled in lower case",
        "PLAINTEXT over plain HTTP",
        "PLAINTEXT with a body hash",
    ],
)
def test_signature_method_refuses(method: str, extra: dict[str, str], secure: bool) -> None:
    params = oauth(oauth_signature_method=method, **extra)
    rejects(
        lambda: check_signature_method(params, METHODS, secure=secure),
        ErrorCode.UNKNOWN_ALGORITHM,
        400,
        "signature_method_rejected",
    )


# --- 5. check_timestamp -----------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [NOW, NOW - 300, NOW + 300], ids=["now", "oldest", "newest"])
def test_timestamp_accepts_the_window(timestamp: int) -> None:
    params = oauth(oauth_timestamp=str(timestamp))
    assert check_timestamp(params, now=NOW, tolerance=300) == timestamp


@pytest.mark.parametrize(
    "timestamp",
    [
        str(NOW - 301),
        str(NOW + 301),
        str(NOW * 1000),
        "abc",
        "-5",
        "1e9",
        " 17",
        "\uff11\uff17",
        "9" * 13,
    ],
    ids=[
        "too old",
        "too new",
        "milliseconds",
        "letters",
        "negative",
        "exponent",
        "padded",
        "full-width digits",
        "thirteen digits",
    ],
)
def test_timestamp_refuses_and_names_the_window(timestamp: str) -> None:
    params = oauth(oauth_timestamp=timestamp)
    error = rejects(
        lambda: check_timestamp(params, now=NOW, tolerance=300),
        ErrorCode.INVALID_TIMESTAMP,
        400,
        "timestamp_refused",
    )
    assert error.acceptable_timestamps == (NOW - 300, NOW + 300)


def test_timestamp_zero_is_refused_even_inside_the_window() -> None:
    rejects(
        lambda: check_timestamp(oauth(oauth_timestamp="0"), now=100, tolerance=300),
        ErrorCode.INVALID_TIMESTAMP,
        400,
        "timestamp_refused",
    )


# --- 6. check_nonce_length --------------------------------------------------------------------


@pytest.mark.parametrize("nonce", ["a" * 6, "a" * 64], ids=["shortest", "longest"])
def test_nonce_length_accepts_the_bounds(nonce: str) -> None:
    assert check_nonce_length(oauth(oauth_nonce=nonce), minimum=6, maximum=64) == nonce


@pytest.mark.parametrize("nonce", ["a" * 5, "a" * 65], ids=["too short", "too long"])
def test_nonce_length_refuses_outside_the_bounds(nonce: str) -> None:
    rejects(
        lambda: check_nonce_length(oauth(oauth_nonce=nonce), minimum=6, maximum=64),
        ErrorCode.NONCE_REJECTED,
        400,
        "parameter_rejected",
    )


# --- 7. check_nonce_unused and 12. claim_nonce ------------------------------------------------

KEY = ReplayKey(CONSUMER_KEY, TOKEN_ID, "n0nce-0123456789", NOW)


async def test_nonce_unused_accepts_a_fresh_key_and_refuses_a_claimed_one() -> None:
    store = MemoryReplayStore(clock=Clock())
    await check_nonce_unused(store, KEY)
    await claim_nonce(store, KEY, 600)
    await rejects_async(check_nonce_unused(store, KEY), ErrorCode.NONCE_USED, 401, "nonce_used")


async def test_nonce_unused_fails_closed_when_the_store_is_down() -> None:
    await rejects_async(
        check_nonce_unused(FailingStore(), KEY),
        ErrorCode.REPLAY_STORE_UNAVAILABLE,
        503,
        "temporarily_unavailable",
    )


async def test_claim_nonce_succeeds_once_then_refuses() -> None:
    store = MemoryReplayStore(clock=Clock())
    await claim_nonce(store, KEY, 600)
    await rejects_async(claim_nonce(store, KEY, 600), ErrorCode.NONCE_USED, 401, "nonce_used")


async def test_claim_nonce_fails_closed_when_the_store_is_down() -> None:
    await rejects_async(
        claim_nonce(FailingStore(), KEY, 600),
        ErrorCode.REPLAY_STORE_UNAVAILABLE,
        503,
        "temporarily_unavailable",
    )


# --- 8. check_integration_known, check_integration_enabled, check_authorization_flow ----------

CREDENTIALS = StaticCredentials([ENABLED, BLOCKED], [TOKEN])


@pytest.mark.parametrize("step", list(Step))
async def test_integration_known_returns_the_integration(step: Step) -> None:
    found = await check_integration_known(CREDENTIALS, oauth(realm=REALM), realm=REALM, step=step)
    assert found is ENABLED


async def test_integration_known_refuses_an_unknown_consumer_key() -> None:
    await rejects_async(
        check_integration_known(
            CREDENTIALS, oauth(oauth_consumer_key="ck-nobody"), realm=REALM, step=Step.RESOURCE
        ),
        ErrorCode.UNKNOWN_INTEGRATION,
        401,
        "consumer_key_unknown",
    )


async def test_integration_known_at_step_one_refuses_another_accounts_realm() -> None:
    other = oauth(realm="123456_sb1")  # not 123456_SB1: realms compare exactly
    await rejects_async(
        check_integration_known(CREDENTIALS, other, realm=REALM, step=Step.REQUEST_TOKEN),
        ErrorCode.UNKNOWN_INTEGRATION,
        401,
        "consumer_key_unknown",
    )
    # On a resource the realm is the token's business (check_token_usable), not this check's.
    assert await check_integration_known(CREDENTIALS, other, realm=REALM, step=Step.RESOURCE)


async def test_integration_known_fails_closed_when_the_store_is_down() -> None:
    await rejects_async(
        check_integration_known(FailingCredentials(), oauth(), realm=REALM, step=Step.RESOURCE),
        ErrorCode.CREDENTIAL_STORE_UNAVAILABLE,
        503,
        "temporarily_unavailable",
    )


@pytest.mark.parametrize("step", list(Step))
def test_integration_enabled_accepts_an_enabled_integration(step: Step) -> None:
    check_integration_enabled(ENABLED, oauth(), step=step)


@pytest.mark.parametrize(
    ("step", "realm", "code", "problem"),
    [
        (Step.RESOURCE, None, ErrorCode.INTEGRATION_BLOCKED, "consumer_key_rejected"),
        (Step.ACCESS_TOKEN, None, ErrorCode.INTEGRATION_BLOCKED, "consumer_key_rejected"),
        (Step.REQUEST_TOKEN, REALM, ErrorCode.INTEGRATION_BLOCKED, "consumer_key_rejected"),
        (Step.REQUEST_TOKEN, None, ErrorCode.UNKNOWN_INTEGRATION, "consumer_key_unknown"),
    ],
    ids=["resource", "access token", "request token with realm", "request token without realm"],
)
def test_integration_enabled_refuses_a_blocked_one(
    step: Step, realm: str | None, code: ErrorCode, problem: str
) -> None:
    params = oauth(oauth_consumer_key=BLOCKED.consumer_key, realm=realm)
    rejects(lambda: check_integration_enabled(BLOCKED, params, step=step), code, 401, problem)


def test_authorization_flow_accepts_an_integration_with_the_box_checked() -> None:
    check_authorization_flow(ENABLED)


def test_authorization_flow_refuses_an_integration_without_it() -> None:
    rejects(
        lambda: check_authorization_flow(Integration(CONSUMER_KEY, CONSUMER_SECRET)),
        ErrorCode.AUTHORIZATION_FLOW_REQUIRED,
        401,
        "permission_denied",
    )


# --- 9. check_token, check_token_usable, check_entity_and_role, check_request_token -----------


async def test_token_returns_the_token() -> None:
    found = await check_token(CREDENTIALS, oauth(), ENABLED, realm=REALM, now=NOW)
    assert found is TOKEN


async def test_token_refuses_an_unknown_token() -> None:
    await rejects_async(
        check_token(CREDENTIALS, oauth(oauth_token="tk-nobody"), ENABLED, realm=REALM, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
        "token_rejected",
    )


async def test_token_fails_closed_when_the_store_is_down() -> None:
    await rejects_async(
        check_token(FailingCredentials(), oauth(), ENABLED, realm=REALM, now=NOW),
        ErrorCode.CREDENTIAL_STORE_UNAVAILABLE,
        503,
        "temporarily_unavailable",
    )


def test_token_usable_accepts_this_integrations_live_token() -> None:
    check_token_usable(TOKEN, oauth(realm=REALM), ENABLED, realm=REALM, now=NOW)
    expiring = Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, expires_at=NOW + 1)
    check_token_usable(expiring, oauth(), ENABLED, realm=REALM, now=NOW)


@pytest.mark.parametrize(
    ("token", "realm_sent", "problem"),
    [
        (None, None, "token_rejected"),
        (Token(TOKEN_ID, TOKEN_SECRET, "ck-other"), None, "token_rejected"),
        (TOKEN, "123456_sb1", "token_rejected"),
        (Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, account="999999"), None, "token_rejected"),
        (Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, revoked=True), None, "token_revoked"),
        (Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, expires_at=NOW), None, "token_expired"),
    ],
    ids=[
        "unknown",
        "another integration's",
        "another realm sent",
        "another account's",
        "revoked",
        "expired",
    ],
)
def test_token_usable_refuses(token: Token | None, realm_sent: str | None, problem: str) -> None:
    params = oauth(realm=realm_sent)
    rejects(
        lambda: check_token_usable(token, params, ENABLED, realm=REALM, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
        problem,
    )


def test_entity_and_role_accepts_an_active_token() -> None:
    check_entity_and_role(TOKEN)


def test_entity_and_role_refuses_an_inactive_one() -> None:
    inactive = Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, active=False)
    rejects(
        lambda: check_entity_and_role(inactive),
        ErrorCode.ENTITY_OR_ROLE_DISABLED,
        401,
        "permission_denied",
    )


def test_user_active_accepts_an_active_user_with_the_role() -> None:
    check_user_active(User("38", "alice", roles=("3",)), "3")


@pytest.mark.parametrize(
    "user",
    [None, User("38", "alice", roles=("1000",)), User("38", "alice", roles=("3",), active=False)],
    ids=["gone", "without the role", "inactive"],
)
def test_user_active_refuses(user: User | None) -> None:
    rejects(
        lambda: check_user_active(user, "3"),
        ErrorCode.ENTITY_OR_ROLE_DISABLED,
        401,
        "permission_denied",
    )


def request_token(**changes: Any) -> RequestToken:
    values: dict[str, Any] = {
        "token_id": "rt-1",
        "token_secret": "rt-secret",
        "consumer_key": CONSUMER_KEY,
        "callback": CALLBACK,
        "expires_at": NOW + 600,
        "realm": REALM,
        "decision": "allowed",
        "verifier": "v3rifier",
        "entity": "38",
        "role": "3",
    }
    return RequestToken(**(values | changes))


@pytest.mark.parametrize("decision", ["allowed", "denied"])
def test_request_token_accepts_a_decided_unused_one(decision: str) -> None:
    """Deny passes here: check_verifier (step 11) says InvalidVerifier, which tells what
    happened."""
    token = request_token(decision=decision)
    assert check_request_token(token, oauth(realm=REALM), ENABLED, realm=REALM, now=NOW) is token


@pytest.mark.parametrize(
    ("token", "realm_sent", "problem"),
    [
        (None, None, "token_rejected"),
        (request_token(consumer_key="ck-other"), None, "token_rejected"),
        (request_token(), "999999", "token_rejected"),
        (request_token(uses=1), None, "token_used"),
        (request_token(decision="pending"), None, "permission_unknown"),
        (request_token(expires_at=NOW), None, "token_expired"),
    ],
    ids=["unknown", "another integration's", "another account's", "used", "undecided", "expired"],
)
def test_request_token_refuses(
    token: RequestToken | None, realm_sent: str | None, problem: str
) -> None:
    params = oauth(realm=realm_sent)
    rejects(
        lambda: check_request_token(token, params, ENABLED, realm=None, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
        problem,
    )


# --- 10. check_signature ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1", "HMAC-SHA512", "PLAINTEXT"])
def test_signature_accepts_what_oauthlib_signed(method: str) -> None:
    request = parsed(authorization=oauth_header("GET", URL, signature_method=method))
    check_signature(request, CONSUMER_SECRET, TOKEN_SECRET)


def test_signature_accepts_a_signed_form_body_once_check_form_body_added_it() -> None:
    request = parsed("POST", body="amount=10&memo=a%20b", content_type=FORM)
    check_form_body(request)
    check_signature(request, CONSUMER_SECRET, TOKEN_SECRET)


def test_signature_of_step_one_is_made_with_the_consumer_secret_alone() -> None:
    url = f"{BASE_URL}/rest/requesttoken"
    value = oauth_header(
        "POST", url, token=None, token_secret="", extra={"oauth_callback": CALLBACK}
    )
    check_signature(parsed("POST", url, value), CONSUMER_SECRET)


@pytest.mark.parametrize(
    ("request_", "consumer_secret", "token_secret"),
    [
        (lambda: parsed(), "cs-not-the-secret", TOKEN_SECRET),
        (lambda: parsed(), CONSUMER_SECRET, "ts-not-the-secret"),
        (
            lambda: parsed(url=URL + "&x=1", authorization=oauth_header("GET", URL)),
            CONSUMER_SECRET,
            TOKEN_SECRET,
        ),
        (
            lambda: parsed("POST", authorization=oauth_header("GET", URL)),
            CONSUMER_SECRET,
            TOKEN_SECRET,
        ),
        (
            lambda: parsed(
                "POST",
                body="amount=99",
                content_type=FORM,
                authorization=oauth_header("POST", URL, body="amount=10", form=True),
            ),
            CONSUMER_SECRET,
            TOKEN_SECRET,
        ),
    ],
    ids=[
        "wrong consumer secret",
        "wrong token secret",
        "another query",
        "another method",
        "another form body",
    ],
)
def test_signature_refuses(
    request_: Callable[[], OAuthRequest], consumer_secret: str, token_secret: str
) -> None:
    request = request_()
    check_form_body(request)
    rejects(
        lambda: check_signature(request, consumer_secret, token_secret),
        ErrorCode.INVALID_SIGNATURE,
        401,
        "signature_invalid",
    )


# --- 11. check_callback, callback_allowed, check_verifier -------------------------------------


def test_callback_accepts_the_registered_url() -> None:
    assert check_callback(oauth(oauth_callback=CALLBACK), ENABLED) == CALLBACK


def test_callback_refuses_another_url_and_names_it() -> None:
    sent = "https://evil.example.net/steal?x=1"
    error = rejects(
        lambda: check_callback(oauth(oauth_callback=sent), ENABLED),
        ErrorCode.INVALID_CALLBACK,
        400,
        "parameter_rejected",
    )
    assert error.callback == sent
    assert error.message.startswith(f"InvalidCallback {sent}")


@pytest.mark.parametrize(
    ("callback", "registered", "allowed"),
    [
        (CALLBACK, CALLBACK, True),
        ("https://APP.example.com:443/tba/callback", CALLBACK, True),
        ("http://localhost:8123/any/path?x=1", None, True),
        ("https://tenant1.example.org/cb", "https://*.example.org/cb", True),
        (CALLBACK + "/more", CALLBACK, False),
        (CALLBACK + "?x=1", CALLBACK, False),
        ("http://app.example.com/tba/callback", CALLBACK, False),
        ("https://app.example.com:8443/tba/callback", CALLBACK, False),
        ("https://user@app.example.com/tba/callback", CALLBACK, False),
        (CALLBACK + "#frag", CALLBACK, False),
        ("https://localhost:8123/cb", None, False),
        ("https://a.b.example.org/cb", "https://*.example.org/cb", False),
        ("https://example.org/cb", "https://*.example.org/cb", False),
        (CALLBACK, None, False),
        ("oob", CALLBACK, False),
    ],
)
def test_callback_allowed(callback: str, registered: str | None, allowed: bool) -> None:
    assert callback_allowed(callback, registered) is allowed


def test_verifier_accepts_the_verifier_given_on_allow() -> None:
    check_verifier(request_token(), oauth(oauth_verifier="v3rifier"))


@pytest.mark.parametrize(
    ("token", "sent"),
    [
        (request_token(), "not-the-verifier"),
        (request_token(), ""),
        (request_token(decision="denied", verifier=""), ""),
        (request_token(decision="pending", verifier="v3rifier"), "v3rifier"),
    ],
    ids=["another verifier", "empty", "after Deny", "undecided"],
)
def test_verifier_refuses(token: RequestToken, sent: str) -> None:
    rejects(
        lambda: check_verifier(token, oauth(oauth_verifier=sent)),
        ErrorCode.INVALID_VERIFIER,
        401,
        "verifier_invalid",
    )


async def test_token_refuses_a_token_of_another_account_than_the_configured_realm() -> None:
    elsewhere = Token("tk-elsewhere", TOKEN_SECRET, CONSUMER_KEY, account="999999")
    store = StaticCredentials([ENABLED], [elsewhere])
    await rejects_async(
        check_token(store, oauth(oauth_token="tk-elsewhere"), ENABLED, realm=REALM, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
        "token_rejected",
    )


def test_token_usable_tells_the_audit_log_the_token_is_another_integrations() -> None:
    theirs = Token(TOKEN_ID, TOKEN_SECRET, "ck-other")
    error = rejects(
        lambda: check_token_usable(theirs, oauth(), ENABLED, realm=REALM, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
    )
    assert "another integration" in error.reason


def test_request_token_of_another_account_than_the_realm_sent_says_so_without_a_realm() -> None:
    # No realm configured: the account is the one sent at step one, compared at step three.
    token = request_token(realm="111111")
    error = rejects(
        lambda: check_request_token(token, oauth(realm="222222"), ENABLED, realm=None, now=NOW),
        ErrorCode.TOKEN_REJECTED,
        401,
        "token_rejected",
    )
    assert "not of this account" in error.reason


def test_a_request_token_quota_rejection_names_the_quota_for_the_audit_log() -> None:
    error = token_store_unavailable(RequestTokenQuotaExceeded(CONSUMER_KEY, 7))
    assert error.code is ErrorCode.REQUEST_TOKEN_LIMIT
    assert "7" in error.reason
    assert "quota" in error.reason
