"""The same job done by oauthlib and Authlib, for side-by-side measurements.

Each competitor gets the minimal in-memory storage it needs (its credentials and a nonce set)
and HMAC-SHA256, so that every figure compares like with like: parse the header, check the
timestamp and nonce, look up the secrets, rebuild the base string, compare the HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from authlib.oauth1.rfc5849 import ResourceProtector
from authlib.oauth1.rfc5849.signature import generate_signature_base_string
from authlib.oauth1.rfc5849.util import escape as authlib_escape
from oauthlib.oauth1 import Client, RequestValidator, ResourceEndpoint

from tba_guard import Guard, GuardSettings, Integration, Token

CONSUMER_KEY = "ck-benchmark-0123456789abcdef"
CONSUMER_SECRET = "cs-benchmark-0123456789abcdef0123456789"
TOKEN_ID = "tk-benchmark-0123456789abcdef"
TOKEN_SECRET = "ts-benchmark-0123456789abcdef0123456789"
REALM = "1234567"
HOST = "http://127.0.0.1:8000"

SETTINGS = GuardSettings(
    realm=REALM,
    integrations=(Integration(CONSUMER_KEY, CONSUMER_SECRET),),
    tokens=(Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),),
)


@dataclass(frozen=True)
class Shape:
    """One request shape: what NetSuite clients send most."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    body: str
    content_type: str | None
    # Sign a non-form body with oauth_body_hash, as oauthlib's and Authlib's clients do.
    body_hash: bool = False


SHAPES = (
    Shape("GET query", "GET", "/app/site/hosting/restlet.nl?script=123&deploy=1&id=42", "", None),
    Shape(
        "POST form",
        "POST",
        "/app/site/hosting/restlet.nl?script=123&deploy=1",
        urlencode({"name": "Acme & Co", "qty": "3", "memo": "rush order"}),
        "application/x-www-form-urlencoded",
    ),
    Shape(
        "POST JSON",
        "POST",
        "/services/rest/record/v1/salesOrder",
        '{"entity": {"id": "38"}, "item": {"items": [{"item": {"id": "7"}, "quantity": 3}]}}',
        "application/json",
    ),
)

# The JSON POST as oauthlib's Client signs it when given the body: a SHA-1 `oauth_body_hash` in
# the header. Kept out of SHAPES, whose JSON POST is signed without a body hash.
JSON_BODY_HASH = Shape(
    "POST JSON body hash",
    "POST",
    "/services/rest/record/v1/salesOrder",
    '{"entity": {"id": "38"}, "item": {"items": [{"item": {"id": "7"}, "quantity": 3}]}}',
    "application/json",
    body_hash=True,
)

_nonces = itertools.count()


def signed_headers(shape: Shape, host: str = HOST, now: float | None = None) -> dict[str, str]:
    """Headers as a NetSuite client (oauthlib's Client) sends them: a fresh nonce each call.

    A JSON body is signed without a body hash, as requests-oauthlib does (the body is not part
    of the signature in TBA), unless the shape asks for `oauth_body_hash`.
    """
    client = Client(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        TOKEN_ID,
        TOKEN_SECRET,
        signature_method="HMAC-SHA256",
        realm=REALM,
        nonce=f"{next(_nonces):020d}",
        timestamp=str(int(now if now is not None else time.time())),
    )
    headers = {"Content-Type": shape.content_type} if shape.content_type else {}
    form = shape.content_type == "application/x-www-form-urlencoded"
    _, signed, _ = client.sign(
        host + shape.path, shape.method, shape.body if form or shape.body_hash else None, headers
    )
    return dict(signed)


# --- oauthlib ---------------------------------------------------------------------------------


class OauthlibValidator(RequestValidator):
    """The minimal validator oauthlib's ResourceEndpoint needs, all in memory."""

    enforce_ssl = False

    def __init__(self) -> None:
        super().__init__()
        self.nonces: set[tuple[str, str, str, str]] = set()

    @property
    def allowed_signature_methods(self) -> tuple[str, ...]:
        return ("HMAC-SHA256",)

    @property
    def dummy_client(self) -> str:
        return "dummy-client"

    @property
    def dummy_access_token(self) -> str:
        return "dummy-token"

    def check_client_key(self, client_key: str) -> bool:
        return True

    def check_access_token(self, request_token: str) -> bool:
        return True

    def check_nonce(self, nonce: str) -> bool:
        return True

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == CONSUMER_KEY

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return token == TOKEN_ID

    def validate_realms(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def validate_timestamp_and_nonce(
        self,
        client_key: str,
        timestamp: str,
        nonce: str,
        request: Any,
        request_token: str | None = None,
        access_token: str | None = None,
    ) -> bool:
        key = (client_key, access_token or "", nonce, timestamp)
        if key in self.nonces:
            return False
        self.nonces.add(key)
        return True

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return CONSUMER_SECRET

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return TOKEN_SECRET


def oauthlib_endpoint() -> ResourceEndpoint:
    return ResourceEndpoint(OauthlibValidator())


# --- Authlib ----------------------------------------------------------------------------------


class _AuthlibClient:
    def get_client_secret(self) -> str:
        return CONSUMER_SECRET

    def get_rsa_public_key(self) -> None:
        return None


class _AuthlibToken:
    def get_oauth_token(self) -> str:
        return TOKEN_ID

    def get_oauth_token_secret(self) -> str:
        return TOKEN_SECRET


def verify_hmac_sha256(request: Any) -> bool:
    """HMAC-SHA256 registered with Authlib, as NetSuite client libraries register it."""
    if not request.client_secret:
        return False
    base = generate_signature_base_string(request)
    key = f"{authlib_escape(request.client_secret)}&{authlib_escape(request.token_secret or '')}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), request.signature)


class AuthlibProtector(ResourceProtector):  # type: ignore[misc]
    SUPPORTED_SIGNATURE_METHODS: ClassVar[list[str]] = ["HMAC-SHA256"]

    def __init__(self) -> None:
        self.nonces: set[tuple[str, str, str, str]] = set()
        self.client = _AuthlibClient()
        self.token = _AuthlibToken()

    def get_client_by_id(self, client_id: str) -> _AuthlibClient | None:
        return self.client if client_id == CONSUMER_KEY else None

    def get_token_credential(self, request: Any) -> _AuthlibToken | None:
        return self.token if request.token == TOKEN_ID else None

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        key = (request.client_id, request.token or "", nonce, request.timestamp)
        if key in self.nonces:
            return True
        self.nonces.add(key)
        return False


AuthlibProtector.register_signature_method("HMAC-SHA256", verify_hmac_sha256)


def tba_guard_instance() -> Guard:
    return Guard(SETTINGS)
