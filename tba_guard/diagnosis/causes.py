"""Every likely cause of a rejection and its fix, in one table, each fix written once: what
`explain` and the development hints suggest. The core says which code applies, never why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..core.errors import ErrorCode, TBAError

_C = ErrorCode


@dataclass(frozen=True, slots=True)
class Advice:
    """One fix and what it answers: causes, by name (each with what went wrong, one line), and
    the codes it is the fix for when nothing more specific is known.

    Texts may name fields the diagnosis fills in: `{uri}`, `{method}` (what the client
    signed), `{server_uri}`, `{header_method}`, `{realm}`, `{configured}`, `{parameters}`,
    `{age}`, `{offset}`, `{direction}`, `{tolerance}`, `{skew}`, `{account}`,
    `{host}`; and OAuth 2.0's (`diagnosis/oauth2.py`)
    `{kid}`, `{alg}`, `{sent}`, `{expected}`, `{exp}`, `{span}`, `{scope}`, `{scopes}`,
    `{path}`, `{client_id}`.
    """

    fix: str
    causes: Mapping[str, str] = field(default_factory=dict)
    codes: tuple[ErrorCode, ...] = ()


@dataclass(frozen=True, slots=True)
class Cause:
    """One entry of `CAUSES`. A code's own entry has no explanation: its reason is one."""

    name: str
    explanation: str
    fix: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely cause found in one request, its fields filled in. `names` are the catalogued
    mistakes it is (two for a pair), none for a cause found otherwise."""

    explanation: str
    fix: str
    names: tuple[str, ...] = ()
    note: str = ""


_ALSO_SIGNED = "the client signed the URL {uri} but the server verifies {server_uri}"

ADVICE: Final = (
    # --- the codes' own fixes, and the causes that share them ---------------------------------
    Advice("switch feature_enabled on in the guard's settings", codes=(_C.FEATURE_DISABLED,)),
    Advice(
        "send one 'Authorization: OAuth ...' header with every required oauth_* parameter "
        'exactly once, each as name="percent-encoded value", and oauth_* parameters '
        "nowhere else (not in the query or the body)",
        codes=(_C.MISSING_REQUIRED_PARAMETER,),
    ),
    Advice('send oauth_version="1.0" or leave it out', codes=(_C.VERSION_REJECTED,)),
    Advice(
        "configure the client to sign with HMAC-SHA256 "
        "(oauthlib/requests-oauthlib: signature_method=SIGNATURE_HMAC_SHA256)",
        {
            "hmac-sha1-default": "HMAC-SHA1 was left as the client library's default",
            "hmac-sha1-signed": "the client signed with HMAC-SHA1 (a library default) while "
            "the header names {header_method}",
        },
        codes=(_C.UNKNOWN_ALGORITHM,),
    ),
    Advice(
        "send the current time in whole seconds since the epoch and keep the client's clock "
        "in sync (NTP)",
        codes=(_C.INVALID_TIMESTAMP,),
    ),
    Advice(
        "send a fresh random nonce of about 20 characters with every request",
        codes=(_C.NONCE_REJECTED,),
    ),
    Advice(
        "sign every request afresh, for its own method, URL and parameters, with a new nonce "
        "and the current timestamp",
        {
            "header-reused": "the header was reused from an earlier request: its signature is "
            "right, but it was made {age} s ago",
            "other-method": "the header was signed for a {method} request: reused from an "
            "earlier request",
        },
        codes=(_C.NONCE_USED,),
    ),
    Advice(
        "check the consumer key, and send the realm (account ID) exactly as configured",
        codes=(_C.UNKNOWN_INTEGRATION,),
    ),
    Advice(
        'enable the integration record (state = "enabled")',
        {
            "client-blocked": "the integration of client ID {client_id} is blocked",
            "bearer-client-blocked": "the integration of the token's client ID {client_id} is "
            "blocked, or no longer configured, since the token was issued",
        },
        codes=(_C.INTEGRATION_BLOCKED,),
    ),
    Advice(
        "switch authorization_flow on for the integration",
        codes=(_C.AUTHORIZATION_FLOW_REQUIRED,),
    ),
    Advice(
        "check the token ID, that it belongs to this consumer key and account, and that it is "
        "neither revoked nor expired; send the realm exactly as configured",
        codes=(_C.TOKEN_REJECTED,),
    ),
    Advice("make the token's entity and role active", codes=(_C.ENTITY_OR_ROLE_DISABLED,)),
    Advice(
        "compare the client's base string with the server's, byte for byte (tba-guard "
        "explain prints the server's), and check that the client signs with the consumer "
        "secret and the token secret",
        {
            "no-known-mistake": "no known client mistake reproduces the signature with the "
            "configured secrets: the client signs with other secrets, or signed another request "
            "(a header reused from an earlier request, another URL or body)",
        },
        codes=(_C.INVALID_SIGNATURE,),
    ),
    Advice("send the callback URL of the integration record", codes=(_C.INVALID_CALLBACK,)),
    Advice(
        "send the verifier that came back with the authorized request token",
        codes=(_C.INVALID_VERIFIER,),
    ),
    Advice("bring the replay store (Redis) back, then retry", codes=(_C.REPLAY_STORE_UNAVAILABLE,)),
    Advice("bring the credential store back, then retry", codes=(_C.CREDENTIAL_STORE_UNAVAILABLE,)),
    Advice("send a smaller form body, or raise body_max_bytes", codes=(_C.REQUEST_BODY_TOO_LARGE,)),
    Advice("send the whole body promptly, or raise body_timeout", codes=(_C.REQUEST_BODY_TIMEOUT,)),
    Advice(
        "retry later, or raise body_buffer_max_bytes if memory allows",
        codes=(_C.REQUEST_BUFFERS_FULL,),
    ),
    Advice(
        "send Content-Type and Host once, and percent-encode the form as UTF-8",
        codes=(_C.AMBIGUOUS_REQUEST,),
    ),
    Advice(
        "call the service's own host name, or add it to allowed_hosts",
        codes=(_C.HOST_NOT_ALLOWED,),
    ),
    Advice(
        "wait for pending request tokens to expire, or raise the quota",
        codes=(_C.REQUEST_TOKEN_LIMIT,),
    ),
    Advice(
        "retry after the Retry-After seconds and send fewer requests at once (a queue of at "
        "most governanceLimits' limit); an administrator may raise governance_limit or the "
        "integration's allocation (governance_allocations)",
        codes=(_C.REQUEST_LIMIT_EXCEEDED, _C.CONCURRENCY_LIMIT_EXCEEDED),
    ),
    Advice(
        "check that the governance_store Redis is reachable; clients retry after Retry-After",
        codes=(_C.GOVERNANCE_STORE_UNAVAILABLE,),
    ),
    # --- the move to OAuth 2.0 (docs/oauth2.md) ------------------------------------------------
    Advice(
        "move the client to OAuth 2.0 as docs/oauth2.md describes (a certificate mapping, the "
        "client credentials grant, Bearer tokens); while it moves, schemes = "
        '["tba", "oauth2"] on the integration allows both',
        {"tba-oauth2-only": "the integration's schemes allow OAuth 2.0 only: it has moved"},
        codes=(_C.TBA_NOT_ALLOWED,),
    ),
    Advice(
        "move the client to OAuth 2.0 (docs/oauth2.md) before TBA is retired; TBA answers "
        "again once the brownout window (the brownouts setting) is over",
        codes=(_C.TBA_BROWNOUT,),
    ),
    Advice(
        "set oauth2_signing_keys (tba-guard oauth2 keygen) to switch OAuth 2.0 on, or sign "
        "the request with TBA",
        {
            "oauth2-off": "OAuth 2.0 is off: no oauth2_signing_keys, so the server treats "
            "this request as TBA's",
        },
    ),
    # --- OAuth 2.0 bearer tokens on protected resources -----------------------------------------
    Advice(
        "request a new access token with the client credentials grant",
        {
            "bearer-malformed": "the Authorization header holds no readable JWT after "
            "'Bearer ' (cut short, quoted, or not the access_token the endpoint returned)",
            "bearer-claims": "a claim the guard's tokens carry is missing or malformed",
        },
        codes=(_C.INVALID_BEARER_TOKEN,),
    ),
    Advice(
        "request a new access token before the old one's exp (it lives "
        "oauth2_access_token_ttl seconds), and keep the client's clock in sync (NTP)",
        {"bearer-expired": "the access token expired: exp {exp}"},
    ),
    Advice(
        "request a new token; when rotating oauth2_signing_keys, keep the old key after the "
        "new one until every token it signed has expired (oauth2_access_token_ttl)",
        {
            "bearer-unknown-kid": "kid {kid} names none of the guard's keys: the key that "
            "signed the token was rotated out of oauth2_signing_keys, or another service "
            "issued it",
        },
    ),
    Advice(
        "send the access token exactly as the token endpoint returned it, from this "
        "service's token endpoint",
        {
            "bearer-bad-signature": "the token's signature does not verify under the guard's "
            "key {kid}: the token was altered, or signed by another key under its kid",
            "bearer-alg": "the token's alg {alg} is not {expected}, the alg of the guard's key "
            "{kid}: this guard did not sign it",
        },
    ),
    Advice(
        "request the token from this service's token endpoint; every instance needs the same "
        "oauth2_issuer and oauth2_audience (or realm)",
        {
            "bearer-issuer": "the token's iss is {sent}, expected {expected} (oauth2_issuer)",
            "bearer-audience": "the token's aud is {sent}, expected {expected} "
            "(oauth2_audience, else the realm)",
        },
    ),
    Advice(
        'allow OAuth 2.0 on the integration record: schemes = ["tba", "oauth2"], or '
        '["oauth2"] once it has moved',
        {
            "bearer-tba-only": "the integration of client ID {client_id} allows TBA only "
            "(its schemes)",
            "client-tba-only": "the integration of client ID {client_id} allows TBA only "
            "(its schemes)",
        },
    ),
    Advice(
        "upload a new certificate for the integration (a new mapping: RSA 3072 or 4096 bits, "
        "or EC; valid at most two years), sign assertions with its key, send its certificate "
        "ID as kid and request a new token",
        {
            "bearer-certificate-revoked": "the mapping {kid} that the token was issued for "
            "is revoked",
            "bearer-certificate-expired": "the certificate of the mapping {kid} that the "
            "token was issued for has expired",
            "mapping-revoked": "the mapping {kid} is revoked",
            "mapping-certificate-outside-validity": "the certificate of the mapping {kid} is "
            "outside its validity (expired, or not valid yet)",
            "mapping-certificate-unusable": "the certificate of the mapping {kid} cannot be "
            "used: {sent}",
        },
    ),
    Advice(
        "request a token with the {scope} scope (the assertion's scope claim), or map the "
        "route to another scope in oauth2_route_scopes",
        {
            "scope-short": "the route {path} needs the {scope} scope (oauth2_route_scopes); "
            "the token has {scopes}",
        },
        codes=(_C.INSUFFICIENT_SCOPE,),
    ),
    Advice(
        "add 'prefix=scope' for the route to oauth2_route_scopes (the longest prefix wins)",
        {"scope-no-route": "no prefix of oauth2_route_scopes covers the path {path}"},
    ),
    # --- the OAuth 2.0 token endpoint (client credentials, RFC 7523 assertion) -----------------
    Advice(
        "POST grant_type=client_credentials, client_assertion_type and client_assertion as "
        "an application/x-www-form-urlencoded form, each once (tba-guard explain: "
        "--content-type application/x-www-form-urlencoded)",
        {
            "token-not-form": "the token request is not a POST of an "
            "application/x-www-form-urlencoded form",
            "token-form-unreadable": "the form is not plain URL-encoded ASCII",
        },
        codes=(_C.INVALID_REQUEST,),
    ),
    Advice(
        "send client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        {"assertion-type": "client_assertion_type is {sent}"},
    ),
    Advice(
        "send grant_type=client_credentials with a JWT client assertion; no other grant is "
        "served here",
        {
            "grant-type-other": "grant_type is {sent}: only client_credentials is served "
            "(no authorization code, refresh token or password grant)",
            "grant-type-missing": "grant_type is missing",
        },
        codes=(_C.UNSUPPORTED_GRANT_TYPE,),
    ),
    Advice(
        "sign the assertion with the mapping's private key, as a compact JWS "
        "(header.payload.signature), alg PS256, PS384 or PS512 for an RSA certificate, "
        "ES256, ES384 or ES512 for an EC one",
        {
            "assertion-malformed": "the client_assertion is not a readable compact JWS",
            "assertion-alg-none": "the assertion is unsigned: alg none",
            "assertion-alg-hmac": "the assertion is signed with {alg}, an HMAC over a shared "
            "secret: client assertions are signed with the certificate's private key",
            "assertion-alg-other": "alg {alg} is not accepted (RS256, PKCS#1 v1.5, is not; "
            "PS256 is)",
            "assertion-alg-key": "alg {alg} does not fit the key of the certificate of the "
            "mapping {kid}",
        },
    ),
    Advice(
        'set the assertion header\'s typ to "JWT"',
        {"assertion-typ": "the assertion header's typ is {sent}, not JWT"},
    ),
    Advice(
        "set kid to the certificate ID of the integration's mapping (the ID the certificate "
        "got when it was uploaded, not a key thumbprint or a file name)",
        {
            "assertion-unknown-kid": "kid {kid} is not a mapping: no certificate ID is {kid}",
            "assertion-kid-missing": "the assertion header has no kid",
        },
        codes=(_C.INVALID_CLIENT,),
    ),
    Advice(
        "sign with the private key of the certificate that the mapping {kid} holds",
        {
            "assertion-bad-signature": "the assertion's signature does not verify under the "
            "certificate of the mapping {kid}: it was signed with another private key",
        },
    ),
    Advice(
        "set iss to the client ID of the integration the mapping belongs to (not the consumer key)",
        {"assertion-issuer": "iss is {sent}, expected {expected}: the client ID of mapping {kid}"},
    ),
    Advice(
        "give the integration record this client_id, or send the client ID of an integration",
        {"client-unknown": "no integration has the client ID {client_id}"},
        codes=(_C.UNAUTHORIZED_CLIENT,),
    ),
    Advice(
        "set aud to the token endpoint's URL, https://<host>/services/rest/auth/oauth2/v1/token "
        "(oauth2_token_path on the host the client calls); behind a proxy, set public_url to "
        "the URL the clients call",
        {"assertion-audience": "aud is {sent}, expected {expected}"},
    ),
    Advice(
        "send iat and exp as whole numbers of epoch seconds (not strings, not milliseconds)",
        {"assertion-times-not-numbers": "iat and exp are not numbers of epoch seconds"},
    ),
    Advice(
        "set exp at most 3600 s (60 minutes) after iat",
        {"assertion-too-long": "exp is {span} s after iat: more than 60 minutes"},
    ),
    Advice(
        "sign a fresh assertion, iat the current time, for each token request; if it was "
        "fresh, the client's clock is behind (NTP)",
        {"assertion-expired": "the assertion expired: exp {exp}"},
        codes=(_C.INVALID_GRANT,),
    ),
    Advice(
        "sign a fresh assertion with a new random jti for every token request",
        {
            "assertion-replayed": "the assertion was used before: its jti (or, without one, "
            "its signature) was seen",
        },
    ),
    Advice(
        "ask for restlets, rest_webservices or both (separated by a comma or a space) in the "
        "assertion's scope claim",
        {
            "scope-unknown": "the scope {scope} is unknown: the scopes are restlets and "
            "rest_webservices",
            "scope-missing": "the assertion has no scope claim, or an empty one",
        },
        codes=(_C.INVALID_SCOPE,),
    ),
    # --- the token record's state (named by the oauth_problem the check gives) ---------------
    Advice(
        "activate the token again (tba-guard token activate TOKEN_ID, or state = "
        '"active" in its [[tokens]] table)',
        {"token_inactive": "the token was deactivated: its record is inactive"},
    ),
    Advice(
        "a revocation is final: issue a new token (tba-guard token issue) and give the "
        "client its ID and secret",
        {"token_revoked": "the token was revoked"},
    ),
    # --- causes found from the request itself ---------------------------------------------------
    Advice(
        "send whole seconds since the epoch (int(time.time()), Date.now() / 1000 | 0)",
        {"timestamp-in-milliseconds": "the timestamp is in milliseconds"},
    ),
    Advice(
        "synchronise the clock (NTP); the window is ±{tolerance} s",
        {
            "clock-off": "the client's clock is {offset} s {direction} the server's",
            "clock-skew": "the client's clock is {offset} s {direction} the server's: skew "
            "{skew} s (the server's clock minus oauth_timestamp)",
            "assertion-clock-ahead": "the assertion's iat is {offset} s ahead of the server's "
            "clock",
            "assertion-not-yet-valid": "the assertion's nbf is {offset} s ahead of the "
            "server's clock",
            "bearer-not-yet-valid": "the access token's nbf is {offset} s ahead of the "
            "server's clock",
        },
    ),
    Advice(
        'send realm="{configured}" exactly (or leave it out)',
        {
            "realm-spelling": "the realm {realm} is the account ID in the wrong case or with "
            "'-' for '_'",
            "realm-other-account": "the realm {realm} is not this account",
        },
    ),
    Advice(
        "send parameters that are not oauth_* in the query string (or body) only",
        {
            "query-parameters-in-header": "query parameters ({parameters}) were put into the "
            "Authorization header as well as the URL",
        },
    ),
    Advice(
        "send oauth_* parameters in the Authorization header only",
        {
            "protocol-parameters-repeated": "protocol parameters ({parameters}) were sent in "
            "the query or body as well as in the header",
        },
    ),
    # --- what operators are told (operator.py): the audit's detail, hints, explain ---------
    Advice(
        "set public_url to the URL the clients call, or trusted_proxies to the proxy's address "
        "so that its X-Forwarded-Proto and X-Forwarded-Host are believed",
        {
            "url-variant": "the signature would verify as {uri}, not as {server_uri} (the "
            "URL the server built): a proxy in front, or the server reached by another scheme, "
            "host or port",
        },
    ),
    Advice(
        "do not send a request again once it was answered; to retry, sign it anew (a fresh "
        "nonce and the current timestamp)",
        {
            "nonce-resent": "the same signature was sent again with this nonce and timestamp: "
            "a double submit (a retry, or the request sent twice)",
        },
    ),
    Advice(
        "draw every nonce from a cryptographically secure random generator (Python's "
        "secrets.token_urlsafe, Node's crypto.randomBytes), about 20 characters",
        {
            "nonce-collision": "another request (a different signature) drew the same nonce "
            "and timestamp: the client's nonce generator repeats itself",
        },
    ),
    Advice(
        "sign every request afresh with a new random nonce; a replay store keeping signature "
        "fingerprints (the built-in ones do) tells a resend from a collision",
        {
            "nonce-untold": "the nonce was used before; the replay store keeps no fingerprint "
            "of that request's signature, so a resend cannot be told from a collision",
        },
    ),
    Advice(
        'send realm="{account}": the account ID in upper case, with "_" where the host has "-"',
        {
            "realm-host-spelling": "the realm {realm} is the account of the host {host} "
            "written otherwise (case, or '-' for '_'): the realm is {account}",
        },
    ),
    Advice(
        "send the realm of the account whose host the request goes to ({account}), or call "
        "the host of the account the realm names",
        {"realm-host-other": "the realm {realm} names another account than the host {host}"},
    ),
    # --- the client mistakes that re-signing recognises (mistakes.py) ------------------------
    Advice(
        "hash exactly the bytes sent (SHA-1, or the signature method's hash; base64)",
        {
            "body-hash-mismatch": "the signature is right but oauth_body_hash does not match "
            "the body: the body sent is not the body that was hashed",
        },
    ),
    Advice(
        "decode the query's names before signing (or sign the parameters you meant to send)",
        {
            "names-encoded-twice": "query parameter names were left percent-encoded and then "
            "encoded again",
        },
    ),
    Advice(
        "encode text to UTF-8 once, then percent-encode those bytes",
        {"utf8-encoded-twice": "non-ASCII text was UTF-8-encoded twice"},
    ),
    Advice(
        "sign each value under the name sent (tag=a&tag=b), or send the names the client signs",
        {
            "repeated-names-as-indexed-arrays": "a repeated parameter name was signed as an "
            "array: name[0], name[1], ...",
            "repeated-names-as-arrays": "a repeated parameter name was signed as an array: name[]",
        },
    ),
    Advice(
        "sign each parameter under the name sent, brackets included",
        {
            "array-brackets-dropped": "parameters sent as arrays (name[0], name[]) were signed "
            "without their brackets",
        },
    ),
    Advice(
        "sign every value of a repeated name (RFC 5849 section 3.4.1.3)",
        {
            "repeated-names-first-value": "a repeated parameter name was collapsed to its "
            "first value",
            "repeated-names-last-value": "a repeated parameter name was collapsed to its last "
            "value",
        },
    ),
    Advice(
        "sort the parameters by name and then by value (RFC 5849 section 3.4.1.3.2)",
        {
            "repeated-values-unsorted": "the values of a repeated name were signed in the "
            "order sent, not sorted",
        },
    ),
    Advice(
        "skip empty items when collecting the query's parameters",
        {
            "empty-items-signed": "an empty item in the query (a trailing '&', or '&&') was "
            "signed as an empty '=' pair",
        },
    ),
    Advice(
        "write a space as %20 in the URL and a plus sign as %2B",
        {
            "query-plus-literal": "a '+' in the query string was signed as a plus sign, but in "
            "a query it means a space",
        },
    ),
    Advice(
        "percent-encode a space as %20 when signing (RFC 5849 section 3.6)",
        {"space-as-plus": "a space was encoded as '+' in the base string"},
    ),
    Advice(
        "sign only the header and query parameters: a body that is not "
        "application/x-www-form-urlencoded is never signed",
        {"json-body-signed": "the JSON body was signed"},
    ),
    Advice(
        "send Content-Type: application/x-www-form-urlencoded, or do not sign the body",
        {
            "body-signed-not-form": "the body was signed as form parameters, but the request "
            "does not say it is a form",
        },
    ),
    Advice(
        "sign the form body's parameters too (RFC 5849 section 3.4.1.3)",
        {"form-body-unsigned": "the form body was not signed"},
    ),
    Advice(
        "sign the query string's parameters too (RFC 5849 section 3.4.1.3)",
        {"query-unsigned": "the query parameters were left out of the signature"},
    ),
    Advice(
        "leave realm out of the base string (RFC 5849 section 3.4.1.3.1)",
        {"realm-signed": "the realm was signed"},
    ),
    Advice(
        "sign the URL the clients call, and set public_url to it when a proxy stands in "
        "front (or trusted_proxies behind a proxy that sets X-Forwarded-*)",
        {
            "proxy-url-signed": _ALSO_SIGNED
            + " (a proxy in between, or another scheme, host or port)",
        },
    ),
    Advice(
        "sign the host the request goes to; an account ID's '_' is '-' in a host name",
        {"account-host": _ALSO_SIGNED + ": another host name for the account"},
    ),
    Advice(
        "sign the path exactly as it is sent, escapes as they are",
        {"path-encoded-differently": _ALSO_SIGNED + ": the path encoded differently"},
    ),
    Advice(
        "sign exactly the scheme, host, port and path of the URL the request goes to",
        {
            "other-scheme": _ALSO_SIGNED + ": another scheme",
            "port-left-out": _ALSO_SIGNED + ": the port left out",
        },
    ),
    Advice(
        "leave the default port (80 for http, 443 for https) out of the signed URL "
        "(RFC 5849 section 3.4.1.2)",
        {"default-port-written": _ALSO_SIGNED + ": the scheme's default port written out"},
    ),
    Advice(
        "sign with consumer_secret&token_secret",
        {"token-secret-left-out": "the token secret was left out of the key"},
    ),
    Advice(
        "the key is consumer_secret&token_secret, in that order",
        {"secrets-swapped": "the consumer secret and the token secret were swapped"},
    ),
    Advice(
        "percent-encode each secret before joining them with '&' (RFC 5849 section 3.4.2)",
        {"secrets-not-encoded": "the secrets were not percent-encoded in the key"},
    ),
)

#: Every entry of `ADVICE` by name: each cause by its own, each code by its value.
CAUSES: Final[dict[str, Cause]] = {
    **{code.value: Cause(code.value, "", advice.fix) for advice in ADVICE for code in advice.codes},
    **{
        name: Cause(name, explanation, advice.fix)
        for advice in ADVICE
        for name, explanation in advice.causes.items()
    },
}


def fix_for(error: TBAError) -> str:
    """The fix of a rejection: its problem's own where one is catalogued (an inactive token
    against a revoked one, both `TokenRejected`), else its code's."""
    cause = CAUSES.get(error.problem) if error.problem else None
    return (cause or CAUSES[error.code]).fix


def found(names: Sequence[str], *, named: bool, note: str = "", **fields: object) -> Finding:
    """The finding of one cause, or of a pair (the explanations joined, each fix once), its
    fields filled in; with `named`, it shows the names (those of catalogued mistakes)."""
    causes = [CAUSES[name] for name in names]
    return Finding(
        explanation="; and ".join(cause.explanation.format(**fields) for cause in causes),
        fix="; ".join(dict.fromkeys(cause.fix.format(**fields) for cause in causes)),
        names=tuple(names) if named else (),
        note=note,
    )
