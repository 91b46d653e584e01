"""Parsing the Authorization header: tolerant of spacing and order, strict about the rest."""

from __future__ import annotations

from types import ModuleType
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tba_guard import ErrorCode, TBAError
from tba_guard.core.header import (
    _parameters_by_grammar,
    decode_printable_escapes,
    parse_authorization,
)

# Every test on the C and on its Python twin (tests/conftest.py), once each, not per example.
pytestmark = pytest.mark.usefixtures("accelerated")


def rejected_names(value: str, **limits: int) -> tuple[str, ...]:
    with pytest.raises(TBAError) as caught:
        parse_authorization(value, **limits)
    assert caught.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
    assert caught.value.oauth_problem == "parameter_rejected"
    return caught.value.parameters_rejected


def test_parameters_come_back_decoded_in_the_order_sent() -> None:
    parsed = parse_authorization(
        'OAuth realm="123456_SB1", oauth_nonce="a%20b", oauth_callback="http%3A%2F%2Fx%2Fy"'
    )
    assert list(parsed.items()) == [
        ("realm", "123456_SB1"),
        ("oauth_nonce", "a b"),
        ("oauth_callback", "http://x/y"),
    ]


@pytest.mark.parametrize("odd", ["\u00e9", "\udc80"], ids=["non-ASCII", "lone surrogate"])
def test_values_outside_printable_ascii_meet_the_full_grammar(
    accelerated: ModuleType, odd: str
) -> None:
    """The accelerated parser takes printable ASCII only; anything else, even a character that
    UTF-8 cannot encode, goes to the grammar, which reads it as any other value."""
    value = f'OAuth oauth_nonce="x{odd}y", oauth_token="t"'
    assert accelerated.header_parameters(value[6:]) is None
    assert parse_authorization(value) == {"oauth_nonce": f"x{odd}y", "oauth_token": "t"}


@pytest.mark.parametrize(
    "value",
    [
        'OAuth a="1",b="2"',
        'OAuth   a = "1" ,  b="2"  ',
        'oauth a="1",\tb="2"',
        'OAUTH\ta="1", b="2",',
        '  OAuth a="1" , , b="2"',
    ],
)
def test_spacing_scheme_case_and_empty_list_elements_are_tolerated(value: str) -> None:
    assert parse_authorization(value) == {"a": "1", "b": "2"}


def test_raw_base64_signature_is_kept_as_sent() -> None:
    # Some clients do not percent-encode the signature; '+' must stay '+', not become a space.
    assert parse_authorization('OAuth oauth_signature="ab+/c="')["oauth_signature"] == "ab+/c="


def test_an_empty_value_parses_so_the_check_can_name_it() -> None:
    assert parse_authorization('OAuth oauth_nonce=""') == {"oauth_nonce": ""}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('OAuth a="1", a="2"', ("a",)),
        ('OAuth a="1", a%5F="2", a_="3"', ("a_",)),
        ('OAuth a="%zz"', ("a",)),
        ('OAuth a="%C3"', ("a",)),
        ('OAuth a="%FF%FE"', ("a",)),
        ('OAuth a="x%00y"', ("a",)),
    ],
)
def test_duplicates_and_broken_encoding_name_the_parameter(
    value: str, named: tuple[str, ...]
) -> None:
    assert rejected_names(value) == named


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "Basic dXNlcjpwYXNz",
        'OAuthx a="1"',
        "OAuth a=1",
        'OAuth a="1" b="2"',
        'OAuth a="1',
        'OAuth a="1", b',
        'OAuth a="1", b=',
        'OAuth ="1"',
        'OAuth a="x\\"y"',
        'OAuth a="line\nbreak"',
        'OAuth a="1"; b="2"',
        "",
    ],
)
def test_unparseable_headers_name_the_header(value: str) -> None:
    assert rejected_names(value) == ("Authorization",)


def test_header_length_is_bounded() -> None:
    value = 'OAuth a="' + "x" * 5000 + '"'
    assert rejected_names(value, max_length=4096) == ("Authorization",)


@pytest.mark.parametrize("text", ["v", "é"], ids=["accelerated parser", "grammar alone"])
def test_parameter_count_is_bounded(text: str) -> None:
    value = "OAuth " + ", ".join(f'p{i}="{text}"' for i in range(40))
    assert rejected_names(value, max_parameters=32) == ("Authorization",)
    assert rejected_names(value, max_parameters=39) == ("Authorization",)
    assert len(parse_authorization(value, max_parameters=40)) == 40


# --- the accelerated parser agrees with the full grammar -----------------------------------

# Pieces a header's list is made of, and the characters that could make it malformed.
_glue = st.sampled_from(["", " ", ",", ", ", " ,", ",,", "\t", "=", '"', " = "])
_names = st.sampled_from(["realm", "oauth_nonce", "a", "n%41", "b-c.d~e", "", "a b", "ü", "x=y"])
_values = st.text(
    st.sampled_from(list('abcXYZ019%=+/ ,"\\\t\x00\x7fé')) | st.characters(), max_size=8
)


@st.composite
def header_lists(draw: st.DrawFn) -> str:
    """Mostly well-formed lists (`name="value"` joined as clients join them) with a little of
    everything that could break them."""
    separator = draw(st.sampled_from([", ", ",", " , ", ",\t"]))
    items = [
        f'{draw(_names)}{draw(_glue) if draw(st.integers(0, 9)) == 0 else "="}"{draw(_values)}"'
        for _ in range(draw(st.integers(0, 6)))
    ]
    text = separator.join(items)
    if draw(st.booleans()):
        text = draw(_glue) + text + draw(_glue)
    return text


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rest=header_lists() | st.text(max_size=40))
def test_the_accelerated_parser_answers_only_as_the_full_grammar(
    accelerated: ModuleType, rest: str
) -> None:
    """It may pass a list on to the grammar (None), but what it answers the grammar answers."""
    parameters = accelerated.header_parameters(rest)
    if parameters is not None:
        assert list(parameters.items()) == list(_parameters_by_grammar(rest, 100).items())


def test_the_accelerated_parser_takes_the_forms_clients_send(accelerated: ModuleType) -> None:
    usual = ('a="1", b="2%3D", realm=""', 'a="1",b="2"', 'a = "1"', 'a="1",\tb="2"', "")
    for rest in usual:
        assert accelerated.header_parameters(rest) is not None
    for rest in (*usual, 'a="1", , b="2"', 'a="é"', 'a%41="1"'):
        assert parse_authorization(f"OAuth {rest}") == parse_authorization(f"OAuth  {rest} ")


@settings(max_examples=300, deadline=None)
@given(value=st.text(st.sampled_from(list("%+ 02aFgé")) | st.characters(), max_size=16))
def test_decoding_usual_escapes_equals_unquote(value: str) -> None:
    decoded = decode_printable_escapes(value)
    if decoded is not None:
        assert decoded == unquote(value, errors="strict")
