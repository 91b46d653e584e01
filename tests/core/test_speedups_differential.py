"""The quick paths against their references: the C of `core/_speedups.c` in the compiled build,
the Python fast paths in the pure build.

`header._parameters_quickly` may decline a list (None) but never answer other than the full
grammar, `_parameters_by_grammar`; `signature._normalized_quickly` equals the Python
reference, `_normalized_for_base_string`, and oauthlib's normalisation encoded once more. The
C must also answer every ASCII list the grammar accepts without escapes, so that the common case
never pays for both.
"""

from __future__ import annotations

import importlib
import sys
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from oauthlib.oauth1.rfc5849.signature import normalize_parameters

from tba_guard.core import header, signature
from tba_guard.core.checks import REQUIRED_PARAMETERS
from tba_guard.core.errors import TBAError

try:
    SPEEDUPS = importlib.import_module("tba_guard.core._speedups")
except ImportError:
    SPEEDUPS = None

only_with_speedups = pytest.mark.skipif(
    SPEEDUPS is None, reason="the pure build has no C module; the compiled run tests it"
)

# Pieces of header lists, near the grammar and across it: names (escaped, odd, duplicate),
# blanks and tabs, commas, quotes, backslashes, controls and text outside ASCII.
PIECES = st.sampled_from(
    [
        "oauth_nonce",
        "oauth_token",
        "a",
        "a%62",
        "%",
        "n.~-_",
        "=",
        '"',
        '="',
        '", ',
        ",",
        ", ",
        " ",
        "\t",
        "\\",
        "\x00",
        "\x7f",
        "é",
        "\udc80",
        "x",
        "%3D",
        "%zz",
        "+/",
        "OAuth",
    ]
)
header_lists = st.lists(PIECES, max_size=24).map("".join) | st.text(max_size=40)


def grammar_answer(rest: str) -> dict[str, str] | None:
    try:
        return header._parameters_by_grammar(rest, 10_000)
    except TBAError:
        return None


@settings(max_examples=2000, deadline=None)
@given(rest=header_lists)
@example(rest='oauth_nonce="a",\toauth_token = "b" ,, ')
@example(rest='a="1", a="2"')
@example(rest=' a="1" b="2"')
@example(rest='a="1"')
@example(rest="")
def test_the_quick_header_path_answers_only_as_the_grammar_does(rest: str) -> None:
    quick = header._parameters_quickly(rest)
    full = grammar_answer(rest)
    if quick is not None:
        assert quick == full
        assert list(quick) == list(full or {})  # the order sent
    if SPEEDUPS is not None and full is not None and rest.isascii() and "%" not in rest:
        assert quick is not None, "the C declined an ASCII list the grammar accepts"


@only_with_speedups
def test_the_compiled_build_parses_headers_and_base_strings_in_c() -> None:
    assert SPEEDUPS is not None
    assert header._parameters_quickly is SPEEDUPS.header_parameters
    assert signature._normalized_quickly is SPEEDUPS.normalized_for_base_string


@only_with_speedups
def test_the_c_header_parser_hands_back_the_protocols_names_interned() -> None:
    """The dict shares its keys with the compiled code's literals: lookups compare pointers."""
    assert SPEEDUPS is not None
    names = [
        *REQUIRED_PARAMETERS,
        *("realm", "oauth_token", "oauth_version", "oauth_body_hash"),
        *("oauth_callback", "oauth_verifier"),
    ]
    parsed = SPEEDUPS.header_parameters(", ".join(f'{name}="1"' for name in names))
    assert parsed is not None
    assert list(parsed) == names
    assert all(key is sys.intern(name) for key, name in zip(parsed, names, strict=True))
    other = SPEEDUPS.header_parameters('oauth_tokens="1", xoauth_token="2"')
    assert other == {"oauth_tokens": "1", "xoauth_token": "2"}  # near names stay themselves


@only_with_speedups
@pytest.mark.parametrize(
    ("rest", "reason"),
    [
        ('a="1", a="2"', "a name twice"),
        ('a="1" b="2"', "no comma"),
        ('a="1\\"', "a backslash"),
        ('a="é"', "not ASCII"),
        ('a="1', "an open quote"),
        ('a=1"', "an unquoted value"),
        ('a="\x01"', "a control character"),
        ('="1"', "no name"),
        ('a!="1"', "a name with a character names do not have"),
        ('a%62="1"', "an escaped name, which may decode to another's"),
        ('a="%0A"', "an escaped control character"),
        ('a="%C3%A9"', "an escape of UTF-8"),
        ('a="%7F"', "an escaped DEL"),
        ('a="%4"', "a short escape"),
        ('a="%"', "a stray percent sign"),
        ('a="%g1"', "an escape that is not hexadecimal"),
        ('a="%%41"', "a percent sign escaping a percent sign"),
    ],
)
def test_the_c_header_parser_leaves_every_unusual_list_to_python(rest: str, reason: str) -> None:
    assert SPEEDUPS is not None
    assert SPEEDUPS.header_parameters(rest) is None, reason


@pytest.mark.parametrize(
    ("rest", "parameters"),
    [
        ('oauth_signature="a%2Bb%2F%3D"', {"oauth_signature": "a+b/="}),
        ('a="%20%7e%7E%41x%25"', {"a": " ~~Ax%"}),
        ('a="1",b="%3d"', {"a": "1", "b": "="}),
    ],
)
def test_the_quick_header_path_decodes_printable_escapes(
    rest: str, parameters: dict[str, str]
) -> None:
    quick = header._parameters_quickly(rest)
    assert quick == parameters == grammar_answer(rest)


@only_with_speedups
def test_the_c_functions_refuse_arguments_of_the_wrong_type() -> None:
    assert SPEEDUPS is not None
    with pytest.raises(TypeError):
        SPEEDUPS.header_parameters(b'a="1"')
    with pytest.raises(TypeError):
        SPEEDUPS.normalized_for_base_string({}, ())
    with pytest.raises(TypeError):
        SPEEDUPS.normalized_for_base_string({}, [("a", "1", "2")])
    with pytest.raises(TypeError):
        SPEEDUPS.normalized_for_base_string({}, [("a", b"1")])
    with pytest.raises(TypeError):
        SPEEDUPS.normalized_for_base_string({1: "x"}, [])


# Names and values as requests carry them: protocol names, text with every kind of character,
# the two separators the Python reference uses inside, and bytes that arrived as surrogates.
VALUES = st.text(
    st.characters(blacklist_categories=("Cs",))
    | st.sampled_from(["\x00", "\x01", "\udc80", "\udcff", "%", "+", "~", "\x7f"]),
    max_size=10,
)
NAMES = (
    st.sampled_from(
        [
            "realm",
            "oauth_signature",
            "oauth_body_hash",
            "oauth_nonce",
            "a",
            "a b",
            "é",
            "",
        ]
    )
    | VALUES
)


@settings(max_examples=1500, deadline=None)
@given(
    oauth=st.dictionaries(NAMES, VALUES, max_size=8),
    params=st.lists(st.tuples(NAMES, VALUES), max_size=8),
)
@example(oauth={"~": "a", "\x7f": "b"}, params=[("a", "~"), ("a", "\x7f")])
@example(oauth={}, params=[])
@example(oauth={"realm": "r", "oauth_signature": "s"}, params=[])
def test_the_quick_normalized_parameters_equal_the_reference_and_oauthlibs(
    oauth: dict[str, str], params: list[tuple[str, str]]
) -> None:
    quick = signature._normalized_quickly(oauth, params)
    assert quick == signature._normalized_for_base_string(oauth, params)
    signed = [
        (name, value) for name, value in oauth.items() if name not in {"realm", "oauth_signature"}
    ]
    signed += params
    if not any(0xD800 <= ord(char) < 0xE000 for pair in signed for char in "".join(pair)):
        # oauthlib cannot encode surrogates at all; without them it is the third reference.
        assert quick == quote(normalize_parameters(signed), safe="~")


@pytest.mark.parametrize("surrogate", [chr(0xD800), chr(0xDC7F), chr(0xDFFF)])
def test_a_surrogate_that_stands_for_no_byte_is_refused_by_both_paths(surrogate: str) -> None:
    """Only U+DC80..U+DCFF stand for bytes; any other lone surrogate cannot be encoded."""
    for oauth, params in (({"a": surrogate}, []), ({}, [(surrogate, "v")])):
        with pytest.raises(UnicodeEncodeError):
            signature._normalized_quickly(oauth, params)
        with pytest.raises(UnicodeEncodeError):
            signature._normalized_for_base_string(oauth, params)


def test_many_long_parameters_are_encoded_whole() -> None:
    """Every byte escaped (the largest growth, five times) over a body-sized list."""
    params = [(f"n{index}", "\x7f" * 1000 + "é") for index in range(500)]
    quick = signature._normalized_quickly({}, params)
    assert quick == signature._normalized_for_base_string({}, params)
    assert len(quick) == sum(len(f"n{i}") + 6 + 5 * 1002 for i in range(500)) - 3


@settings(max_examples=150, deadline=None)
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "a~", "a\x7f", "é"]), st.sampled_from(["", "1", "~", " "])
        ),
        min_size=20,
        max_size=60,
    )
)
def test_long_lists_with_repeated_names_sort_as_the_reference_does(
    params: list[tuple[str, str]],
) -> None:
    """Past 32 pairs the C sorts another way than below it; both orders must be RFC 5849's."""
    assert signature._normalized_quickly({}, params) == signature._normalized_for_base_string(
        {}, params
    )
