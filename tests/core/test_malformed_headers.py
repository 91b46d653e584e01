"""Malformed Authorization headers through the public functions, and the header parser's
shortcut for the usual form never accepting what the full grammar refuses.

`verify_signature` answers False and `signature_base_string` raises MissingRequiredParameter
(400) for a header that does not parse, whatever the secrets: a parser that let one through
would hand the signature check parameters nobody sent.
"""

from __future__ import annotations

import itertools
import re

import pytest

from tba_guard import ErrorCode, TBAError, signature_base_string, verify_signature
from tba_guard.core.header import _LIST, _NAME, _VALUE, parse_authorization
from tests.support import BASE_URL, CONSUMER_SECRET, TOKEN_SECRET, oauth_header

URL = f"{BASE_URL}/app/site/hosting/restlet.nl?script=1&deploy=1"

MALFORMED = [
    'OAuth a="1',  # a value left open
    'OAuth realm="""',  # a third quote: an empty value, then one left open
    'OAuth oauth_token="a", realm="b""',  # a quote after the last value
    'OAuth realm=""" , oauth_token="t"',
    "Bearer x",  # another scheme
    "Basic dXNlcjpwYXNz",
    "OAuthx",
    'OAuth a=1, b="2"',  # unquoted value
    'OAuth a="1" b="2"',  # no comma between
    'OAuth a="\\1"',  # a backslash
    'OAuth a="1\x7f"',  # DEL
    'OAuth a="1\x00"',
    'OAuth a="1\x1f"',
    'OAuth ="1"',  # no name
    'OAuth a b="1"',
    'OAuth a="1", a="2"',
    'OAuth a="1", b="2", b="3"',  # a duplicate that is not the first name
    'OAuth a="%zz"',
    'OAuth a="%00"',
    'OAuth a="%C3%28"',  # not UTF-8 once decoded
]


@pytest.mark.parametrize("value", MALFORMED)
def test_verify_signature_is_false_for_a_header_that_does_not_parse(value: str) -> None:
    headers = {"Authorization": value}
    assert verify_signature("GET", URL, headers, b"", CONSUMER_SECRET, TOKEN_SECRET) is False


@pytest.mark.parametrize("value", MALFORMED)
def test_signature_base_string_refuses_a_header_that_does_not_parse(value: str) -> None:
    with pytest.raises(TBAError) as raised:
        signature_base_string("GET", URL, {"Authorization": value})
    assert raised.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
    assert raised.value.status == 400


def test_verify_signature_is_false_for_a_valid_header_with_a_trailing_open_quote() -> None:
    """The signature is right, but the header carries a stray quote after its last value."""
    value = oauth_header("GET", URL)
    assert verify_signature(
        "GET", URL, {"Authorization": value}, b"", CONSUMER_SECRET, TOKEN_SECRET
    )
    for broken in (value + '"', value + '"x', value + '", oauth_extra="1'):
        headers = {"Authorization": broken}
        assert not verify_signature("GET", URL, headers, b"", CONSUMER_SECRET, TOKEN_SECRET)


def test_a_duplicate_after_the_first_name_is_named_in_the_refusal() -> None:
    with pytest.raises(TBAError) as raised:
        parse_authorization('OAuth realm="r", oauth_nonce="n", oauth_token="t", oauth_nonce="m"')
    assert raised.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
    assert raised.value.status == 400
    assert raised.value.parameters_rejected == ("oauth_nonce",)


# --- the shortcut and the grammar agree on every short list ---------------------------------

# Every header of up to five of these pieces: names, the glue of a list, and the bytes the
# grammar refuses inside a value (DEL, C0 controls, the backslash), next to a protocol name
# (which the shortcut accepts without looking at its characters).
_PIECES = ("realm", "x", "=", '"', ",", " ", "\t", "\x7f", "\x01", "\x1f", "\\", "v")
_PAIR = re.compile(rf'({_NAME})[ \t]*+=[ \t]*+"({_VALUE})"')


def _by_the_grammar(rest: str) -> dict[str, str] | None:
    """The parameters the grammar reads, or None where it refuses the list (or a duplicate)."""
    if not _LIST.fullmatch(rest):
        return None
    pairs = _PAIR.findall(rest)
    parameters = dict(pairs)
    return parameters if len(parameters) == len(pairs) else None


def _by_the_parser(rest: str) -> dict[str, str] | ErrorCode:
    try:
        return parse_authorization("OAuth " + rest)
    except TBAError as error:
        return error.code


def test_the_parser_reads_exactly_what_the_grammar_reads_on_every_short_list() -> None:
    checked = 0
    for size in range(6):
        for pieces in itertools.product(_PIECES, repeat=size):
            rest = "".join(pieces)
            by_the_grammar = _by_the_grammar(rest)
            expected = (
                ErrorCode.MISSING_REQUIRED_PARAMETER if by_the_grammar is None else by_the_grammar
            )
            assert _by_the_parser(rest) == expected, repr(rest)
            checked += 1
    assert checked == sum(len(_PIECES) ** n for n in range(6))


@pytest.mark.parametrize("byte", [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
@pytest.mark.parametrize("name", ["realm", "oauth_signature", "a"])
def test_a_control_byte_in_a_value_is_refused_whatever_the_name(byte: int, name: str) -> None:
    """Tab aside (blank between items), every C0 control and DEL, in a list otherwise written
    as clients write it."""
    for value in (
        f'OAuth {name}="a{chr(byte)}b"',
        f'OAuth oauth_token="t", {name}="{chr(byte)}"',
        f'OAuth {name}="v",oauth_token="{chr(byte)}"',
    ):
        with pytest.raises(TBAError) as raised:
            parse_authorization(value)
        assert raised.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
        assert raised.value.parameters_rejected == ("Authorization",)


def test_a_tab_is_blank_between_items_but_refused_inside_a_value() -> None:
    assert parse_authorization('OAuth a="1",\tb="2"') == {"a": "1", "b": "2"}
    with pytest.raises(TBAError) as raised:
        parse_authorization('OAuth a="1\t2"')
    assert raised.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
