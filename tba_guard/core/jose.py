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
import re
from functools import lru_cache
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

#: What a key of each kind may sign with: RSA-PSS at three hash sizes, ECDSA on its own curve.
RSA_ALGORITHMS: Final = frozenset({"PS256", "PS384", "PS512"})
CURVE_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
CURVE_NAMES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: RSA moduli a mapping's certificate may have (NetSuite accepts 3072 and 4096 bits).
RSA_CERTIFICATE_BITS: Final = frozenset({3072, 4096})
_MAX_TOKEN_LENGTH: Final = 8192

#: PyJWT's implementations of the six algorithms: each verifies one signature over given bytes.
#: The compact form around them is read here, once, by the standard library: PyJWT's own
#: decoding checks base64 in a Python loop per character and would parse a token twice.
_ALGORITHMS: Final = {
    name: algorithm
    for name, algorithm in get_default_algorithms().items()
    if name in RSA_ALGORITHMS or name in CURVE_ALGORITHMS.values()
}
_COMPACT: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


class JoseError(Exception):
    """A token or key that cannot be read or does not verify; the reason never holds a key."""


def _parts(token: str) -> re.Match[str]:
    if len(token) > _MAX_TOKEN_LENGTH:
        raise JoseError(f"longer than {_MAX_TOKEN_LENGTH} characters")
    parts = _COMPACT.fullmatch(token)
    if parts is None:
        raise JoseError("not a compact JWS (three base64url parts separated by dots)")
    return parts


def _decoded(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:  # a length no base64 text has
        raise JoseError("a part is not base64url") from None


def _object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_decoded(part))
    except ValueError:
        raise JoseError(f"{what} unreadable: not JSON") from None
    if not isinstance(value, dict):
        raise JoseError(f"{what} is not a JSON object")
    return value


class CompactJWS:
    """A compact JWS read once: its header (untrusted until `verify`), and the parts the
    signature covers."""

    __slots__ = ("header", "parts", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.parts = parts = _parts(token)
        self.header = _object(parts[1], "header")

    def verify(self, key: Any, algorithm: str) -> dict[str, Any]:
        """The payload, once the signature verifies under `key` with `algorithm`."""
        parts = self.parts
        signing_input = self.token[: parts.end(2)].encode("ascii")
        try:
            valid = _ALGORITHMS[algorithm].verify(signing_input, key, _decoded(parts[3]))
        except (KeyError, TypeError, ValueError):  # an algorithm or key of the wrong kind
            valid = False
        if not valid:
            raise JoseError("signature does not verify")
        return _object(parts[2], "payload")


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, read before anything is trusted."""
    return _object(_parts(token)[1], "header")


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload as sent, for `explain` only: nothing in it is trusted."""
    return _object(_parts(token)[2], "payload")


def verified_claims(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    """The payload, once the signature verifies under `key` with `algorithm` (one of the six)."""
    return CompactJWS(token).verify(key, algorithm)


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
        token: str = jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)
        return token


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


def mapping_certificate(pem: str, now: float) -> CertificateInfo:
    """The certificate a new mapping may have: readable, of a key the guard accepts, within
    the two-year cap and not expired. `JoseError` says which rule it breaks."""
    info = read_certificate(pem.strip() + "\n")
    if info.problem:
        raise JoseError(f"the certificate has {info.problem}")
    if info.not_after <= now:
        raise JoseError("the certificate has expired")
    return info
