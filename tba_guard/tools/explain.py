"""`tba-guard explain`: run every check, in order, on one request and say what is wrong.

NetSuite answers a bad request with "Invalid login attempt" and nothing else, and its users lose
days to it. This module runs the same standalone checks the guard runs, in the same order, and
prints each verdict; on a rejection it names the code, the reason and the likely fix. For a bad
signature it prints the base string the server built and finds the likely cause by re-signing
the request the ways clients are known to get wrong (with the configured secrets) and comparing
with the signature that was sent.

It never touches a real replay store (a throwaway in-memory one answers step 7, and step 12 is
skipped) and never prints a secret, a signature or the header itself: a PLAINTEXT signature *is*
the secrets.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from ..core.checks import (
    Step,
    realm_sent,
)
from ..core.errors import CATALOG, OPERATIONAL_CODES, ErrorCode, TBAError
from ..core.mistakes import PAIR_COUNT, REALM_SPELLING, SEARCH_BUDGET, SEARCHED, Finding, search
from ..core.records import Integration, Token
from ..core.request import OAuthRequest, base_string_uri, request_from_url
from ..core.sequence import SEQUENCE, Check, Verification
from ..core.settings import GuardSettings
from ..core.signature import (
    SIGNATURE_METHODS,
    base_string,
    request_base_string,
    sign,
    signed_parameters,
)
from ..stores import credential_store_for
from ..stores.memory import MemoryReplayStore

_C = ErrorCode

_OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Pitfall:
    """A known way clients get a request wrong, and what to do instead; `name` when it is one
    of the catalogue's mistakes (tba_guard/mistakes.py)."""

    cause: str
    fix: str
    name: str = ""
    note: str = ""


# --- the report -------------------------------------------------------------------------------


class _Report:
    """The verdict lines, in order, and the first failure (which decides the code)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.first: TBAError | None = None
        self.failed: dict[ErrorCode, TBAError] = {}

    def verdict(self, number: str, check: str, error: TBAError | None, note: str = "") -> None:
        result = "ok" if error is None else error.code.value
        if error is not None:
            self.failed.setdefault(error.code, error)
            if self.first is None:
                self.first = error
            elif not note:
                note = "(after the deciding check)"
        self.lines.append(f"{number:>4}. {check:<40} {result}{'  ' + note if note else ''}")

    def skip(self, number: str, check: str, why: str) -> None:
        self.lines.append(f"{number:>4}. {check:<40} not run: {why}")


def _attempt(run: Callable[[], object]) -> TBAError | None:
    try:
        run()
    except TBAError as error:
        return error
    return None


async def _attempt_async(check: Awaitable[object]) -> TBAError | None:
    try:
        await check
    except TBAError as error:
        return error
    return None


def _server_uri(settings: GuardSettings, request: OAuthRequest) -> str | None:
    """Behind a proxy (`public_url`) the server verifies public_url's scheme and host with the
    path the client sent: point the request there, and say so when that differs from the URL
    given (which is the one the client called)."""
    if settings.public_url is None:
        return None
    public = urlsplit(settings.public_url)
    given = request.uri
    path = "/" + given.partition("://")[2].partition("/")[2]
    request.uri = base_string_uri(public.scheme, public.netloc, path)
    if request.uri == given:
        return None
    return f"public_url is set: the server verifies {request.uri}, not {given}"


def _printable(line: str) -> str:
    """A line safe for a terminal: arguments may carry control characters or undecodable bytes."""
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)


async def explain(
    settings: GuardSettings,
    method: str,
    url: str,
    header: str,
    body: str = "",
    now: float | None = None,
    *,
    content_type: str | None = None,
    step: Step = Step.RESOURCE,
) -> tuple[list[str], bool]:
    """Run every check on the request; return the lines to print and whether it is accepted."""
    headers = [("Authorization", header)]
    if content_type:
        headers.append(("Content-Type", content_type))
    described = _describe_body(body, content_type)
    return await _explain(settings, method, url, headers, body, now, step, [described])


async def explain_raw(
    settings: GuardSettings,
    raw: RawRequest,
    now: float | None = None,
    *,
    step: Step = Step.RESOURCE,
) -> tuple[list[str], bool]:
    """`explain` for a request pasted whole: its own headers, every one of them."""
    content_type = next((v for n, v in raw.headers if n.lower() == "content-type"), None)
    if not raw.body:
        described = "Body: none"
    else:
        size = len(raw.body.encode("utf-8", "surrogateescape"))
        signed = "" if content_type else ", no Content-Type header, so not signed"
        described = f"Body: {size} bytes{signed}"
        if content_type:
            described += f", Content-Type {content_type}"
    notes = [described, *(f"Note: {note}" for note in raw.notes)]
    return await _explain(settings, raw.method, raw.url, raw.headers, raw.body, now, step, notes)


async def _explain(
    settings: GuardSettings,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: str,
    now: float | None,
    step: Step,
    described: list[str],
) -> tuple[list[str], bool]:
    clock = time.time() if now is None else now
    lines = [f"Request: {method.upper()} {url}", *described]
    lines.append(f"Clock: {int(clock)} ({'--now' if now is not None else 'this machine'})")
    try:
        # Arguments may hold bytes that are not UTF-8 (surrogates): send them as they came.
        request = request_from_url(method, url, headers, body.encode("utf-8", "surrogateescape"))
    except ValueError as exc:
        lines.append(f"Rejected: the URL cannot be used: {exc}")
        return [_printable(line) for line in lines], False
    except TBAError as exc:
        lines.append(f"Rejected: {exc.code.value}: {exc.reason}")
        return [_printable(line) for line in lines], False
    client_uri = request.uri
    url_note = _server_uri(settings, request)
    if url_note:
        lines.append(f"Note: {url_note}")
    lines.append("")
    report = _Report()
    context = await _run_checks(report, settings, request, step, clock, client_uri)
    lines += report.lines
    lines.append("")
    accepted = report.first is None
    if accepted:
        lines.append(
            "Accepted: the request passes every check. The real server also claims the nonce, "
            "so sending this same header again is NonceUsed."
        )
    else:
        lines += _conclusion(report, settings, request, context, clock)
    return [_printable(line) for line in lines], accepted


def run_explain(
    settings: GuardSettings,
    method: str,
    url: str,
    header: str,
    body: str,
    now: float | None,
    content_type: str | None = None,
) -> tuple[list[str], bool]:
    """The command line's entry point: `explain` on a fresh event loop."""
    return asyncio.run(explain(settings, method, url, header, body, now, content_type=content_type))


def run_explain_raw(
    settings: GuardSettings, raw: RawRequest, now: float | None
) -> tuple[list[str], bool]:
    """The command line's entry point for `--raw` (`parse_raw_request` reads the text)."""
    return asyncio.run(explain_raw(settings, raw, now))


# --- a raw request, as curl -v or a proxy log shows it ------------------------------------------


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A pasted request: method, full URL, headers in order (repeats kept), body."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str
    notes: tuple[str, ...] = ()


_CURL_NOISE = ("*", "<", "{", "}")  # curl -v's info, response and data lines


def parse_raw_request(text: str, *, scheme: str = "https") -> RawRequest:
    """Read a request line, headers, a blank line and the body, with CRLF or LF line ends.

    curl -v prefixes what it sends with `> ` and prints `*` notes and the `<` response around
    it: those prefixes are taken off and that noise skipped, up to the response. A request line
    with only a path takes `scheme` and the Host header. Raises ValueError with the reason.
    """
    # Split at LF only: a body may hold other characters that str.splitlines breaks at.
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    index, curl = 0, False
    while index < len(lines) and (not lines[index].strip() or lines[index].startswith("*")):
        index += 1
    if index < len(lines) and lines[index].startswith(">"):
        curl = True
    head: list[str] = []
    while index < len(lines):
        line = lines[index].rstrip("\r\n")
        index += 1
        if curl:
            if line.startswith(_CURL_NOISE):
                continue
            line = line.removeprefix(">").removeprefix(" ")
        if not line.strip():
            if head:
                break
            continue
        head.append(line)
    if not head:
        raise ValueError("no request line: expected e.g. 'GET /path?query HTTP/1.1'")
    method, target = _request_line(head[0])
    headers = _header_lines(head[1:])
    rest = lines[index:]
    if curl:  # after the request curl prints its own notes, then the response: body up to that
        response = next((i for i, line in enumerate(rest) if line.startswith("<")), len(rest))
        rest = [line for line in rest[:response] if not line.startswith(_CURL_NOISE)]
    body, notes = _raw_body("".join(rest), headers)
    if curl and notes:
        notes[0] += " (curl -v does not print the body: paste it after the blank '>' line)"
    url, url_note = _raw_url(target, headers, scheme)
    return RawRequest(method, url, tuple(headers), body, tuple(notes + url_note))


def _request_line(line: str) -> tuple[str, str]:
    """`METHOD target [HTTP/x]`: the method in capitals, as every HTTP request sends it."""
    parts = line.split()
    method = parts[0] if parts else ""
    well_formed = len(parts) == 2 or (len(parts) == 3 and parts[2].startswith("HTTP/"))
    if not (well_formed and method.isascii() and method.isalpha() and method.isupper()):
        raise ValueError(f"not a request line: {line[:80]!r}")
    return method, parts[1]


def _header_lines(lines: list[str]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and headers:  # an obsolete folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers.append((name, value.strip(" \t")))
    return headers


def _raw_body(rest: str, headers: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """The body: Content-Length bytes of what follows the blank line when it is given (a log's
    final line end is not the body's), else that text without its final line ends."""
    lengths = [v for n, v in headers if n.lower() == "content-length"]
    data = rest.encode("utf-8", "surrogateescape")
    if not lengths or not lengths[0].isdigit():
        return rest.rstrip("\r\n"), []
    length = int(lengths[0])
    if len(data) < length:
        note = f"the body given is {len(data)} bytes, Content-Length says {length}"
        return rest, [note]
    return data[:length].decode("utf-8", "surrogateescape"), []


def _raw_url(target: str, headers: list[tuple[str, str]], scheme: str) -> tuple[str, list[str]]:
    host = next((v for n, v in headers if n.lower() == "host"), None)
    if target.lower().startswith(("http://", "https://")):
        given = target.partition("://")[2].partition("/")[0]
        if host is not None and host.lower() != given.lower():
            return target, [f"the Host header says {host}; the URL's host {given} is used"]
        return target, []
    if not target.startswith("/"):
        raise ValueError(f"the request target {target[:80]!r} is neither a path nor a URL")
    if host is None:
        raise ValueError("a request line with only a path needs a Host header")
    return f"{scheme}://{host}{target}", [f"the scheme is {scheme} (--scheme to change it)"]


def _describe_body(body: str, content_type: str | None) -> str:
    if not body:
        return "Body: none"
    size = len(body.encode("utf-8", "surrogateescape"))
    if content_type is None:
        return (
            f"Body: {size} bytes, no Content-Type given, so not signed "
            "(pass --content-type application/x-www-form-urlencoded for a form)"
        )
    return f"Body: {size} bytes, Content-Type {content_type} (from --content-type)"


@dataclass(slots=True)
class _Context:
    """What the checks found, for the diagnosis: the credentials and the URL the client used."""

    client_uri: str
    integration: Integration | None = None
    token: Token | None = None


async def _run_checks(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    step: Step,
    now: float,
    client_uri: str,
) -> _Context:
    """The guard's own sequence, run to the end: after a failure the later checks still run
    where what they need was established, so the user sees every problem at once; the first
    failure decides. The settings' own credentials and a throwaway replay store: explain never
    touches a shared store."""
    v = Verification(
        request,
        step,
        settings,
        now=now,
        credentials=credential_store_for(settings),
        replay_store=MemoryReplayStore(1, clock=lambda: now),
    )
    checks = [check for check in SEQUENCE if step in check.steps]
    for number in dict.fromkeys(check.number for check in SEQUENCE):
        group = [check for check in checks if check.number == number]
        if not group:  # e.g. the flow's callback and verifier, on a protected resource
            others = dict.fromkeys(check.name for check in SEQUENCE if check.number == number)
            report.skip(number, " / ".join(others), f"not part of {_STEP_NAMES[step]}")
            continue
        error, skipped = await _run_group(group, v)
        name = " / ".join(dict.fromkeys(check.name for check in group))
        if skipped and error is None:
            report.skip(number, name, skipped)
        else:
            report.verdict(number, name, error, _NOTES.get(number, ""))
        if number == "2" and error is not None:
            report.skip(f"3-{SEQUENCE[-1].number}", "every later check", _NEEDS["oauth"])
            break
        if number == "5" and v.timestamp is None:
            # Explain goes on to the replay read with a timestamp outside the window.
            v.timestamp = _timestamp_value(request.oauth.get("oauth_timestamp", ""))
    return _Context(client_uri=client_uri, integration=v.integration, token=v.token)


#: Why a check could not run: what an earlier failure left unknown.
_NEEDS = {
    "oauth": "the parameters could not be read",
    "timestamp": "the timestamp is not a number",
    "key": "no replay key: the nonce was not read",
    "integration": "no integration",
    "token": "no token",
    "request_token": "no request token (explain has no token store)",
    "token_secret": "no token secret for an unknown token",
}
_STEP_NAMES = {
    Step.RESOURCE: "a protected-resource request",
    Step.REQUEST_TOKEN: "the request-token step",
    Step.ACCESS_TOKEN: "the access-token step",
}
_NOTES = {"7": "(explain keeps no history; the real store may have seen it)"}


async def _run_group(group: list[Check], v: Verification) -> tuple[TBAError | None, str]:
    """One number's checks: the first failure, or why they could not run."""
    for check in group:
        if check.writes:
            return None, "explain never writes to a store"
        missing = [need for need in check.needs if getattr(v, need) is None]
        if missing:
            if check.number == "10" and v.integration is None:
                return None, "no consumer secret for an unknown consumer key"
            return None, _NEEDS[missing[0]]
        try:
            if check.is_async:
                await cast(Awaitable[None], check.run(v))
            else:
                check.run(v)
        except TBAError as error:
            return error, ""
    return None, ""


# --- the conclusion and the known pitfalls ----------------------------------------------------


def _conclusion(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    context: _Context,
    now: float,
) -> list[str]:
    first = report.first
    assert first is not None
    status = first.status
    lines = [f"Rejected: {first.code.value} (HTTP {status})"]
    if settings.error_detail == "opaque" and first.code not in OPERATIONAL_CODES:
        lines.append("  (opaque mode: the client sees only INVALID_LOGIN_ATTEMPT or a bare 400)")
    lines.append(f"Reason: {first.reason or CATALOG[first.code].message}")
    causes = _pitfalls_for(first, settings, request, context, now)
    lines += _cause_lines(causes)
    bad_signature = _C.INVALID_SIGNATURE in report.failed
    if not causes and not (bad_signature and first.code is _C.INVALID_SIGNATURE):
        lines.append(f"Fix: {CATALOG[first.code].fix}")
    if bad_signature:
        if first.code is not _C.INVALID_SIGNATURE:
            lines.append("The signature does not match either.")
        lines.append(f"Base string the server built: {request_base_string(request)}")
        lines += _signature_lines(settings, request, context)
    return lines


def _cause_lines(pitfalls: Iterable[Pitfall]) -> list[str]:
    lines = []
    for pitfall in pitfalls:
        lines.append(f"Likely cause: {pitfall.cause}")
        if pitfall.name:
            lines.append(f"  Mistake: {pitfall.name}")
        if pitfall.note:
            lines.append(f"  Note: {pitfall.note}")
        lines.append(f"  Fix: {pitfall.fix}")
    return lines


def _signature_lines(
    settings: GuardSettings, request: OAuthRequest, context: _Context
) -> list[str]:
    """Re-sign the request as each catalogued mistake, and each pair of them, would; name those
    that reproduce the sent signature, or say honestly that none does."""
    findings: list[Finding] = []
    complete = True
    if context.integration is not None:
        findings, complete = search(
            request,
            client_uri=context.client_uri,
            consumer_secret=context.integration.consumer_secret,
            token_secret=context.token.token_secret if context.token else "",
            realm=settings.realm,
        )
    lines = []
    for finding in findings:
        label = "Mistakes" if len(finding.names) > 1 else "Mistake"
        lines += [
            f"Likely cause: {finding.explanation}",
            f"  {label}: {' + '.join(finding.names)}",
            f"  Fix: {finding.fix}",
        ]
    if not complete:
        lines.append(
            f"Note: the search stopped after {SEARCH_BUDGET:g} s, before every pair of mistakes "
            "was tried (a very large request)"
        )
    if not findings:
        lines += _cause_lines([_NO_KNOWN_SIGNATURE_PITFALL])
        lines.append(f"  Searched: {len(SEARCHED)} known mistakes and {PAIR_COUNT} pairs of them")
    return lines


_NO_KNOWN_SIGNATURE_PITFALL = Pitfall(
    "no known client mistake reproduces the signature with the configured secrets: the client "
    "signs with other secrets, or signed another request (a header reused from an earlier "
    "request, another URL or body)",
    "compare the base string above with the client's, byte for byte, and check both secrets",
)


def _pitfalls_for(
    error: TBAError,
    settings: GuardSettings,
    request: OAuthRequest,
    context: _Context,
    now: float,
) -> list[Pitfall]:
    """The known causes of the deciding code other than a bad signature."""
    oauth, code = request.oauth, error.code
    if code is _C.UNKNOWN_ALGORITHM and oauth.get("oauth_signature_method") == "HMAC-SHA1":
        return [
            Pitfall(
                "HMAC-SHA1 was left as the client library's default",
                "configure the client to sign with HMAC-SHA256 "
                "(oauthlib/requests-oauthlib: signature_method=SIGNATURE_HMAC_SHA256)",
            )
        ]
    if code is _C.INVALID_TIMESTAMP:
        return _timestamp_pitfalls(oauth["oauth_timestamp"], settings, request, context, now)
    if code in (_C.UNKNOWN_INTEGRATION, _C.TOKEN_REJECTED) and settings.realm:
        sent = realm_sent(oauth)
        if sent and sent != settings.realm:
            fix = REALM_SPELLING.fix.format(configured=settings.realm)
            if sent.upper().replace("-", "_") != settings.realm.upper():
                return [Pitfall(f"the realm {sent!r} is not this account", fix)]
            return [
                Pitfall(
                    REALM_SPELLING.explanation.format(realm=repr(sent)),
                    fix,
                    name=REALM_SPELLING.name,
                    note="the realm is not signed, so no signature shows this mistake: explain "
                    "compared the realm sent with the configured one",
                )
            ]
    if code is _C.MISSING_REQUIRED_PARAMETER and "given in the header and in" in error.reason:
        return _duplicate_pitfalls(error.parameters_rejected)
    return []


def _duplicate_pitfalls(names: tuple[str, ...]) -> list[Pitfall]:
    """Names sent in the header and again in the query or body (step 2 refuses them)."""
    protocol = [name for name in names if name.startswith("oauth_")]
    others = [name for name in names if not name.startswith("oauth_")]
    found = []
    if others:
        found.append(
            Pitfall(
                f"query parameters ({', '.join(others)}) were put into the Authorization header "
                "as well as the URL",
                "send parameters that are not oauth_* in the query string (or body) only",
            )
        )
    if protocol:
        found.append(
            Pitfall(
                f"protocol parameters ({', '.join(protocol)}) were sent in the query or body as "
                "well as in the header",
                "send oauth_* parameters in the Authorization header only",
            )
        )
    return found


def _timestamp_pitfalls(
    raw: str, settings: GuardSettings, request: OAuthRequest, context: _Context, now: float
) -> list[Pitfall]:
    tolerance = settings.timestamp_tolerance
    value = _timestamp_value(raw)
    if value is None:
        return []
    if len(raw) >= 13 and abs(value // 1000 - now) <= tolerance:
        return [
            Pitfall(
                "the timestamp is in milliseconds",
                "send whole seconds since the epoch (int(time.time()), Date.now() / 1000 | 0)",
            )
        ]
    if value < now - tolerance and _signature_is_right(request, context):
        return [
            Pitfall(
                f"the header was reused from an earlier request: its signature is right, but it "
                f"was made {int(now - value)} s ago",
                "sign every request afresh, with a new nonce and the current timestamp",
            )
        ]
    if value > 0:
        direction = "behind" if value < now else "ahead of"
        return [
            Pitfall(
                f"the client's clock is {abs(int(now - value))} s {direction} the server's",
                f"synchronise the clock (NTP); the window is ±{tolerance} s",
            )
        ]
    return []


def _timestamp_value(raw: str) -> int | None:
    """The timestamp as a number when it is one a clock could give (seconds or milliseconds);
    None for anything else, including digit strings too long for `int` to take."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 16:
        return int(raw)
    return None


def _signature_is_right(request: OAuthRequest, context: _Context) -> bool:
    if context.integration is None:
        return False
    token_secret = context.token.token_secret if context.token else ""
    return _matches(
        request,
        request.method,
        request.uri,
        signed_parameters(request),
        secrets=(context.integration.consumer_secret, token_secret),
    )


def _matches(
    request: OAuthRequest,
    method: str,
    uri: str,
    pairs: Iterable[tuple[str, str]],
    *,
    secrets: tuple[str, str],
) -> bool:
    """Whether signing this request gives the signature that was sent."""
    sent = request.oauth.get("oauth_signature", "")
    signature_method = request.oauth.get("oauth_signature_method", "")
    if signature_method not in SIGNATURE_METHODS:
        return False
    consumer_secret, token_secret = secrets
    if not consumer_secret:
        return False
    expected = sign(
        signature_method, base_string(method, uri, pairs), consumer_secret, token_secret
    )
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))
