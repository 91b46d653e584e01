"""Bearer tokens on the routes TBA guards (RFC 6750): the guard's own access tokens accepted
with the same identity object, scopes per route, every refusal a 401 or 403 with the Bearer
challenge; revocation and blocking bite on the next request; TBA's requests untouched."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tba_guard import AuditEvent, Guard, TBAFlow
from tba_guard.core.errors import ErrorCode, TBAError, error_response
from tba_guard.core.records import Certificate, Integration
from tba_guard.core.settings import GuardSettings, SettingsError
from tba_guard.stores.memory import StaticCredentials
from tests.support import BASE_URL, CONSUMER_KEY, CONSUMER_SECRET, NOW, Clock, oauth_header
from tests.support.oauth2 import (
    CLIENT_ID,
    REST_PATH,
    RESTLET_PATH,
    RSA_CERTIFICATE_ID,
    TOKEN_PATH,
    assertion,
    ec_key,
    guard_key,
    oauth2_settings,
    private_pem,
    rsa_key,
    token_form,
)

RESTLET = f"{RESTLET_PATH}?script=1&deploy=1"


async def who(request: Any) -> JSONResponse:
    identity = request.scope["tba"]
    return JSONResponse(
        {
            "consumer_key": identity.consumer_key,
            "token_id": identity.token_id,
            "realm": identity.realm,
            "entity": identity.entity,
            "role": identity.role,
            "scheme": identity.scheme,
            "scopes": list(identity.scopes),
            "user": request.scope["user"].display_name,
        }
    )


class Service:
    """TBAFlow over a mutable credential store and an injected clock."""

    def __init__(self, settings: GuardSettings | None = None, **guard: Any) -> None:
        self.settings = settings or oauth2_settings()
        self.clock = Clock()
        self.events: list[AuditEvent] = []
        self.store = StaticCredentials(
            self.settings.integrations, self.settings.tokens, self.settings.certificates
        )
        self.guard = Guard(
            self.settings,
            clock=self.clock,
            credentials=guard.pop("credentials", self.store),
            audit_hooks=[self.events.append],
            **guard,
        )
        self.flow = TBAFlow(Starlette(routes=[Route("/{path:path}", who)]), guard=self.guard)
        self.client = TestClient(self.flow, base_url=BASE_URL)

    @property
    def access_tokens(self) -> Any:
        """The serving guard's (the flow's) keys and verified-token cache."""
        return self.flow.guard.limits.oauth2

    def token(self, scope: str = "restlets,rest_webservices", **claims: Any) -> str:
        form = token_form(
            assertion(rsa_key(), RSA_CERTIFICATE_ID, now=self.clock.now, scope=scope, **claims)
        )
        response = self.client.post(TOKEN_PATH, data=form)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def get(self, token: str, path: str = RESTLET, **headers: str) -> Any:
        return self.client.get(path, headers={"authorization": f"Bearer {token}", **headers})


def refused(response: Any, status: int, error: str, reason: str = "") -> None:
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="123456_SB1", error="{error}"'), challenge
    assert reason in challenge
    body = response.json()["error"]
    assert body["code"] in {"InvalidBearerToken", "InsufficientScope"}


def test_a_bearer_token_reaches_a_restlet_and_a_rest_path_with_the_same_identity_as_tba() -> None:
    service = Service()
    token = service.token()
    expected = {
        "consumer_key": CONSUMER_KEY,
        "token_id": RSA_CERTIFICATE_ID,
        "realm": "123456_SB1",
        "entity": "38",
        "role": "3",
        "scheme": "oauth2",
        "scopes": ["restlets", "rest_webservices"],
        "user": "38",
    }
    assert service.get(token).json() == expected
    assert service.get(token, REST_PATH).json() == expected
    accepted = [e for e in service.events if e.outcome == "accepted" and e.method == "GET"]
    assert [(e.scheme, e.consumer_key, e.token_id) for e in accepted] == [
        ("oauth2", CONSUMER_KEY, RSA_CERTIFICATE_ID)
    ] * 2


def test_tba_still_signs_the_same_routes_beside_bearer_tokens() -> None:
    service = Service()
    url = f"{BASE_URL}{RESTLET}"
    response = service.client.get(url, headers={"authorization": oauth_header("GET", url)})
    assert response.status_code == 200
    assert response.json()["scheme"] == "tba"


@pytest.mark.parametrize(
    ("scope", "path", "needed"),
    [("restlets", REST_PATH, "rest_webservices"), ("rest_webservices", RESTLET, "restlets")],
)
def test_a_scope_short_of_the_route_is_403_insufficient_scope(
    scope: str, path: str, needed: str
) -> None:
    service = Service()
    refused(service.get(service.token(scope), path), 403, "insufficient_scope", needed)


def test_a_path_no_scope_covers_is_403() -> None:
    service = Service()
    refused(
        service.get(service.token(), "/elsewhere"), 403, "insufficient_scope", "no scope covers"
    )


def test_the_route_scopes_are_a_setting_longest_prefix_first() -> None:
    settings = oauth2_settings(
        oauth2_route_scopes=["/=restlets", "/services/rest/=rest_webservices"]
    )
    service = Service(settings)
    assert service.get(service.token("restlets"), "/elsewhere").status_code == 200
    refused(service.get(service.token("restlets"), REST_PATH), 403, "insufficient_scope")


def test_an_expired_token_is_401_even_once_cached() -> None:
    service = Service()
    token = service.token()
    assert service.get(token).status_code == 200
    service.clock.now += 3600 + 299  # exp, plus the tolerance: the last second it passes
    assert service.get(token).status_code == 200
    service.clock.now += 1
    refused(service.get(token), 401, "invalid_token", "expired")


def test_a_token_before_its_nbf_is_401() -> None:
    service = Service()
    token = service.token()
    service.clock.now -= 301
    refused(service.get(token), 401, "invalid_token", "not valid yet")


def _tampered(token: str, **claims: Any) -> str:
    head, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{head}.{body}.{signature}"


def _resigned(token: str, key: Any, algorithm: str = "PS256", **header: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    old = {k: v for k, v in jwt.get_unverified_header(token).items() if k != "alg"}
    return jwt.encode(claims, key, algorithm=algorithm, headers={**old, **header})


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (
            lambda t: _tampered(t, scope="restlets rest_webservices extra"),
            "signature does not verify",
        ),
        (lambda t: _resigned(t, rsa_key(4096), kid="someone-else"), "kid names none"),
        (lambda t: _resigned(t, rsa_key(4096)), "signature does not verify"),
        (lambda t: _resigned(t, guard_key(), "PS384"), "alg is not PS256"),
        (lambda t: "a.b", "compact JWS"),
        (lambda t: "x" * 9000, "longer than"),
        (lambda t: "abc.e30.sig", "header unreadable"),
    ],
    ids=[
        "payload changed",
        "unknown kid",
        "another key",
        "another alg",
        "two parts",
        "too long",
        "bad header",
    ],
)
def test_a_forged_or_malformed_token_is_401_invalid_token(forge: Any, reason: str) -> None:
    service = Service()
    refused(service.get(forge(service.token())), 401, "invalid_token", reason)


def test_a_token_for_another_issuer_or_audience_is_401() -> None:
    service = Service()
    token = service.token()
    for changed, reason in (
        ({"oauth2_issuer": "https://other"}, "iss"),
        ({"oauth2_audience": "x"}, "aud"),
    ):
        other = Service(oauth2_settings(**changed))
        refused(other.get(token), 401, "invalid_token", reason)


def test_a_token_missing_a_claim_is_401() -> None:
    service = Service()
    claims = jwt.decode(service.token(), options={"verify_signature": False})
    del claims["certificate_id"]
    key = service.access_tokens.keys[0]
    refused(service.get(key.sign(claims)), 401, "invalid_token", "claim")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"],
)
def test_a_bearer_header_without_one_well_formed_token_is_401(authorization: str) -> None:
    service = Service()
    raw = [(b"authorization", authorization.encode("latin-1"))]
    response = service.client.get(RESTLET, headers=raw)
    refused(response, 401, "invalid_token", "well-formed")


def test_two_authorization_headers_are_refused() -> None:
    service = Service()
    token = service.token()
    response = service.client.get(
        RESTLET,
        headers=[("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")],
    )
    # Two headers name no one scheme: TBA's check 2 refuses them, as it always has.
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingRequiredParameter"


def test_key_rotation_the_newest_key_signs_and_the_old_one_still_verifies() -> None:
    old = Service()
    token = old.token()
    new_key = private_pem(ec_key("secp384r1"))
    both = Service(oauth2_settings(oauth2_signing_keys=[new_key, private_pem(guard_key())]))
    assert both.get(token).status_code == 200
    fresh = both.token()
    assert jwt.get_unverified_header(fresh)["alg"] == "ES384"
    gone = Service(oauth2_settings(oauth2_signing_keys=[new_key]))
    refused(gone.get(token), 401, "invalid_token", "kid names none")
    assert gone.get(fresh).status_code == 200


def _replace_integration(service: Service, **change: Any) -> None:
    integration = dataclasses.replace(service.settings.integrations[0], **change)
    service.store._integrations[integration.consumer_key] = integration
    service.store._clients[CLIENT_ID] = integration


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"state": "blocked"}, "blocked"), ({"schemes": ("tba",)}, "TBA only")],
)
def test_blocking_the_integration_refuses_its_tokens_on_the_next_request(
    change: dict[str, Any], reason: str
) -> None:
    service = Service()
    token = service.token()
    assert service.get(token).status_code == 200
    _replace_integration(service, **change)
    refused(service.get(token), 401, "invalid_token", reason)


def test_revoking_the_certificate_refuses_its_tokens_on_the_next_request() -> None:
    service = Service()
    token = service.token()
    assert service.get(token).status_code == 200
    mapping = service.store._certificates[RSA_CERTIFICATE_ID]
    service.store._certificates[RSA_CERTIFICATE_ID] = dataclasses.replace(mapping, state="revoked")
    refused(service.get(token), 401, "invalid_token", "revoked")


def test_a_token_outliving_its_certificate_is_refused() -> None:
    service = Service()
    token = service.token()
    service.clock.now = NOW + 366 * 86400  # the certificate's year has passed
    service.access_tokens.cache.clear()
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(
        iat=int(service.clock.now), nbf=int(service.clock.now), exp=int(service.clock.now) + 60
    )
    late = service.access_tokens.keys[0].sign(claims)
    refused(service.get(late), 401, "invalid_token", "certificate expired")


def test_the_verified_token_cache_is_bounded() -> None:
    service = Service(oauth2_settings(oauth2_token_cache_size=1))
    first, second = service.token(), service.token()
    assert service.get(first).status_code == 200
    assert service.get(second).status_code == 200
    assert list(service.access_tokens.cache) == [second]
    assert service.get(first).status_code == 200  # verified again, not refused


def test_bearer_tokens_are_not_for_the_flows_token_steps() -> None:
    service = Service()
    token = service.token()
    response = service.client.post(
        "/rest/requesttoken", headers={"authorization": f"Bearer {token}"}
    )
    refused(response, 401, "invalid_token", "not TBA")


def test_without_oauth2_a_bearer_header_is_answered_as_today() -> None:
    service = Service()
    token = service.token()
    off = Service(oauth2_settings(oauth2_signing_keys=()))
    response = off.get(token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingRequiredParameter"


def test_opaque_mode_keeps_the_status_and_error_but_says_no_more() -> None:
    service = Service(oauth2_settings(error_detail="opaque"))
    response = service.get(_tampered(service.token(), role="1"))
    assert response.status_code == 401
    assert (
        response.headers["www-authenticate"] == 'Bearer realm="123456_SB1", error="invalid_token"'
    )


def test_a_failing_credential_store_is_503() -> None:
    class Failing(StaticCredentials):
        async def client(self, client_id: str) -> Integration | None:
            raise ConnectionError("down")

    service = Service()
    token = service.token()
    settings = service.settings
    broken = Service(
        credentials=Failing(settings.integrations, settings.tokens, settings.certificates)
    )
    response = broken.get(token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "CredentialStoreUnavailable"


def test_the_bearer_challenge_carries_a_development_hint_in_code_mode_only() -> None:
    error = TBAError(ErrorCode.INVALID_BEARER_TOKEN, 'expired "now"')
    shown = error_response(error, realm="r", hint="get a new token")
    assert json.loads(shown.body)["error"]["hint"] == "get a new token"
    assert (
        b"www-authenticate",
        b'Bearer realm="r", error="invalid_token", error_description="expired ?now?"',
    ) in shown.headers
    hidden = error_response(error, realm="r", detail="opaque", hint="get a new token")
    assert "hint" not in json.loads(hidden.body)["error"]


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (
            ["-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"],
            "not an unencrypted PEM key",
        ),
        ([private_pem(rsa_key(2048))], "3072 bits or more"),
    ],
)
def test_a_signing_key_that_does_not_load_is_a_settings_error(
    keys: list[str], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        Guard(oauth2_settings(oauth2_signing_keys=keys))


def test_an_ed25519_signing_key_is_a_settings_error() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(SettingsError, match="RSA or EC"):
        Guard(
            oauth2_settings(oauth2_signing_keys=[private_pem(ed25519.Ed25519PrivateKey.generate())])
        )


def test_a_mapping_unknown_to_the_store_refuses_the_token() -> None:
    service = Service()
    token = service.token()
    del service.store._certificates[RSA_CERTIFICATE_ID]
    refused(service.get(token), 401, "invalid_token", "revoked")


def test_a_certificate_record_keeps_its_pem_out_of_repr() -> None:
    mapping = Certificate("c", CLIENT_ID, "38", "3", "-----BEGIN CERTIFICATE-----")
    assert "BEGIN" not in repr(mapping)
    assert repr(Integration(CONSUMER_KEY, CONSUMER_SECRET)).count(CONSUMER_SECRET) == 0


def test_the_scheme_word_is_case_insensitive_before_and_after_the_cache() -> None:
    service = Service()
    token = service.token()
    for _ in range(2):  # verified, then taken from the cache
        response = service.client.get(RESTLET, headers={"authorization": f"bearer {token}"})
        assert response.status_code == 200
    assert list(service.access_tokens.cache) == [token]
