"""The published vectors: RFC 5849's examples (with erratum 2550) and NetSuite's flow steps."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest

from tba_guard import signature_base_string, verify_signature
from tba_guard.core.signature import sign
from tests.support import load_vectors

# Every test on the C and on its Python twin (tests/conftest.py), once each, not per example.
pytestmark = pytest.mark.usefixtures("accelerated")

VECTORS = load_vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_base_string_matches_the_published_one(vector: dict[str, Any]) -> None:
    built = signature_base_string(
        vector["method"], vector["url"], vector["headers"], vector["body"]
    )
    assert built == vector["expected_base_string"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_signature_verifies_exactly_when_the_vector_says_so(vector: dict[str, Any]) -> None:
    verified = verify_signature(
        vector["method"],
        vector["url"],
        vector["headers"],
        vector["body"],
        vector["consumer_secret"],
        vector["token_secret"],
    )
    assert verified is (vector["outcome"] == "verify")


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["outcome"] == "verify"], ids=lambda v: v["name"]
)
def test_wrong_secret_never_verifies(vector: dict[str, Any]) -> None:
    args = (vector["method"], vector["url"], vector["headers"], vector["body"])
    assert not verify_signature(*args, vector["consumer_secret"] + "x", vector["token_secret"])
    assert not verify_signature(*args, vector["consumer_secret"], vector["token_secret"] + "x")


def test_empty_consumer_secret_never_verifies() -> None:
    # PLAINTEXT with empty secrets would be "&": the key must not be guessable.
    header = (
        'OAuth oauth_consumer_key="k", oauth_nonce="abcdefg", oauth_timestamp="1",'
        ' oauth_signature_method="PLAINTEXT", oauth_signature="%26"'
    )
    assert not verify_signature("GET", "https://h/", {"Authorization": header}, b"", "", "")


def test_sign_gives_the_rfc_5849_signature_for_each_method() -> None:
    base = "GET&https%3A%2F%2Fapi.example.com%2Forders&a%3D1"
    key = b"cs%20x&ts"
    for method, digest in (("HMAC-SHA1", "sha1"), ("HMAC-SHA256", "sha256")):
        expected = base64.b64encode(hmac.new(key, base.encode(), digest).digest()).decode()
        assert sign(method, base, "cs x", "ts") == expected
    assert sign("PLAINTEXT", "", "cs x", "ts") == "cs%20x&ts"


@pytest.mark.parametrize(
    ("method", "signature"),
    [("HMAC-SHA9", ', oauth_signature="abc"'), ("HMAC-SHA256", "")],
    ids=["unknown method", "no signature"],
)
def test_a_header_with_an_unknown_method_or_no_signature_does_not_verify(
    method: str, signature: str
) -> None:
    header = (
        'OAuth oauth_consumer_key="ck", oauth_token="tk", oauth_nonce="n0nce-1234",'
        f' oauth_timestamp="1700000000", oauth_signature_method="{method}"{signature}'
    )
    url = "https://api.example.com/orders"
    assert verify_signature("GET", url, {"Authorization": header}, b"", "cs", "ts") is False


def test_an_empty_pair_in_a_form_body_or_query_skips_only_itself() -> None:
    # `a=1&&b=2`: the empty item between the ampersands is no parameter; b is still signed.
    header = 'OAuth oauth_consumer_key="ck", oauth_nonce="n0nce-1234"'
    headers = {"Authorization": header, "Content-Type": "application/x-www-form-urlencoded"}
    url = "https://api.example.com/orders?c=3&&d=4"
    base = signature_base_string("POST", url, headers, b"a=1&&b=2")
    assert base.endswith(
        "&a%3D1%26b%3D2%26c%3D3%26d%3D4%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn0nce-1234"
    )


def test_a_nul_byte_in_a_query_value_is_encoded_like_any_other_byte() -> None:
    # NUL is what the encoder joins name and value with internally: it must not pass as a join.
    header = {"Authorization": 'OAuth oauth_consumer_key="ck"'}
    base = signature_base_string("GET", "https://api.example.com/x?a=%00", header)
    assert base.endswith("&a%3D%2500%26oauth_consumer_key%3Dck")
