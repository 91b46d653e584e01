"""OAuth 2.0's test material: keys and X.509 certificates made with `cryptography` (as a
client would make them), assertions signed with PyJWT (as client libraries sign them), and
settings with a mapping for each algorithm family."""

from __future__ import annotations

import datetime
import functools
import secrets
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tba_guard.core.oauth2 import ASSERTION_TYPE, GRANT_TYPE
from tba_guard.core.records import Certificate, Integration
from tba_guard.core.settings import GuardSettings
from tests.support.signing import BASE_URL, CONSUMER_KEY, CONSUMER_SECRET, NOW, make_settings

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
TOKEN_URL = f"{BASE_URL}{TOKEN_PATH}"
CLIENT_ID = "client-order-sync"
RSA_CERTIFICATE_ID = "cert-rsa-3072"
EC_CERTIFICATE_ID = "cert-ec-p256"
RESTLET_PATH = "/app/site/hosting/restlet.nl"
REST_PATH = "/services/rest/record/v1/customer/1"


def rsa_key(bits: int = 3072) -> rsa.RSAPrivateKey:
    """The client's key of each size, one for the whole run: RSA key generation is slow."""
    return _rsa_key(bits, "client")


def guard_key() -> rsa.RSAPrivateKey:
    """The guard's own signing key, not any client's."""
    return _rsa_key(3072, "guard")


@functools.cache
def _rsa_key(bits: int, owner: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str = "secp256r1") -> ec.EllipticCurvePrivateKey:
    curves = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}
    return ec.generate_private_key(curves[curve])


def private_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate_pem(
    key: Any, *, days: float = 365, not_before: float = NOW - 86400, name: str = "order-sync"
) -> str:
    """A self-signed certificate for `key`, valid from `not_before` for `days`."""
    start = datetime.datetime.fromtimestamp(not_before, datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def assertion(
    key: Any,
    kid: str,
    *,
    algorithm: str = "PS256",
    now: float = NOW,
    lifetime: float = 300,
    issuer: str = CLIENT_ID,
    audience: Any = TOKEN_URL,
    scope: Any = "restlets,rest_webservices",
    jti: str | None = "",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A client assertion as NetSuite's documentation has clients sign it; `jti=None` leaves
    the claim out, `""` draws a fresh one."""
    payload: dict[str, Any] = {
        "iss": issuer,
        "scope": scope,
        "aud": audience,
        "iat": int(now),
        "exp": int(now + lifetime),
        **claims,
    }
    if jti is not None:
        payload["jti"] = jti or secrets.token_hex(16)
    header = {"kid": kid, "typ": "JWT", **(headers or {})}
    return jwt.encode(payload, key, algorithm=algorithm, headers=header)


def token_form(client_assertion: str, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": GRANT_TYPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **overrides,
    }


def mappings() -> list[Certificate]:
    return [
        Certificate(RSA_CERTIFICATE_ID, CLIENT_ID, "38", "3", certificate_pem(rsa_key())),
        Certificate(EC_CERTIFICATE_ID, CLIENT_ID, "38", "3", certificate_pem(ec_key())),
    ]


def oauth2_settings(**overrides: Any) -> GuardSettings:
    """The suite's settings with OAuth 2.0 on: the guard's own RSA key, the order-sync
    integration with a client ID and two mappings (RSA 3072, EC P-256)."""
    values: dict[str, Any] = {
        "integrations": [
            Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Order sync", client_id=CLIENT_ID),
            Integration("ck-blocked", "cs-blocked-integration", name="Blocked", state="blocked"),
        ],
        "certificates": mappings(),
        "oauth2_signing_keys": [private_pem(guard_key())],
        "public_url": BASE_URL,
    }
    values.update(overrides)
    return make_settings(**values)
