"""The diagnosis of one rejection, as `explain` prints it: causes, the code's fix, the
signature's base string and findings."""

from __future__ import annotations

from tba_guard import TBAError
from tba_guard.core.errors import ErrorCode
from tba_guard.core.request import OAuthRequest, parse_parameters, request_from_url
from tba_guard.core.signature import request_base_string
from tba_guard.diagnosis.causes import CAUSES
from tba_guard.diagnosis.rejection import Diagnosis, diagnose
from tests.support import BASE_URL, NOW, make_settings, oauth_header

RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"


def parsed(url: str, value: str) -> OAuthRequest:
    return parse_parameters(request_from_url("GET", url, {"Authorization": value}))


def test_a_code_without_a_known_cause_gets_its_own_fix_and_no_signature_diagnosis() -> None:
    request = parsed(RESTLET, oauth_header("GET", RESTLET, version="2.0"))
    error = TBAError(ErrorCode.VERSION_REJECTED, "oauth_version is not 1.0")
    found = diagnose(error, request, make_settings(), now=NOW, client_uri=request.uri)
    assert found == Diagnosis((), CAUSES[ErrorCode.VERSION_REJECTED].fix, None)


def test_a_bad_signature_no_mistake_explains_is_said_to_be_unexplained() -> None:
    request = parsed(RESTLET, oauth_header("GET", RESTLET, consumer_secret="another-secret"))
    settings = make_settings()
    found = diagnose(
        TBAError(ErrorCode.INVALID_SIGNATURE, "the signature does not match"),
        request,
        settings,
        now=NOW,
        client_uri=request.uri,
        integration=settings.integrations[0],
        token=settings.tokens[0],
    )
    assert (found.causes, found.fix) == ((), None)  # the signature's own finding says it
    signature = found.signature
    assert signature is not None
    assert (signature.matched, signature.complete) == (False, True)
    assert signature.base_string == request_base_string(request)
    [unexplained] = signature.findings
    assert unexplained.explanation.startswith("no known client mistake reproduces the signature")
    assert unexplained.fix == CAUSES[ErrorCode.INVALID_SIGNATURE].fix
