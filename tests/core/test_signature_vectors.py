"""The published vectors: RFC 5849's examples (with erratum 2550) and NetSuite's flow steps."""

from __future__ import annotations

from typing import Any

import pytest

from tba_guard import signature_base_string, verify_signature
from tests.support import load_vectors

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
