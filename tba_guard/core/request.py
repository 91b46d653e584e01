"""The request as the checks see it: method, base string URI, header, query, body.

Built either from a URL and a header mapping (standalone use) or by the middleware from an ASGI
scope. Nothing here judges the request; `checks.check_required_parameters` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from .errors import ErrorCode, TBAError, rejected
from .header import (
    DEFAULT_MAX_HEADER_LENGTH,
    DEFAULT_MAX_HEADER_PARAMETERS,
    HEADER_NAME,
    decode_printable_escapes,
    parse_authorization,
)

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
# A websocket handshake is an HTTP GET: clients sign it with the HTTP scheme.
_SIGNED_SCHEMES: Final = {"ws": "http", "wss": "https"}


class OAuthRequest:
    """One request to verify. `authorization` is None when the header is absent.

    `oauth` and `params` are empty until `parse_parameters`, the sequence's parsing step, which
    is where parsing can fail with the right code. A plain class rather than a dataclass: one
    is built per request, and the compiled build constructs a plain class about ten times
    faster.
    """

    __slots__ = (
        "authorization",
        "authorization_count",
        "body",
        "client",
        "is_form",
        "method",
        "oauth",
        "params",
        "path",
        "principal",
        "query",
        "secure",
        "uri",
    )

    def __init__(
        self,
        method: str,
        uri: str,
        query: str = "",
        authorization: str | None = None,
        authorization_count: int = 0,
        body: bytes = b"",
        is_form: bool = False,
        secure: bool = False,
        path: str = "",
        client: str = "",
    ) -> None:
        self.method = method
        self.uri = uri
        self.query = query
        self.authorization = authorization
        self.authorization_count = authorization_count
        self.body = body
        self.is_form = is_form
        self.secure = secure
        self.path = path
        self.client = client
        # For the audit of a scheme other than TBA's: its name, and the consumer key and token
        # it found (TBA's are the header's own parameters).
        self.principal: tuple[str, str, str] | None = None
        self.oauth: dict[str, str] = {}
        self.params: list[tuple[str, str]] = []

    def __repr__(self) -> str:  # never the header: it carries the signature
        return f"OAuthRequest(method={self.method!r}, uri={self.uri!r})"


def netloc(scheme: str, host: str) -> str:
    """Host (and port) for the base string URI: lower-cased, without the scheme's default port."""
    host = host.lower()
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port, or the tail of an IPv6 literal
        return host
    if not port or port == _DEFAULT_PORTS.get(scheme):
        return name
    return host


@lru_cache(maxsize=1024)  # a service sees few distinct (scheme, host, path) triples
def base_string_uri(scheme: str, host: str, path: str) -> str:
    """RFC 5849 section 3.4.1.2 from parts: the path is kept exactly as the client sent it."""
    scheme = scheme.lower()
    scheme = _SIGNED_SCHEMES.get(scheme, scheme)
    return f"{scheme}://{netloc(scheme, host)}{path or '/'}"


def base_string_uri_from_url(url: str) -> str:
    return _uri_from_parts(urlsplit(url))


def _uri_from_parts(parts: SplitResult) -> str:
    if not parts.scheme or not parts.netloc:
        raise ValueError("the URL needs a scheme and a host")
    host = parts.netloc.rpartition("@")[2]
    # oauthlib writes a space in the path as %20; a client library may have left one unquoted.
    return base_string_uri(parts.scheme, host, parts.path.replace(" ", "%20"))


def form_pairs(data: str) -> list[tuple[str, str]]:
    """application/x-www-form-urlencoded decoding, as RFC 5849 section 3.4.1.3.1 asks.

    Bytes that are not UTF-8 survive as surrogates so that re-encoding gives the client's bytes.
    """
    if "+" in data:  # once for the whole text: a space splits nothing
        data = data.replace("+", " ")
    escaped = "%" in data
    pairs: list[tuple[str, str]] = []
    for item in data.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        if escaped:
            name, value = _unescaped(name), _unescaped(value)
        pairs.append((name, value))
    return pairs


def _unescaped(text: str) -> str:
    """`unquote(text, errors="surrogateescape")`, faster for the usual escapes."""
    if "%" not in text:
        return text
    decoded = decode_printable_escapes(text)
    return decoded if decoded is not None else unquote(text, errors="surrogateescape")


def is_form_content_type(content_type: str | None) -> bool:
    """Whether the body is a signed form, judged as form parsers judge it (the media type
    before any `;`, spaces and tabs stripped, any case); `check_content_type` refuses the
    spellings on which parsers could disagree."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip(" \t").lower() == FORM_CONTENT_TYPE


class HeaderFields:
    """What the guard reads from the request's headers, by the one set of rules both entry
    points use. A header the application could read differently (given twice, or framing
    given two ways) is refused here, before anything else."""

    __slots__ = (
        "authorizations",
        "content_type",
        "forwarded_for",
        "forwarded_host",
        "forwarded_proto",
        "host",
    )

    def __init__(self, raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
        authorizations: list[str] = []
        host = content_type = content_length = transfer_encoding = None
        forwarded_proto = forwarded_host = forwarded_for = None
        for name, raw in raw_headers:
            if name == b"authorization":
                authorizations.append(raw.decode("latin-1"))
            elif name == b"host":
                if host is not None:
                    raise ambiguous("more than one Host header")
                host = raw.decode("latin-1")
            elif name == b"content-type":
                if content_type is not None:
                    raise ambiguous("more than one Content-Type header")
                content_type = raw.decode("latin-1")
            elif name == b"content-length":
                if content_length is not None:
                    raise ambiguous("more than one Content-Length header")
                content_length = raw
            elif name == b"transfer-encoding":
                transfer_encoding = raw
            elif name == b"x-forwarded-proto":
                forwarded_proto = raw.decode("latin-1")
            elif name == b"x-forwarded-host":
                forwarded_host = raw.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded_for = raw.decode("latin-1")
        if content_length is not None and transfer_encoding is not None:
            raise ambiguous("Content-Length together with Transfer-Encoding")
        self.authorizations = authorizations
        self.host = host
        self.content_type = content_type
        self.forwarded_proto = forwarded_proto
        self.forwarded_host = forwarded_host
        self.forwarded_for = forwarded_for


def ambiguous(reason: str) -> TBAError:
    return TBAError(ErrorCode.AMBIGUOUS_REQUEST, reason)


def check_content_type(content_type: str | None) -> bool:
    """`is_form_content_type`, refusing a spelling that names the form type yet is not it
    (quoted, or padded with other white space): one parser could read a form there and
    another not."""
    is_form = is_form_content_type(content_type)
    if not is_form and content_type and FORM_CONTENT_TYPE in content_type.lower():
        raise ambiguous("a Content-Type that parsers could read as a form or not")
    return is_form


def request_from_url(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str = b"",
    *,
    client: str = "",
) -> OAuthRequest:
    """Build the request from a full URL, as a client or a test has it.

    Raises `TBAError` (AmbiguousRequest) for headers the middleware would refuse too.
    """
    if isinstance(body, str):
        body = body.encode()
    items = headers.items() if isinstance(headers, Mapping) else headers
    fields = HeaderFields(
        (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
        for name, value in items
    )
    parts = urlsplit(url)
    authorizations = fields.authorizations
    return OAuthRequest(
        method=method.upper(),
        uri=_uri_from_parts(parts),
        query=parts.query,
        authorization=authorizations[0] if authorizations else None,
        authorization_count=len(authorizations),
        body=body,
        is_form=check_content_type(fields.content_type),
        secure=parts.scheme.lower() in ("https", "wss"),
        path=parts.path or "/",
        client=client,
    )


def parse_parameters(
    request: OAuthRequest,
    *,
    header_max_length: int = DEFAULT_MAX_HEADER_LENGTH,
    header_max_parameters: int = DEFAULT_MAX_HEADER_PARAMETERS,
) -> OAuthRequest:
    """Parse what needs no body: `oauth` from the header, `params` from the query. Returns the
    request, now parsed; the checks that follow read it and never parse.

    Parsed in place because one request object is built per request and the checks run on it;
    raises `TBAError` (MissingRequiredParameter) for a second header or one that does not parse.
    """
    if request.authorization_count > 1:
        raise rejected(HEADER_NAME, reason="more than one Authorization header")
    if request.authorization is not None:
        request.oauth = parse_authorization(
            request.authorization,
            max_length=header_max_length,
            max_parameters=header_max_parameters,
        )
    request.params = form_pairs(request.query) if request.query else []
    return request


def form_body_pairs(request: OAuthRequest) -> list[tuple[str, str]]:
    """The form body's parameters, when the body is a form; else none."""
    if request.is_form and request.body:
        return form_pairs(request.body.decode("utf-8", "surrogateescape"))
    return []


def wants_body(request: OAuthRequest) -> bool:
    """Whether the signature covers the body: a form, or a decoded `oauth_body_hash`."""
    return request.is_form or "oauth_body_hash" in request.oauth
