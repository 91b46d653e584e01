"""Every code that can occur on a protected resource, through the middleware, on the wire."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from tba_guard import Guard, TBAGuardMiddleware
from tests.support import BASE_URL, NOW, Clock, echo_app, make_settings, oauth_header

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=12&deploy=1"


def send(client: TestClient, header: str | None, url: str = URL) -> httpx.Response:
    headers = {"Authorization": header} if header is not None else {}
    return client.get(url, headers=headers)


def assert_rejected(
    response: httpx.Response, code: str, status: int, problem: str, *extras: str
) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    www = response.headers["www-authenticate"]
    assert www.startswith('OAuth realm="123456_SB1", ')
    assert f'error="{code}"' in www
    assert f'oauth_problem="{problem}"' in www
    for extra in extras:
        assert extra in www
    assert response.headers["cache-control"] == "no-store"


def test_a_correct_request_is_accepted(client: TestClient) -> None:
    response = send(client, oauth_header("GET", URL))
    assert response.status_code == 200
    assert response.json()["token_id"] == "tk-alice"


def test_feature_disabled(clock: Clock) -> None:
    app = TBAGuardMiddleware(
        echo_app(), guard=Guard(make_settings(feature_enabled=False), clock=clock)
    )
    with TestClient(app, base_url=BASE_URL) as client:
        response = send(client, oauth_header("GET", URL))
    assert_rejected(response, "FeatureDisabled", 401, "permission_denied")


def test_no_credentials_at_all_is_a_401_challenge(client: TestClient) -> None:
    response = send(client, None)
    assert_rejected(
        response,
        "MissingRequiredParameter",
        401,
        "parameter_absent",
        'oauth_parameters_absent="oauth_consumer_key&oauth_nonce&oauth_timestamp'
        '&oauth_signature_method&oauth_signature&oauth_token"',
    )


def test_absent_token_is_named(client: TestClient) -> None:
    response = send(client, oauth_header("GET", URL, token=None))
    assert_rejected(
        response,
        "MissingRequiredParameter",
        400,
        "parameter_absent",
        'oauth_parameters_absent="oauth_token"',
    )


def test_empty_nonce_is_rejected_not_absent(client: TestClient) -> None:
    response = send(client, oauth_header("GET", URL, nonce=""))
    assert_rejected(
        response,
        "MissingRequiredParameter",
        400,
        "parameter_rejected",
        'oauth_parameters_rejected="oauth_nonce"',
    )


def test_protocol_parameter_also_in_the_query_is_a_duplicate(client: TestClient) -> None:
    url = URL + "&oauth_token=tk-alice"
    response = send(client, oauth_header("GET", url), url)
    assert_rejected(
        response,
        "MissingRequiredParameter",
        400,
        "parameter_rejected",
        'oauth_parameters_rejected="oauth_token"',
    )


def test_protocol_parameter_also_in_the_form_body_is_a_duplicate(client: TestClient) -> None:
    body = "a=1&oauth_nonce=abcdefgh"
    header = oauth_header("POST", URL, body=body, form=True)
    response = client.post(
        URL,
        content=body,
        headers={"Authorization": header, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_rejected(
        response,
        "MissingRequiredParameter",
        400,
        "parameter_rejected",
        'oauth_parameters_rejected="oauth_nonce"',
    )


def test_two_authorization_headers_are_rejected(client: TestClient) -> None:
    header = oauth_header("GET", URL)
    response = client.get(URL, headers=[("Authorization", header), ("Authorization", header)])
    assert_rejected(
        response,
        "MissingRequiredParameter",
        400,
        "parameter_rejected",
        'oauth_parameters_rejected="Authorization"',
    )


@pytest.mark.parametrize("version", ["2.0", "1.0a", "", " 1.0"])
def test_version_other_than_1_0(client: TestClient, version: str) -> None:
    response = send(client, oauth_header("GET", URL, version=version))
    assert_rejected(
        response, "VersionRejected", 400, "version_rejected", 'oauth_acceptable_versions="1.0-1.0"'
    )


def test_absent_version_is_allowed(client: TestClient) -> None:
    assert send(client, oauth_header("GET", URL, version=None)).status_code == 200


@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA512", "PLAINTEXT", "RSA-SHA1", "x"])
def test_signature_method_not_switched_on(client: TestClient, method: str) -> None:
    response = send(client, oauth_header("GET", URL, signature_method=method))
    assert_rejected(response, "UnknownAlgorithm", 400, "signature_method_rejected")


@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA512"])
def test_switched_on_methods_verify(clock: Clock, method: str) -> None:
    settings = make_settings(signature_methods=["HMAC-SHA256", method])
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings, clock=clock))
    with TestClient(app, base_url=BASE_URL) as client:
        assert send(client, oauth_header("GET", URL, signature_method=method)).status_code == 200


def test_plaintext_only_over_https(clock: Clock) -> None:
    settings = make_settings(signature_methods=["PLAINTEXT"])
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings, clock=clock))
    with TestClient(app, base_url=BASE_URL) as client:
        assert (
            send(client, oauth_header("GET", URL, signature_method="PLAINTEXT")).status_code == 200
        )
        plain_url = URL.replace("https://", "http://")
        header = oauth_header("GET", plain_url, signature_method="PLAINTEXT")
        response = send(client, header, plain_url)
    assert_rejected(response, "UnknownAlgorithm", 400, "signature_method_rejected")


@pytest.mark.parametrize(
    "timestamp",
    [NOW - 301, NOW + 301, NOW * 1000, 0, -5, "17e8", "+1700000000", "１７００", "9" * 40, ""],
)
def test_timestamp_outside_the_window_or_not_a_number(client: TestClient, timestamp: Any) -> None:
    response = send(client, oauth_header("GET", URL, timestamp=timestamp))
    if timestamp == "":
        assert_rejected(response, "MissingRequiredParameter", 400, "parameter_rejected")
        return
    assert_rejected(
        response,
        "InvalidTimestamp",
        400,
        "timestamp_refused",
        f'oauth_acceptable_timestamps="{NOW - 300}-{NOW + 300}"',
    )


@pytest.mark.parametrize("timestamp", [NOW - 300, NOW + 300])
def test_timestamp_at_the_edge_of_the_window_is_accepted(
    client: TestClient, timestamp: int
) -> None:
    assert send(client, oauth_header("GET", URL, timestamp=timestamp)).status_code == 200


@pytest.mark.parametrize("nonce", ["12345", "x" * 65])
def test_nonce_too_short_or_too_long(client: TestClient, nonce: str) -> None:
    response = send(client, oauth_header("GET", URL, nonce=nonce))
    assert_rejected(
        response,
        "NonceRejected",
        400,
        "parameter_rejected",
        'oauth_parameters_rejected="oauth_nonce"',
    )


def test_nonce_used(client: TestClient) -> None:
    header = oauth_header("GET", URL)
    assert send(client, header).status_code == 200
    assert_rejected(send(client, header), "NonceUsed", 401, "nonce_used")


def test_unknown_integration(client: TestClient) -> None:
    response = send(client, oauth_header("GET", URL, consumer_key="ck-nobody"))
    assert_rejected(response, "UnknownIntegration", 401, "consumer_key_unknown")


def test_blocked_integration(client: TestClient) -> None:
    header = oauth_header(
        "GET",
        URL,
        consumer_key="ck-blocked",
        consumer_secret="cs-blocked-integration",
        token="tk-blocked",
        token_secret="ts-blocked-token-secret",
    )
    assert_rejected(send(client, header), "IntegrationBlocked", 401, "consumer_key_rejected")


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("tk-nobody", "token_rejected"),
        ("tk-revoked", "token_revoked"),
        ("tk-expired", "token_expired"),
        ("tk-blocked", "token_rejected"),  # another integration's token
        ("tk-other-account", "token_rejected"),
    ],
)
def test_token_rejected(client: TestClient, token: str, problem: str) -> None:
    response = send(client, oauth_header("GET", URL, token=token))
    assert_rejected(response, "TokenRejected", 401, problem)


@pytest.mark.parametrize("realm", ["123456_sb1", "123456-SB1", "654321"])
def test_token_bearing_request_for_another_realm_is_token_rejected(
    client: TestClient, realm: str
) -> None:
    response = send(client, oauth_header("GET", URL, realm=realm))
    assert_rejected(response, "TokenRejected", 401, "token_rejected")


def test_request_without_realm_is_accepted(client: TestClient) -> None:
    assert send(client, oauth_header("GET", URL, realm=None)).status_code == 200


def test_entity_or_role_disabled(client: TestClient) -> None:
    header = oauth_header("GET", URL, token="tk-inactive", token_secret="ts-inactive-token-secret")
    assert_rejected(send(client, header), "EntityOrRoleDisabled", 401, "permission_denied")


@pytest.mark.parametrize(
    "bend",
    [
        {"consumer_secret": "wrong"},
        {"token_secret": "wrong"},
        {"signature": "bm90IGEgc2lnbmF0dXJl"},
    ],
)
def test_invalid_signature(client: TestClient, bend: dict[str, str]) -> None:
    assert_rejected(
        send(client, oauth_header("GET", URL, **bend)), "InvalidSignature", 401, "signature_invalid"
    )


def test_a_signature_for_another_url_does_not_verify(client: TestClient) -> None:
    header = oauth_header("GET", URL.replace("deploy=1", "deploy=2"))
    assert_rejected(send(client, header), "InvalidSignature", 401, "signature_invalid")


def test_full_replay_store_answers_503_and_keeps_its_keys(clock: Clock) -> None:
    app = TBAGuardMiddleware(
        echo_app(), guard=Guard(make_settings(replay_store_max_entries=2), clock=clock)
    )
    with TestClient(app, base_url=BASE_URL) as client:
        first = oauth_header("GET", URL)
        assert send(client, first).status_code == 200
        assert send(client, oauth_header("GET", URL)).status_code == 200
        full = send(client, oauth_header("GET", URL))
        assert full.status_code == 503
        assert full.json()["error"]["code"] == "ReplayStoreUnavailable"
        assert full.headers["retry-after"] == "1"
        # The live keys were not forgotten: the first request still cannot be replayed.
        assert send(client, first).json()["error"]["code"] == "NonceUsed"
        # Once they can no longer pass the window, room is made again.
        clock.now += 601
        assert send(client, oauth_header("GET", URL, timestamp=int(clock.now))).status_code == 200
