"""Limits: what the guard bounds and how it answers at and past each bound.

Header length and parameter count, nonce length, form body size (413), a body that arrives too
slowly (408, also against a real uvicorn process), non-UTF-8 percent escapes, NUL bytes, huge
numbers in the timestamp, and thousands of query or form parameters.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from tests.support import (
    APP_STATUS,
    BASE_URL,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    NOW,
    REALM,
    TOKEN_ID,
    TOKEN_SECRET,
    Outcome,
    Request,
    drive,
    make_settings,
    oauth_header,
    read_response,
    serving,
)

FORM = "application/x-www-form-urlencoded"
URL = f"{BASE_URL}/services/rest/limits"
PATH = b"/services/rest/limits"


def run(
    value: str | bytes | None,
    *,
    query: str = "",
    body: bytes = b"",
    form: bool = False,
    chunks: list[bytes] | None = None,
    stall: bool = False,
    **overrides: Any,
) -> Outcome:
    headers = []
    if value is not None:
        headers.append((b"authorization", value if isinstance(value, bytes) else value.encode()))
    if form:
        headers.append((b"content-type", FORM.encode()))
    request = Request(
        "POST" if body or chunks else "GET", PATH, query.encode(), headers, chunks or [body]
    )
    return asyncio.run(drive(request, make_settings(**overrides), stall=stall))


def code(outcome: Outcome) -> str:
    return outcome.error["code"]


# --- the Authorization header ---------------------------------------------------------------


def test_a_header_longer_than_the_limit_is_refused_before_it_is_parsed() -> None:
    padding = {"x": "p" * 5000}
    outcome = run(oauth_header("GET", URL, extra=padding))
    assert outcome.status == 400
    assert code(outcome) == "MissingRequiredParameter"
    assert b'oauth_parameters_rejected="Authorization"' in (
        outcome.header(b"www-authenticate") or b""
    )
    # The same header is fine where the limit allows it.
    assert run(oauth_header("GET", URL, extra=padding), header_max_length=8192).status == APP_STATUS


def test_the_header_parameter_count_is_bounded() -> None:
    # realm + 6 protocol parameters + oauth_signature = 8; 24 more make exactly 32.
    at_limit = {f"p{i:02d}": str(i) for i in range(24)}
    assert run(oauth_header("GET", URL, extra=at_limit)).status == APP_STATUS
    past_limit = {f"p{i:02d}": str(i) for i in range(25)}
    outcome = run(oauth_header("GET", URL, extra=past_limit))
    assert code(outcome) == "MissingRequiredParameter"
    assert (
        run(oauth_header("GET", URL, extra=past_limit), header_max_parameters=33).status
        == APP_STATUS
    )


@pytest.mark.parametrize(("length", "accepted"), [(5, False), (6, True), (64, True), (65, False)])
def test_the_nonce_length_is_bounded_at_both_ends(length: int, accepted: bool) -> None:
    outcome = run(oauth_header("GET", URL, nonce="n" * length))
    if accepted:
        assert outcome.status == APP_STATUS
    else:
        assert code(outcome) == "NonceRejected"
        assert b'oauth_parameters_rejected="oauth_nonce"' in (
            outcome.header(b"www-authenticate") or b""
        )


def test_a_huge_nonce_is_refused_by_the_header_limit_or_the_nonce_limit() -> None:
    value = oauth_header("GET", URL, nonce="n" * 100_000)
    assert code(run(value)) == "MissingRequiredParameter"
    assert code(run(value, header_max_length=200_000)) == "NonceRejected"


# --- bodies ------------------------------------------------------------------------------------


def test_a_form_body_at_the_cap_is_read_and_one_byte_more_is_413() -> None:
    body = "a=" + "x" * 98  # 100 bytes
    at_cap = run(
        oauth_header("POST", URL, body=body, form=True),
        body=body.encode(),
        form=True,
        body_max_bytes=100,
    )
    assert at_cap.status == APP_STATUS
    assert at_cap.app_body == body.encode()
    over = body + "y"
    outcome = run(
        oauth_header("POST", URL, body=over, form=True),
        body=over.encode(),
        form=True,
        body_max_bytes=100,
    )
    assert outcome.status == 413
    assert code(outcome) == "RequestBodyTooLarge"
    assert outcome.app_calls == 0


def test_an_oversize_streamed_body_is_refused_without_reading_the_rest() -> None:
    chunks = [b"a=" + b"x" * 1000] + [b"x" * 1000] * 99
    outcome = run(
        oauth_header("POST", URL, body="a=", form=True),
        chunks=chunks,
        form=True,
        body_max_bytes=4096,
    )
    assert outcome.status == 413
    assert outcome.received < 10  # stopped once past the cap, not after 100 chunks


def test_the_413_stays_413_in_opaque_mode() -> None:
    body = "a=" + "x" * 200
    outcome = run(
        oauth_header("POST", URL, body=body, form=True),
        body=body.encode(),
        form=True,
        body_max_bytes=100,
        error_detail="opaque",
    )
    assert outcome.status == 413


def test_a_body_that_does_not_arrive_in_time_is_408_after_a_bounded_wait() -> None:
    # The client sends a first chunk, promises more, and never sends it.
    outcome = run(
        oauth_header("POST", URL, body="a=1", form=True),
        chunks=[b"a="],
        form=True,
        stall=True,
        body_timeout=0.05,
    )
    assert outcome.status == 408
    assert code(outcome) == "RequestBodyTimeout"
    assert outcome.app_calls == 0


# --- encodings ------------------------------------------------------------------------------


def signed_by_hand(method: str, extra_normalized: str, nonce: str) -> str:
    """Sign a request whose query carries octets no text-based signer can hold: the base string
    is written out, with the extra parameters (already encoded) sorted after the oauth_ ones."""
    pairs = [
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", nonce),
        ("oauth_timestamp", str(NOW)),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_token", TOKEN_ID),
        ("oauth_version", "1.0"),
    ]
    normalized = oauth_signature.normalize_parameters(pairs) + "&" + extra_normalized
    base = oauth_signature.signature_base_string(
        method, oauth_signature.base_string_uri(URL), normalized
    )
    signature = oauth_signature.sign_hmac_sha256_with_client(
        base, SimpleNamespace(client_secret=CONSUMER_SECRET, resource_owner_secret=TOKEN_SECRET)
    )
    return oauth_header(method, URL, nonce=nonce, signature=signature)


def test_non_utf8_percent_escapes_in_the_header_are_refused_naming_the_parameter() -> None:
    value = oauth_header("GET", URL).replace('oauth_nonce="', 'oauth_nonce="%FF%FE', 1)
    outcome = run(value)
    assert code(outcome) == "MissingRequiredParameter"
    assert b'oauth_parameters_rejected="oauth_nonce"' in (
        outcome.header(b"www-authenticate") or b""
    )


def test_non_utf8_percent_escapes_in_the_query_are_signed_as_the_octets_sent() -> None:
    value = signed_by_hand("GET", "q=%FF%FE", nonce="nonce-non-utf8-query")
    assert run(value, query="q=%ff%fe").status == APP_STATUS


def test_non_utf8_percent_escapes_in_a_form_body_are_refused_as_ambiguous() -> None:
    """Form parsers decode %FF differently (Starlette: U+FFFD): the app would not read what
    was signed, so the request never reaches it."""
    value = signed_by_hand("POST", "q=%FF%00", nonce="nonce-non-utf8-form")
    outcome = run(value, body=b"q=%FF%00", form=True)
    assert outcome.status == 400
    assert code(outcome) == "AmbiguousRequest"
    assert outcome.app_calls == 0


@pytest.mark.parametrize("where", ["escaped", "raw"])
def test_a_nul_in_the_header_is_refused(where: str) -> None:
    value = oauth_header("GET", URL).encode()
    nul = b"%00" if where == "escaped" else b"\x00"
    outcome = run(value.replace(b'oauth_nonce="', b'oauth_nonce="' + nul, 1))
    assert outcome.status == 400
    assert code(outcome) == "MissingRequiredParameter"


def test_a_nul_in_the_query_is_an_ordinary_signed_octet() -> None:
    url = f"{URL}?q=a%00b"
    assert run(oauth_header("GET", url), query="q=a%00b").status == APP_STATUS


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "9" * 3000,
        str(2**64),
        "99999999999999999999",
        "-1",
        "0",
        "+1700000000",
        "1700000000.0",
        "1.7e9",
        " 1700000000",
        "１７００００００００",  # fullwidth digits: int() would take them
        "0x6553F100",
    ],
)
def test_huge_or_malformed_timestamps_are_invalid_timestamp(timestamp: str) -> None:
    value = oauth_header("GET", URL, timestamp=timestamp)
    outcome = run(value, header_max_length=20_000)
    assert outcome.status == 400
    assert code(outcome) == "InvalidTimestamp"
    challenge = outcome.header(b"www-authenticate") or b""
    assert f'oauth_acceptable_timestamps="{NOW - 300}-{NOW + 300}"'.encode() in challenge


# --- many parameters ------------------------------------------------------------------------------


def test_thousands_of_query_parameters_are_signed_and_accepted() -> None:
    query = "&".join(f"p{i}={quote(str(i) + ' x')}" for i in range(5000))
    outcome = run(oauth_header("GET", f"{URL}?{query}"), query=query)
    assert outcome.status == APP_STATUS


def test_a_protocol_parameter_hidden_among_thousands_of_query_parameters_is_found() -> None:
    query = "&".join(f"p{i}={i}" for i in range(5000)) + "&oauth_token=tk-other&p=1"
    outcome = run(oauth_header("GET", f"{URL}?{query}"), query=query)
    assert code(outcome) == "MissingRequiredParameter"
    assert b'oauth_parameters_rejected="oauth_token"' in (
        outcome.header(b"www-authenticate") or b""
    )


def test_tens_of_thousands_of_form_parameters_within_the_cap_are_accepted() -> None:
    body = "&".join(f"f{i}={i}" for i in range(20_000))
    outcome = run(oauth_header("POST", URL, body=body, form=True), body=body.encode(), form=True)
    assert outcome.status == APP_STATUS
    assert outcome.app_body == body.encode()


# --- a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`tba-guard serve` as a real uvicorn process, with a short body timeout."""
    directory = tmp_path_factory.mktemp("limits")
    config = directory / "tba.toml"
    config.write_text(
        f"""
[guard]
realm = "{REALM}"
body_timeout = 0.3
body_max_bytes = 1000
exempt_paths = ["/healthz"]

[[integrations]]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"

[[tokens]]
token_id = "{TOKEN_ID}"
token_secret = "{TOKEN_SECRET}"
consumer_key = "{CONSUMER_KEY}"
"""
    )
    with serving(config) as (port, _):
        yield port


def test_a_real_server_answers_a_stalled_form_body_with_408(slow_body_server: int) -> None:
    value = oauth_header(  # the server's own clock: the header passes every check but 10
        "POST",
        f"http://127.0.0.1:{slow_body_server}/services/rest/x",
        body="a=1&b=2",
        form=True,
        timestamp=int(time.time()),
    )
    head = (
        f"POST /services/rest/x HTTP/1.1\r\nHost: 127.0.0.1:{slow_body_server}\r\n"
        f"Authorization: {value}\r\nContent-Type: {FORM}\r\nContent-Length: 7\r\n\r\na="
    )
    with socket.create_connection(("127.0.0.1", slow_body_server), timeout=10) as sock:
        sock.sendall(head.encode())  # and never the other five bytes
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "RequestBodyTimeout"' in answer


def test_a_real_server_refuses_a_junk_header_at_once_though_its_body_stalls(
    slow_body_server: int,
) -> None:
    """Checks that need no body come first: 400 for the header, not 408 for the body."""
    head = (
        f"POST /services/rest/x HTTP/1.1\r\nHost: 127.0.0.1:{slow_body_server}\r\n"
        f"Authorization: OAuth junk\r\nContent-Type: {FORM}\r\nContent-Length: 7\r\n\r\na="
    )
    with socket.create_connection(("127.0.0.1", slow_body_server), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"code": "MissingRequiredParameter"' in answer


def test_a_real_server_survives_a_crlf_smuggled_into_a_parameter_name(
    slow_body_server: int,
) -> None:
    value = 'OAuth a%0D%0AX-Injected%3A%201="1", a%0D%0AX-Injected%3A%201="2"'
    response = httpx.get(
        f"http://127.0.0.1:{slow_body_server}/services/rest/x", headers={"Authorization": value}
    )
    assert response.status_code == 400
    assert "x-injected" not in response.headers
    assert response.json()["error"]["code"] == "MissingRequiredParameter"
