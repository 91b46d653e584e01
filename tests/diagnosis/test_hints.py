"""Development hints, given the settings: the reason, the fix and the mistake that reproduces
the signature, and never a secret."""

from __future__ import annotations

from tba_guard import TBAError
from tba_guard.core.errors import ErrorCode
from tba_guard.core.request import parse_parameters, request_from_url
from tba_guard.diagnosis.causes import CAUSES
from tba_guard.diagnosis.hints import development_hint
from tests.support import BASE_URL, CONSUMER_SECRET, TOKEN_SECRET, make_settings, oauth_header

RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"
ALL_SECRETS = (CONSUMER_SECRET, TOKEN_SECRET)


def test_a_development_hint_given_the_settings_names_the_mistake() -> None:
    url = f"{RESTLET}?script=7&deploy=1"
    value = oauth_header("GET", RESTLET)  # the client's mistake: the query is not signed
    request = request_from_url("GET", url, {"Authorization": value})
    parse_parameters(request)
    error = TBAError(ErrorCode.INVALID_SIGNATURE, "the signature does not match")
    hint = development_hint(error, request, settings=make_settings())
    assert "likely cause (query-unsigned): the query parameters were left out" in hint
    assert "likely cause (" not in development_hint(error, request)  # no settings, no search
    assert all(secret not in hint for secret in ALL_SECRETS)


def test_a_development_hint_gives_the_codes_fix_from_the_one_table() -> None:
    request = parse_parameters(request_from_url("GET", RESTLET, {}))
    error = TBAError(ErrorCode.VERSION_REJECTED, "oauth_version is not 1.0")
    hint = development_hint(error, request)
    assert hint.startswith(f"oauth_version is not 1.0; {CAUSES[ErrorCode.VERSION_REJECTED].fix}")
