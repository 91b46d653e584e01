"""The accelerated functions (core/accelerated.py): the C of `core/_speedups.c` and its Python
twin in `core/_native.py`, one contract.

Each test taking the `accelerated` fixture runs on the twin and, in the compiled build, on the C.
`header_parameters` may decline a list (None) but never answer other than the full grammar,
`header._parameters_by_grammar`; `normalized_for_base_string` equals oauthlib's normalisation
encoded once more. Where the C is built it must also answer exactly as its twin does, None
included, so that the pure build runs what the compiled build runs.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from oauthlib.oauth1.rfc5849.signature import normalize_parameters

from tba_guard import signature_base_string
from tba_guard.core import _native, accelerated, header, signature
from tba_guard.core.checks import REQUIRED_PARAMETERS
from tba_guard.core.errors import TBAError

try:
    SPEEDUPS: ModuleType | None = importlib.import_module("tba_guard.core._speedups")
except ImportError:
    SPEEDUPS = None

only_with_speedups = pytest.mark.skipif(
    SPEEDUPS is None, reason="the pure build has no core/_speedups.c; the compiled run tests the C"
)
# The `accelerated` fixture is set once per test, not per example: nothing to reset between.
PROPERTY = settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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
        "%7F",
        "%1f",
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


def test_the_seam_binds_the_c_where_built_and_the_twins_otherwise() -> None:
    """No fixture: what the build itself binds, into both modules that call them."""
    expected = SPEEDUPS if SPEEDUPS is not None else _native
    assert accelerated.header_parameters is expected.header_parameters
    assert accelerated.normalized_for_base_string is expected.normalized_for_base_string
    assert header.header_parameters is expected.header_parameters
    assert signature.normalized_for_base_string is expected.normalized_for_base_string


def test_the_fixture_switches_what_the_guard_calls(
    accelerated: ModuleType, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names the fixture binds are the ones the guard's parsing and base string call,
    compiled or not: a spy bound the same way sees each call."""
    expected = {"python": "_native", "c": "_speedups"}[request.node.callspec.params["accelerated"]]
    assert accelerated.__name__ == f"tba_guard.core.{expected}"
    assert header.header_parameters is accelerated.header_parameters
    assert signature.normalized_for_base_string is accelerated.normalized_for_base_string
    calls: list[str] = []

    def parsing(text: str, /) -> dict[str, str] | None:
        calls.append("header")
        return accelerated.header_parameters(text)

    def normalizing(oauth: dict[str, str], params: list[tuple[str, str]], /) -> str:
        calls.append("base string")
        return accelerated.normalized_for_base_string(oauth, params)

    monkeypatch.setattr(header, "header_parameters", parsing)
    monkeypatch.setattr(signature, "normalized_for_base_string", normalizing)
    headers = {"Authorization": 'OAuth oauth_nonce="n", oauth_signature="s"'}
    base = signature_base_string("GET", "https://h/?q=1", headers)
    assert base == "GET&https%3A%2F%2Fh%2F&oauth_nonce%3Dn%26q%3D1"
    assert calls == ["header", "base string"]


@PROPERTY
@given(rest=header_lists)
@example(rest='oauth_nonce="a",\toauth_token = "b" ,, ')
@example(rest='a="1", a="2"')
@example(rest=' a="1" b="2"')
@example(rest='a="1"')
@example(rest="")
def test_header_parameters_answer_only_as_the_grammar_does(
    accelerated: ModuleType, rest: str
) -> None:
    quick = accelerated.header_parameters(rest)
    full = grammar_answer(rest)
    if quick is not None:
        assert quick == full
        assert list(quick) == list(full or {})  # the order sent
    if full is not None and rest.isascii() and "%" not in rest:
        assert quick is not None, "an ASCII list the grammar accepts was declined"


@only_with_speedups
@settings(max_examples=3000, deadline=None)
@given(rest=header_lists)
def test_the_c_header_parser_answers_exactly_as_its_twin(rest: str) -> None:
    assert SPEEDUPS is not None
    quick = SPEEDUPS.header_parameters(rest)
    twin = _native.header_parameters(rest)
    assert quick == twin
    assert list(quick or {}) == list(twin or {})


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
def test_header_parameters_leave_every_unusual_list_to_the_grammar(
    accelerated: ModuleType, rest: str, reason: str
) -> None:
    assert accelerated.header_parameters(rest) is None, reason


@pytest.mark.parametrize(
    ("rest", "parameters"),
    [
        ('oauth_signature="a%2Bb%2F%3D"', {"oauth_signature": "a+b/="}),
        ('a="%20%7e%7E%41x%25"', {"a": " ~~Ax%"}),
        ('a="1",b="%3d"', {"a": "1", "b": "="}),
        (' ,a = "1" ,\t, b="2",', {"a": "1", "b": "2"}),
    ],
)
def test_header_parameters_decode_printable_escapes(
    accelerated: ModuleType, rest: str, parameters: dict[str, str]
) -> None:
    assert accelerated.header_parameters(rest) == parameters == grammar_answer(rest)


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
# the join the Python twin sorts with, and bytes that arrived as surrogates.
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


def encoded(text: str) -> str:
    return quote(text, safe="", errors="surrogateescape")


def plainly(oauth: dict[str, str], params: list[tuple[str, str]]) -> str:
    """The definition, through the standard library: each name and value encoded, the pairs
    sorted and joined, the whole encoded once more."""
    signed = [
        (name, value) for name, value in oauth.items() if name not in {"realm", "oauth_signature"}
    ]
    pairs = sorted((encoded(name), encoded(value)) for name, value in [*signed, *params])
    return encoded("&".join(f"{name}={value}" for name, value in pairs))


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    oauth=st.dictionaries(NAMES, VALUES, max_size=8),
    params=st.lists(st.tuples(NAMES, VALUES), max_size=8),
)
@example(oauth={"~": "a", "\x7f": "b"}, params=[("a", "~"), ("a", "\x7f")])
@example(oauth={}, params=[])
@example(oauth={"realm": "r", "oauth_signature": "s"}, params=[])
@example(oauth={"a": "%+ %"}, params=[("a", "%"), ("%", ""), ("\udc80", "\udcff")])
def test_normalized_parameters_equal_the_definition_and_oauthlibs(
    accelerated: ModuleType, oauth: dict[str, str], params: list[tuple[str, str]]
) -> None:
    normalized = accelerated.normalized_for_base_string(oauth, params)
    assert normalized == plainly(oauth, params)
    signed = [
        (name, value) for name, value in oauth.items() if name not in {"realm", "oauth_signature"}
    ]
    signed += params
    if not any(0xD800 <= ord(char) < 0xE000 for pair in signed for char in "".join(pair)):
        # oauthlib cannot encode surrogates at all; without them it is the third reference.
        assert normalized == quote(normalize_parameters(signed), safe="~")


@only_with_speedups
@settings(max_examples=1500, deadline=None)
@given(
    oauth=st.dictionaries(NAMES, VALUES, max_size=8),
    params=st.lists(st.tuples(NAMES, VALUES), max_size=8),
)
def test_the_c_normalized_parameters_equal_its_twins(
    oauth: dict[str, str], params: list[tuple[str, str]]
) -> None:
    assert SPEEDUPS is not None
    quick = SPEEDUPS.normalized_for_base_string(oauth, params)
    assert quick == _native.normalized_for_base_string(oauth, params)


@pytest.mark.parametrize("surrogate", [chr(0xD800), chr(0xDC7F), chr(0xDFFF)])
def test_a_surrogate_that_stands_for_no_byte_is_refused(
    accelerated: ModuleType, surrogate: str
) -> None:
    """Only U+DC80..U+DCFF stand for bytes; any other lone surrogate cannot be encoded."""
    for oauth, params in (({"a": surrogate}, []), ({}, [(surrogate, "v")])):
        with pytest.raises(UnicodeEncodeError):
            accelerated.normalized_for_base_string(oauth, params)


def test_many_long_parameters_are_encoded_whole(accelerated: ModuleType) -> None:
    """Every byte escaped (the largest growth, five times) over a body-sized list."""
    params = [(f"n{index}", "\x7f" * 1000 + "é") for index in range(500)]
    normalized = accelerated.normalized_for_base_string({}, params)
    assert normalized == plainly({}, params)
    assert len(normalized) == sum(len(f"n{i}") + 6 + 5 * 1002 for i in range(500)) - 3


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "a~", "a\x7f", "é"]), st.sampled_from(["", "1", "~", " "])
        ),
        min_size=20,
        max_size=60,
    )
)
def test_long_lists_with_repeated_names_sort_as_rfc_5849_does(
    accelerated: ModuleType, params: list[tuple[str, str]]
) -> None:
    """Past 32 pairs the C sorts another way than below it; both orders must be RFC 5849's."""
    assert accelerated.normalized_for_base_string({}, params) == plainly({}, params)
