"""OAuth 1.0 signatures (RFC 5849 section 3.4) as NetSuite's TBA computes them (NetSuite rule
N14, docs/netsuite-behaviour.md).

The base string and percent-encoding are written here rather than taken from oauthlib because
they sit on the hot path of every request: oauthlib re-parses the header and URL for each step
and encodes through several layers. `tests/core/test_signature_differential.py` keeps this module
equal to oauthlib's `signature_base_string`/`normalize_parameters` on generated requests.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

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

#: Header parameters that are not signed (RFC 5849 section 3.4.1.3.1).
_UNSIGNED: Final = frozenset({"realm", "oauth_signature"})
_BODY_HASH: Final = "oauth_body_hash"
_UNSIGNED_OR_HASH: Final = _UNSIGNED | {_BODY_HASH}


_UNRESERVED_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
#: As translation tables: 1 for an unreserved byte; with `_PAIR` 0 and anything else 2. One C
#: pass and a memchr answer "only these bytes?", without a deletion table's setup per call.
_UNRESERVED_TABLE: Final = bytes(int(byte in _UNRESERVED_BYTES) for byte in range(256))
_PAIRS_TABLE: Final = bytes(
    1 if byte in _UNRESERVED_BYTES else 2 if byte else 0 for byte in range(256)
)
#: Joins a name to its value inside the hot path. It sorts before every character an encoded
#: name can hold, so sorting "name\0value" strings orders pairs by name, then value, exactly as
#: RFC 5849 section 3.4.1.3.2 sorts the pairs, without building and comparing tuples.
_PAIR: Final = "\x00"


#: Each byte as RFC 5849 section 3.6 writes it: itself when unreserved, else `%XX`; and the
#: same encoded again for the base string (`%` as `%25`).
_BYTE_ENCODED: Final = tuple(
    chr(byte) if bytes([byte]) in _UNRESERVED_BYTES else f"%{byte:02X}" for byte in range(256)
)
_BYTE_ENCODED_TWICE: Final = tuple(escape.replace("%", "%25") for escape in _BYTE_ENCODED)


#: Between pairs in the one-pass encoding; like `_PAIR`, kept as it is by `_SEPARATED_ENCODED`.
_ITEM: Final = "\x01"
_SEPARATED_ENCODED: Final = (_PAIR, _ITEM, *_BYTE_ENCODED[2:])
_UNRESERVED_OR_SEPARATOR: Final = _UNRESERVED_BYTES + (_PAIR + _ITEM).encode("ascii")


def _escaped_ascii(text: str, kept: bytes, table: tuple[str, ...]) -> str:
    """ASCII `text` with every byte not `kept` written as `table` says: one replacement per
    distinct byte (values hold few: a space, `&`, base64's `+/=`), which costs far less than
    a pass over every byte. `%` goes first, so that no escape is escaped again."""
    specials = set(text.encode("ascii").translate(None, kept))
    if 0x25 in specials:
        specials.discard(0x25)
        text = text.replace("%", table[0x25])
    for byte in specials:
        text = text.replace(chr(byte), table[byte])
    return text


def percent_encode(value: str) -> str:
    """RFC 5849 section 3.6: everything but ALPHA / DIGIT / "-" / "." / "_" / "~" is escaped,
    as UTF-8. surrogateescape lets bytes that arrived as non-UTF-8 escapes in a query or form
    body come back out unchanged.

    Most protocol values (keys, nonces, timestamps) need no escaping and are returned as they
    are. The rest are encoded from a table, several times faster than `urllib.parse.quote`
    (which gives the same result; the differential test holds them equal).
    """
    return _percent_encoded(value, _BYTE_ENCODED)


def _percent_encoded(value: str, table: tuple[str, ...]) -> str:
    """`percent_encode` by `table`: `_BYTE_ENCODED`, or `_BYTE_ENCODED_TWICE` for the base
    string."""
    if value.isascii():
        if value.isalnum() or 0 not in value.encode("ascii").translate(_UNRESERVED_TABLE):
            return value
        return _escaped_ascii(value, _UNRESERVED_BYTES, table)
    return "".join([table[byte] for byte in value.encode("utf-8", "surrogateescape")])


@lru_cache(maxsize=512)
def _encoded_uri(uri: str) -> str:
    # A service has few distinct URIs; encoding one costs more than the cache lookup.
    return percent_encode(uri)


def _encoded_pairs(pairs: list[tuple[str, str]], *, twice: bool = False) -> list[str]:
    """Each pair encoded and joined by `_PAIR`; with `twice`, the `%` of every escape encoded
    again as `%25`, ready for the base string. (Sorting either form gives one order: `%` and
    its `%25` compare alike against every other character.)

    Protocol parameters and most queries need no escaping at all. That is checked for all of
    them at once: delete every unreserved byte in one C pass and see that only the joins are
    left.
    """
    joined = [f"{name}{_PAIR}{value}" for name, value in pairs]
    text = "".join(joined)
    is_ascii = text.isascii()
    if is_ascii:
        kinds = text.encode("ascii").translate(_PAIRS_TABLE)
        if 2 not in kinds and kinds.count(0) == len(joined):  # unreserved bytes and the joins
            return joined
    if text.count(_PAIR) == len(joined) and _ITEM not in text:
        # One pass over all pairs, keeping the two separators, which nothing else holds.
        if is_ascii:
            table = _BYTE_ENCODED_TWICE if twice else _BYTE_ENCODED
            whole = _ITEM.join(joined)
            return _escaped_ascii(whole, _UNRESERVED_OR_SEPARATOR, table).split(_ITEM)
        raw = _ITEM.join(joined).encode("utf-8", "surrogateescape")
        table = _SEPARATED_ENCODED
        escaped = "".join([table[byte] for byte in raw])
        return (escaped.replace("%", "%25") if twice else escaped).split(_ITEM)
    encoded = [f"{percent_encode(name)}{_PAIR}{percent_encode(value)}" for name, value in pairs]
    if twice:
        return [item.replace("%", "%25") if "%" in item else item for item in encoded]
    return encoded


def normalize_parameters(pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.3.2: encode, sort by name then value, join."""
    encoded = _encoded_pairs(list(pairs))
    encoded.sort()
    return "&".join(encoded).replace(_PAIR, "=")


def _normalized_for_base_string(oauth: dict[str, str], params: list[tuple[str, str]]) -> str:
    """The signed parameters (`oauth` but realm and signature, then `params`), encoded twice,
    sorted and joined as the base string holds them. The header's parameters (almost always
    unreserved) are checked for escaping apart from the query's and the form's (often not), so
    that a form value with a space does not send every pair the slow way. A body hash is base64
    (`+`, `/`, `=`): always escaped, so it goes alone."""
    protocol = [(name, oauth[name]) for name in oauth if name not in _UNSIGNED_OR_HASH]
    encoded = _encoded_pairs(protocol, twice=True)
    body_hash = oauth.get(_BODY_HASH)
    if body_hash is not None:
        escaped = _percent_encoded(body_hash, _BYTE_ENCODED_TWICE)
        encoded.append(f"{_BODY_HASH}{_PAIR}{escaped}")
    if params:
        encoded += _encoded_pairs(params, twice=True)
    encoded.sort()
    return _joined_twice(encoded)


# The compiled build does the same in C, in one pass and without a str per pair.
_normalized_quickly: Callable[[dict[str, str], list[tuple[str, str]]], str]
try:
    from ._speedups import normalized_for_base_string as _normalized_quickly
except ImportError:  # the pure-Python build
    _normalized_quickly = _normalized_for_base_string


def base_string(method: str, uri: str, pairs: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.1."""
    encoded = _encoded_pairs(list(pairs), twice=True)
    encoded.sort()
    return _joined_base_string(method, uri, _joined_twice(encoded))


def _joined_twice(encoded: list[str]) -> str:
    # The pairs are encoded twice already, and they hold no `&` or `=`: the second encoding of
    # the joins is to write them as %26 and %3D.
    return "%26".join(encoded).replace(_PAIR, "%3D")


def _joined_base_string(method: str, uri: str, normalized: str) -> str:
    return f"{percent_encode(method.upper())}&{_encoded_uri(uri)}&{normalized}"


def request_base_string(request: OAuthRequest) -> str:
    normalized = _normalized_quickly(request.oauth, request.params)
    return _joined_base_string(request.method, request.uri, normalized)


@lru_cache(maxsize=1024)
def signing_key(consumer_secret: str, token_secret: str) -> str:
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


# RFC 2104's pads as translation tables: `key.translate(_IPAD)` is the key XOR 0x36, bytewise.
_IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))


class _KeyedHashes:
    """HMAC's inner and outer hashes with the key already absorbed (RFC 2104), and their
    type's methods, looked up once: per request only the states are copied."""

    __slots__ = ("copy", "digest", "inner", "outer", "update")

    def __init__(self, inner: Hash, outer: Hash) -> None:
        self.inner, self.outer = inner, outer
        kind = type(inner)
        self.copy: Callable[[Hash], Hash] = kind.copy
        self.update: Callable[[Hash, bytes], None] = kind.update
        self.digest: Callable[[Hash], bytes] = kind.digest


@lru_cache(maxsize=1024)
def _keyed_hashes(key: str, digest: str) -> _KeyedHashes:
    """Why not `hmac.digest`: with OpenSSL 3 each call looks the digest up by name and keys it
    again, which costs as much as hashing the base string; a service has few keys, so each
    key's two padded blocks are hashed once and the states copied per request.
    `tests/core/test_signature_differential.py` holds this equal to `hmac.digest`.
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
    """`hmac.digest(key.encode(), message, digest)`, from the cached keyed states."""
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
