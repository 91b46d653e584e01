"""One request: the application reads exactly what the guard verified, and the guard judges a
request before it reads (or waits for) its body.

Each attack here passed the guard before: two Content-Type headers, an `oauth_body_hash` name
written percent-encoded, a junk header held open by a slow body, forwarded headers from any
local peer, exempt prefixes reached through dot segments, and requests for another host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tba_guard import Guard, GuardSettings, TBAError, TBAGuardMiddleware
from tba_guard.core.request import request_from_url
from tests.support import BASE_URL, Clock, make_settings, oauth_header

HOST = "123456-sb1.restlets.example.com"
PATH = "/services/rest/record"
URL = f"{BASE_URL}{PATH}"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Seen:
    """What the application read, when it ran."""

    calls: int = 0
    body: bytes = b""
    form: list[tuple[str, str]] = field(default_factory=list)
    scheme: str = ""
    client: str = ""


def reading_app(seen: Seen) -> Starlette:
    """A Starlette app that reads the body and the form the way applications do."""

    async def endpoint(request: Request) -> JSONResponse:
        seen.calls += 1
        seen.body = await request.body()
        seen.form = [(k, str(v)) for k, v in (await request.form()).multi_items()]
        seen.scheme = request.url.scheme
        seen.client = request.client.host if request.client else ""
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


@dataclass
class Answer:
    status: int
    body: bytes
    seen: Seen
    receives: int

    @property
    def code(self) -> str:
        error: str = json.loads(self.body)["error"]["code"]
        return error


async def drive(
    settings_: GuardSettings,
    *,
    method: str = "GET",
    path: str = PATH,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    scheme: str = "https",
    client: str = "203.0.113.9",
    body_never_arrives: bool = False,
) -> Answer:
    """One request through the middleware, as uvicorn hands it over."""
    seen = Seen()
    middleware = TBAGuardMiddleware(reading_app(seen), guard=Guard(settings_, clock=Clock()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": (client, 50000),
        "server": (HOST, 443),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    receives = 0

    async def receive() -> dict[str, Any]:
        nonlocal receives
        receives += 1
        if body_never_arrives:
            await asyncio.Event().wait()
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(middleware(scope, receive, send), timeout=30)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(status, answer, seen, receives)


def run(settings_: GuardSettings, **kwargs: Any) -> Answer:
    return asyncio.run(drive(settings_, **kwargs))


def host_and(*headers: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(b"host", HOST.encode())] + [(n.encode(), v.encode()) for n, v in headers]


# --- two readings of one header ---------------------------------------------------------------


@pytest.mark.parametrize("form_first", [True, False], ids=["form-first", "text-first"])
def test_two_content_type_headers_are_refused_before_the_app(form_first: bool) -> None:
    """Signed without a body, sent with an unsigned form that Starlette would read."""
    types = [("content-type", FORM), ("content-type", "text/plain")]
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(
            ("authorization", oauth_header("POST", URL)), *(types if form_first else types[::-1])
        ),
        body=b"amount=1000000",
    )
    assert (answer.status, answer.code) == (400, "AmbiguousRequest")
    assert answer.seen.calls == 0


@pytest.mark.parametrize(
    "headers",
    [
        [("host", HOST), ("host", "evil.example")],
        [("content-length", "5"), ("transfer-encoding", "chunked")],
        [("content-length", "5"), ("content-length", "6")],
    ],
    ids=["two-hosts", "length-and-chunked", "two-lengths"],
)
def test_framing_that_two_servers_could_read_differently_is_refused(
    headers: list[tuple[str, str]],
) -> None:
    raw = [(n.encode(), v.encode()) for n, v in headers]
    raw.append((b"authorization", oauth_header("POST", URL).encode()))
    if not any(name == b"host" for name, _ in raw):
        raw.insert(0, (b"host", HOST.encode()))
    answer = run(make_settings(), method="POST", headers=raw, body=b"hello")
    assert (answer.status, answer.code) == (400, "AmbiguousRequest")
    assert answer.seen.calls == 0


def test_the_standalone_entry_refuses_the_same_headers_as_the_middleware() -> None:
    headers = [("Authorization", "OAuth x"), ("Content-Type", FORM), ("Content-Type", "text/plain")]
    with pytest.raises(TBAError) as caught:
        request_from_url("POST", URL, headers, b"a=1")
    assert caught.value.code.value == "AmbiguousRequest"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "content_type",
    ['"application/x-www-form-urlencoded"', "application/x-www-form-urlencoded\x0b"],
    ids=["quoted", "vertical-tab"],
)
def test_a_content_type_that_only_some_parsers_read_as_a_form_is_refused(
    content_type: str,
) -> None:
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(
            ("authorization", oauth_header("POST", URL)), ("content-type", content_type)
        ),
        body=b"a=1",
    )
    assert (answer.status, answer.code) == (400, "AmbiguousRequest")


def test_a_form_body_with_raw_non_ascii_bytes_is_refused() -> None:
    """Starlette decodes raw bytes as Latin-1, the signature as UTF-8: two different forms."""
    body = "name=é".encode()
    header = oauth_header("POST", URL, body="name=%C3%A9", form=True)
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(("authorization", header), ("content-type", FORM)),
        body=body,
    )
    assert (answer.status, answer.code) == (400, "AmbiguousRequest")
    assert answer.seen.calls == 0


# --- the body hash decided from the parsed header ---------------------------------------------


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha1(body).digest()).decode()


def test_an_encoded_body_hash_name_still_binds_the_body() -> None:
    """`oauth%5Fbody%5Fhash` decodes to `oauth_body_hash`: the body must be read and hashed."""
    header = oauth_header("POST", URL, extra={"oauth_body_hash": body_hash(b"")})
    header = header.replace("oauth_body_hash=", "oauth%5Fbody%5Fhash=")
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(("authorization", header), ("content-type", "application/json")),
        body=b'{"transfer": 1000000}',
    )
    assert (answer.status, answer.code) == (401, "InvalidSignature")
    assert answer.seen.calls == 0


def test_an_encoded_body_hash_name_with_the_right_body_is_accepted() -> None:
    body = b'{"transfer": 10}'
    header = oauth_header("POST", URL, extra={"oauth_body_hash": body_hash(body)})
    header = header.replace("oauth_body_hash=", "oauth%5Fbody%5Fhash=")
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(("authorization", header), ("content-type", "application/json")),
        body=body,
    )
    assert answer.status == 200
    assert answer.seen.body == body


# --- judged before the body -------------------------------------------------------------------


def test_a_junk_header_is_answered_without_waiting_for_the_body() -> None:
    answer = run(
        make_settings(body_timeout=60),
        method="POST",
        headers=host_and(("authorization", "OAuth junk"), ("content-type", FORM)),
        body_never_arrives=True,
    )
    assert (answer.status, answer.code) == (400, "MissingRequiredParameter")
    assert answer.receives == 0


def test_an_unknown_token_is_answered_without_waiting_for_the_body() -> None:
    header = oauth_header("POST", URL, token="tk-nobody", body="a=1", form=True)
    answer = run(
        make_settings(body_timeout=60),
        method="POST",
        headers=host_and(("authorization", header), ("content-type", FORM)),
        body_never_arrives=True,
    )
    assert (answer.status, answer.code) == (401, "TokenRejected")
    assert answer.receives == 0


def test_a_form_duplicate_of_a_protocol_parameter_is_refused_once_the_body_is_read() -> None:
    header = oauth_header("POST", URL, body="oauth_nonce=abcdefgh", form=True)
    answer = run(
        make_settings(),
        method="POST",
        headers=host_and(("authorization", header), ("content-type", FORM)),
        body=b"oauth_nonce=abcdefgh",
    )
    assert (answer.status, answer.code) == (400, "MissingRequiredParameter")


# --- forwarded headers ------------------------------------------------------------------------

PLAINTEXT_SETTINGS = {"signature_methods": ["HMAC-SHA256", "PLAINTEXT"]}
HTTP_URL = f"http://{HOST}{PATH}"


def plaintext_over_forwarded_https(trusted: tuple[str, ...]) -> Answer:
    header = oauth_header("GET", f"https://{HOST}{PATH}", signature_method="PLAINTEXT")
    return run(
        make_settings(trusted_proxies=trusted, **PLAINTEXT_SETTINGS),
        scheme="http",
        client="127.0.0.1",
        headers=host_and(
            ("authorization", header),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "198.51.100.7"),
        ),
    )


def test_a_forwarded_scheme_from_an_untrusted_peer_is_ignored() -> None:
    answer = plaintext_over_forwarded_https(trusted=())
    assert (answer.status, answer.code) == (400, "UnknownAlgorithm")


def test_a_forwarded_scheme_and_client_from_a_trusted_proxy_are_believed_and_passed_on() -> None:
    answer = plaintext_over_forwarded_https(trusted=("127.0.0.0/8",))
    assert answer.status == 200
    assert (answer.seen.scheme, answer.seen.client) == ("https", "198.51.100.7")


def test_the_audit_log_names_the_peer_unless_the_proxy_is_trusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tba_guard.audit")
    plaintext_over_forwarded_https(trusted=())
    plaintext_over_forwarded_https(trusted=("127.0.0.1",))
    clients = [r.tba_audit["client"] for r in caplog.records if hasattr(r, "tba_audit")]
    assert clients == ["127.0.0.1", "198.51.100.7"]


def test_the_forwarded_for_client_is_the_nearest_untrusted_hop() -> None:
    header = oauth_header("GET", HTTP_URL)
    answer = run(
        make_settings(trusted_proxies=("127.0.0.1", "10.0.0.0/8")),
        scheme="http",
        client="127.0.0.1",
        headers=host_and(
            ("authorization", header), ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")
        ),
    )
    assert answer.status == 200
    assert answer.seen.client == "198.51.100.7"


# --- exempt paths and hosts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/public/../admin", b"/public/../admin"),
        ("/public/./x", b"/public/./x"),
        ("/public/../admin", b"/public%2F..%2Fadmin"),
        ("/public/..", b"/public/%2e%2e"),
        ("/public//admin", b"/public//admin"),
    ],
    ids=["dot-dot", "dot", "encoded-slash", "encoded-dots", "empty-segment"],
)
def test_a_path_a_router_could_normalise_is_never_exempt(path: str, raw_path: bytes) -> None:
    answer = run(make_settings(exempt_paths=["/public/"]), path=path, raw_path=raw_path)
    assert (answer.status, answer.code) == (401, "MissingRequiredParameter")
    assert answer.seen.calls == 0


def test_a_plain_path_under_an_exempt_prefix_is_exempt() -> None:
    answer = run(make_settings(exempt_paths=["/public/"]), path="/public/.well-known/x")
    assert answer.status == 200
    assert answer.seen.calls == 1


def test_a_request_for_a_host_outside_allowed_hosts_is_refused_before_any_check() -> None:
    """Signed for staging, replayed on production, which shares the integration records."""
    staging = "staging.example.com"
    header = oauth_header("GET", f"https://{staging}{PATH}")
    answer = run(
        make_settings(allowed_hosts=[HOST], feature_enabled=False),
        headers=[(b"host", staging.encode()), (b"authorization", header.encode())],
    )
    assert (answer.status, answer.code) == (400, "HostNotAllowed")


@pytest.mark.parametrize("allowed", [HOST, "*.restlets.example.com", "*"])
def test_an_allowed_host_goes_on_to_the_checks(allowed: str) -> None:
    answer = run(
        make_settings(allowed_hosts=[allowed]),
        headers=[(b"host", f"{HOST.upper()}:443".encode())],
    )
    assert (answer.status, answer.code) == (401, "MissingRequiredParameter")


def test_without_allowed_hosts_a_request_signed_for_its_host_header_verifies() -> None:
    """What `allowed_hosts` is for: without it any Host the client names is believed."""
    other = "staging.example.com"
    header = oauth_header("GET", f"https://{other}{PATH}")
    answer = run(
        make_settings(), headers=[(b"host", other.encode()), (b"authorization", header.encode())]
    )
    assert answer.status == 200


# --- the property: whenever the app runs, it reads what was verified ---------------------------

_names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_pairs = st.lists(st.tuples(_names, _names), max_size=4)


def _utf8_form(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs, quote_via=quote).encode()


def _raw_form(pairs: list[tuple[str, str]]) -> bytes:
    """The pairs written without escaping, as a careless client (or an attacker) writes them."""
    return "&".join(f"{name}={value}" for name, value in pairs).encode()


_bodies = {
    "same": lambda signed, other: _utf8_form(signed),
    "other": lambda signed, other: _utf8_form(other),
    "raw": lambda signed, other: _raw_form(signed),
    "latin1": lambda signed, other: urlencode(
        signed, encoding="latin-1", errors="replace"
    ).encode(),
    "empty": lambda signed, other: b"",
}
_content_types = st.lists(
    st.sampled_from(
        [
            FORM,
            "application/x-www-form-urlencoded; charset=utf-8",
            "APPLICATION/X-WWW-FORM-URLENCODED",
            '"application/x-www-form-urlencoded"',
            "text/plain",
            "application/json",
        ]
    ),
    min_size=0,
    max_size=2,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    signed=_pairs,
    other=_pairs,
    sent=st.sampled_from(sorted(_bodies)),
    sign_form=st.booleans(),
    hash_body=st.booleans(),
    content_types=_content_types,
)
def test_whenever_the_app_runs_it_reads_the_form_and_body_the_guard_verified(
    signed: list[tuple[str, str]],
    other: list[tuple[str, str]],
    sent: str,
    sign_form: bool,
    hash_body: bool,
    content_types: list[str],
) -> None:
    signed_body = _utf8_form(signed)
    body = _bodies[sent](signed, other)
    extra = {"oauth_body_hash": body_hash(signed_body)} if hash_body else None
    header = oauth_header(
        "POST", URL, body=signed_body.decode() if sign_form else "", form=sign_form, extra=extra
    )
    headers = host_and(("authorization", header), *(("content-type", t) for t in content_types))
    answer = run(make_settings(), method="POST", headers=headers, body=body)
    if answer.status != 200:
        assert answer.seen.calls == 0
        return
    verified_form = signed if sign_form else []
    assert sorted(answer.seen.form) == sorted(verified_form)
    if hash_body:
        assert answer.seen.body == signed_body
