"""One call each for code that is not ASGI: the base string the server builds for a request,
and whether a request's signature is right for given secrets (no clock, no store, no policy).

Plain Python, not compiled with the hot path: called once per request at most, and `help()`
shows their documentation in both builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import TBAError
from .request import OAuthRequest, form_body_pairs, parse_parameters, request_from_url
from .signature import request_base_string, signature_matches


def signature_base_string(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str = b"",
) -> str:
    """The RFC 5849 base string the server builds for this request (no clock, no store).

    Raises `TBAError` when the headers are ambiguous (AmbiguousRequest) or the Authorization
    header does not parse (MissingRequiredParameter).
    """
    request = _parsed(method, url, headers, body)
    return request_base_string(request)


def _parsed(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str,
) -> OAuthRequest:
    request = request_from_url(method, url, headers, body)
    parse_parameters(request)
    request.params += form_body_pairs(request)
    return request


def verify_signature(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str,
    consumer_secret: str,
    token_secret: str = "",
) -> bool:
    """True when the request's signature is right for these secrets. The signature alone:
    no clock, no replay store, no policy on which signature methods are allowed.
    """
    try:
        request = _parsed(method, url, headers, body)
    except TBAError:
        return False
    return signature_matches(request, consumer_secret, token_secret)
