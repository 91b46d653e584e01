"""The request-token step's callback filter: control characters, blanks and length.

`urlsplit` silently deletes tabs and newlines, so a callback with one hidden in its host could
be read as another host (`http://local<TAB>host:9/cb` as localhost). The filter refuses every
C0 control, the space and DEL anywhere in the URL before it is split, and any URL over 2048
characters, with InvalidCallback (400).
"""

from __future__ import annotations

import pytest

from tba_guard import ErrorCode, Integration, TBAError
from tba_guard.core.checks import callback_allowed, check_callback

REGISTERED = "https://app.example.com/tba/callback?x=1"
INTEGRATION = Integration("ck", "cs-callback-tests-secret", callback_url=REGISTERED)
FORBIDDEN = [*range(0x00, 0x21), 0x7F]  # every C0 control, the space, DEL


def refused_callback(callback: str) -> TBAError:
    with pytest.raises(TBAError) as raised:
        check_callback({"oauth_callback": callback}, INTEGRATION)
    return raised.value


def test_the_registered_callback_and_localhost_are_accepted() -> None:
    assert check_callback({"oauth_callback": REGISTERED}, INTEGRATION) == REGISTERED
    for callback in ("http://localhost:9/cb", "http://localhost/", "HTTP://LOCALHOST:1/x?y"):
        assert check_callback({"oauth_callback": callback}, INTEGRATION) == callback


@pytest.mark.parametrize("byte", FORBIDDEN)
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("http://local", "host:9/cb"),  # in the host: urlsplit would join it back to localhost
        ("http://localhost:9", "/cb"),
        ("http://localhost:9/c", "b"),
        ("", "http://localhost:9/cb"),
        ("http://localhost:9/cb", ""),
        ("https://app.example.com/tba/", "callback?x=1"),
        ("https://app", ".example.com/tba/callback?x=1"),
    ],
)
def test_a_control_character_or_space_anywhere_in_the_callback_is_refused(
    byte: int, before: str, after: str
) -> None:
    callback = f"{before}{chr(byte)}{after}"
    assert not callback_allowed(callback, REGISTERED)
    error = refused_callback(callback)
    assert error.code is ErrorCode.INVALID_CALLBACK
    assert error.status == 400


def test_a_callback_of_2048_characters_is_judged_and_one_longer_is_refused() -> None:
    prefix = "http://localhost:9/"
    at_limit = prefix + "a" * (2048 - len(prefix))
    assert len(at_limit) == 2048
    assert callback_allowed(at_limit, None)
    assert not callback_allowed(at_limit + "a", None)
    error = refused_callback(at_limit + "a")
    assert error.code is ErrorCode.INVALID_CALLBACK
    assert error.status == 400


def test_a_registered_callback_over_the_limit_matches_nothing() -> None:
    long_registered = "https://app.example.com/" + "a" * 2048
    assert not callback_allowed(long_registered, long_registered)


@pytest.mark.parametrize(
    "callback",
    [
        "http://user@localhost:9/cb",  # userinfo
        "http://localhost:9/cb#frag",  # fragment
        "http://localhost:notaport/cb",
        "http://localhost:99999/cb",
        "localhost:9/cb",
        "/cb",
        "http:///cb",
        "https://localhost:9/cb",  # only http is the loopback exception
        "http://localhost.evil.example/cb",
        "http://127.0.0.1:9/cb",
    ],
)
def test_callbacks_that_are_not_a_plain_absolute_url_or_not_localhost_are_refused(
    callback: str,
) -> None:
    assert not callback_allowed(callback, REGISTERED)
    assert refused_callback(callback).code is ErrorCode.INVALID_CALLBACK


def test_the_registered_callback_must_match_scheme_port_path_and_query_exactly() -> None:
    for callback in (
        "http://app.example.com/tba/callback?x=1",
        "https://app.example.com:8443/tba/callback?x=1",
        "https://app.example.com/tba/callback?x=2",
        "https://app.example.com/tba/callback",
        "https://app.example.com/tba/other?x=1",
        "https://other.example.com/tba/callback?x=1",
    ):
        assert not callback_allowed(callback, REGISTERED), callback
    # The host compares as a host (any case); the scheme's default port is the port left out.
    assert callback_allowed("https://APP.example.com:443/tba/callback?x=1", REGISTERED)


def test_a_wildcard_registration_stands_for_exactly_one_label() -> None:
    registered = "https://*.example.com/cb"
    assert callback_allowed("https://a.example.com/cb", registered)
    for callback in (
        "https://example.com/cb",
        "https://a.b.example.com/cb",
        "https://.example.com/cb",
        "https://a.example.org/cb",
        "https://*.example.com/cb",
    ):
        assert not callback_allowed(callback, registered), callback
    for bad in ("https://a*.example.com/cb", "https://*.*.example.com/cb", "https://*/cb"):
        assert not callback_allowed("https://a.example.com/cb", bad), bad


def test_without_a_registered_callback_only_localhost_is_accepted() -> None:
    assert callback_allowed("http://localhost:5/x", None)
    assert not callback_allowed("https://app.example.com/tba/callback?x=1", None)
    assert not callback_allowed("https://app.example.com/tba/callback?x=1", "")
