"""The OAuth 2.0 token endpoint: the client credentials grant with a JWT assertion, each
algorithm family accepted, and every refusal answered with RFC 6749's error, audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tba_guard import AuditEvent, Guard, TBAFlow
from tba_guard.asgi.token_endpoint import OAuth2TokenEndpoint
from tba_guard.core.records import Certificate, Integration
from tba_guard.core.settings import GuardSettings
from tba_guard.stores.memory import MemoryReplayStore, StaticCredentials
from tests.support import BASE_URL, CONSUMER_KEY, CONSUMER_SECRET, NOW, Clock
from tests.support.oauth2 import (
    CLIENT_ID,
    EC_CERTIFICATE_ID,
    RSA_CERTIFICATE_ID,
    TOKEN_PATH,
    TOKEN_URL,
    assertion,
    certificate_pem,
    ec_key,
    mappings,
    oauth2_settings,
    rsa_key,
    token_form,
)


async def who(request: Any) -> JSONResponse:
    identity = request.scope["tba"]
    return JSONResponse({"scheme": identity.scheme, "token_id": identity.token_id})


def client_for(
    settings: GuardSettings | None = None, *, clock: Clock | None = None, **guard: Any
) -> tuple[TestClient, list[AuditEvent]]:
    events: list[AuditEvent] = []
    built = Guard(
        settings or oauth2_settings(),
        clock=clock or Clock(),
        audit_hooks=[events.append],
        **guard,
    )
    app = TBAFlow(Starlette(routes=[Route("/{path:path}", who)]), guard=built)
    return TestClient(app, base_url=BASE_URL), events


def ask(client: TestClient, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = client.post(TOKEN_PATH, data=form)
    return response.status_code, response.json()


def with_certificates(*added: Certificate, **integration: Any) -> GuardSettings:
    base = Integration(CONSUMER_KEY, CONSUMER_SECRET, client_id=CLIENT_ID, **integration)
    return oauth2_settings(certificates=[*mappings(), *added], integrations=[base])


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [("secp256r1", "ES256"), ("secp384r1", "ES384"), ("secp521r1", "ES512")],
)
def test_an_ec_mapping_gets_a_token_with_its_curves_algorithm(curve: str, algorithm: str) -> None:
    key = ec_key(curve)
    mapping = Certificate(f"cert-{curve}", CLIENT_ID, "38", "3", certificate_pem(key))
    client, _ = client_for(with_certificates(mapping))
    status, answer = ask(
        client, token_form(assertion(key, mapping.certificate_id, algorithm=algorithm))
    )
    assert status == 200, answer
    assert answer["token_type"] == "bearer"
    assert answer["expires_in"] == "3600"
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["certificate_id"] == mapping.certificate_id
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("algorithm", ["PS256", "PS384", "PS512"])
def test_an_rsa_mapping_gets_a_token_with_each_pss_algorithm(algorithm: str) -> None:
    client, events = client_for()
    response = client.post(
        TOKEN_PATH, data=token_form(assertion(rsa_key(), RSA_CERTIFICATE_ID, algorithm=algorithm))
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    header = jwt.get_unverified_header(response.json()["access_token"])
    assert header["alg"] == "PS256"  # the guard's own key and algorithm, not the client's
    assert [(e.outcome, e.scheme, e.consumer_key, e.token_id) for e in events] == [
        ("accepted", "oauth2", CONSUMER_KEY, RSA_CERTIFICATE_ID)
    ]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def alg_none() -> str:
    good = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    return unsigned({"alg": "none", "typ": "JWT", "kid": RSA_CERTIFICATE_ID}, claims_of(good))


def hs256_with_the_public_key() -> str:
    """The algorithm-confusion attack: HMAC keyed with the certificate's public key."""
    pem = mappings()[0].certificate.encode()
    header = {"alg": "HS256", "typ": "JWT", "kid": RSA_CERTIFICATE_ID}
    claims = claims_of(assertion(rsa_key(), RSA_CERTIFICATE_ID))
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def rsa(**kwargs: Any) -> str:
    return assertion(rsa_key(), RSA_CERTIFICATE_ID, **kwargs)


REFUSALS: list[tuple[str, Callable[[], dict[str, str]], str, str]] = [
    ("no grant type", lambda: {"client_assertion": rsa()}, "invalid_request", "grant_type"),
    (
        "a password grant",
        lambda: token_form(rsa(), grant_type="password"),
        "unsupported_grant_type",
        "password",
    ),
    (
        "another assertion type",
        lambda: token_form(rsa(), client_assertion_type="urn:x"),
        "invalid_request",
        "client_assertion_type",
    ),
    ("no assertion", lambda: token_form(""), "invalid_request", "client_assertion is missing"),
    ("not a JWS", lambda: token_form("abc"), "invalid_client", "compact JWS"),
    ("an unreadable header", lambda: token_form("abc.e30.x"), "invalid_client", "header"),
    ("alg none", lambda: token_form(alg_none()), "invalid_client", "'none'"),
    (
        "HS256 keyed with the public key",
        lambda: token_form(hs256_with_the_public_key()),
        "invalid_client",
        "'HS256'",
    ),
    (
        "typ other than JWT",
        lambda: token_form(rsa(headers={"typ": "at+jwt"})),
        "invalid_client",
        "typ",
    ),
    (
        "no kid",
        lambda: token_form(jwt.encode({"iss": CLIENT_ID}, rsa_key(), "PS256")),
        "invalid_client",
        "kid",
    ),
    (
        "an unknown kid",
        lambda: token_form(assertion(rsa_key(), "cert-unknown")),
        "invalid_client",
        "no mapping",
    ),
    (
        "an RSA algorithm for the EC mapping",
        lambda: token_form(assertion(rsa_key(), EC_CERTIFICATE_ID)),
        "invalid_client",
        "does not match",
    ),
    (
        "a signature by another key",
        lambda: token_form(assertion(rsa_key(4096), RSA_CERTIFICATE_ID)),
        "invalid_client",
        "signature does not verify",
    ),
    (
        "an iss other than the client ID",
        lambda: token_form(rsa(issuer="x")),
        "invalid_client",
        "iss",
    ),
    (
        "an aud of another endpoint",
        lambda: token_form(rsa(audience="https://x/token")),
        "invalid_grant",
        "aud",
    ),
    (
        "exp more than 60 minutes after iat",
        lambda: token_form(rsa(lifetime=3601)),
        "invalid_grant",
        "60 minutes",
    ),
    (
        "an expired assertion",
        lambda: token_form(rsa(now=NOW - 1000, lifetime=600)),
        "invalid_grant",
        "expired",
    ),
    ("an iat in the future", lambda: token_form(rsa(now=NOW + 900)), "invalid_grant", "future"),
    ("iat not a number", lambda: token_form(rsa(iat="soon")), "invalid_grant", "numbers"),
    ("an nbf in the future", lambda: token_form(rsa(nbf=NOW + 900)), "invalid_grant", "nbf"),
    ("nbf not a number", lambda: token_form(rsa(nbf=True)), "invalid_grant", "nbf"),
    ("no scope", lambda: token_form(rsa(scope="")), "invalid_scope", "missing"),
    (
        "an unknown scope",
        lambda: token_form(rsa(scope="restlets,suitetalk")),
        "invalid_scope",
        "suitetalk",
    ),
]


@pytest.mark.parametrize(
    ("form", "error", "reason"),
    [(form, error, reason) for _, form, error, reason in REFUSALS],
    ids=[name for name, _, _, _ in REFUSALS],
)
def test_a_refused_token_request_is_400_with_its_rfc6749_error_and_audited(
    form: Callable[[], dict[str, str]], error: str, reason: str
) -> None:
    client, events = client_for()
    status, answer = ask(client, form())
    assert (status, answer["error"]) == (400, error), answer
    assert reason in answer["error_description"]
    (event,) = events
    assert (event.outcome, event.code, event.scheme) == ("rejected", error, "oauth2")
    assert reason in event.reason


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        ("restlets rest_webservices", ["restlets", "rest_webservices"]),
        (["rest_webservices"], ["rest_webservices"]),
        ("restlets,restlets", ["restlets"]),
    ],
)
def test_scope_may_be_separated_by_spaces_or_commas_or_be_a_list(
    scope: Any, granted: list[str]
) -> None:
    client, _ = client_for()
    status, answer = ask(client, token_form(rsa(scope=scope)))
    assert status == 200
    assert claims_of(answer["access_token"])["scope"].split() == granted


def test_an_aud_list_that_names_the_endpoint_is_accepted() -> None:
    client, _ = client_for()
    status, _ = ask(client, token_form(rsa(audience=["https://other/", TOKEN_URL])))
    assert status == 200


def test_an_assertion_is_usable_once_by_its_jti() -> None:
    client, _ = client_for()
    form = token_form(rsa(jti="jti-1"))
    assert ask(client, form)[0] == 200
    status, answer = ask(client, form)
    assert (status, answer["error"]) == (400, "invalid_grant")
    assert "used before" in answer["error_description"]


def test_an_assertion_without_jti_is_usable_once_by_its_signature() -> None:
    client, _ = client_for()
    form = token_form(rsa(jti=None))
    assert ask(client, form)[0] == 200
    assert ask(client, form) == (
        400,
        {
            "error": "invalid_grant",
            "error_description": "the assertion was used before (its jti or signature)",
        },
    )
    assert ask(client, token_form(rsa(jti=None, lifetime=301)))[0] == 200  # another assertion


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": "blocked"}, "blocked"),
        ({"schemes": ("tba",)}, "TBA only"),
    ],
)
def test_an_integration_that_may_not_use_oauth2_is_unauthorized_client(
    change: dict[str, Any], reason: str
) -> None:
    client, _ = client_for(with_certificates(**change))
    status, answer = ask(client, token_form(rsa()))
    assert (status, answer["error"]) == (400, "unauthorized_client")
    assert reason in answer["error_description"]


def test_a_mapping_whose_client_id_no_integration_has_is_unauthorized_client() -> None:
    key = ec_key()
    orphan = Certificate("cert-orphan", "client-gone", "38", "3", certificate_pem(key))
    client, _ = client_for(with_certificates(orphan))
    status, answer = ask(
        client, token_form(assertion(key, "cert-orphan", algorithm="ES256", issuer="client-gone"))
    )
    assert (status, answer["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [
        (lambda pem: Certificate("c", CLIENT_ID, "38", "3", pem, state="revoked"), "revoked"),
        (
            lambda pem: Certificate(
                "c",
                CLIENT_ID,
                "38",
                "3",
                certificate_pem(rsa_key(), days=10, not_before=NOW - 20 * 86400),
            ),
            "outside its validity",
        ),
        (
            lambda pem: Certificate(
                "c", CLIENT_ID, "38", "3", certificate_pem(rsa_key(), not_before=NOW + 86400)
            ),
            "outside its validity",
        ),
        (
            lambda pem: Certificate(
                "c", CLIENT_ID, "38", "3", certificate_pem(rsa_key(), days=800)
            ),
            "more than two years",
        ),
        (
            lambda pem: Certificate("c", CLIENT_ID, "38", "3", certificate_pem(rsa_key(2048))),
            "2048 bits",
        ),
    ],
    ids=["revoked", "expired", "not yet valid", "valid over two years", "RSA 2048"],
)
def test_a_mapping_not_usable_refuses_its_assertions_as_invalid_client(
    mapping: Callable[[str], Certificate], reason: str
) -> None:
    certificate = mapping(certificate_pem(rsa_key()))
    client, _ = client_for(with_certificates(certificate))
    key = rsa_key(2048) if "2048" in reason else rsa_key()
    status, answer = ask(client, token_form(assertion(key, "c")))
    assert (status, answer["error"]) == (400, "invalid_client")
    assert reason in answer["error_description"]


def test_an_ed25519_certificate_is_no_mapping_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = certificate_pem_for_ed25519(key)
    client, _ = client_for(with_certificates(Certificate("c", CLIENT_ID, "38", "3", pem)))
    assert ask(client, token_form(rsa()))[0] == 200  # the other mappings still work
    status, answer = ask(client, token_form(assertion(rsa_key(), "c")))
    assert (status, answer["error"]) == (400, "invalid_client")
    assert "neither RSA nor EC" in answer["error_description"]


def certificate_pem_for_ed25519(key: Any) -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    start = datetime.datetime.fromtimestamp(NOW - 86400, datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, None)
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json", "x-www-form-urlencoded"),
        (b"grant_type=client_credentials&grant_type=client_credentials", None, "twice"),
        ("grant_type=clïent".encode(), None, "plain URL-encoded ASCII"),
    ],
    ids=["json", "a parameter twice", "not ascii"],
)
def test_a_body_that_is_not_one_plain_form_is_invalid_request(
    body: bytes, content_type: str | None, reason: str
) -> None:
    client, _ = client_for()
    headers = {"content-type": content_type or "application/x-www-form-urlencoded"}
    response = client.post(TOKEN_PATH, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert reason in response.json()["error_description"]


def test_only_post_is_served() -> None:
    client, _ = client_for()
    response = client.get(TOKEN_PATH)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert response.json()["error"] == "invalid_request"


def test_a_request_that_reads_two_ways_is_refused_as_invalid_request() -> None:
    client, events = client_for()
    response = client.post(
        TOKEN_PATH,
        content=b"grant_type=client_credentials",
        headers=[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-type", "text/plain"),
        ],
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"].startswith("AmbiguousRequest: ")
    assert [(e.code, e.scheme) for e in events] == [("AmbiguousRequest", "oauth2")]


class FailingReplayStore(MemoryReplayStore):
    async def claim(self, key: Any, ttl: int) -> bool:
        raise ConnectionError("down")


class FailingCertificates(StaticCredentials):
    async def certificate(self, certificate_id: str) -> Certificate | None:
        raise ConnectionError("down")


def test_a_failing_replay_store_is_503_with_retry_after() -> None:
    client, _ = client_for(replay_store=FailingReplayStore())
    response = client.post(TOKEN_PATH, data=token_form(rsa()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "temporarily_unavailable"


def test_a_failing_credential_store_is_503() -> None:
    settings = oauth2_settings()
    store = FailingCertificates(settings.integrations, settings.tokens, settings.certificates)
    client, _ = client_for(settings, credentials=store)
    response = client.post(TOKEN_PATH, data=token_form(rsa()))
    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")


def test_a_store_of_ones_own_without_clients_knows_no_mapping() -> None:
    class TBAOnly:
        async def integration(self, consumer_key: str) -> None:
            return None

        async def token(self, token_id: str) -> None:
            return None

    client, _ = client_for(credentials=TBAOnly())
    status, answer = ask(client, token_form(rsa()))
    assert (status, answer["error"]) == (400, "invalid_client")
    assert "no mapping" in answer["error_description"]


def test_opaque_mode_answers_the_error_without_its_description() -> None:
    client, events = client_for(oauth2_settings(error_detail="opaque"))
    assert ask(client, token_form(rsa(issuer="x"))) == (400, {"error": "invalid_client"})
    assert "iss" in events[0].reason  # the audit still says why


def test_the_endpoint_needs_a_signing_key() -> None:
    with pytest.raises(ValueError, match="oauth2_signing_keys"):
        OAuth2TokenEndpoint(Guard(oauth2_settings(oauth2_signing_keys=())))


async def test_the_endpoint_ignores_what_is_not_http() -> None:
    endpoint = OAuth2TokenEndpoint(Guard(oauth2_settings(), clock=Clock()))
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "lifespan.startup"}

    await endpoint({"type": "lifespan"}, receive, send)
    assert sent == []


async def test_a_client_gone_before_its_body_gets_no_answer() -> None:
    endpoint = OAuth2TokenEndpoint(Guard(oauth2_settings(), clock=Clock()))
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": TOKEN_PATH,
        "raw_path": TOKEN_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", BASE_URL.partition("://")[2].encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"100"),
        ],
        "client": ("198.51.100.7", 5000),
        "server": ("127.0.0.1", 443),
    }
    await endpoint(scope, receive, send)
    assert sent == []


def test_the_token_endpoint_is_not_served_while_oauth2_is_off() -> None:
    client, _ = client_for(oauth2_settings(oauth2_signing_keys=()))
    response = client.post(TOKEN_PATH, data=token_form(rsa()))
    # The path is then a guarded resource like any other: TBA's answer for no OAuth header.
    assert (response.status_code, response.json()["error"]["code"]) == (
        401,
        "MissingRequiredParameter",
    )


def test_development_hints_reach_the_token_endpoints_refusals_in_code_mode_only() -> None:
    client, _ = client_for(oauth2_settings(development_hints=True))
    status, answer = ask(client, token_form(rsa(issuer="x")))
    assert (status, answer["error"]) == (400, "invalid_client")
    assert answer["hint"]
    assert (
        rsa_key().public_key().public_numbers().n.to_bytes(384, "big").hex()[:32]
        not in answer["hint"]
    )
    opaque, _ = client_for(oauth2_settings(development_hints=True, error_detail="opaque"))
    assert ask(opaque, token_form(rsa(issuer="x"))) == (400, {"error": "invalid_client"})


def test_a_token_endpoint_subclass_is_the_one_that_answers() -> None:
    """What users may subclass works in the compiled build too."""
    refused: list[str] = []

    class Counting(OAuth2TokenEndpoint):
        async def refuse(self, send: Any, error: Any, request: Any) -> None:
            refused.append(error.code.value)
            await super().refuse(send, error, request)

    endpoint = Counting(Guard(oauth2_settings(), clock=Clock()))
    client = TestClient(endpoint, base_url=BASE_URL)
    assert client.post(TOKEN_PATH, data=token_form(rsa(issuer="x"))).status_code == 400
    assert client.post(TOKEN_PATH, data=token_form(rsa())).status_code == 200
    assert refused == ["invalid_client"]
