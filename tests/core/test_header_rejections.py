"""What a refused Authorization header tells: the parameter it names (WWW-Authenticate's
`oauth_parameters_rejected`) and a reason for the audit log that says what was wrong; and the
length limit, which a header of exactly that length meets."""

from __future__ import annotations

import pytest

from tba_guard import ErrorCode, TBAError
from tba_guard.core.header import HEADER_NAME, parse_authorization

# Every test on the C and on its Python twin (tests/conftest.py), once each, not per example.
pytestmark = pytest.mark.usefixtures("accelerated")


def refusal(value: str, **limits: int) -> TBAError:
    with pytest.raises(TBAError) as raised:
        parse_authorization(value, **limits)
    assert raised.value.code is ErrorCode.MISSING_REQUIRED_PARAMETER
    return raised.value


@pytest.mark.parametrize(
    ("value", "rejected", "reason"),
    [
        ('OAuth oauth_nonce="%ZZ"', "oauth_nonce", "oauth_nonce: malformed percent-encoding"),
        ('OAuth oauth_nonce="%FF"', "oauth_nonce", "oauth_nonce: not utf-8 once decoded"),
        ('OAuth oauth_nonce="a%00"', "oauth_nonce", "oauth_nonce: nul byte"),
        # An escaped name takes the path that decodes names too; the name is the one sent.
        ('OAuth oauth_%6Eonce="%ZZ"', "oauth_%6Eonce", "oauth_%6eonce: malformed"),
        ('OAuth oauth_token="a", oauth_token="b"', "oauth_token", "oauth_token given twice"),
        ('OAuth oauth_%74oken="a", oauth_token="b"', "oauth_token", "oauth_token given twice"),
        ("Bearer abc", HEADER_NAME, "scheme is not oauth"),
        ('OAuth a=1, b="2"', HEADER_NAME, 'comma-separated list of name="value"'),
    ],
)
def test_a_refused_header_names_the_parameter_and_says_why(
    value: str, rejected: str, reason: str
) -> None:
    error = refusal(value)
    assert error.parameters_rejected == (rejected,)
    assert reason in error.reason.lower()


def test_a_header_over_the_limits_says_which_limit() -> None:
    long = 'OAuth realm="' + "r" * 100 + '"'
    assert "longer than 50 characters" in refusal(long, max_length=50).reason
    many = ", ".join(f'p{i}="v"' for i in range(5))
    assert "more than 4 parameters" in refusal("OAuth " + many, max_parameters=4).reason


def test_a_header_of_exactly_the_maximum_length_is_read() -> None:
    value = 'OAuth realm="' + "r" * 37 + '"'
    assert len(value) == 51
    assert parse_authorization(value, max_length=51) == {"realm": "r" * 37}
    assert refusal(value, max_length=50).parameters_rejected == (HEADER_NAME,)
