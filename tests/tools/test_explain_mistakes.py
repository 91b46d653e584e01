"""The catalogue of client mistakes (tba_guard/diagnosis/mistakes.py), as `explain` uses it.

Every request here is signed by a deliberately faulty client built in this file from oauthlib's
signature primitives plus one mistake (or two), never by tba_guard's signer: explain must name
exactly that mistake. The raw-request input (`explain --raw`) is read from curl -v style text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import pytest
from oauthlib.common import urldecode
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from starlette.testclient import TestClient

from tba_guard import Guard, GuardSettings, Integration, TBAError, TBAGuardMiddleware, Token
from tba_guard.core.errors import ErrorCode
from tba_guard.diagnosis.mistakes import MISTAKES, PAIR_COUNT, SEARCHED
from tba_guard.tools.cli import main
from tba_guard.tools.explain import parse_raw_request, run_explain
from tests.support import BASE_URL, NOW, REALM, Clock, echo_app, fresh_nonce, oauth_header

CONSUMER_KEY = "ck-mistakes"
CONSUMER_SECRET = "cs-MISTAKES-consumer-secret-3K8"
TOKEN_ID = "tk-mistakes"
TOKEN_SECRET = "ts-MISTAKES-token-secret-5W1"
# Secrets with reserved characters, for the key that was not percent-encoded.
RESERVED_SECRETS = ("cs+MISTAKES/consumer=secret", "ts&MISTAKES token~secret")
ALL_SECRETS = (CONSUMER_SECRET, TOKEN_SECRET, *RESERVED_SECRETS)
RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"
FORM = "application/x-www-form-urlencoded"


def settings(secrets: tuple[str, str] = (CONSUMER_SECRET, TOKEN_SECRET), **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "realm": REALM,
        "integrations": [Integration(CONSUMER_KEY, secrets[0], name="Mistakes")],
        "tokens": [Token(TOKEN_ID, secrets[1], CONSUMER_KEY, entity="38", role="3")],
    }
    values.update(overrides)
    return GuardSettings(**values)


# --- a deliberately faulty client ---------------------------------------------------------------


@dataclass
class Signing:
    """What the faulty client signs; a fault changes it before the base string is built."""

    url: str  # the URL the request goes to
    method: str
    uri: str
    oauth: list[tuple[str, str]]
    query: list[tuple[str, str]]
    body: list[tuple[str, str]]
    body_text: str
    secrets: tuple[str, str]
    digest: str = "HMAC-SHA256"
    encode_key: bool = True
    normalize: Callable[[list[tuple[str, str]]], str] = field(
        default=oauth_signature.normalize_parameters
    )

    def raw_query(self) -> list[tuple[str, str]]:
        items = urlsplit(self.url).query.split("&")
        return [(n, v) for n, _, v in (item.partition("=") for item in items if item)]


Fault = Callable[[Signing], Signing]


def faulty_header(
    method: str,
    url: str,
    fault: Fault | None = None,
    *,
    body: str = "",
    form: bool = False,
    secrets: tuple[str, str] = (CONSUMER_SECRET, TOKEN_SECRET),
    realm: str = REALM,
    extra: dict[str, str] | None = None,
) -> str:
    """An Authorization value signed with oauthlib's base string and HMAC, after the fault."""
    nonce = fresh_nonce()
    oauth = [
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", nonce),
        ("oauth_timestamp", str(NOW)),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_token", TOKEN_ID),
        ("oauth_version", "1.0"),
        *(extra or {}).items(),
    ]
    query = urlsplit(url).query
    signing = Signing(
        url=url,
        method=method,
        uri=oauth_signature.base_string_uri(url),
        oauth=oauth,
        query=list(urldecode(query)) if query else [],
        body=list(urldecode(body)) if form and body else [],
        body_text=body,
        secrets=secrets,
    )
    if fault is not None:
        signing = fault(signing)
    params = signing.oauth + signing.query + signing.body
    base = oauth_signature.signature_base_string(
        signing.method, signing.uri, signing.normalize(params)
    )
    consumer_secret, token_secret = signing.secrets
    if signing.encode_key:
        sign = {
            "HMAC-SHA256": oauth_signature.sign_hmac_sha256_with_client,
            "HMAC-SHA1": oauth_signature.sign_hmac_sha1_with_client,
        }[signing.digest]
        client = SimpleNamespace(client_secret=consumer_secret, resource_owner_secret=token_secret)
        signature = sign(base, client)
    else:  # the mistake itself: the secrets joined as they are
        key = f"{consumer_secret}&{token_secret}".encode()
        name = {"HMAC-SHA256": "sha256", "HMAC-SHA1": "sha1"}[signing.digest]
        signature = base64.b64encode(hmac.digest(key, base.encode(), name)).decode()
    return oauth_header(
        method,
        url,
        consumer_key=CONSUMER_KEY,
        token=TOKEN_ID,
        nonce=nonce,
        realm=realm,
        extra=extra,
        signature=signature,
    )


def _pairs_renamed(pairs: list[tuple[str, str]], rename: Callable[[str, int], str]) -> list[Any]:
    counts, seen = Counter(n for n, _ in pairs), Counter[str]()
    out = []
    for name, value in pairs:
        if counts[name] > 1:
            out.append((rename(name, seen[name]), value))
            seen[name] += 1
        else:
            out.append((name, value))
    return out


def _collapsed(pairs: list[tuple[str, str]], last: bool) -> list[tuple[str, str]]:
    kept: dict[str, int] = {}
    for index, (name, _) in enumerate(pairs):
        if last or name not in kept:
            kept[name] = index
    return [pairs[i] for i in sorted(kept.values())]


def _unsorted_values(params: list[tuple[str, str]]) -> str:
    escaped = [(oauth_utils.escape(n), oauth_utils.escape(v)) for n, v in params]
    escaped.sort(key=lambda pair: pair[0])  # by name only: values stay in the order sent
    return "&".join(f"{n}={v}" for n, v in escaped)


def _utf8_twice(text: str) -> str:
    return text.encode().decode("latin-1")


def _port_url(port: str) -> str:
    return RESTLET.replace(".com/", f".com:{port}/")


@dataclass
class Case:
    method: str
    url: str
    fault: Fault | None = None
    body: str = ""
    content_type: str | None = None
    form: bool = False
    secrets: tuple[str, str] = (CONSUMER_SECRET, TOKEN_SECRET)
    realm: str = REALM
    extra: dict[str, str] | None = None
    config: dict[str, Any] = field(default_factory=dict)


REPEATED = f"{RESTLET}?tag=a&script=7&tag=b"
OTHER_BODY_HASH = base64.b64encode(hashlib.sha1(b"another body").digest()).decode()

#: One faulty client per mistake in the catalogue, by the mistake's name.
CASES: dict[str, Case] = {
    "body-hash-mismatch": Case(
        "POST",
        RESTLET,
        body='{"a": 1}',
        content_type="application/json",
        extra={"oauth_body_hash": OTHER_BODY_HASH},
    ),
    "names-encoded-twice": Case(
        "GET",
        f"{RESTLET}?tag%5B0%5D=a&script=7",
        lambda s: replace(s, query=[(n, unquote_plus(v)) for n, v in s.raw_query()]),
    ),
    "utf8-encoded-twice": Case(
        "GET",
        f"{RESTLET}?city=K%C3%B6ln&script=7",
        lambda s: replace(s, query=[(_utf8_twice(n), _utf8_twice(v)) for n, v in s.query]),
    ),
    "repeated-names-as-indexed-arrays": Case(
        "GET",
        REPEATED,
        lambda s: replace(s, query=_pairs_renamed(s.query, lambda n, i: f"{n}[{i}]")),
    ),
    "repeated-names-as-arrays": Case(
        "GET", REPEATED, lambda s: replace(s, query=_pairs_renamed(s.query, lambda n, i: f"{n}[]"))
    ),
    "array-brackets-dropped": Case(
        "GET",
        f"{RESTLET}?tag%5B%5D=a&tag%5B%5D=b&script=7",
        lambda s: replace(s, query=[(n.removesuffix("[]"), v) for n, v in s.query]),
    ),
    "repeated-names-first-value": Case(
        "GET", REPEATED, lambda s: replace(s, query=_collapsed(s.query, last=False))
    ),
    "repeated-names-last-value": Case(
        "GET", REPEATED, lambda s: replace(s, query=_collapsed(s.query, last=True))
    ),
    "repeated-values-unsorted": Case(
        "GET", f"{RESTLET}?tag=b&tag=a", lambda s: replace(s, normalize=_unsorted_values)
    ),
    "empty-items-signed": Case(
        "GET",
        f"{RESTLET}?script=7&&deploy=1&",
        lambda s: replace(s, query=[*s.query, *[("", "")] * 2]),
    ),
    "query-plus-literal": Case(
        "GET",
        f"{RESTLET}?q=a+b",
        lambda s: replace(s, query=[(unquote(n), unquote(v)) for n, v in s.raw_query()]),
    ),
    "space-as-plus": Case(
        "GET",
        f"{RESTLET}?q=a%20b",
        lambda s: replace(
            s, normalize=lambda p: oauth_signature.normalize_parameters(p).replace("%20", "+")
        ),
    ),
    "json-body-signed": Case(
        "POST",
        RESTLET,
        lambda s: replace(s, body=[(s.body_text, "")]),
        body='{"a":1}',
        content_type="application/json",
    ),
    "body-signed-not-form": Case(
        "POST", RESTLET, lambda s: replace(s, body=list(urldecode(s.body_text))), body="a=1&b=2"
    ),
    "form-body-unsigned": Case(
        "POST",
        RESTLET,
        lambda s: replace(s, body=[]),
        body="a=1&b=2",
        content_type=FORM,
        form=True,
    ),
    "query-unsigned": Case("GET", f"{RESTLET}?script=7&deploy=1", lambda s: replace(s, query=[])),
    "realm-signed": Case("GET", RESTLET, lambda s: replace(s, oauth=[*s.oauth, ("realm", REALM)])),
    "hmac-sha1-signed": Case("GET", RESTLET, lambda s: replace(s, digest="HMAC-SHA1")),
    # The client signed the URL it called; the server verifies public_url.
    "proxy-url-signed": Case(
        "GET", "http://10.0.0.7:8080/app/site/hosting/restlet.nl", config={"public_url": BASE_URL}
    ),
    "account-host": Case(
        "GET", RESTLET, lambda s: replace(s, uri=s.uri.replace("123456-sb1", "123456_sb1"))
    ),
    "path-encoded-differently": Case(
        "GET",
        f"{BASE_URL}/services/rest/record/v1/customer/a%3Ab",
        lambda s: replace(s, uri=unquote(s.uri)),
    ),
    "other-scheme": Case(
        "GET", RESTLET, lambda s: replace(s, uri=s.uri.replace("https://", "http://"))
    ),
    # oauthlib drops a default port, so the faulty client writes its URI by hand.
    "default-port-written": Case("GET", RESTLET, lambda s: replace(s, uri=_port_url("443"))),
    "port-left-out": Case("GET", _port_url("8443"), lambda s: replace(s, uri=RESTLET)),
    "other-method": Case("POST", RESTLET, lambda s: replace(s, method="GET")),
    "token-secret-left-out": Case("GET", RESTLET, lambda s: replace(s, secrets=(s.secrets[0], ""))),
    "secrets-swapped": Case(
        "GET", RESTLET, lambda s: replace(s, secrets=(s.secrets[1], s.secrets[0]))
    ),
    "secrets-not-encoded": Case(
        "GET", RESTLET, lambda s: replace(s, encode_key=False), secrets=RESERVED_SECRETS
    ),
    # Not signed, so found in the header: the realm with '-' for '_', in the wrong case.
    "realm-spelling": Case("GET", RESTLET, realm="123456-sb1"),
}


# --- running explain ----------------------------------------------------------------------------


def explain_case(case: Case) -> str:
    config = settings(case.secrets, **case.config)
    value = faulty_header(
        case.method,
        case.url,
        case.fault,
        body=case.body,
        form=case.form,
        secrets=case.secrets,
        realm=case.realm,
        extra=case.extra,
    )
    lines, accepted = run_explain(
        config, case.method, case.url, value, case.body, NOW, content_type=case.content_type
    )
    assert not accepted
    return checked("\n".join(lines))


def checked(text: str) -> str:
    for secret in ALL_SECRETS:
        assert secret not in text
    return text


def named(text: str) -> list[tuple[str, ...]]:
    """The mistakes explain names, in its order: one tuple per finding (two names for a pair)."""
    found = []
    for line in text.splitlines():
        label, colon, names = line.strip().partition(": ")
        if colon and label in ("Mistake", "Mistakes"):
            found.append(tuple(names.split(" + ")))
    return found


def test_every_mistake_in_the_catalogue_has_a_faulty_client_here() -> None:
    assert {mistake.name for mistake in MISTAKES} == set(CASES)
    assert len({mistake.name for mistake in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("name", list(CASES))
def test_a_faulty_client_is_diagnosed_with_its_mistake_alone(name: str) -> None:
    text = explain_case(CASES[name])
    assert named(text) == [(name,)]
    assert "no known client mistake" not in text


def test_a_realm_mistake_is_said_to_come_from_the_header_not_the_signature() -> None:
    text = explain_case(CASES["realm-spelling"])
    assert "Rejected: TokenRejected" in text
    assert "the realm is not signed" in text
    assert "Base string the server built" not in text  # the signature itself was right


@pytest.mark.parametrize(
    ("url", "faults", "pair"),
    [
        (  # one real library: repeated names collapsed, non-ASCII encoded twice
            f"{RESTLET}?tag=K%C3%B6ln&tag=Z%C3%BCrich&script=7",
            [
                lambda s: replace(s, query=_collapsed(s.query, last=False)),
                lambda s: replace(s, query=[(n, _utf8_twice(v)) for n, v in s.query]),
            ],
            {"repeated-names-first-value", "utf8-encoded-twice"},
        ),
        (
            f"{RESTLET}?script=7&",
            [
                lambda s: replace(s, query=[*s.query, ("", "")]),
                lambda s: replace(s, secrets=(s.secrets[0], "")),
            ],
            {"empty-items-signed", "token-secret-left-out"},
        ),
        (
            RESTLET,
            [lambda s: replace(s, uri=_port_url("80").replace("https://", "http://"))],
            {"other-scheme", "default-port-written"},
        ),
    ],
    ids=["collapsed-and-utf8-twice", "empty-item-and-no-token-secret", "http-with-port-80"],
)
def test_a_client_with_two_mistakes_is_diagnosed_with_the_pair(
    url: str, faults: list[Fault], pair: set[str]
) -> None:
    def both(signing: Signing) -> Signing:
        for fault in faults:
            signing = fault(signing)
        return signing

    text = explain_case(Case("GET", url, both))
    found = named(text)
    assert [set(names) for names in found] == [pair]
    cause = next(line for line in text.splitlines() if line.startswith("Likely cause: "))
    assert "; and " in cause  # both explanations, on one line


def test_single_mistakes_come_before_pairs_and_each_is_named_once() -> None:
    # Values collapsed to the only one there is: both 'first' and 'last' reproduce it alone.
    text = explain_case(
        Case("GET", f"{RESTLET}?tag=a&tag=a", lambda s: replace(s, query=s.query[:1]))
    )
    assert named(text) == [("repeated-names-first-value",), ("repeated-names-last-value",)]


def test_a_right_signature_with_wrong_secrets_is_the_honest_no_known_mistake() -> None:
    # Twenty query parameters with every feature a mistake looks for: still no false match.
    query = "&".join(
        [f"p{i}=v{i}" for i in range(12)]
        + ["tag=b", "tag=a", "city=K%C3%B6ln", "q=a+b", "n%5B0%5D=x", "s=a%20b", "x=", "y=1"]
    )
    url = f"{RESTLET}?{query}&"
    wrong = ("cs-some-other-consumer-secret", "ts-some-other-token-secret")
    value = faulty_header("GET", url, secrets=wrong)
    lines, _ = run_explain(settings(), "GET", url, value, "", NOW)
    text = checked("\n".join(lines))
    assert named(text) == []
    assert "Likely cause: no known client mistake reproduces the signature" in text
    assert f"Searched: {len(SEARCHED)} known mistakes and {PAIR_COUNT} pairs of them" in text


# --- development hints, and never on the verification path ------------------------------------


async def test_the_guard_never_runs_the_mistake_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the mistake search ran while verifying")

    monkeypatch.setattr("tba_guard.diagnosis.mistakes.search", refuse)
    monkeypatch.setattr("tba_guard.diagnosis.rejection.search", refuse)
    monkeypatch.setattr("tba_guard.diagnosis.hints.search", refuse)
    url = f"{RESTLET}?script=7"
    value = faulty_header("GET", url, CASES["query-unsigned"].fault)
    with pytest.raises(TBAError) as raised:
        await Guard(settings(), clock=Clock()).verify_request("GET", url, {"Authorization": value})
    assert raised.value.code is ErrorCode.INVALID_SIGNATURE
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings(), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(url, headers={"Authorization": value})
    assert response.json()["error"]["code"] == "InvalidSignature"


def test_development_hints_from_the_middleware_name_the_clients_mistake() -> None:
    url = f"{RESTLET}?script=7"
    value = faulty_header("GET", url, CASES["query-unsigned"].fault)
    app = TBAGuardMiddleware(
        echo_app(), guard=Guard(settings(development_hints=True), clock=Clock())
    )
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(url, headers={"Authorization": value})
    error = response.json()["error"]
    assert error["code"] == "InvalidSignature"
    assert "query-unsigned" in error["hint"]


# --- raw requests ---------------------------------------------------------------------------------

CURL_V = """\
*   Trying 203.0.113.7:443...
* Connected to 123456-sb1.restlets.example.com (203.0.113.7) port 443
> POST /app/site/hosting/restlet.nl?script=7&deploy=1 HTTP/1.1\r
> Host: 123456-sb1.restlets.example.com\r
> User-Agent: curl/8.5.0\r
> Accept: */*\r
> Authorization: {header}\r
> Content-Type: application/json\r
> Content-Length: 8\r
> \r
}} [8 bytes data]
* upload completely sent off: 8 bytes
< HTTP/1.1 401 Unauthorized\r
< Content-Type: application/json\r
<\r
{{"error": {{"code": "InvalidSignature"}}}}
"""


def test_a_curl_verbose_request_is_read_with_its_headers_and_without_curl_noise() -> None:
    raw = parse_raw_request(CURL_V.format(header='OAuth realm="x"'))
    assert raw.method == "POST"
    assert raw.url == f"{RESTLET}?script=7&deploy=1"
    assert raw.headers == (
        ("Host", "123456-sb1.restlets.example.com"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
        ("Authorization", 'OAuth realm="x"'),
        ("Content-Type", "application/json"),
        ("Content-Length", "8"),
    )
    assert raw.body == ""  # curl -v does not print the body, and the response is not it
    assert raw.notes == (
        "the body given is 0 bytes, Content-Length says 8 (curl -v does not print the body: "
        "paste it after the blank '>' line)",
        "the scheme is https (--scheme to change it)",
    )


def test_a_proxy_log_request_with_lf_an_absolute_url_and_a_body_is_read() -> None:
    text = (
        "POST http://api.example.com/x?a=1 HTTP/1.1\nHost: api.example.com\n"
        "Content-Type: application/x-www-form-urlencoded\nContent-Length: 7\n\nb=2&c=3\n"
    )
    raw = parse_raw_request(text)
    assert (raw.method, raw.url, raw.body, raw.notes) == (
        "POST",
        "http://api.example.com/x?a=1",
        "b=2&c=3",
        (),
    )


@pytest.mark.parametrize(
    "text",
    ["", "hello world\n", "GET\n", "GET /x HTTP/1.1\n", "GET /x HTTP/1.1\nno colon here\n\n"],
    ids=["empty", "no-request-line", "no-target", "no-host", "bad-header"],
)
def test_text_that_is_no_request_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"request line|Host|header line"):
        parse_raw_request(text)


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "tba.toml"
    config.write_text(
        f'[guard]\nrealm = "{REALM}"\n\n[[integrations]]\nconsumer_key = "{CONSUMER_KEY}"\n'
        f'consumer_secret = "{CONSUMER_SECRET}"\n\n[[tokens]]\ntoken_id = "{TOKEN_ID}"\n'
        f'token_secret = "{TOKEN_SECRET}"\nconsumer_key = "{CONSUMER_KEY}"\n'
    )
    return config


def test_explain_raw_reads_a_pasted_curl_request_and_names_the_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{RESTLET}?script=7&deploy=1"
    value = faulty_header("POST", url, CASES["query-unsigned"].fault)
    request = tmp_path / "request.txt"
    request.write_text(CURL_V.format(header=value))
    config = write_config(tmp_path)

    code = main(["explain", "--config", str(config), "--raw", str(request), "--now", str(NOW)])

    out = checked(capsys.readouterr().out)
    assert code == 1
    assert f"Request: POST {url}" in out
    assert named(out) == [("query-unsigned",)]


def test_explain_raw_reads_standard_input_and_accepts_a_good_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{RESTLET}?script=7"
    body = "a=1&b=2"
    value = faulty_header("POST", url, body=body, form=True)
    text = (
        f"POST /app/site/hosting/restlet.nl?script=7 HTTP/1.1\r\n"
        f"Host: 123456-sb1.restlets.example.com\r\nAuthorization: {value}\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n\r\n{body}\r\n"
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    config = write_config(tmp_path)

    code = main(["explain", "--config", str(config), "--raw", "-", "--now", str(NOW)])

    out = checked(capsys.readouterr().out)
    assert code == 0, out
    assert f"Body: 7 bytes, Content-Type {FORM}" in out


@pytest.mark.parametrize(
    "extra",
    [["GET", RESTLET], ["--header", "OAuth a"], ["--content-type", FORM]],
    ids=["method-and-url", "header", "content-type"],
)
def test_explain_raw_with_other_request_arguments_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    request = tmp_path / "request.txt"
    request.write_text("GET / HTTP/1.1\nHost: x\n\n")
    assert main(["explain", "--raw", str(request), *extra]) == 2
    assert "--raw holds the whole request" in capsys.readouterr().err


def test_explain_without_raw_or_a_request_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", "GET", RESTLET]) == 2
    assert "or the whole request with --raw FILE" in capsys.readouterr().err


def test_explain_raw_of_text_that_is_no_request_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.txt"
    request.write_text("this is not a request\n")
    assert main(["explain", "--raw", str(request)]) == 2
    assert "not a request line" in capsys.readouterr().err
