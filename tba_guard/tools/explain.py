"""`tba-guard explain`: NetSuite answers a bad request with "Invalid login attempt" alone, so
this runs the guard's checks in order on one request, prints each verdict and the diagnosis,
and never touches a real replay store or prints a secret, a signature or the header.

A request with `Authorization: Bearer …` runs OAuth 2.0's bearer checks, and a POST to the
token endpoint (`oauth2_token_path`) its client credentials grant, when the settings enable
OAuth 2.0; the token or assertion is read without verifying to name what is wrong with it,
and is never printed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..core.checks import Step
from ..core.errors import (
    BEARER_CODES,
    CATALOG,
    GRANT_CODES,
    MIGRATION_CODES,
    OPERATIONAL_CODES,
    ErrorCode,
    TBAError,
)
from ..core.records import Integration, Token
from ..core.request import OAuthRequest, base_string_uri, request_from_url
from ..core.scheme import Check, Scheme, Verification, scheme_word
from ..core.sequence import OAUTH
from ..core.settings import GuardSettings
from ..diagnosis.causes import CAUSES, Finding, found
from ..diagnosis.mistakes import PAIR_COUNT, SEARCH_BUDGET, SEARCHED
from ..diagnosis.rejection import diagnose
from ..guard import Guard, Verdict
from ..stores import credential_store_for
from ..stores.memory import MemoryReplayStore

if TYPE_CHECKING:  # the oauth2 extra's: imported where OAuth 2.0 is explained
    from ..diagnosis.oauth2 import Sent

_C = ErrorCode

# --- the report -------------------------------------------------------------------------------


class _Report:
    """The verdict lines, in order, and the first failure (which decides the code)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.first: TBAError | None = None
        self.failed: dict[ErrorCode, TBAError] = {}
        self.errors: list[TBAError] = []  # every failure, in the order of the checks
        self.unwritten: list[Check] = []  # checks not run because they write to a store

    def verdict(self, number: str, check: str, error: TBAError | None, note: str = "") -> None:
        result = "ok" if error is None else error.code.value
        if error is not None:
            self.errors.append(error)
            self.failed.setdefault(error.code, error)
            if self.first is None:
                self.first = error
            elif not note:
                note = "(after the deciding check)"
        self.lines.append(f"{number:>4}. {check:<40} {result}{'  ' + note if note else ''}")

    def skip(self, number: str, check: str, why: str) -> None:
        self.lines.append(f"{number:>4}. {check:<40} not run: {why}")


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
    guard = _guard(settings, clock)
    scheme = _oauth2_scheme(guard, request)
    if scheme is not None:
        accepted = await _explain_oauth2(lines, guard, request, scheme, step, clock)
        return [_printable(line) for line in lines], accepted
    off = _oauth2_off(settings, request)
    if off:
        lines.append(f"Note: {off}")
    lines.append("")
    report = _Report()
    context = await _run_checks(report, guard, request, step, client_uri)
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
        if off:
            lines += _finding_lines([found(["oauth2-off"], named=False)])
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


def _guard(settings: GuardSettings, now: float) -> Guard:
    """The guard explain runs: the settings' own credentials and a throwaway replay store
    (explain never touches a shared store), on the clock explain was given."""
    return Guard(
        settings,
        credentials=credential_store_for(settings),
        replay_store=MemoryReplayStore(1, clock=lambda: now),
        clock=lambda: now,
    )


async def _run_checks(
    report: _Report,
    guard: Guard,
    request: OAuthRequest,
    step: Step,
    client_uri: str,
) -> _Context:
    """TBA's checks, run to the end; what they found about the credentials."""
    v = guard.start(request, step)
    await _report_verdicts(report, guard, v, OAUTH)
    return _Context(client_uri=client_uri, integration=v.integration, token=v.token)


async def _report_verdicts(report: _Report, guard: Guard, v: Verification, scheme: Scheme) -> None:
    """The scheme's checks, run to the end (`Guard.diagnose`), one line per number; the
    first failure decides."""
    step = v.step
    groups: dict[str, list[Verdict]] = {}
    for verdict in await guard.diagnose(v, scheme):
        groups.setdefault(verdict.check.number, []).append(verdict)
        if verdict.check.writes and verdict.skipped and not verdict.after_stop:
            report.unwritten.append(verdict.check)
    stopped = [number for number, group in groups.items() if group[0].after_stop]
    for number, group in groups.items():
        if number in stopped:
            continue
        applying = [verdict for verdict in group if verdict.applies]
        name = _group_name([verdict.check for verdict in applying or group])
        if not applying:  # e.g. the flow's callback and verifier, on a protected resource
            report.skip(number, name, f"not part of {_STEP_NAMES[step]}")
            continue
        first = next((x for x in applying if x.error is not None or x.skipped), None)
        if first is not None and first.error is None:
            report.skip(number, name, first.skipped)
        else:
            note = next((x.check.note for x in applying if x.check.note), "")
            report.verdict(number, name, first.error if first else None, note)
    if stopped:
        why = groups[stopped[0]][0].skipped
        report.skip(f"{stopped[0]}-{stopped[-1]}", "every later check", why)


def _group_name(checks: list[Check]) -> str:
    """The codes one number's checks raise. A check raising only the move to OAuth 2.0's codes
    goes unnamed beside others (TBA's 10: the signature): the verdict column names its code,
    and the column keeps its width."""
    named = [c for c in checks if not (c.codes and set(c.codes) <= MIGRATION_CODES)]
    return " / ".join(dict.fromkeys(check.name for check in named or checks))


_STEP_NAMES = {
    Step.RESOURCE: "a protected-resource request",
    Step.REQUEST_TOKEN: "the request-token step",
    Step.ACCESS_TOKEN: "the access-token step",
}


# --- the conclusion -----------------------------------------------------------------------------

#: Codes opaque mode shows as they are: the operational ones, and the move to OAuth 2.0.
_SHOWN_WHEN_OPAQUE = OPERATIONAL_CODES | MIGRATION_CODES


def _conclusion(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    context: _Context,
    now: float,
) -> list[str]:
    first = report.first
    assert first is not None
    lines = [f"Rejected: {first.code.value} (HTTP {first.status})"]
    if settings.error_detail == "opaque" and first.code not in _SHOWN_WHEN_OPAQUE:
        lines.append("  (opaque mode: the client sees only INVALID_LOGIN_ATTEMPT or a bare 400)")
    lines.append(f"Reason: {first.reason or CATALOG[first.code].message}")
    diagnosis = diagnose(
        first,
        request,
        settings,
        now=now,
        client_uri=context.client_uri,
        integration=context.integration,
        token=context.token,
        signature_failed=_C.INVALID_SIGNATURE in report.failed,
    )
    lines += _finding_lines(diagnosis.causes)
    if diagnosis.fix is not None:
        lines.append(f"Fix: {diagnosis.fix}")
    signature = diagnosis.signature
    if signature is not None:
        if first.code is not _C.INVALID_SIGNATURE:
            lines.append("The signature does not match either.")
        lines.append(f"Base string the server built: {signature.base_string}")
        if signature.matched:
            lines += _finding_lines(signature.findings)
        if not signature.complete:
            lines.append(
                f"Note: the search stopped after {SEARCH_BUDGET:g} s, before every pair of "
                "mistakes was tried (a very large request)"
            )
        if not signature.matched:
            lines += _finding_lines(signature.findings)
            lines.append(
                f"  Searched: {len(SEARCHED)} known mistakes and {PAIR_COUNT} pairs of them"
            )
    return lines


def _finding_lines(findings: Iterable[Finding]) -> list[str]:
    lines = []
    for finding in findings:
        lines.append(f"Likely cause: {finding.explanation}")
        if finding.names:
            label = "Mistakes" if len(finding.names) > 1 else "Mistake"
            lines.append(f"  {label}: {' + '.join(finding.names)}")
        if finding.note:
            lines.append(f"  Note: {finding.note}")
        lines.append(f"  Fix: {finding.fix}")
    return lines


# --- OAuth 2.0 ----------------------------------------------------------------------------------


def _oauth2_scheme(guard: Guard, request: OAuthRequest) -> Scheme | None:
    """The OAuth 2.0 scheme the server runs on this request: the token endpoint's grant for a
    POST to its path (whatever the header), else the scheme the header names when it is not
    TBA's; None when OAuth 2.0 is off or the request is TBA's."""
    settings = guard.settings
    if not settings.oauth2_enabled:
        return None
    if request.method == "POST" and request.path == settings.oauth2_token_path:
        from ..core.oauth2_sequence import CLIENT_CREDENTIALS  # the oauth2 extra: only here

        return CLIENT_CREDENTIALS
    scheme = guard.scheme_for(request)
    return None if scheme is OAUTH else scheme


def _oauth2_off(settings: GuardSettings, request: OAuthRequest) -> str | None:
    """Why an OAuth 2.0 request gets TBA's checks: OAuth 2.0 is off (None when it is on, or
    the request is no OAuth 2.0 one)."""
    if settings.oauth2_enabled:
        return None
    if request.method == "POST" and request.path == settings.oauth2_token_path:
        return (
            f"{request.path} is the OAuth 2.0 token endpoint's path, but OAuth 2.0 is off "
            "(no oauth2_signing_keys): no token endpoint answers, TBA's checks run"
        )
    if request.authorization_count == 1 and scheme_word(request.authorization) == "bearer":
        return (
            "the Authorization header is a Bearer token, but OAuth 2.0 is off "
            "(no oauth2_signing_keys): TBA's checks run on it"
        )
    return None


async def _explain_oauth2(
    lines: list[str],
    guard: Guard,
    request: OAuthRequest,
    scheme: Scheme,
    step: Step,
    now: float,
) -> bool:
    """OAuth 2.0's checks on the request, after what its token or assertion says: the lines
    go onto `lines`; whether it is accepted."""
    from ..core.oauth2_sequence import CLIENT_CREDENTIALS
    from ..diagnosis.oauth2 import bearer_token, read_sent, summary, token_form

    grant = scheme is CLIENT_CREDENTIALS
    if grant:
        label, step = "Client assertion", Step.ACCESS_TOKEN  # as the token endpoint runs it
        sent = read_sent(token_form(request).get("client_assertion"))
    else:
        label, sent = "Bearer token", read_sent(bearer_token(request))
    first, *rest = summary(sent, now)
    lines.append(f"{label}, read without verifying (never printed): {first}")
    lines += [f"  {line}" for line in rest]
    lines.append("")
    report = _Report()
    v = guard.start(request, step)
    await _report_verdicts(report, guard, v, scheme)
    lines += report.lines
    lines.append("")
    if report.first is None:
        lines.append(_oauth2_accepted(report, grant))
        return True
    lines += _oauth2_conclusion(report, guard.settings, request, v, sent, now)
    return False


def _oauth2_accepted(report: _Report, grant: bool) -> str:
    if not grant:
        return "Accepted: the bearer token passes every check."
    unwritten = report.unwritten[0].number if report.unwritten else "11"
    return (
        "Accepted: the token request passes every check explain runs. The real server also "
        f"records the assertion (check {unwritten}): explain cannot know whether it was used "
        "before, and sending it again is invalid_grant."
    )


def _oauth2_conclusion(
    report: _Report,
    settings: GuardSettings,
    request: OAuthRequest,
    v: Verification,
    sent: Sent,
    now: float,
) -> list[str]:
    """The deciding code and its reason, then the likely cause of every failure in order
    (each read from what was sent), or the deciding code's own fix when none is known."""
    from ..diagnosis.oauth2 import oauth2_cause

    first = report.first
    assert first is not None
    lines = [f"Rejected: {first.code.value} (HTTP {first.status})"]
    if settings.error_detail == "opaque" and first.code in BEARER_CODES | GRANT_CODES:
        lines.append("  (opaque mode: the client sees the error code without its description)")
    lines.append(f"Reason: {first.reason or CATALOG[first.code].message}")
    for error in report.errors:
        finding = oauth2_cause(error, request, settings, sent, now=now, certificate=v.certificate)
        if finding is not None:
            lines += _finding_lines([finding])
        elif error is first:
            lines.append(f"Fix: {CAUSES[first.code].fix}")
    for check in report.unwritten:
        lines.append(
            f"Note: check {check.number} ({check.name}) is not run: explain never writes to a "
            "store, so it cannot know whether this assertion was used before"
        )
    return lines
