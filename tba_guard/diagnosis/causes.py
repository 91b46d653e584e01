"""Every likely cause of a rejection and its fix, in one table, each fix written once: what
`explain` and the development hints suggest. The core says which code applies, never why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..core.errors import ErrorCode

_C = ErrorCode


@dataclass(frozen=True, slots=True)
class Advice:
    """One fix and what it answers: causes, by name (each with what went wrong, one line), and
    the codes it is the fix for when nothing more specific is known.

    Texts may name fields the diagnosis fills in: `{uri}`, `{method}` (what the client
    signed), `{server_uri}`, `{header_method}`, `{realm}`, `{configured}`, `{parameters}`,
    `{age}`, `{offset}`, `{direction}`, `{tolerance}`.
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
    Advice('enable the integration record (state = "enabled")', codes=(_C.INTEGRATION_BLOCKED,)),
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
    # --- causes found from the request itself ---------------------------------------------------
    Advice(
        "send whole seconds since the epoch (int(time.time()), Date.now() / 1000 | 0)",
        {"timestamp-in-milliseconds": "the timestamp is in milliseconds"},
    ),
    Advice(
        "synchronise the clock (NTP); the window is ±{tolerance} s",
        {"clock-off": "the client's clock is {offset} s {direction} the server's"},
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
