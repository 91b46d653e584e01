"""tba_guard.testing: what an application's own tests use to sign requests to a guarded
app."""

from __future__ import annotations

import subprocess
import sys

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from tba_guard import GuardSettings
from tba_guard.core.settings import MIN_SECRET_LENGTH
from tba_guard.testing import SigningCredentials, TBAAuth, guarded_app, sign_headers
from tests.support import ROOT

FORM = "application/x-www-form-urlencoded"


def test_auth_signs_query_form_and_json_requests_that_the_guard_accepts() -> None:
    app, credentials = guarded_app(entity="38", role="3")
    auth = TBAAuth(credentials)
    with TestClient(app) as client:
        query = client.get("/orders?status=open&page=2", auth=auth)
        form = client.post(
            "/orders?q=1", content="a=1&b=%C3%A9", headers={"Content-Type": FORM}, auth=auth
        )
        json = client.put("/orders/7", json={"status": "paid"}, auth=auth)
        unsigned = client.get("/orders")
    assert [r.status_code for r in (query, form, json)] == [200, 200, 200]
    assert query.json() == {
        "consumer_key": credentials.consumer_key,
        "token_id": credentials.token_id,
        "entity": "38",
        "role": "3",
    }
    assert unsigned.status_code == 401


def test_a_form_body_changed_after_signing_is_rejected() -> None:
    # The helper signs form parameters: without them in the signature this would pass.
    app, credentials = guarded_app()
    url = "http://testserver/pay"
    headers = sign_headers(credentials, "POST", url, "amount=1", FORM)
    assert headers["Content-Type"] == FORM
    with TestClient(app) as client:
        changed = client.post(url, content="amount=1000", headers=headers)
    assert changed.json()["error"]["code"] == "InvalidSignature"


def test_headers_follow_the_settings_realm_and_method_and_each_is_used_once() -> None:
    settings = GuardSettings(realm="123456_SB1", signature_methods=("HMAC-SHA512",))
    app, credentials = guarded_app(settings=settings)
    assert (credentials.realm, credentials.signature_method) == ("123456_SB1", "HMAC-SHA512")
    headers = sign_headers(credentials, "get", "http://testserver/x")
    assert 'realm="123456_SB1"' in headers["Authorization"]
    with TestClient(app) as client:
        first = client.get("/x", headers=headers)
        again = client.get("/x", headers=headers)
    assert first.status_code == 200
    assert again.json()["error"]["code"] == "NonceUsed"


def test_every_app_gets_its_own_random_secrets() -> None:
    app, mine = guarded_app()
    _, other = guarded_app()
    assert mine.consumer_key != other.consumer_key
    assert mine.consumer_secret != other.consumer_secret
    for secret in (mine.consumer_secret, mine.token_secret or ""):
        assert len(secret) >= MIN_SECRET_LENGTH
    assert mine.consumer_secret not in repr(mine)
    with TestClient(app) as client:
        response = client.get("/x", auth=TBAAuth(other))
    assert response.json()["error"]["code"] == "UnknownIntegration"


async def test_auth_works_with_an_async_client() -> None:
    app, credentials = guarded_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/x", content="k=v", headers={"Content-Type": FORM}, auth=TBAAuth(credentials)
        )
    assert response.status_code == 200


def test_signing_uses_oauthlib_not_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # Signed by the code it checks, a helper would hide the guard's own signing mistakes.
    import tba_guard.core.signature

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("tba_guard.testing must not sign with the guard's code")

    monkeypatch.setattr(tba_guard.core.signature, "sign", refuse)
    credentials = SigningCredentials("ck", "cs-0123456789abcdef", "tk", "ts-0123456789abcdef")
    assert "oauth_signature=" in sign_headers(credentials, "GET", "https://h/x")["Authorization"]


def test_importing_the_helper_does_not_import_httpx() -> None:
    code = (
        "import sys, tba_guard.testing\n"
        "loaded = {'httpx', 'httpx2'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    root = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root
    )
    assert done.returncode == 0, done.stderr


def test_the_helper_is_at_its_public_path() -> None:
    # What a repr or a traceback names is the path users import, not a layer's.
    for exported in (SigningCredentials, TBAAuth, guarded_app, sign_headers):
        assert exported.__module__ == "tba_guard.testing", exported
