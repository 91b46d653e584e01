"""OAuth 1.0 signatures (RFC 5849 section 3.4) as NetSuite's TBA computes them (NetSuite rule
N14, docs/netsuite-behaviour.md).

The base string is written here rather than taken from oauthlib because it sits on the hot path
of every request: oauthlib re-parses the header and URL for each step and encodes through
several layers. Its parameters, the costly part, come from `accelerated.py` (C, or its Python
twin). `tests/core/test_signature_differential.py` keeps this module equal to oauthlib's
`signature_base_string`/`normalize_parameters` on generated requests.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

from .accelerated import normalized_for_base_string
from .request import OAuthRequest

HMAC_DIGESTS: Final = {"HMAC-SHA1": "sha1", "HMAC-SHA256": "sha256", "HMAC-SHA512": "sha512"}
PLAINTEXT: Final = "PLAINTEXT"
#: Fresh hash states to copy: with OpenSSL 3, creating one by name looks the digest up again.
_EMPTY_HASHES: Final = {name: hashlib.new(name) for name in ("sha1", "sha256", "sha512")}
#: Length of each digest in base64, which tells a sent body hash's function.
_BASE64_LENGTH: Final = {
    name: 4 * -(-hashlib.new(name).digest_size // 3) for name in ("sha1", "sha256", "sha512")
}
SIGNATURE_METHODS: Final = frozenset({*HMAC_DIGESTS, PLAINTEXT})


@lru_cache(maxsize=512)
def _encoded_uri(uri: str) -> str:
    # A service has few distinct URIs; encoding one costs more than the cache lookup.
    return percent_encode(uri)


def percent_encode(value: str) -> str:
    """RFC 5849 section 3.6: everything but ALPHA / DIGIT / "-" / "." / "_" / "~" is escaped,
    as UTF-8. surrogateescape lets bytes that arrived as non-UTF-8 escapes in a query or form
    body come back out unchanged. The standard library's encoder: per request only the method
    is encoded (the URI and signing key are cached), and an alphanumeric one is returned as
    it is, for an eighth of what `quote` costs (benchmarks/bench_fast_paths.py)."""
    if value.isalnum() and value.isascii():
        return value
    return quote(value, safe="", errors="surrogateescape")


def _once(normalized: str) -> str:
    # The base string's parameters encoded once less: they hold only unreserved characters,
    # `%25XX` escapes and the joins `%26` and `%3D`, so no replacement can hit another's text.
    return normalized.replace("%3D", "=").replace("%26", "&").replace("%25", "%")


def normalize_parameters(pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.3.2: encode, sort by name then value, join."""
    return _once(normalized_for_base_string({}, list(pairs)))


def base_string(method: str, uri: str, pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.1."""
    return _joined_base_string(method, uri, normalized_for_base_string({}, list(pairs)))


def _joined_base_string(method: str, uri: str, normalized: str) -> str:
    return f"{percent_encode(method.upper())}&{_encoded_uri(uri)}&{normalized}"


def request_base_string(request: OAuthRequest) -> str:
    normalized = normalized_for_base_string(request.oauth, request.params)
    return _joined_base_string(request.method, request.uri, normalized)


@lru_cache(maxsize=1024)
def signing_key(consumer_secret: str, token_secret: str) -> str:
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


# RFC 2104's pads as translation tables: `key.translate(_IPAD)` is the key XOR 0x36, bytewise.
_IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))


class _KeyedHashes:
    """HMAC's inner and outer hashes with the key already absorbed (RFC 2104), and their
    type's methods, looked up once: per request only the states are copied. (Calling the
    states' own methods instead costs about 650 instructions a request more, compiled.)"""

    __slots__ = ("copy", "digest", "inner", "outer", "update")

    def __init__(self, inner: Hash, outer: Hash) -> None:
        self.inner, self.outer = inner, outer
        kind = type(inner)
        self.copy: Callable[[Hash], Hash] = kind.copy
        self.update: Callable[[Hash, bytes], None] = kind.update
        self.digest: Callable[[Hash], bytes] = kind.digest


@lru_cache(maxsize=1024)
def _keyed_hashes(key: str, digest: str) -> _KeyedHashes:
    """Why not `hmac.digest` or a cached `hmac.new(key).copy()`: per request the first looks
    the digest up by name and keys it again, the second runs `hmac.HMAC`'s Python methods;
    both cost more than copying two states (benchmarks/bench_fast_paths.py). A service has
    few keys, so each key's two padded blocks are hashed once.
    """
    inner, outer = hashlib.new(digest), hashlib.new(digest)
    block = inner.block_size
    secret = key.encode()
    if len(secret) > block:
        secret = hashlib.new(digest, secret).digest()
    secret = secret.ljust(block, b"\x00")
    inner.update(secret.translate(_IPAD))
    outer.update(secret.translate(_OPAD))
    return _KeyedHashes(inner, outer)


def hmac_digest(key: str, message: bytes, digest: str) -> bytes:
    """`hmac.digest(key.encode(), message, digest)`, from the cached keyed states
    (`tests/core/test_signature_differential.py` holds the two equal)."""
    keyed = _keyed_hashes(key, digest)
    copy, update, finish = keyed.copy, keyed.update, keyed.digest
    inner = copy(keyed.inner)
    update(inner, message)
    outer = copy(keyed.outer)
    update(outer, finish(inner))
    return finish(outer)


def _signature_bytes(signature_method: str, base: str, key: str) -> bytes:
    if signature_method == PLAINTEXT:
        return key.encode()  # percent-encoded: ASCII
    digest = hmac_digest(key, base.encode(), HMAC_DIGESTS[signature_method])
    return binascii.b2a_base64(digest, newline=False)


def sign(signature_method: str, base: str, consumer_secret: str, token_secret: str = "") -> str:
    """The base64 signature a client would send (used by tests, benchmarks and the CLI)."""
    key = signing_key(consumer_secret, token_secret)
    return _signature_bytes(signature_method, base, key).decode()


def _body_hash_matches(request: OAuthRequest, signature_method: str, sent: str) -> bool:
    """OAuth body hash: SHA-1 as the extension defines, or the signature method's own hash.

    The sent value's length says which of the two it can be, so only that one is computed: a
    body hash is no secret (anyone holding the body computes it), the signature over it is.
    """
    own = HMAC_DIGESTS.get(signature_method)
    if len(sent) == _BASE64_LENGTH["sha1"]:
        hashed = _EMPTY_HASHES["sha1"].copy()  # the extension's hash
    elif own is not None and len(sent) == _BASE64_LENGTH[own]:
        hashed = _EMPTY_HASHES[own].copy()
    else:
        return False
    hashed.update(request.body)
    expected = binascii.b2a_base64(hashed.digest(), newline=False)
    return hmac.compare_digest(expected, sent.encode("utf-8", "surrogateescape"))


def signature_matches(request: OAuthRequest, consumer_secret: str, token_secret: str = "") -> bool:
    """Verify `oauth_signature` (and `oauth_body_hash` when sent) in constant time.

    `request.oauth` must already be read. An empty consumer secret never verifies: it would make
    the key guessable.
    """
    signature_method = request.oauth.get("oauth_signature_method", "")
    sent = request.oauth.get("oauth_signature")
    if not consumer_secret or sent is None or signature_method not in SIGNATURE_METHODS:
        return False
    key = signing_key(consumer_secret, token_secret)
    base = request_base_string(request) if signature_method != PLAINTEXT else ""
    expected = _signature_bytes(signature_method, base, key)
    valid = hmac.compare_digest(expected, sent.encode("utf-8", "surrogateescape"))
    body_hash = request.oauth.get("oauth_body_hash")
    if body_hash is not None:
        # PLAINTEXT has no hash of its own to sign a body with: never a valid body hash.
        valid &= signature_method != PLAINTEXT and _body_hash_matches(
            request, signature_method, body_hash
        )
    return valid
