"""Hostile input: property-based tests over the header parser and the whole middleware.

Whatever arrives (generated headers, paths, queries, bodies, chunkings, parameter mixes, in
code and opaque mode, with a healthy or a failing replay store), the guard must answer: no
exception escapes, no 5xx but the replay store's 503, every rejection carries a catalog code in
a well-formed response, and the application never sees a rejected request. Requests signed
correctly (by oauthlib) are accepted, so the properties are not met by refusing everything.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tba_guard import ErrorCode, Guard, TBAError
from tba_guard.core.errors import OPERATIONAL_CODES
from tba_guard.core.header import parse_authorization
from tests.support import (
    APP_STATUS,
    BASE_URL,
    NOW,
    TOKEN_ID,
    Clock,
    CountingCredentials,
    FailingStore,
    Outcome,
    Request,
    count_signatures,
    drive,
    make_settings,
    oauth_header,
)

FORM = "application/x-www-form-urlencoded"
CATALOG_CODES = {code.value for code in ErrorCode}
OPAQUE_CODES = {"INVALID_LOGIN_ATTEMPT", "INVALID_REQUEST"}
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- what every answer keeps (the middleware is driven by tests.support.drive) ----------------


def assert_well_formed(outcome: Outcome, *, opaque: bool) -> None:
    """The invariants every answer keeps, accepted or rejected."""
    for name, value in outcome.headers:
        assert not CONTROL.search(name + value), (name, value)  # no header injection
    if outcome.status == APP_STATUS:
        assert outcome.app_calls == 1
        return
    assert outcome.app_calls == 0  # the app never sees a rejected request
    assert outcome.status < 500 or outcome.status == 503, outcome.status
    assert outcome.header(b"content-type") == b"application/json"
    assert outcome.header(b"cache-control") == b"no-store"
    code = outcome.error["code"]
    assert outcome.error["message"]
    if outcome.status == 503:
        assert code in {"ReplayStoreUnavailable", "CredentialStoreUnavailable"}
        assert outcome.header(b"retry-after") is not None
    elif opaque and code not in {c.value for c in OPERATIONAL_CODES}:
        assert code in OPAQUE_CODES
    else:
        assert code in CATALOG_CODES
    if code not in {c.value for c in OPERATIONAL_CODES}:
        assert outcome.header(b"www-authenticate") is not None


# --- strategies -----------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
protocol_names = st.sampled_from(
    [
        "oauth_consumer_key",
        "oauth_token",
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_version",
        "oauth_body_hash",
    ]
)
# A quarter of the names are protocol parameters (a duplicate, once in the header too).
names = (
    st.sampled_from(["realm", "script", "deploy", "a", "a b", ""]) | text | text | protocol_names
)
pairs = st.lists(st.tuples(names, text), max_size=6)
mutations = st.sampled_from(
    [
        "none",
        "drop",
        "duplicate",
        "signature",
        "value",
        "truncate",
        "raw-bytes",
        "scheme-case",
        "spaces",
        "twice",
    ]
)


def encode_pairs(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in items)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)] or [b""]


def mutate(value: str, how: str, data: st.DataObject) -> tuple[str, list[str]]:
    """Bend a signed header; return it and any additional Authorization values."""
    if how == "drop":
        parts = value.removeprefix("OAuth ").split(", ")
        parts.pop(data.draw(st.integers(0, len(parts) - 1)))
        return "OAuth " + ", ".join(parts), []
    if how == "duplicate":
        parts = value.removeprefix("OAuth ").split(", ")
        return "OAuth " + ", ".join([*parts, data.draw(st.sampled_from(parts))]), []
    if how == "signature":
        return re.sub(r'oauth_signature="[^"]{4}', 'oauth_signature="AAAA', value), []
    if how == "value":
        name = data.draw(st.sampled_from(re.findall(r'(\w+)="', value)))
        new = data.draw(text)
        return re.sub(rf'{name}="[^"]*"', f'{name}="{quote(new, safe="")}"', value), []
    if how == "truncate":
        return value[: data.draw(st.integers(0, len(value)))], []
    if how == "raw-bytes":
        at = data.draw(st.integers(0, len(value)))
        junk = data.draw(st.binary(max_size=6)).decode("latin-1")
        return value[:at] + junk + value[at:], []
    if how == "scheme-case":
        return "oAuTh" + value[5:], []
    if how == "spaces":
        return value.replace(", ", " ,\t "), []
    if how == "twice":
        return value, [value]
    return value, []


# --- the header parser --------------------------------------------------------------------------


def parse_or_refusal(value: str) -> dict[str, str] | TBAError:
    try:
        return parse_authorization(value)
    except TBAError as error:
        return error


@PROPERTY
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_the_header_parser_returns_parameters_or_refuses_with_a_catalog_code(value: str) -> None:
    parsed = parse_or_refusal(value)
    if isinstance(parsed, TBAError):
        assert parsed.code is ErrorCode.MISSING_REQUIRED_PARAMETER
        assert parsed.status == 400
        return
    assert value.strip(" \t")[:5].lower() == "oauth"
    assert len(parsed) <= 32


@PROPERTY
@given(st.lists(st.tuples(text, text), max_size=40), st.sampled_from([", ", ",", " ,\t"]))
def test_a_header_written_by_the_rules_parses_back_to_its_parameters(
    items: list[tuple[str, str]], separator: str
) -> None:
    value = "OAuth " + separator.join(
        f'{quote(name, safe="")}="{quote(v, safe="")}"' for name, v in items
    )
    names_sent = [name for name, _ in items]
    parsed = parse_or_refusal(value)
    if isinstance(parsed, TBAError):
        # Refused only for a reason the rules give: a name twice, an empty name, a NUL,
        # too many parameters or too long a header.
        assert (
            len(set(names_sent)) < len(names_sent)
            or "" in names_sent
            or any("\x00" in n + v for n, v in items)
            or len(items) > 32
            or len(value) > 4096
        ), parsed.reason
        return
    assert parsed == dict(items)


@PROPERTY
@given(st.binary(max_size=200))
def test_percent_escapes_that_are_not_utf8_or_decode_to_nul_are_refused(raw: bytes) -> None:
    escaped = "".join(f"%{byte:02X}" for byte in raw)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    value = f'OAuth oauth_nonce="{escaped}"'
    if decoded is None or "\x00" in decoded:
        refusal = parse_or_refusal(value)
        assert isinstance(refusal, TBAError)
        assert refusal.parameters_rejected == ("oauth_nonce",)
    else:
        assert parse_authorization(value) == {"oauth_nonce": decoded}


# --- the whole middleware -------------------------------------------------------------------------


@PROPERTY
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.lists(st.text("abcXYZ019-._~é ", max_size=6), max_size=3),
    query=pairs,
    body_pairs=pairs,
    content_type=st.sampled_from([FORM, "application/json", None, "FORM; charset=x"]),
    mutation=mutations,
    opaque=st.booleans(),
    broken_store=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=4),
    nonce=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=24),
    data=st.data(),
)
def test_the_middleware_answers_everything_with_a_catalog_code_or_the_app(
    method: str,
    path: list[str],
    query: list[tuple[str, str]],
    body_pairs: list[tuple[str, str]],
    content_type: str | None,
    mutation: str,
    opaque: bool,
    broken_store: bool,
    cuts: list[int],
    nonce: str,
    data: st.DataObject,
) -> None:
    raw_path = "/" + "/".join(quote(segment, safe="") for segment in path)
    query_string = encode_pairs(query)
    body = encode_pairs(body_pairs)
    url = f"{BASE_URL}{raw_path}" + (f"?{query_string}" if query_string else "")
    form = content_type is not None and content_type.lower().startswith(FORM)
    try:
        value = oauth_header(method, url, body=body, form=form, nonce=nonce)
    except ValueError:  # oauthlib will not sign some parameter mixes; send garbage instead
        value, mutation = "OAuth " + body, "none"
    value, more = mutate(value, mutation, data)
    headers = [(b"authorization", v.encode("latin-1", "replace")) for v in [value, *more]]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    request = Request(method, raw_path.encode(), query_string.encode(), headers)
    request.chunks = split(body.encode(), cuts)
    config = make_settings(error_detail="opaque" if opaque else "code")
    store = FailingStore() if broken_store else None
    outcome = asyncio.run(drive(request, config, replay_store=store))
    event(f"{mutation}: {outcome.status}")
    assert_well_formed(outcome, opaque=opaque)
    if outcome.status == 503:
        assert broken_store
    oauth_twice = any(n.startswith("oauth_") or n == "realm" for n, _ in query + body_pairs)
    if mutation == "none" and not broken_store and not oauth_twice:
        # Correctly signed (a duplicated non-oauth name is refused only when it is also in
        # the header, which the signer never does): accepted, body intact.
        assume(not any(n in ("oauth_body_hash",) for n, _ in query + body_pairs))
        assert outcome.status == APP_STATUS, outcome.body
        assert outcome.app_body == body.encode()


@PROPERTY
@given(
    raw_path=st.binary(min_size=1, max_size=40).map(lambda b: b"/" + b),
    query=st.binary(max_size=80),
    authorization=st.one_of(st.none(), st.binary(max_size=200)),
    extra=st.lists(
        st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=30)), max_size=4
    ),
    body=st.binary(max_size=200),
    method=st.sampled_from(["GET", "POST", "get", "PROPFIND", ""]),
    opaque=st.booleans(),
)
def test_raw_bytes_anywhere_never_escape_as_an_exception_or_a_5xx(
    raw_path: bytes,
    query: bytes,
    authorization: bytes | None,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
    method: str,
    opaque: bool,
) -> None:
    headers = [(name.lower(), value) for name, value in extra]
    if authorization is not None:
        headers.append((b"authorization", b"OAuth " + authorization))
    headers.append((b"content-type", FORM.encode()))
    request = Request(method, raw_path, query, headers, [body])
    config = make_settings(error_detail="opaque" if opaque else "code")
    outcome = asyncio.run(drive(request, config))
    assert_well_formed(outcome, opaque=opaque)
    assert outcome.status != APP_STATUS  # nothing here is signed


def test_a_crlf_in_a_rejected_parameter_name_cannot_inject_a_response_header() -> None:
    # `%0D%0A` decodes to CR LF; the name goes into oauth_parameters_rejected.
    value = 'OAuth a%0D%0ASet-Cookie%3A%20x="1", a%0D%0ASet-Cookie%3A%20x="2"'
    request = Request(headers=[(b"authorization", value.encode())])
    outcome = asyncio.run(drive(request, make_settings()))
    assert outcome.error["code"] == "MissingRequiredParameter"
    challenge = outcome.header(b"www-authenticate")
    assert challenge is not None
    assert b"\r" not in challenge
    assert b"\n" not in challenge
    assert b'oauth_parameters_rejected="a%0D%0ASet-Cookie' in challenge
    assert all(name != b"set-cookie" for name, _ in outcome.headers)


def test_a_correctly_signed_request_with_every_kind_of_parameter_is_accepted() -> None:
    """The positive control of the properties above, spelled out once."""
    query = encode_pairs([("a b", "é&="), ("", "x"), ("k", ""), ("k", "2")])
    body = encode_pairs([("z", "1"), ("a b", "+")])
    url = f"{BASE_URL}/p%20q/r?{query}"
    value = oauth_header("POST", url, body=body, form=True)
    request = Request(
        "POST",
        b"/p%20q/r",
        query.encode(),
        [(b"authorization", value.encode()), (b"content-type", FORM.encode())],
        split(body.encode(), [3, 7]),
    )
    outcome = asyncio.run(drive(request, make_settings()))
    assert outcome.status == APP_STATUS
    assert outcome.app_body == body.encode()


# --- opaque mode: equal work whether or not a consumer key exists -----------------------------


OPAQUE_401S = {
    "unknown consumer key": ({"consumer_key": "ck-nobody"}, "UnknownIntegration"),
    "bad signature": ({"consumer_secret": "not-the-secret"}, "InvalidSignature"),
    "blocked integration": (
        {
            "consumer_key": "ck-blocked",
            "consumer_secret": "cs-blocked-integration",
            "token": "tk-blocked",
        },
        "IntegrationBlocked",
    ),
    "unknown token": ({"token": "tk-nobody"}, "TokenRejected"),
    "inactive entity": (
        {"token": "tk-inactive", "token_secret": "ts-inactive-token-secret"},
        "EntityOrRoleDisabled",
    ),
}


@pytest.mark.parametrize("case", OPAQUE_401S, ids=list(OPAQUE_401S))
async def test_in_opaque_mode_every_credential_rejection_costs_the_same_work(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted, not timed: one integration lookup, one token lookup and one HMAC, whichever
    of the credential checks fails, so timing cannot tell an unknown key from a known one."""
    overrides, expected = OPAQUE_401S[case]
    settings = make_settings(error_detail="opaque")
    credentials = CountingCredentials(settings)
    guard = Guard(settings, credentials=credentials, clock=Clock())
    value = oauth_header("GET", f"{BASE_URL}/x", **overrides)
    signs = count_signatures(monkeypatch)  # after signing: the client's HMAC is not counted
    with pytest.raises(TBAError) as raised:
        await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    assert raised.value.code.value == expected
    assert credentials.lookups == Counter({"integration": 1, "token": 1})
    assert credentials.tokens_asked == [overrides.get("token", TOKEN_ID)]  # a real lookup
    assert signs == [32]  # one HMAC-SHA256


async def test_in_opaque_mode_a_store_failing_during_the_equal_work_keeps_the_real_code() -> None:
    """The verdict is decided before the equal work: a lookup done only to cost the same time
    must not turn an UnknownIntegration into an unhandled error."""

    class TokenLookupFails(CountingCredentials):
        async def token(self, token_id: str) -> Any:
            raise ConnectionError("token table down")

    settings = make_settings(error_detail="opaque")
    guard = Guard(settings, credentials=TokenLookupFails(settings), clock=Clock())
    value = oauth_header("GET", f"{BASE_URL}/x", consumer_key="ck-nobody")
    with pytest.raises(TBAError) as raised:
        await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    assert raised.value.code is ErrorCode.UNKNOWN_INTEGRATION


async def test_in_code_mode_an_unknown_key_is_refused_without_the_dummy_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wire says UnknownIntegration anyway, so the guard spends nothing more on it."""
    settings = make_settings()
    credentials = CountingCredentials(settings)
    guard = Guard(settings, credentials=credentials, clock=Clock())
    value = oauth_header("GET", f"{BASE_URL}/x", consumer_key="ck-nobody")
    signs = count_signatures(monkeypatch)
    with pytest.raises(TBAError) as raised:
        await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    assert (raised.value.code, raised.value.status) == (ErrorCode.UNKNOWN_INTEGRATION, 401)
    assert credentials.lookups == Counter({"integration": 1})
    assert signs == []


OPAQUE_BEFORE_CREDENTIALS = {
    "wrong version": ({"version": "2.0"}, "VersionRejected"),
    "stale timestamp": ({"timestamp": NOW - 3600}, "InvalidTimestamp"),
    "short nonce": ({"nonce": "n1"}, "NonceRejected"),
}


@pytest.mark.parametrize("case", OPAQUE_BEFORE_CREDENTIALS, ids=list(OPAQUE_BEFORE_CREDENTIALS))
async def test_in_opaque_mode_a_request_refused_before_the_lookups_costs_none(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks 1 to 7 read only the request, so their refusals reveal no key or token: the
    equal work is for credential rejections, and a malformed flood must not reach the store."""
    overrides, expected = OPAQUE_BEFORE_CREDENTIALS[case]
    settings = make_settings(error_detail="opaque")
    credentials = CountingCredentials(settings)
    guard = Guard(settings, credentials=credentials, clock=Clock())
    value = oauth_header("GET", f"{BASE_URL}/x", **overrides)
    signs = count_signatures(monkeypatch)
    with pytest.raises(TBAError) as raised:
        await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    assert raised.value.code.value == expected
    assert credentials.lookups == Counter()
    assert signs == []


async def test_in_opaque_mode_a_replayed_nonce_costs_no_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(error_detail="opaque")
    credentials = CountingCredentials(settings)
    guard = Guard(settings, credentials=credentials, clock=Clock())
    value = oauth_header("GET", f"{BASE_URL}/x")
    await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    credentials.lookups.clear()
    signs = count_signatures(monkeypatch)
    with pytest.raises(TBAError) as raised:
        await guard.verify_request("GET", f"{BASE_URL}/x", {"Authorization": value})
    assert raised.value.code is ErrorCode.NONCE_USED
    assert credentials.lookups == Counter()
    assert signs == []
