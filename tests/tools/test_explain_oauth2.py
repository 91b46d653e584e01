"""`tba-guard explain` on OAuth 2.0: bearer tokens on protected resources and the token
endpoint's client credentials grant, each verdict and the diagnosis, and the development hints.

Every token and assertion here is really signed (PyJWT, tests/support/oauth2.py), the way a
client or another service would sign it; explain must name what is wrong from the verdict of
the guard's own checks and what the token says, and never print the token, the assertion or a
signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from starlette.testclient import TestClient

from tba_guard import Guard, GuardSettings, TBAError, TBAGuardMiddleware
from tba_guard.core.errors import ErrorCode
from tba_guard.core.oauth2 import AccessTokens
from tba_guard.core.records import Certificate, Integration
from tba_guard.core.request import request_from_url
from tba_guard.diagnosis.causes import CAUSES
from tba_guard.diagnosis.hints import development_hint
from tba_guard.tools.cli import main
from tba_guard.tools.explain import explain as explain_request
from tba_guard.tools.explain import run_explain
from tests.support import BASE_URL, NOW, REALM, Clock, echo_app
from tests.support.oauth2 import (
    CLIENT_ID,
    EC_CERTIFICATE_ID,
    REST_PATH,
    RESTLET_PATH,
    RSA_CERTIFICATE_ID,
    TOKEN_PATH,
    TOKEN_URL,
    assertion,
    certificate_pem,
    ec_key,
    guard_key,
    oauth2_settings,
    private_pem,
    rsa_key,
    token_form,
)
from tests.support.signing import CONSUMER_KEY, CONSUMER_SECRET

FORM = "application/x-www-form-urlencoded"
RESTLET = f"{BASE_URL}{RESTLET_PATH}"
REST = f"{BASE_URL}{REST_PATH}"
HMAC_SECRET = "hs-EXPLAIN-shared-secret-0123456789abcdef"


# --- helpers --------------------------------------------------------------------------------------


def access_token(
    scopes: tuple[str, ...] = ("restlets", "rest_webservices"),
    *,
    issued: float = NOW,
    config: GuardSettings | None = None,
) -> str:
    """An access token as the guard (with `config`'s key, issuer and audience) issues it."""
    config = config or oauth2_settings()
    mapping = next(c for c in config.certificates if c.certificate_id == RSA_CERTIFICATE_ID)
    return AccessTokens(config).issue(mapping, scopes, issued)


def secret_parts(token: str) -> list[str]:
    """What no output may hold: the token, its payload and its signature (each long enough to
    be the token's own); the header alone is public knowledge (alg, kid)."""
    parts = token.split(".")
    if len(parts) != 3:
        return [token]
    return [part for part in (token, parts[1], parts[2]) if len(part) > 8]


def checked(text: str, *tokens: str) -> str:
    for token in tokens:
        for part in secret_parts(token):
            assert part not in text
    for secret in (CONSUMER_SECRET, HMAC_SECRET, "PRIVATE KEY"):
        assert secret not in text
    return text


def explain_bearer(
    url: str, token: str, *, config: GuardSettings | None = None, now: float = NOW
) -> tuple[str, bool]:
    lines, accepted = run_explain(
        config or oauth2_settings(), "GET", url, f"Bearer {token}", "", now
    )
    return checked("\n".join(lines), token), accepted


def explain_grant(
    client_assertion: str,
    *,
    config: GuardSettings | None = None,
    url: str = TOKEN_URL,
    now: float = NOW,
    **form: str,
) -> tuple[str, bool]:
    body = urlencode(token_form(client_assertion, **form))
    lines, accepted = run_explain(
        config or oauth2_settings(), "POST", url, "", body, now, content_type=FORM
    )
    return checked("\n".join(lines), client_assertion), accepted


def verdicts(text: str) -> dict[str, str]:
    """Check number -> verdict, from the fixed columns of lines like `   5. invalid_client  ok`"""
    found = {}
    for line in text.splitlines():
        number, dot, _ = line[:6].strip().partition(".")
        if dot and number.replace("-", "").isdigit():
            result = line[47:]
            found[number] = "not run" if result.startswith("not run") else result.split()[0]
    return found


def causes(text: str) -> list[str]:
    prefix = "Likely cause: "
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def fixes(text: str) -> list[str]:
    return [line.strip().removeprefix("Fix: ") for line in text.splitlines() if "Fix: " in line]


def resigned(token: str, key: Any, algorithm: str = "PS256") -> str:
    """The token's header and claims signed again by another key: the same kid, a forgery."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": header["kid"]})


# --- bearer tokens ----------------------------------------------------------------------------


def test_a_good_bearer_token_is_ok_at_every_check_and_accepted() -> None:
    token = access_token()
    text, accepted = explain_bearer(RESTLET, token)
    assert accepted
    assert verdicts(text) == {"1": "ok", "2": "ok", "3": "ok"}
    assert "Accepted: the bearer token passes every check." in text
    assert "Bearer token, read without verifying (never printed): alg 'PS256', typ 'JWT'" in text
    assert "client_id 'client-order-sync', certificate_id 'cert-rsa-3072'" in text


def test_an_expired_bearer_token_says_when_it_expired() -> None:
    token = access_token(issued=NOW - 3600 - 310)  # lived its hour, 310 s ago
    text, accepted = explain_bearer(RESTLET, token)
    assert not accepted
    assert verdicts(text) == {"1": "InvalidBearerToken", "2-3": "not run"}
    assert "Rejected: InvalidBearerToken (HTTP 401)" in text
    assert "Reason: the access token expired" in text
    assert causes(text) == ["the access token expired: exp 2023-11-14T22:08:10Z, 310 s ago"]
    assert fixes(text) == [CAUSES["bearer-expired"].fix]


def test_a_bearer_token_for_another_audience_names_both() -> None:
    other = oauth2_settings(oauth2_audience="another-service")
    text, _ = explain_bearer(RESTLET, access_token(config=other))
    assert verdicts(text)["1"] == "InvalidBearerToken"
    assert causes(text) == [
        "the token's aud is 'another-service', expected '123456_SB1' (oauth2_audience, else "
        "the realm)"
    ]


def test_a_bearer_token_whose_key_was_rotated_out_names_the_kid() -> None:
    token = access_token()  # signed by the guard's RSA key
    rotated = oauth2_settings(oauth2_signing_keys=[private_pem(ec_key("secp384r1"))])
    text, _ = explain_bearer(RESTLET, token, config=rotated)
    kid = jwt.get_unverified_header(token)["kid"]
    assert verdicts(text)["1"] == "InvalidBearerToken"
    assert "Reason: kid names none of the guard's keys" in text
    [cause] = causes(text)
    assert cause.startswith(f"kid '{kid}' names none of the guard's keys: the key that signed")
    assert "rotated out of oauth2_signing_keys" in cause
    assert fixes(text) == [CAUSES["bearer-unknown-kid"].fix]


def test_a_bearer_token_resigned_by_another_key_is_a_bad_signature() -> None:
    forged = resigned(access_token(("restlets",)), rsa_key())
    text, _ = explain_bearer(RESTLET, forged)
    assert verdicts(text)["1"] == "InvalidBearerToken"
    assert "Reason: access token: signature does not verify" in text
    [cause] = causes(text)
    assert cause.startswith("the token's signature does not verify under the guard's key")


def test_a_bearer_token_short_of_the_routes_scope_names_the_scope_needed() -> None:
    token = access_token(("rest_webservices",))
    text, accepted = explain_bearer(RESTLET, token)
    assert not accepted
    assert verdicts(text) == {"1": "ok", "2": "ok", "3": "InsufficientScope"}
    assert "Rejected: InsufficientScope (HTTP 403)" in text
    assert causes(text) == [
        f"the route '{RESTLET_PATH}' needs the restlets scope (oauth2_route_scopes); the token "
        "has rest_webservices"
    ]
    assert fixes(text)[0].startswith("request a token with the restlets scope")
    assert explain_bearer(REST, token)[1]  # the same token suits REST web services


def test_a_bearer_token_of_a_blocked_integration_names_the_client() -> None:
    token = access_token()
    blocked = oauth2_settings(
        integrations=[
            Integration(CONSUMER_KEY, CONSUMER_SECRET, client_id=CLIENT_ID, state="blocked")
        ]
    )
    text, _ = explain_bearer(RESTLET, token, config=blocked)
    assert verdicts(text)["2"] == "InvalidBearerToken"
    assert causes(text)[0].startswith(
        "the integration of the token's client ID 'client-order-sync'"
    )


def test_a_bearer_token_of_a_revoked_mapping_names_the_mapping() -> None:
    token = access_token()
    config = oauth2_settings()
    revoked = [
        Certificate(c.certificate_id, c.client_id, c.entity, c.role, c.certificate, "revoked")
        for c in config.certificates
    ]
    text, _ = explain_bearer(RESTLET, token, config=oauth2_settings(certificates=revoked))
    assert verdicts(text)["2"] == "InvalidBearerToken"
    assert causes(text) == ["the mapping 'cert-rsa-3072' that the token was issued for is revoked"]


async def test_explain_decides_the_code_the_guard_decides_for_a_bearer_token() -> None:
    config = oauth2_settings()
    token = access_token(("rest_webservices",))
    headers = {"Authorization": f"Bearer {token}"}
    with pytest.raises(TBAError) as raised:
        await Guard(config, clock=Clock()).verify_request("GET", RESTLET, headers)
    lines, _ = await explain_request(config, "GET", RESTLET, f"Bearer {token}", "", NOW)
    assert f"Rejected: {raised.value.code.value} (HTTP 403)" in lines


def test_a_bearer_token_while_oauth2_is_off_says_so_and_runs_tbas_checks() -> None:
    token = access_token()
    config = oauth2_settings(oauth2_signing_keys=[])
    text, accepted = explain_bearer(RESTLET, token, config=config)
    assert not accepted
    assert (
        "Note: the Authorization header is a Bearer token, but OAuth 2.0 is off "
        "(no oauth2_signing_keys): TBA's checks run on it"
    ) in text
    assert verdicts(text)["2"] == "MissingRequiredParameter"
    assert causes(text)[-1].startswith("OAuth 2.0 is off: no oauth2_signing_keys")


def test_an_unreadable_bearer_token_is_described_not_printed() -> None:
    text, _ = explain_bearer(RESTLET, "not-a-jwt-at-all")
    assert "Bearer token, read without verifying (never printed): cannot be read" in text
    assert verdicts(text)["1"] == "InvalidBearerToken"
    assert causes(text)[0].startswith("the Authorization header holds no readable JWT")
    assert "not-a-jwt-at-all" not in text


# --- the token endpoint --------------------------------------------------------------------------


def test_a_good_assertion_is_ok_but_the_replay_check_is_not_run() -> None:
    signed = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    text, accepted = explain_grant(signed)
    assert accepted
    found = verdicts(text)
    assert [found[str(n)] for n in range(1, 11)] == ["ok"] * 10
    assert found["11"] == "not run"
    assert "explain never writes to a store" in text
    assert "explain cannot know whether it was used before" in text
    assert explain_grant(signed)[1]  # the same assertion again: explain keeps no history


def test_a_replayed_assertion_cannot_be_known_and_explain_says_so() -> None:
    # Rejected for its scope, so the conclusion says what check 11 could not tell.
    signed = assertion(rsa_key(), RSA_CERTIFICATE_ID, scope="restlets,inventory")
    text, _ = explain_grant(signed)
    assert verdicts(text)["11"] == "not run"
    assert (
        "Note: check 11 (the assertion is used once) is not run: explain never writes to a "
        "store, so it cannot know whether this assertion was used before"
    ) in text


def test_an_unsigned_assertion_alg_none_is_named() -> None:
    unsigned = assertion(None, RSA_CERTIFICATE_ID, algorithm="none")
    text, accepted = explain_grant(unsigned)
    assert not accepted
    assert verdicts(text)["4"] == "invalid_client"
    assert "Rejected: invalid_client (HTTP 400)" in text
    assert "Reason: alg 'none' is not accepted" in text
    assert causes(text) == ["the assertion is unsigned: alg none"]
    assert fixes(text)[0].startswith("sign the assertion with the mapping's private key")


def test_an_hmac_signed_assertion_is_named() -> None:
    hmac_signed = assertion(HMAC_SECRET, RSA_CERTIFICATE_ID, algorithm="HS256")
    text, _ = explain_grant(hmac_signed)
    assert verdicts(text)["4"] == "invalid_client"
    assert causes(text) == [
        "the assertion is signed with 'HS256', an HMAC over a shared secret: client "
        "assertions are signed with the certificate's private key"
    ]


def test_an_assertion_living_more_than_an_hour_is_named() -> None:
    long_lived = assertion(rsa_key(), RSA_CERTIFICATE_ID, lifetime=7200)
    text, _ = explain_grant(long_lived)
    assert verdicts(text)["9"] == "invalid_grant"
    assert "Reason: exp is more than 60 minutes after iat" in text
    assert causes(text) == ["exp is 7200 s after iat: more than 60 minutes"]
    assert fixes(text) == ["set exp at most 3600 s (60 minutes) after iat"]


def test_an_expired_assertion_says_when_it_expired() -> None:
    stale = assertion(rsa_key(), RSA_CERTIFICATE_ID, now=NOW - 900)  # lived 300 s, 600 ago
    text, _ = explain_grant(stale)
    assert verdicts(text)["9"] == "invalid_grant"
    assert causes(text) == ["the assertion expired: exp 2023-11-14T22:03:20Z, 600 s ago"]
    assert "exp 2023-11-14T22:03:20Z, 600 s ago" in text  # in what the assertion says, too


def test_an_assertion_with_an_unknown_scope_names_it() -> None:
    text, _ = explain_grant(assertion(rsa_key(), RSA_CERTIFICATE_ID, scope="restlets,inventory"))
    assert verdicts(text)["10"] == "invalid_scope"
    assert "Rejected: invalid_scope (HTTP 400)" in text
    assert causes(text) == [
        "the scope 'inventory' is unknown: the scopes are restlets and rest_webservices"
    ]


def test_an_assertion_whose_kid_is_no_mapping_names_the_kid() -> None:
    text, _ = explain_grant(assertion(rsa_key(), "thumbprint-of-my-key"))
    assert verdicts(text)["5"] == "invalid_client"
    assert verdicts(text)["6-11"] == "not run"
    assert causes(text) == [
        "kid 'thumbprint-of-my-key' is not a mapping: no certificate ID is 'thumbprint-of-my-key'"
    ]


def test_an_assertion_for_another_audience_names_both_urls() -> None:
    internal = "http://10.0.0.7:8080/services/rest/auth/oauth2/v1/token"
    text, _ = explain_grant(assertion(rsa_key(), RSA_CERTIFICATE_ID, audience=internal))
    assert verdicts(text)["8"] == "invalid_grant"
    assert causes(text) == [f"aud is '{internal}', expected '{TOKEN_URL}'"]
    [fix] = fixes(text)
    assert "https://<host>/services/rest/auth/oauth2/v1/token" in fix
    assert "public_url" in fix


def test_an_assertion_signed_by_another_key_and_for_another_issuer_names_each() -> None:
    # The RSA mapping's kid, signed by the EC key; then by an RSA key that is not the mapping's.
    text, _ = explain_grant(assertion(ec_key(), RSA_CERTIFICATE_ID, algorithm="ES256"))
    assert verdicts(text)["5"] == "invalid_client"  # ES256 does not fit an RSA certificate
    assert causes(text) == [
        "alg 'ES256' does not fit the key of the certificate of the mapping 'cert-rsa-3072'"
    ]
    wrong_key = assertion(rsa_key(4096), RSA_CERTIFICATE_ID, issuer=CONSUMER_KEY)
    text, _ = explain_grant(wrong_key)
    assert verdicts(text)["6"] == "invalid_client"
    assert causes(text) == [
        "the assertion's signature does not verify under the certificate of the mapping "
        "'cert-rsa-3072': it was signed with another private key"
    ]


def test_an_assertion_iss_other_than_the_client_id_names_both() -> None:
    text, _ = explain_grant(assertion(ec_key(), EC_CERTIFICATE_ID, algorithm="ES256", issuer="x"))
    assert verdicts(text)["7"] == "invalid_client"
    assert causes(text) == [
        "iss is 'x', expected 'client-order-sync': the client ID of mapping 'cert-ec-p256'"
    ]


def test_another_grant_type_is_named() -> None:
    signed = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    text, _ = explain_grant(signed, grant_type="authorization_code")
    assert verdicts(text)["2"] == "unsupported_grant_type"
    assert causes(text)[0].startswith("grant_type is 'authorization_code': only client_credentials")


def test_several_problems_of_one_assertion_show_at_once_in_the_order_of_the_checks() -> None:
    internal = "https://internal.example/token"
    both = assertion(rsa_key(), RSA_CERTIFICATE_ID, audience=internal, lifetime=7200)
    text, _ = explain_grant(both)
    assert (verdicts(text)["8"], verdicts(text)["9"]) == ("invalid_grant", "invalid_grant")
    assert "Reason: aud is not this token endpoint's URL" in text
    assert causes(text) == [
        f"aud is '{internal}', expected '{TOKEN_URL}'",
        "exp is 7200 s after iat: more than 60 minutes",
    ]


def test_a_token_request_that_is_no_form_says_how_to_send_one() -> None:
    signed = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    body = urlencode(token_form(signed))
    lines, _ = run_explain(oauth2_settings(), "POST", TOKEN_URL, "", body, NOW)
    text = checked("\n".join(lines), signed)
    assert verdicts(text)["1"] == "invalid_request"
    assert causes(text) == [
        "the token request is not a POST of an application/x-www-form-urlencoded form"
    ]
    assert "--content-type application/x-www-form-urlencoded" in fixes(text)[0]


def test_a_token_request_while_oauth2_is_off_says_so() -> None:
    signed = assertion(rsa_key(), RSA_CERTIFICATE_ID)
    config = oauth2_settings(oauth2_signing_keys=[])
    text, accepted = explain_grant(signed, config=config)
    assert not accepted
    assert (
        f"Note: {TOKEN_PATH} is the OAuth 2.0 token endpoint's path, but OAuth 2.0 is off" in text
    )
    assert causes(text)[-1].startswith("OAuth 2.0 is off: no oauth2_signing_keys")


# --- through the command line ---------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    """The suite's OAuth 2.0 settings as a settings file: the guard's key, one integration with
    its client ID, the RSA mapping."""
    config = tmp_path / "tba.toml"
    certificate = certificate_pem(rsa_key())
    config.write_text(
        f'[guard]\nrealm = "{REALM}"\npublic_url = "{BASE_URL}"\n\n'
        f"[oauth2]\noauth2_signing_keys = ['''{private_pem(guard_key())}''']\n\n"
        f'[[integrations]]\nconsumer_key = "{CONSUMER_KEY}"\n'
        f'consumer_secret = "{CONSUMER_SECRET}"\nclient_id = "{CLIENT_ID}"\n\n'
        f'[[certificates]]\ncertificate_id = "{RSA_CERTIFICATE_ID}"\nclient_id = "{CLIENT_ID}"\n'
        f"entity = \"38\"\nrole = \"3\"\ncertificate = '''{certificate}'''\n"
    )
    return config


def test_the_command_explains_a_bearer_token_short_of_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = access_token(("rest_webservices",))
    config = write_config(tmp_path)
    arguments = ["explain", "--config", str(config), "GET", RESTLET, "--header", f"Bearer {token}"]

    code = main([*arguments, "--now", str(NOW)])

    out = checked(capsys.readouterr().out, token)
    assert code == 1
    assert verdicts(out)["3"] == "InsufficientScope"
    assert "needs the restlets scope (oauth2_route_scopes)" in out


def test_the_command_explains_an_unsigned_assertion_and_accepts_a_good_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    for signed, expected in [
        (assertion(None, RSA_CERTIFICATE_ID, algorithm="none"), 1),
        (assertion(rsa_key(), RSA_CERTIFICATE_ID), 0),
    ]:
        body = urlencode(token_form(signed))
        code = main(
            [
                # No --header: the token endpoint's request carries its assertion in the form.
                *("explain", "--config", str(config), "POST", TOKEN_URL),
                *("--body", body, "--content-type", FORM, "--now", str(NOW)),
            ]
        )
        out = checked(capsys.readouterr().out, signed)
        assert code == expected, out
    assert "Accepted: the token request passes every check explain runs" in out


# --- development hints ---------------------------------------------------------------------------


def test_a_development_hint_for_a_bearer_token_names_the_cause_and_never_the_token() -> None:
    token = access_token(("rest_webservices",))
    config = oauth2_settings(development_hints=True)
    app = TBAGuardMiddleware(echo_app(), guard=Guard(config, clock=Clock()))
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get(RESTLET, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "InsufficientScope"
    assert error["hint"].startswith(
        "this path needs the restlets scope; likely cause: the route "
        f"'{RESTLET_PATH}' needs the restlets scope"
    )
    assert "\n" not in error["hint"]
    checked(response.text, token)


@pytest.mark.parametrize(
    ("signed", "code", "reason", "cause"),
    [
        (
            lambda: assertion(None, RSA_CERTIFICATE_ID, algorithm="none"),
            ErrorCode.INVALID_CLIENT,
            "alg 'none' is not accepted",
            "assertion-alg-none",
        ),
        (
            lambda: assertion(rsa_key(), RSA_CERTIFICATE_ID, lifetime=7200),
            ErrorCode.INVALID_GRANT,
            "exp is more than 60 minutes after iat",
            "assertion-too-long",
        ),
        (
            lambda: assertion(rsa_key(), RSA_CERTIFICATE_ID),
            ErrorCode.INVALID_GRANT,
            "the assertion was used before (its jti or signature)",
            "assertion-replayed",
        ),
    ],
    ids=["alg-none", "too-long", "replayed"],
)
def test_a_development_hint_for_the_token_endpoint_gives_the_cause_and_its_fix(
    signed: Any, code: ErrorCode, reason: str, cause: str
) -> None:
    client_assertion = signed()
    body = urlencode(token_form(client_assertion))
    request = request_from_url("POST", TOKEN_URL, {"Content-Type": FORM}, body)
    hint = development_hint(TBAError(code, reason), request, settings=oauth2_settings(), now=NOW)
    assert hint.startswith(f"{reason}; likely cause: ")
    assert CAUSES[cause].fix in hint
    checked(hint, client_assertion)


@pytest.mark.parametrize("code", sorted(ErrorCode))
def test_every_code_has_a_one_line_development_hint(code: ErrorCode) -> None:
    request = request_from_url("GET", RESTLET, {"Authorization": "Bearer abc.def.ghi"})
    hint = development_hint(TBAError(code, "why"), request, settings=oauth2_settings(), now=NOW)
    assert hint.startswith("why; ")
    assert CAUSES[code].fix in hint
    assert "\n" not in hint


def test_the_migration_codes_point_to_the_move_to_oauth2() -> None:
    for code in (ErrorCode.TBA_NOT_ALLOWED, ErrorCode.TBA_BROWNOUT):
        assert "docs/oauth2.md" in CAUSES[code].fix
