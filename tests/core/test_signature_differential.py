"""tba_guard's own base string against oauthlib's on generated requests.

tba_guard writes its percent-encoding and base string itself for speed (see signature.py); this
test keeps it equal to oauthlib's `signature_base_string`, `base_string_uri` and
`normalize_parameters` on random methods, hosts, ports, paths, queries and form bodies.
"""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oauthlib.common import urldecode
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from tba_guard import signature_base_string, verify_signature
from tba_guard.core.signature import base_string, normalize_parameters

# Every test on the C and on its Python twin (tests/conftest.py), once each, not per example.
pytestmark = pytest.mark.usefixtures("accelerated")

# Text that survives a trip through a URL: any Unicode but surrogates and control characters.
text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")),
    max_size=12,
)
names = st.one_of(st.sampled_from(["a", "b", "realm", "q", "a b", "ü", "x+y", "c@"]), text)
pairs = st.lists(st.tuples(names, text), max_size=6)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "patch", "Options"])
hosts = st.sampled_from(["Example.COM", "api.example.net", "127.0.0.1", "h"])
ports = st.sampled_from([None, 80, 443, 8080, 1])
schemes = st.sampled_from(["http", "https", "HTTPS"])
segments = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=6),
    max_size=3,
)


def encode_pairs(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in items)


def build(scheme: str, host: str, port: int | None, path: list[str], query: str) -> str:
    netloc = host if port is None else f"{host}:{port}"
    encoded_path = "/" + "/".join(quote(segment, safe="") for segment in path)
    return f"{scheme}://{netloc}{encoded_path}" + (f"?{query}" if query else "")


def header_for(oauth: list[tuple[str, str]], realm: str | None) -> str:
    parts = [f'realm="{quote(realm, safe="")}"'] if realm is not None else []
    parts += [f'{quote(n, safe="")}="{quote(v, safe="")}"' for n, v in oauth]
    return "OAuth " + ", ".join(parts)


OAUTH = [
    ("oauth_consumer_key", "key"),
    ("oauth_token", "tok"),
    ("oauth_nonce", "n0nce!"),
    ("oauth_timestamp", "1700000000"),
    ("oauth_signature_method", "HMAC-SHA256"),
    ("oauth_version", "1.0"),
]


@settings(max_examples=400, deadline=None)
@given(
    method=methods,
    scheme=schemes,
    host=hosts,
    port=ports,
    path=segments,
    query=pairs,
    form=pairs,
    realm=st.one_of(st.none(), text),
    role=st.one_of(st.none(), text),
    body_hash=st.one_of(
        st.none(), st.just(b"the body's own"), st.binary(max_size=64).map(base64.b64encode)
    ),
    plus_for_space=st.booleans(),
)
def test_base_string_equals_oauthlibs(
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    path: list[str],
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    realm: str | None,
    role: str | None,
    body_hash: bytes | None,
    plus_for_space: bool,
) -> None:
    query_string = encode_pairs(query)
    body = encode_pairs(form)
    if plus_for_space:
        query_string = query_string.replace("%20", "+")
        body = body.replace("%20", "+")
    url = build(scheme, host, port, path, query_string)
    oauth = OAUTH + ([("role", role)] if role is not None else [])
    if body_hash == b"the body's own":
        body_hash = base64.b64encode(hashlib.sha1(body.encode()).digest())
    if body_hash is not None:  # base64: escaped apart from the other protocol parameters
        oauth.append(("oauth_body_hash", body_hash.decode()))
    body_hash_holds = body_hash is None or body_hash == base64.b64encode(
        hashlib.sha1(body.encode()).digest()
    )
    headers = {
        "Authorization": header_for(oauth, realm),
        "Content-Type": "application/x-www-form-urlencoded",
    }

    collected = list(oauth)
    if query_string:
        collected += urldecode(query_string)
    if body:
        collected += urldecode(body)
    expected = oauth_signature.signature_base_string(
        method,
        oauth_signature.base_string_uri(url),
        oauth_signature.normalize_parameters(collected),
    )
    assert signature_base_string(method, url, headers, body) == expected

    # And a signature made by oauthlib over that base string verifies.
    signed = oauth_signature.sign_hmac_sha256_with_client(
        expected, SimpleNamespace(client_secret="c s", resource_owner_secret="t&s")
    )
    headers["Authorization"] = header_for([*oauth, ("oauth_signature", signed)], realm)
    assert verify_signature(method, url, headers, body, "c s", "t&s") == body_hash_holds
    assert not verify_signature(method, url, headers, body, "c s", "t&t")


@given(body_hash=text.filter(lambda value: not value.isascii()))
@settings(max_examples=50, deadline=None)
def test_a_body_hash_outside_ascii_is_encoded_as_oauthlibs(body_hash: str) -> None:
    """Base64 never is, but a sent value is whatever the client wrote; it takes the slow path."""
    oauth = [*OAUTH, ("oauth_body_hash", body_hash)]
    url = "https://example.com/api?x=1"
    headers = {"Authorization": header_for(oauth, None)}
    expected = oauth_signature.signature_base_string(
        "POST",
        oauth_signature.base_string_uri(url),
        oauth_signature.normalize_parameters([*oauth, ("x", "1")]),
    )
    assert signature_base_string("POST", url, headers, "") == expected


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40))
def test_percent_encoding_equals_oauthlibs_escape(value: str) -> None:
    from oauthlib.oauth1.rfc5849.utils import escape

    from tba_guard.core.signature import percent_encode

    try:
        expected = escape(value)
    except UnicodeEncodeError:  # lone surrogates: oauthlib cannot encode them at all
        return
    assert percent_encode(value) == expected


def test_percent_encoding_writes_a_surrogate_as_the_byte_it_stands_for() -> None:
    from tba_guard.core.signature import percent_encode

    assert percent_encode("a\udc80 \u00e9\udcff") == "a%80%20%C3%A9%FF"


@settings(max_examples=200, deadline=None)
@given(value=st.text(st.characters(codec="utf-8") | st.sampled_from(["\udc80", "\udcff"])))
def test_percent_encoding_keeps_non_utf8_bytes_as_quote_does(value: str) -> None:
    """A query or form body that was not UTF-8 arrives with surrogates for its bytes."""
    from tba_guard.core.signature import percent_encode

    assert percent_encode(value) == quote(value, safe="", errors="surrogateescape")


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(max_size=300),
    message=st.binary(max_size=300),
    digest=st.sampled_from(["sha1", "sha256", "sha512"]),
)
def test_hmac_from_cached_keyed_states_equals_the_standard_librarys(
    key: str, message: bytes, digest: str
) -> None:
    """Keys shorter and longer than the hash's block, for every digest a signature uses."""
    import hmac

    from tba_guard.core.signature import hmac_digest

    assert hmac_digest(key, message, digest) == hmac.digest(key.encode(), message, digest)
    assert hmac_digest(key, message, digest) == hmac.digest(key.encode(), message, digest)


@settings(max_examples=300, deadline=None)
@given(value=st.text(st.sampled_from(list("%+=&2aFgé ")) | st.characters(), max_size=16))
def test_form_decoding_equals_unquote_plus(value: str) -> None:
    from urllib.parse import unquote_plus

    from tba_guard.core.request import form_pairs

    value = value.replace("&", "%26")  # one pair: `&` would start another
    assert form_pairs(f"n={value}") == [("n", unquote_plus(value, errors="surrogateescape"))]


# Control characters too, the pair separators of the one-pass encoding among them.
control_text = st.text(
    st.sampled_from(["\x00", "\x01", "\x02", "\x7f", "&", "=", "%", " ", "a", "é"]), max_size=6
)


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(control_text, control_text), max_size=5))
def test_pairs_with_control_characters_encode_as_oauthlibs(pairs: list[tuple[str, str]]) -> None:
    assert normalize_parameters(pairs) == oauth_signature.normalize_parameters(pairs)
    uri = "https://example.com/r"
    assert base_string("POST", uri, pairs) == oauth_signature.signature_base_string(
        "POST", uri, oauth_signature.normalize_parameters(pairs)
    )
