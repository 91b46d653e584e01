"""JSON Web Signatures for OAuth 2.0, through PyJWT and cryptography: never hand-written.

The guard checks the header (`alg`, `kid`, `typ`) and every claim itself, against its own
clock; PyJWT is asked only whether a signature verifies under one key and one algorithm, so
that `alg: none`, HMAC and an algorithm of another key type never reach it. Needs the
`oauth2` extra (`pip install 'tba-guard[oauth2]'`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: What a key of each kind may sign with: RSA-PSS at three hash sizes, ECDSA on its own curve.
RSA_ALGORITHMS: Final = frozenset({"PS256", "PS384", "PS512"})
CURVE_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
CURVE_NAMES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: RSA moduli a mapping's certificate may have (NetSuite accepts 3072 and 4096 bits).
RSA_CERTIFICATE_BITS: Final = frozenset({3072, 4096})
_MAX_TOKEN_LENGTH: Final = 8192

# PyJWT checks the signature only: the claims are the guard's, against its injected clock.
_SIGNATURE_ONLY: Final = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
_JWT: Final = jwt.PyJWT(options=_SIGNATURE_ONLY)  # type: ignore[arg-type]


class JoseError(Exception):
    """A token or key that cannot be read or does not verify; the reason never holds a key."""


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, read before anything is trusted."""
    if len(token) > _MAX_TOKEN_LENGTH:
        raise JoseError(f"longer than {_MAX_TOKEN_LENGTH} characters")
    if token.count(".") != 2:
        raise JoseError("not a compact JWS (three parts separated by dots)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise JoseError(f"header unreadable: {exc}") from None
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload as sent, for `explain` only: nothing in it is trusted."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise JoseError(f"payload unreadable: {exc}") from None
    if not isinstance(claims, dict):
        raise JoseError("payload is not a JSON object")
    return claims


def verified_claims(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    """The payload, once the signature verifies under `key` with `algorithm`."""
    try:
        claims: dict[str, Any] = _JWT.decode(token, key, algorithms=[algorithm])
    except jwt.InvalidSignatureError:
        raise JoseError("signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise JoseError(f"unreadable: {exc}") from None
    return claims


class SigningKey:
    """One of the guard's keys: the private half signs access tokens, the public verifies
    them; `kid` is derived from the public key, so it names the key wherever it is loaded."""

    __slots__ = ("algorithm", "kid", "private", "public")

    def __init__(self, private: Any, algorithm: str) -> None:
        self.private = private
        self.public = private.public_key()
        self.algorithm = algorithm
        self.kid = key_id(self.public)

    def sign(self, claims: dict[str, Any]) -> str:
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def key_id(public_key: Any) -> str:
    """A key's ID: the first 128 bits of the SHA-256 of its SubjectPublicKeyInfo, base64url."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:16]).decode().rstrip("=")


def load_signing_keys(pems: tuple[str, ...], rsa_algorithm: str) -> tuple[SigningKey, ...]:
    """The settings' keys, newest first; an RSA key signs with `rsa_algorithm`, an EC key with
    its curve's algorithm. Raises `JoseError` naming the key by position, never its text."""
    keys = []
    for index, pem in enumerate(pems):
        try:
            private = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise JoseError(f"oauth2_signing_keys[{index}]: not an unencrypted PEM key") from None
        if isinstance(private, rsa.RSAPrivateKey):
            if private.key_size < 3072:
                raise JoseError(f"oauth2_signing_keys[{index}]: RSA keys need 3072 bits or more")
            keys.append(SigningKey(private, rsa_algorithm))
        elif isinstance(private, ec.EllipticCurvePrivateKey) and (
            private.curve.name in CURVE_ALGORITHMS
        ):
            keys.append(SigningKey(private, CURVE_ALGORITHMS[private.curve.name]))
        else:
            raise JoseError(
                f"oauth2_signing_keys[{index}]: expected an RSA or EC P-256/384/521 key"
            )
    return tuple(keys)


class CertificateInfo:
    """What the guard reads of a mapping's certificate: its public key, the algorithms that
    key may sign assertions with, its validity (epoch seconds), and what is wrong with it for
    a mapping (`problem`, empty when nothing)."""

    __slots__ = ("algorithms", "fingerprint", "key", "kind", "not_after", "not_before", "problem")

    def __init__(self, certificate: x509.Certificate) -> None:
        self.key = key = certificate.public_key()
        self.not_before = certificate.not_valid_before_utc.timestamp()
        self.not_after = certificate.not_valid_after_utc.timestamp()
        self.fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
        self.problem = ""
        if isinstance(key, rsa.RSAPublicKey):
            self.kind = f"RSA {key.key_size}"
            self.algorithms: frozenset[str] = RSA_ALGORITHMS
            if key.key_size not in RSA_CERTIFICATE_BITS:
                self.problem = f"an RSA key of {key.key_size} bits (3072 or 4096 are accepted)"
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in CURVE_ALGORITHMS:
            self.kind = f"EC {CURVE_NAMES[key.curve.name]}"
            self.algorithms = frozenset({CURVE_ALGORITHMS[key.curve.name]})
        else:
            self.kind = type(key).__name__
            self.algorithms = frozenset()
            self.problem = "a key that is neither RSA nor EC P-256, P-384 or P-521"
        if not self.problem and self.not_after - self.not_before > MAX_CERTIFICATE_SECONDS:
            self.problem = "valid for more than two years"


#: The longest validity a mapping's certificate may have: two years (of 365 days, plus a leap day).
MAX_CERTIFICATE_SECONDS: Final = (2 * 365 + 1) * 86400


@lru_cache(maxsize=1024)
def read_certificate(pem: str) -> CertificateInfo:
    """A PEM certificate, read once per text (mappings are looked up on every token request)."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise JoseError("not a PEM X.509 certificate") from None
    return CertificateInfo(certificate)
