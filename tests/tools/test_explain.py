"""`tba-guard explain` (`tba_guard.tools.explain.run_explain`): verdicts, codes, fixes, pitfalls.

Each pitfall test builds the request the way a client that makes that mistake builds it, signed
with oauthlib's functions (never tba_guard's), and checks that explain names that cause and no
other. The secrets are distinctive, and no line explain prints may contain them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from starlette.testclient import TestClient

from tba_guard import Guard, GuardSettings, Integration, TBAError, TBAGuardMiddleware, Token
from tba_guard.core.errors import ErrorCode
from tba_guard.diagnosis.causes import CAUSES
from tba_guard.tools.explain import explain as explain_request
from tba_guard.tools.explain import run_explain
from tests.support import BASE_URL, NOW, REALM, Clock, echo_app, oauth_header

CONSUMER_KEY = "ck-explain"
CONSUMER_SECRET = "cs-EXPLAIN-consumer-secret-7Q2"
TOKEN_ID = "tk-explain"
TOKEN_SECRET = "ts-EXPLAIN-token-secret-9Z4"
SECRETS = (CONSUMER_SECRET, TOKEN_SECRET)
RESTLET = f"{BASE_URL}/app/site/hosting/restlet.nl"
FORM = "application/x-www-form-urlencoded"


def settings(**overrides: Any) -> GuardSettings:
    values: dict[str, Any] = {
        "realm": REALM,
        "integrations": [
            Integration(CONSUMER_KEY, CONSUMER_SECRET, name="Explain"),
            Integration("ck-blocked", "cs-BLOCKED-secret", state="blocked"),
        ],
        "tokens": [
            Token(TOKEN_ID, TOKEN_SECRET, CONSUMER_KEY, entity="38", role="3"),
            Token("tk-inactive", "ts-INACTIVE-secret", CONSUMER_KEY, active=False),
        ],
    }
    values.update(overrides)
    return GuardSettings(**values)


def header(method: str, url: str, **kwargs: Any) -> str:
    kwargs.setdefault("consumer_key", CONSUMER_KEY)
    kwargs.setdefault("consumer_secret", CONSUMER_SECRET)
    kwargs.setdefault("token", TOKEN_ID)
    kwargs.setdefault("token_secret", TOKEN_SECRET)
    return oauth_header(method, url, **kwargs)


def mistaken_signature(
    method: str,
    signed_url: str,
    nonce: str,
    extra_signed: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    signature_method: str = "HMAC-SHA256",
    normalize: Any = None,
) -> str:
    """A signature over a base string a client got wrong: extra pairs, another normalization."""
    pairs = [
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", nonce),
        ("oauth_timestamp", str(NOW)),
        ("oauth_signature_method", signature_method),
        ("oauth_token", TOKEN_ID),
        ("oauth_version", "1.0"),
        *extra_signed,
    ]
    normalized = (normalize or oauth_signature.normalize_parameters)(pairs)
    base = oauth_signature.signature_base_string(
        method, oauth_signature.base_string_uri(signed_url), normalized
    )
    return oauth_signature.sign_hmac_sha256_with_client(
        base, SimpleNamespace(client_secret=CONSUMER_SECRET, resource_owner_secret=TOKEN_SECRET)
    )


def explain(
    method: str,
    url: str,
    value: str,
    body: str = "",
    *,
    content_type: str | None = None,
    config: GuardSettings | None = None,
    now: float = NOW,
) -> tuple[str, bool]:
    lines, accepted = run_explain(
        config or settings(), method, url, value, body, now, content_type=content_type
    )
    text = "\n".join(lines)
    for secret in (*SECRETS, "cs-BLOCKED-secret", "ts-INACTIVE-secret"):
        assert secret not in text
    return text, accepted


def causes(text: str) -> list[str]:
    return [
        line.removeprefix("Likely cause: ") for line in text.splitlines() if "Likely cause" in line
    ]


def verdicts(text: str) -> dict[str, str]:
    """Check number -> verdict, from the fixed columns of lines like `   5. InvalidTimestamp  ok`"""
    found = {}
    for line in text.splitlines():
        number, dot, _ = line[:6].strip().partition(".")
        if dot and number.replace("-", "").isdigit():
            result = line[47:]
            found[number] = "not run" if result.startswith("not run") else result.split()[0]
    return found


# --- verdicts and codes ------------------------------------------------------------------------


def test_an_acceptable_request_is_ok_at_every_check_and_accepted() -> None:
    url = f"{RESTLET}?script=1&deploy=1"
    text, accepted = explain("GET", url, header("GET", url))
    assert accepted
    found = verdicts(text)
    assert [found[str(n)] for n in range(1, 11)] == ["ok"] * 10
    assert found["12"] == "not run"  # the claim: explain never writes a store
    assert "Accepted" in text
    assert "Rejected:" not in text


def test_explain_never_touches_the_configured_replay_store() -> None:
    # Nothing listens on port 1: a guard that used this store would answer 503.
    config = settings(replay_store="redis://127.0.0.1:1/0")
    url = f"{RESTLET}?script=1"
    value = header("GET", url)
    assert explain("GET", url, value, config=config)[1]
    assert explain("GET", url, value, config=config)[1]  # the same header again: no history


def test_verdicts_are_printed_in_the_order_of_the_spec() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET))
    numbers = [n for n in verdicts(text) if n.isdigit()]
    assert numbers == [str(n) for n in range(1, 13)]


def test_a_rejection_names_the_code_the_reason_and_the_fix() -> None:
    text, accepted = explain("GET", RESTLET, header("GET", RESTLET, version="2.0"))
    assert not accepted
    assert "Rejected: VersionRejected (HTTP 400)" in text
    assert "Reason: oauth_version is not 1.0" in text
    assert f"Fix: {CAUSES[ErrorCode.VERSION_REJECTED].fix}" in text


def test_later_checks_still_run_after_the_deciding_failure() -> None:
    # A ms timestamp decides (step 5), and the wrong secret shows up at step 10 as well.
    value = header("GET", RESTLET, timestamp=NOW * 1000, token_secret="not-the-secret")
    text, _ = explain("GET", RESTLET, value)
    found = verdicts(text)
    assert found["5"] == "InvalidTimestamp"
    assert found["10"] == "InvalidSignature"
    assert "Rejected: InvalidTimestamp" in text
    assert "Base string the server built" in text


BENT: dict[str, dict[str, Any]] = {
    "no header": {"value": None},
    "not oauth": {"value": "Basic dXNlcjpwYXNz"},
    "absent nonce": {"drop": ("oauth_nonce",)},
    "version": {"version": "1.1"},
    "sha1": {"signature_method": "HMAC-SHA1"},
    "old timestamp": {"timestamp": NOW - 3600},
    "short nonce": {"nonce": "abc"},
    "unknown key": {"consumer_key": "ck-nobody"},
    "blocked": {"consumer_key": "ck-blocked", "consumer_secret": "cs-BLOCKED-secret"},
    "unknown token": {"token": "tk-nobody"},
    "inactive": {"token": "tk-inactive", "token_secret": "ts-INACTIVE-secret"},
    "bad signature": {"consumer_secret": "wrong"},
    "other realm": {"realm": "999999"},
}


@pytest.mark.parametrize("bend", BENT, ids=list(BENT))
async def test_explain_decides_the_code_the_guard_decides(bend: str) -> None:
    options = dict(BENT[bend])
    value = options.pop("value") if "value" in options else header("GET", RESTLET, **options)
    config = settings()
    headers = {"Authorization": value} if value is not None else {}
    with pytest.raises(TBAError) as raised:
        await Guard(config, clock=Clock()).verify_request("GET", RESTLET, headers)
    # The command line always passes a header; an empty one stands for none.
    lines, accepted = await explain_request(config, "GET", RESTLET, value or "", "", NOW)
    assert not accepted
    assert f"Rejected: {raised.value.code.value} (HTTP " in "\n".join(lines)


def test_feature_disabled_is_the_first_verdict() -> None:
    text, accepted = explain(
        "GET", RESTLET, header("GET", RESTLET), config=settings(feature_enabled=False)
    )
    assert not accepted
    assert verdicts(text)["1"] == "FeatureDisabled"


def test_opaque_mode_still_explains_the_specific_code() -> None:
    value = header("GET", RESTLET, consumer_key="ck-nobody")
    text, _ = explain("GET", RESTLET, value, config=settings(error_detail="opaque"))
    assert "Rejected: UnknownIntegration" in text
    assert "opaque mode" in text


def test_a_url_without_a_host_is_rejected_with_a_reason() -> None:
    text, accepted = explain("GET", "/no/host", header("GET", RESTLET))
    assert not accepted
    assert "the URL cannot be used" in text


# --- content type --------------------------------------------------------------------------------


def test_without_a_content_type_the_body_is_not_signed_and_explain_says_so() -> None:
    body = "a=1&b=2"
    value = header("POST", RESTLET)  # signed without the body: right for a body that is no form
    text, accepted = explain("POST", RESTLET, value, body)
    assert accepted
    assert "no Content-Type given, so not signed" in text


def test_an_explicit_form_content_type_signs_the_body() -> None:
    body = "a=1&b=2"
    value = header("POST", RESTLET, body=body, form=True)
    text, accepted = explain("POST", RESTLET, value, body, content_type=FORM)
    assert accepted
    assert f"Content-Type {FORM} (from --content-type)" in text


# --- the known pitfalls --------------------------------------------------------------------------


def test_hmac_sha1_left_as_the_client_default_is_named() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, signature_method="HMAC-SHA1"))
    assert "Rejected: UnknownAlgorithm" in text
    assert causes(text) == ["HMAC-SHA1 was left as the client library's default"]


def test_a_sha1_signature_under_a_sha256_name_is_named() -> None:
    nonce = "nonce-sha1-named-256"
    signed = header("GET", RESTLET, nonce=nonce, signature_method="HMAC-SHA1")
    sha1 = signed.split('oauth_signature="')[1].split('"')[0]
    from urllib.parse import unquote

    value = header("GET", RESTLET, nonce=nonce, signature=unquote(sha1))
    text, _ = explain("GET", RESTLET, value)
    assert "Rejected: InvalidSignature" in text
    assert len(causes(text)) == 1
    assert "HMAC-SHA1" in causes(text)[0]


def test_a_timestamp_in_milliseconds_is_named() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, timestamp=NOW * 1000 + 123))
    assert causes(text) == ["the timestamp is in milliseconds"]


def test_a_header_reused_from_an_earlier_request_is_named_by_its_age() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, timestamp=NOW - 900))
    assert "Rejected: InvalidTimestamp" in text
    assert causes(text) == [
        "the header was reused from an earlier request: its signature is right, but it was "
        "made 900 s ago"
    ]


def test_a_header_signed_for_another_method_is_named_as_reused() -> None:
    text, _ = explain("POST", RESTLET, header("GET", RESTLET))
    assert causes(text) == [
        "the header was signed for a GET request: reused from an earlier request"
    ]


def test_a_client_clock_that_is_off_is_named_when_the_signature_is_wrong_too() -> None:
    value = header("GET", RESTLET, timestamp=NOW + 1000, consumer_secret="other")
    text, _ = explain("GET", RESTLET, value)
    assert causes(text)[0] == "the client's clock is 1000 s ahead of the server's"


@pytest.mark.parametrize("realm", ["123456_sb1", "123456-SB1", "123456-sb1"])
def test_a_realm_in_the_wrong_case_or_with_a_dash_is_named(realm: str) -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, realm=realm))
    assert "Rejected: TokenRejected" in text
    assert causes(text) == [
        f"the realm {realm!r} is the account ID in the wrong case or with '-' for '_'"
    ]
    assert f'send realm="{REALM}" exactly' in text


def test_query_parameters_left_out_of_the_signature_are_named() -> None:
    url = f"{RESTLET}?script=12&deploy=1"
    text, _ = explain("GET", url, header("GET", RESTLET))
    assert "Rejected: InvalidSignature" in text
    assert causes(text) == ["the query parameters were left out of the signature"]


def test_query_parameters_put_into_the_header_are_named() -> None:
    # The client put script=12 into the header and signed it once; the URL carries it too.
    url = f"{RESTLET}?script=12"
    value = header("GET", RESTLET, extra={"script": "12"})
    text, _ = explain("GET", url, value)
    assert "Rejected: MissingRequiredParameter" in text
    assert causes(text) == [
        "query parameters (script) were put into the Authorization header as well as the URL"
    ]


def test_a_plus_signed_literally_in_the_query_is_named() -> None:
    signed_as = f"{RESTLET}?q=a%2Bb"  # the client took '+' for a plus sign
    text, _ = explain("GET", f"{RESTLET}?q=a+b", header("GET", signed_as))
    assert causes(text) == [
        "a '+' in the query string was signed as a plus sign, but in a query it means a space"
    ]


def test_a_space_encoded_as_plus_in_the_base_string_is_named() -> None:
    nonce = "nonce-plus-for-space"

    def plus_normalize(pairs: list[tuple[str, str]]) -> str:
        return oauth_signature.normalize_parameters(pairs).replace("%20", "+")

    url = f"{RESTLET}?q=a%20b"
    signature = mistaken_signature("GET", RESTLET, nonce, [("q", "a b")], normalize=plus_normalize)
    text, _ = explain("GET", url, header("GET", url, nonce=nonce, signature=signature))
    assert causes(text) == ["a space was encoded as '+' in the base string"]


def test_a_client_behind_a_proxy_that_signed_the_internal_url_is_named() -> None:
    internal = "http://10.0.0.7:8080/app/site/hosting/restlet.nl"
    config = settings(public_url=BASE_URL)
    text, _ = explain("GET", internal, header("GET", internal), config=config)
    assert "public_url is set: the server verifies" in text
    assert causes(text) == [
        f"the client signed the URL {internal} but the server verifies {RESTLET} "
        "(a proxy in between, or another scheme, host or port)"
    ]


def test_a_client_that_signed_http_for_an_https_url_is_named() -> None:
    signed_as = RESTLET.replace("https://", "http://")
    text, _ = explain("GET", RESTLET, header("GET", signed_as))
    assert len(causes(text)) == 1
    assert causes(text)[0].startswith(f"the client signed the URL {signed_as} ")


def test_a_signed_json_body_is_named() -> None:
    nonce = "nonce-json-signed"
    body = '{"a":1}'
    signature = mistaken_signature("POST", RESTLET, nonce, [(body, "")])
    value = header("POST", RESTLET, nonce=nonce, signature=signature)
    text, _ = explain("POST", RESTLET, value, body, content_type="application/json")
    assert causes(text) == ["the JSON body was signed"]


def test_a_body_signed_as_a_form_without_the_form_content_type_is_named() -> None:
    body = "a=1&b=2"
    value = header("POST", RESTLET, body=body, form=True)
    text, _ = explain("POST", RESTLET, value, body)
    assert causes(text) == [
        "the body was signed as form parameters, but the request does not say it is a form"
    ]


def test_a_form_body_that_was_not_signed_is_named() -> None:
    body = "a=1&b=2"
    text, _ = explain("POST", RESTLET, header("POST", RESTLET), body, content_type=FORM)
    assert causes(text) == ["the form body was not signed"]


def test_a_signed_realm_is_named() -> None:
    nonce = "nonce-realm-signed"
    signature = mistaken_signature("GET", RESTLET, nonce, [("realm", REALM)])
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, nonce=nonce, signature=signature))
    assert causes(text) == ["the realm was signed"]


def test_a_token_secret_left_out_or_swapped_is_named() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, token_secret=""))
    assert causes(text) == ["the token secret was left out of the key"]
    swapped = header("GET", RESTLET, consumer_secret=TOKEN_SECRET, token_secret=CONSUMER_SECRET)
    text, _ = explain("GET", RESTLET, swapped)
    assert causes(text) == ["the consumer secret and the token secret were swapped"]


def test_a_body_hash_that_does_not_match_the_body_is_named() -> None:
    value = header("POST", RESTLET, extra={"oauth_body_hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk="})
    text, _ = explain("POST", RESTLET, value, '{"changed": true}', content_type="application/json")
    assert len(causes(text)) == 1
    assert causes(text)[0].startswith("the signature is right but oauth_body_hash does not match")


def test_a_signature_no_pitfall_explains_says_so_and_prints_the_base_string() -> None:
    text, _ = explain("GET", RESTLET, header("GET", RESTLET, consumer_secret="another-secret"))
    assert causes(text)[0].startswith("no known client mistake reproduces the signature")
    base = next(line for line in text.splitlines() if line.startswith("Base string"))
    assert base.endswith("oauth_version%3D1.0")
    assert "GET&https%3A%2F%2F123456-sb1.restlets.example.com" in base


def test_duplicated_protocol_parameters_in_the_query_are_named() -> None:
    url = f"{RESTLET}?oauth_nonce=abcdefgh"
    text, _ = explain("GET", url, header("GET", url))
    assert "Rejected: MissingRequiredParameter" in text
    assert causes(text) == [
        "protocol parameters (oauth_nonce) were sent in the query or body as well as in the header"
    ]


# --- secrets -------------------------------------------------------------------------------------


def test_plaintext_signatures_which_are_the_secrets_are_never_printed() -> None:
    config = settings(signature_methods=["PLAINTEXT", "HMAC-SHA256"])
    good = header("GET", RESTLET, signature_method="PLAINTEXT")
    assert explain("GET", RESTLET, good, config=config)[1]  # the helper checks for the secrets
    over_http = RESTLET.replace("https://", "http://")
    text, accepted = explain("GET", over_http, good, config=config)
    assert not accepted
    assert "Rejected: UnknownAlgorithm" in text
    wrong = header("GET", RESTLET, signature_method="PLAINTEXT", token_secret="")
    text, accepted = explain("GET", RESTLET, wrong, config=config)
    assert not accepted
    assert causes(text) == ["the token secret was left out of the key"]


# --- development hints ------------------------------------------------------------------------


def hinted(value: str, **overrides: Any) -> dict[str, str]:
    app = TBAGuardMiddleware(echo_app(), guard=Guard(settings(**overrides), clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(RESTLET, headers={"Authorization": value})
    for secret in SECRETS:
        assert secret not in response.text
    error: dict[str, str] = response.json()["error"]
    return error


def test_development_hints_are_off_by_default() -> None:
    assert GuardSettings().development_hints is False
    assert "hint" not in hinted(header("GET", RESTLET, version="2"))


def test_a_development_hint_is_one_line_with_the_reason_and_the_fix() -> None:
    error = hinted(header("GET", RESTLET, timestamp=NOW * 1000), development_hints=True)
    assert error["code"] == "InvalidTimestamp"
    assert error["hint"].startswith("not a decimal number of seconds; send the current time")
    assert "\n" not in error["hint"]


def test_a_development_hint_for_a_bad_signature_carries_the_server_base_string() -> None:
    error = hinted(header("GET", RESTLET, token_secret="wrong"), development_hints=True)
    assert error["code"] == "InvalidSignature"
    assert "the server's base string: GET&https%3A%2F%2F123456-sb1" in error["hint"]


def test_opaque_mode_never_carries_a_hint() -> None:
    value = header("GET", RESTLET, token_secret="wrong")
    error = hinted(value, development_hints=True, error_detail="opaque")
    assert error == {"code": "INVALID_LOGIN_ATTEMPT", "message": "Invalid login attempt."}


def test_development_hints_come_from_every_settings_source(tmp_path: Any) -> None:
    assert GuardSettings.from_env({"TBA_GUARD_DEVELOPMENT_HINTS": "true"}).development_hints
    config = tmp_path / "tba.toml"
    config.write_text("[guard]\ndevelopment_hints = true\n")
    assert GuardSettings.from_toml(config).development_hints


# --- hostile arguments ------------------------------------------------------------------------


argument = st.text(max_size=60) | st.binary(max_size=60).map(
    lambda raw: raw.decode("utf-8", "surrogateescape")  # what argv holds for non-UTF-8 bytes
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    url_tail=argument,
    value=argument | st.builds(lambda v: header("GET", RESTLET) + v, argument),
    body=argument,
    content_type=st.sampled_from([None, FORM, "application/json"]),
    public=st.booleans(),
)
def test_explain_answers_any_arguments_with_printable_lines_and_no_secret(
    url_tail: str, value: str, body: str, content_type: str | None, public: bool
) -> None:
    config = settings(public_url=BASE_URL) if public else settings()
    text, accepted = explain(
        "POST", f"{BASE_URL}/{url_tail}", value, body, content_type=content_type, config=config
    )
    assert not accepted
    assert "Rejected" in text
    assert all(line.isprintable() for line in text.splitlines())
    text.encode("utf-8")  # printable to any UTF-8 terminal


@pytest.mark.parametrize("timestamp", ["9" * 5000, str(2**64), "0", "-1", "１７００００００００"])
def test_huge_or_malformed_timestamps_are_explained_not_crashed_on(timestamp: str) -> None:
    config = settings(header_max_length=20_000)
    text, accepted = explain(
        "GET", RESTLET, header("GET", RESTLET, timestamp=timestamp), config=config
    )
    assert not accepted
    assert "Rejected: InvalidTimestamp (HTTP 400)" in text
