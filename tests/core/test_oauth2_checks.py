"""OAuth 2.0's checks and JOSE helpers on their own, where the ASGI tests do not reach them:
unverified reads for explain, a payload that is no JSON, stores that serve TBA alone, and the
grant run through `Guard.verifying` as an endpoint of one's own would run it."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from tba_guard import Guard
from tba_guard.core.checks import Step
from tba_guard.core.errors import ErrorCode, TBAError
from tba_guard.core.jose import (
    JoseError,
    key_id,
    read_certificate,
    unverified_claims,
    verified_claims,
)
from tba_guard.core.oauth2 import check_bearer_header
from tba_guard.core.oauth2_sequence import CLIENT_CREDENTIALS
from tba_guard.core.request import request_from_url
from tests.support import NOW, Clock
from tests.support.oauth2 import (
    RSA_CERTIFICATE_ID,
    TOKEN_URL,
    assertion,
    guard_key,
    oauth2_settings,
    rsa_key,
    token_form,
)

FORM = {"content-type": "application/x-www-form-urlencoded"}


class TBAOnly:
    """A credential store of one's own that knows nothing of OAuth 2.0."""

    async def integration(self, consumer_key: str) -> None:
        return None

    async def token(self, token_id: str) -> None:
        return None


def token_request(form: dict[str, str]) -> Any:
    from urllib.parse import urlencode

    return request_from_url("POST", TOKEN_URL, FORM, urlencode(form))


def test_unverified_claims_read_the_payload_without_trusting_it() -> None:
    token = assertion(rsa_key(), RSA_CERTIFICATE_ID, jti="j")
    assert unverified_claims(token)["jti"] == "j"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("abc", "not a compact JWS"),
        ("a.!!!.c", "not a compact JWS"),
        ("a.abc.c", "payload unreadable"),
        ("a.b.c", "not base64url"),
        ("a.WzFd.c", "not a JSON object"),
    ],
)
def test_unverified_claims_of_garbage_say_so(token: str, problem: str) -> None:
    with pytest.raises(JoseError, match=problem):
        unverified_claims(token)


def test_a_signed_payload_that_is_no_json_does_not_verify() -> None:
    token = jwt.api_jws.encode(b"not json", guard_key(), algorithm="PS256")
    with pytest.raises(JoseError, match="unreadable"):
        verified_claims(token, guard_key().public_key(), "PS256")


def test_a_key_of_another_kind_verifies_nothing() -> None:
    from tests.support.oauth2 import ec_key

    token = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    with pytest.raises(JoseError, match="signature does not verify"):
        verified_claims(token, ec_key().public_key(), "PS256")


def test_a_certificate_that_is_no_pem_is_refused() -> None:
    with pytest.raises(JoseError, match=r"not a PEM X\.509 certificate"):
        read_certificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


def test_a_key_id_is_the_same_wherever_the_key_is_loaded() -> None:
    assert key_id(guard_key().public_key()) == key_id(guard_key().public_key())
    assert key_id(guard_key().public_key()) != key_id(rsa_key().public_key())
    assert len(key_id(guard_key().public_key())) == 22


def test_no_authorization_header_is_no_bearer_token() -> None:
    with pytest.raises(TBAError) as caught:
        check_bearer_header(None, 0)
    assert caught.value.code is ErrorCode.INVALID_BEARER_TOKEN


async def test_the_grant_through_verifying_gives_the_mappings_identity() -> None:
    guard = Guard(oauth2_settings(), clock=Clock())
    request = token_request(token_form(assertion(rsa_key(), RSA_CERTIFICATE_ID, nbf=NOW)))
    async with guard.verifying(request, step=Step.ACCESS_TOKEN, scheme=CLIENT_CREDENTIALS) as v:
        assert v.error is None
        identity = v.identity
    assert (identity.token_id, identity.entity, identity.role, identity.scheme) == (
        RSA_CERTIFICATE_ID,
        "38",
        "3",
        "oauth2",
    )
    assert identity.scopes == ("restlets", "rest_webservices")
    assert "scheme='oauth2'" in repr(identity)


async def test_a_store_that_serves_tba_alone_knows_no_mapping_and_no_client() -> None:
    issuing = Guard(oauth2_settings(), clock=Clock())
    request = token_request(token_form(assertion(rsa_key(), RSA_CERTIFICATE_ID)))
    async with issuing.verifying(request, step=Step.ACCESS_TOKEN, scheme=CLIENT_CREDENTIALS) as v:
        assert v.verification is not None
        assert v.verification.certificate is not None
        token = issuing.limits.oauth2.issue(v.verification.certificate, ("restlets",), NOW)
    alone = Guard(oauth2_settings(), credentials=TBAOnly(), clock=Clock())
    async with alone.verifying(request, step=Step.ACCESS_TOKEN, scheme=CLIENT_CREDENTIALS) as v:
        assert v.error is not None
        assert v.error.code is ErrorCode.INVALID_CLIENT
    with pytest.raises(TBAError) as caught:
        await alone.verify_request(
            "GET",
            "https://123456-sb1.restlets.example.com/app/site/hosting/restlet.nl",
            {"authorization": f"Bearer {token}"},
        )
    assert caught.value.code is ErrorCode.INVALID_BEARER_TOKEN
    assert "unknown or blocked" in caught.value.reason
