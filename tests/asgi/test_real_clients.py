"""Requests signed by the clients people actually use are accepted.

requests-oauthlib and Authlib sign with the wall clock and random nonces, so the guard here uses
the real clock too; nothing below depends on timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.httpx_client import OAuth1Auth
from authlib.oauth1.rfc5849.client_auth import ClientAuth
from authlib.oauth1.rfc5849.signature import generate_signature_base_string
from requests_oauthlib import OAuth1
from starlette.testclient import TestClient

from tba_guard import Guard, TBAGuardMiddleware
from tests.support import (
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    REALM,
    TOKEN_ID,
    TOKEN_SECRET,
    echo_app,
    make_settings,
)

RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"


@pytest.fixture
def live_client() -> Iterator[TestClient]:
    app = TBAGuardMiddleware(echo_app(), guard=Guard(make_settings(), clock=time.time))
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


def requests_oauthlib_signed(method: str, url: str, **kwargs: Any) -> requests.PreparedRequest:
    auth = OAuth1(
        CONSUMER_KEY,
        client_secret=CONSUMER_SECRET,
        resource_owner_key=TOKEN_ID,
        resource_owner_secret=TOKEN_SECRET,
        signature_method="HMAC-SHA256",
        realm=REALM,
    )
    return requests.Request(method, url, auth=auth, **kwargs).prepare()


def replay(client: TestClient, prepared: requests.PreparedRequest) -> Any:
    """Send exactly what requests would have put on the wire."""
    assert prepared.method is not None
    assert prepared.url is not None
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    headers = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in prepared.headers.items()
    }
    return client.request(prepared.method, prepared.url, headers=headers, content=body)


def test_requests_oauthlib_get_with_query(live_client: TestClient) -> None:
    prepared = requests_oauthlib_signed(
        "GET", RESTLET, params={"script": "12", "deploy": "1", "q": "a b+c/é"}
    )
    assert b'realm="123456_SB1"' in bytes(prepared.headers["Authorization"])
    response = replay(live_client, prepared)
    assert response.status_code == 200, response.text
    assert response.json()["token_id"] == TOKEN_ID


def test_requests_oauthlib_post_with_signed_form_body(live_client: TestClient) -> None:
    prepared = requests_oauthlib_signed(
        "POST", f"{RESTLET}?script=12&deploy=1", data={"name": "Acme & Co", "qty": "3"}
    )
    assert prepared.headers["Content-Type"] in (
        "application/x-www-form-urlencoded",
        b"application/x-www-form-urlencoded",
    )
    response = replay(live_client, prepared)
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "name=Acme+%26+Co&qty=3"


def test_requests_oauthlib_post_with_json_body(live_client: TestClient) -> None:
    prepared = requests_oauthlib_signed(
        "POST", f"{RESTLET}?script=12&deploy=1", json={"id": 7, "memo": "ünïcode"}
    )
    # requests-oauthlib signs a JSON request without its body (no oauth_body_hash).
    response = replay(live_client, prepared)
    assert response.status_code == 200, response.text
    assert response.json()["body"] == '{"id": 7, "memo": "\\u00fcn\\u00efcode"}'


def test_oauthlib_client_body_hash_protects_a_json_body(live_client: TestClient) -> None:
    from oauthlib.oauth1 import Client

    client = Client(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        TOKEN_ID,
        TOKEN_SECRET,
        signature_method="HMAC-SHA256",
        realm=REALM,
    )
    headers = {"Content-Type": "application/json"}
    url, signed, body = client.sign(RESTLET, "POST", '{"amount": 1}', headers)
    assert "oauth_body_hash" in signed["Authorization"]
    assert live_client.post(url, headers=signed, content=body).status_code == 200
    url, signed, body = client.sign(RESTLET, "POST", '{"amount": 1}', headers)
    tampered = live_client.post(url, headers=signed, content='{"amount": 1000}')
    assert tampered.json()["error"]["code"] == "InvalidSignature"


def _sign_hmac_sha256(client: Any, request: Any) -> str:
    """HMAC-SHA256 for Authlib, registered as NetSuite client libraries register it."""
    import base64
    import hashlib
    import hmac

    from authlib.common.encoding import to_bytes, to_unicode
    from authlib.oauth1.rfc5849.util import escape

    base_string = generate_signature_base_string(request)
    key = f"{escape(client.client_secret or '')}&{escape(client.token_secret or '')}"
    digest = hmac.new(to_bytes(key), to_bytes(base_string), hashlib.sha256).digest()
    return to_unicode(base64.b64encode(digest))


ClientAuth.register_signature_method("HMAC-SHA256", _sign_hmac_sha256)


def authlib_auth() -> OAuth1Auth:
    return OAuth1Auth(
        client_id=CONSUMER_KEY,
        client_secret=CONSUMER_SECRET,
        token=TOKEN_ID,
        token_secret=TOKEN_SECRET,
        signature_method="HMAC-SHA256",
        realm=REALM,
    )


def test_authlib_httpx_get_with_query(live_client: TestClient) -> None:
    response = live_client.get(
        RESTLET, params={"script": "12", "deploy": "1", "x": "~*'()"}, auth=authlib_auth()
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_id"] == TOKEN_ID


def test_authlib_httpx_post_with_form_body(live_client: TestClient) -> None:
    response = live_client.post(
        f"{RESTLET}?script=12", data={"a": "1", "b": "x y"}, auth=authlib_auth()
    )
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "a=1&b=x+y"


def test_authlib_request_replayed_is_nonce_used(live_client: TestClient) -> None:
    first = live_client.get(RESTLET, auth=authlib_auth())
    assert first.status_code == 200
    header = first.request.headers["Authorization"]
    again = live_client.get(RESTLET, headers={"Authorization": header})
    assert again.json()["error"]["code"] == "NonceUsed"
