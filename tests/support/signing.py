"""Requests signed independently of tba_guard, the suite's credentials, and a clock.

Requests in tests are signed with oauthlib's signature functions, never with tba_guard's own,
so that a bug in tba_guard's base string cannot hide itself by signing and verifying alike.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

from oauthlib.common import urldecode
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from tba_guard import GuardSettings, Integration, Token

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository this suite belongs to
# Published vectors, copied into the repository; tests/vectors/README.md says where each comes from.
VECTORS_PATH = ROOT / "tests" / "vectors" / "signatures.json"

NOW = 1_700_000_000
REALM = "123456_SB1"
BASE_URL = "https://123456-sb1.restlets.example.com"
CONSUMER_KEY = "ck-order-sync"
CONSUMER_SECRET = "cs-s3cr3t-order-sync"
TOKEN_ID = "tk-alice"
TOKEN_SECRET = "ts-s3cr3t-alice-token"

_nonces = itertools.count(1)


def fresh_nonce() -> str:
    return f"nonce{next(_nonces):08d}"


def load_vectors() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())
    return data


def oauth_header(
    method: str,
    url: str,
    *,
    consumer_key: str = CONSUMER_KEY,
    consumer_secret: str = CONSUMER_SECRET,
    token: str | None = TOKEN_ID,
    token_secret: str = TOKEN_SECRET,
    realm: str | None = REALM,
    nonce: str | None = None,
    timestamp: int | str = NOW,
    signature_method: str = "HMAC-SHA256",
    version: str | None = "1.0",
    body: str = "",
    form: bool = False,
    extra: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    signature: str | None = None,
) -> str:
    """An Authorization value signed with oauthlib's functions; every field can be bent."""
    params: dict[str, str] = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce if nonce is not None else fresh_nonce(),
        "oauth_timestamp": str(timestamp),
        "oauth_signature_method": signature_method,
    }
    if token is not None:
        params["oauth_token"] = token
    if version is not None:
        params["oauth_version"] = version
    params.update(extra or {})
    for name in drop:
        params.pop(name, None)
    if signature is None:
        collected = list(params.items())
        query = urlsplit(url).query
        if query:
            collected += urldecode(query)
        if form and body:
            collected += urldecode(body)
        base = oauth_signature.signature_base_string(
            method,
            oauth_signature.base_string_uri(url),
            oauth_signature.normalize_parameters(collected),
        )
        signer = {
            "HMAC-SHA1": oauth_signature.sign_hmac_sha1_with_client,
            "HMAC-SHA512": oauth_signature.sign_hmac_sha512_with_client,
            "PLAINTEXT": oauth_signature.sign_plaintext_with_client,
        }.get(signature_method, oauth_signature.sign_hmac_sha256_with_client)
        client = SimpleNamespace(client_secret=consumer_secret, resource_owner_secret=token_secret)
        signature = signer(base, client)
    if "oauth_signature" not in drop:
        params["oauth_signature"] = signature
    parts = [f'realm="{realm}"'] if realm is not None else []
    parts += [f'{name}="{quote(value, safe="~")}"' for name, value in params.items()]
    return "OAuth " + ", ".join(parts)


def make_settings(**overrides: Any) -> GuardSettings:
    values: dict[str, Any] = {
        "realm": REALM,
        "integrations": [
            Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Order sync"),
            Integration("ck-blocked", "cs-blocked-integration", name="Blocked", state="blocked"),
        ],
        "tokens": [
            Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),
            Token("tk-bob", "ts-bob-token-secret", CONSUMER_KEY, entity="41", role="1032"),
            Token(
                "tk-inactive",
                "ts-inactive-token-secret",
                CONSUMER_KEY,
                entity="39",
                role="3",
                active=False,
            ),
            Token("tk-revoked", "ts-revoked-token-secret", CONSUMER_KEY, revoked=True),
            Token("tk-expired", "ts-expired-token-secret", CONSUMER_KEY, expires_at=NOW - 1),
            Token("tk-blocked", "ts-blocked-token-secret", "ck-blocked", entity="40", role="3"),
            Token("tk-other-account", "ts-other-account-secret", CONSUMER_KEY, account="999999"),
        ],
    }
    values.update(overrides)
    return GuardSettings(**values)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
