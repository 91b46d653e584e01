"""The mistake search signs with the core's signer, bends it only as a mistake says, and its
signing input never shows the secrets."""

from __future__ import annotations

from dataclasses import replace

from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from tba_guard.core.request import (
    OAuthRequest,
    form_body_pairs,
    parse_parameters,
    request_from_url,
)
from tba_guard.core.signature import request_base_string, signature_matches
from tba_guard.diagnosis import mistakes
from tba_guard.diagnosis.mistakes import base_string_of, start
from tests.support import BASE_URL, CONSUMER_SECRET, REALM, TOKEN_SECRET, oauth_header

RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"
FORM = "application/x-www-form-urlencoded"


def parsed(method: str, url: str, value: str, body: str = "") -> OAuthRequest:
    headers = {"Authorization": value, **({"Content-Type": FORM} if body else {})}
    request = parse_parameters(request_from_url(method, url, headers, body))
    request.params += form_body_pairs(request)  # as the checks add a signed form body
    return request


def signing_of(request: OAuthRequest) -> mistakes.Signing:
    signing, _ = start(
        request,
        client_uri=request.uri,
        consumer_secret=CONSUMER_SECRET,
        token_secret=TOKEN_SECRET,
        realm=REALM,
    )
    return signing


def test_the_signing_input_never_shows_its_secrets() -> None:
    url = f"{RESTLET}?script=7"
    request = parsed("GET", url, oauth_header("GET", url))
    signing, clues = start(
        request,
        client_uri=request.uri,
        consumer_secret=CONSUMER_SECRET,
        token_secret=TOKEN_SECRET,
        realm=REALM,
    )
    shown = repr(signing) + repr(clues) + str(signing)
    assert CONSUMER_SECRET not in shown
    assert TOKEN_SECRET not in shown


def test_the_request_as_sent_is_signed_as_the_core_signs_it() -> None:
    url = f"{RESTLET}?tag=b&tag=a&q=a%20b"
    body = "city=K%C3%B6ln&x=1"
    request = parsed("POST", url, oauth_header("POST", url, body=body, form=True), body)
    assert signature_matches(request, CONSUMER_SECRET, TOKEN_SECRET)
    signing = signing_of(request)
    assert base_string_of(signing) == request_base_string(request)
    trials = mistakes._Trials(request.oauth["oauth_signature"].encode())
    assert trials.reproduces(signing, new_only=False)


def test_a_space_as_plus_or_unsorted_values_bend_only_the_parameters() -> None:
    url = f"{RESTLET}?tag=b&tag=a&q=a%20b"
    signing = signing_of(parsed("GET", url, oauth_header("GET", url)))
    pairs = [*signing.header, *signing.query]
    normalized = oauth_signature.normalize_parameters(pairs).replace("%20", "+")
    plus = oauth_signature.signature_base_string("GET", RESTLET, normalized)
    assert base_string_of(replace(signing, space_as_plus=True)) == plus
    escaped = [(oauth_utils.escape(n), oauth_utils.escape(v)) for n, v in pairs]
    escaped.sort(key=lambda pair: pair[0])  # by name only: values in the order sent
    in_order = "&".join(f"{n}={v}" for n, v in escaped)
    unsorted = oauth_signature.signature_base_string("GET", RESTLET, in_order)
    assert base_string_of(replace(signing, sort_values=False)) == unsorted
