"""OAuth 1.0 signatures (RFC 5849 section 3.4) as NetSuite's TBA computes them.

The base string and percent-encoding are written here rather than taken from oauthlib because
they sit on the hot path of every request: oauthlib re-parses the header and URL for each step
and encodes through several layers. `tests/test_signature_differential.py` keeps this module
equal to oauthlib's `signature_base_string`/`normalize_parameters` on generated requests.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from itertools import chain
from urllib.parse import quote

from .errors import TBAError
from .request import OAuthRequest, read_parameters, request_from_url

HMAC_DIGESTS = {"HMAC-SHA1": "sha1", "HMAC-SHA256": "sha256", "HMAC-SHA512": "sha512"}
PLAINTEXT = "PLAINTEXT"
SIGNATURE_METHODS = frozenset({*HMAC_DIGESTS, PLAINTEXT})

#: Header parameters that are not signed (RFC 5849 section 3.4.1.3.1).
_UNSIGNED = frozenset({"realm", "oauth_signature"})


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def percent_encode(value: str) -> str:
    """RFC 5849 section 3.6: everything but ALPHA / DIGIT / "-" / "." / "_" / "~" is escaped.

    Most protocol values (keys, nonces, timestamps) need no escaping and are returned as they
    are; the rest go through `quote`, whose default safe set is exactly the unreserved set.
    surrogateescape lets bytes that arrived as non-UTF-8 escapes in a query or form body come
    back out unchanged.
    """
    if (value.isalnum() and value.isascii()) or _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="", errors="surrogateescape")


@lru_cache(maxsize=512)
def _encoded_uri(uri: str) -> str:
    # A service has few distinct URIs; encoding one costs more than the cache lookup.
    return percent_encode(uri)


def signed_parameters(request: OAuthRequest) -> list[tuple[str, str]]:
    """Every parameter the signature covers: header (but realm and signature), query, form."""
    pairs = [(name, value) for name, value in request.oauth.items() if name not in _UNSIGNED]
    pairs += request.params
    return pairs


def _encode_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # One regex over all names and values together costs about what one per-item match does;
    # protocol parameters and most queries need no escaping at all.
    if _UNRESERVED.fullmatch("".join(chain.from_iterable(pairs))):
        return pairs
    encode = percent_encode
    return [(encode(name), encode(value)) for name, value in pairs]


def normalize_parameters(pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.3.2: encode, sort by name then value, join."""
    encoded = sorted(_encode_pairs(list(pairs)))
    return "&".join([f"{name}={value}" for name, value in encoded])


def _normalize_request_parameters(request: OAuthRequest) -> str:
    """`normalize_parameters(signed_parameters(request))`, with the header's parameters (almost
    always unreserved) and the query and form's (often not) checked for escaping apart."""
    protocol = [(name, value) for name, value in request.oauth.items() if name not in _UNSIGNED]
    encoded = _encode_pairs(protocol)
    if request.params:
        encoded = encoded + _encode_pairs(request.params)
    encoded.sort()
    return "&".join([f"{name}={value}" for name, value in encoded])


def base_string(method: str, uri: str, pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.1."""
    return _join_base_string(method, uri, normalize_parameters(pairs))


def _join_base_string(method: str, uri: str, normalized: str) -> str:
    # The normalized parameters hold only unreserved characters, `%XX`, `=` and `&`, so encoding
    # them again is three plain replacements rather than a second pass through `quote`.
    encoded = normalized.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
    return f"{percent_encode(method.upper())}&{_encoded_uri(uri)}&{encoded}"


def request_base_string(request: OAuthRequest) -> str:
    return _join_base_string(request.method, request.uri, _normalize_request_parameters(request))


@lru_cache(maxsize=1024)
def signing_key(consumer_secret: str, token_secret: str) -> str:
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


def sign(signature_method: str, base: str, consumer_secret: str, token_secret: str = "") -> str:
    """The base64 signature a client would send (used by tests, benchmarks and the CLI)."""
    key = signing_key(consumer_secret, token_secret)
    if signature_method == PLAINTEXT:
        return key
    digest = hmac.digest(key.encode(), base.encode(), HMAC_DIGESTS[signature_method])
    return binascii.b2a_base64(digest, newline=False).decode()


def _body_hash_matches(request: OAuthRequest, signature_method: str, sent: str) -> bool:
    """OAuth body hash: SHA-1 as the extension defines, or the signature method's own hash."""
    expected = [hashlib.sha1(request.body).digest()]  # noqa: S324 - the extension's hash
    own = HMAC_DIGESTS.get(signature_method)
    if own and own != "sha1":
        expected.append(hashlib.new(own, request.body).digest())
    sent_bytes = sent.encode("utf-8", "surrogateescape")
    matched = False
    for digest in expected:  # no early exit: both comparisons always run
        matched |= hmac.compare_digest(binascii.b2a_base64(digest, newline=False), sent_bytes)
    return matched


def signature_matches(request: OAuthRequest, consumer_secret: str, token_secret: str = "") -> bool:
    """Verify `oauth_signature` (and `oauth_body_hash` when sent) in constant time.

    `request.oauth` must already be read. An empty consumer secret never verifies: it would make
    the key guessable.
    """
    signature_method = request.oauth.get("oauth_signature_method", "")
    sent = request.oauth.get("oauth_signature")
    if not consumer_secret or sent is None or signature_method not in SIGNATURE_METHODS:
        return False
    expected = sign(signature_method, request_base_string(request), consumer_secret, token_secret)
    valid = hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))
    body_hash = request.oauth.get("oauth_body_hash")
    if body_hash is not None:
        valid &= _body_hash_matches(request, signature_method, body_hash)
    return valid


def signature_base_string(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str = b"",
) -> str:
    """The RFC 5849 base string the server builds for this request (no clock, no store).

    Raises `TBAError` (MissingRequiredParameter) when the Authorization header does not parse.
    """
    request = request_from_url(method, url, headers, body)
    read_parameters(request)
    return request_base_string(request)


def verify_signature(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str,
    consumer_secret: str,
    token_secret: str = "",
) -> bool:
    """True when the request's signature is right for these secrets. The signature alone:
    no clock, no replay store, no policy on which signature methods are allowed.
    """
    request = request_from_url(method, url, headers, body)
    try:
        read_parameters(request)
    except TBAError:
        return False
    return signature_matches(request, consumer_secret, token_secret)
