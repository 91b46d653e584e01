"""`Guard`: the one driver of a request's verification, for every way of guarding.

The middleware, `RequireTBA` and the flow's token endpoints all call `Guard.verifying`: it
dispatches to the request's scheme, runs that scheme's declared checks, reads the body when the
signature covers it, builds the identity, audits the verdict and gives the body's buffer back on
every path. It sits above the stores because it builds the ones the settings name.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from types import TracebackType

from mypy_extensions import mypyc_attr

from .core.audit import AuditEvent, AuditHook, is_heard, record
from .core.checks import Clock, Step, realm_sent
from .core.errors import OPERATIONAL_CODES, ErrorCode, TBAError
from .core.protocols import CredentialStore, ReplayStore, TokenStore, UserLookup
from .core.records import Identity
from .core.request import OAuthRequest, request_from_url
from .core.scheme import SCHEMES, Check, Limits, Need, Scheme, Verification, scheme_word
from .core.sequence import OAUTH
from .core.settings import GuardSettings, SettingsError
from .core.signature import signature_matches
from .stores import credential_store_for, needs_extra, replay_store_for
from .stores.usage import UsageCounts, usage_counts_for

#: Reads the body the signature covers, once the checks before it passed: the bytes, and how
#: many of them it holds against the process's `BUFFERS` (the guard gives those back).
BodyReader = Callable[[], Awaitable[tuple[bytes, int]]]
#: Told each verdict and the seconds the verification took, where metrics or tracing are on
#: (asgi/metrics.py); while `Guard.observer` is None nothing is measured.
VerdictObserver = Callable[["Verifying", float], None]


class ClientDisconnected(Exception):
    """The client went away before its body arrived: there is nobody left to answer."""


class BodyBuffers:
    """Bytes of request bodies this process holds for verification, across all requests in
    flight, so that many slow or large bodies at once meet a 503 instead of more memory."""

    def __init__(self) -> None:
        self.held = 0

    def take(self, size: int, limit: int) -> None:
        if self.held + size > limit:
            raise TBAError(ErrorCode.REQUEST_BUFFERS_FULL, "request buffers full")
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


#: One per process: the limit is on the process's memory, whatever the number of guards.
BUFFERS = BodyBuffers()


class Verdict:
    """One check's outcome when a request is run to the end (`Guard.diagnose`): the error it
    raised, or why it did not run (`skipped`); neither means it passed. A check of another
    step `applies` not; one after a check that `stops` is skipped `after_stop`."""

    __slots__ = ("after_stop", "applies", "check", "error", "skipped")

    def __init__(
        self,
        check: Check,
        error: TBAError | None = None,
        skipped: str = "",
        *,
        applies: bool = True,
        after_stop: bool = False,
    ) -> None:
        self.check, self.error, self.skipped = check, error, skipped
        self.applies, self.after_stop = applies, after_stop


@mypyc_attr(allow_interpreted_subclasses=True)
class Guard:
    """Verifies requests in the documented order. One instance serves every request: it keeps
    no per-request state, only the settings, the stores and the schemes it dispatches to.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock | None = None,
        audit_hooks: Iterable[AuditHook] = (),
        schemes: Iterable[Scheme] | None = None,
        usage: UsageCounts | None = None,
    ) -> None:
        self.settings = settings = settings or GuardSettings()
        # None for the wall clock: a plain default keeps the signature readable when compiled.
        self.clock = clock = time.time if clock is None else clock
        # `is None`, not `or`: an empty store may be falsy (`MemoryReplayStore` has a length).
        self.credentials = credential_store_for(settings) if credentials is None else credentials
        self.replay_store = (
            replay_store_for(settings, clock=clock) if replay_store is None else replay_store
        )
        self.audit_hooks = tuple(audit_hooks)
        self.observer: VerdictObserver | None = None
        # Accepted requests per integration, token and scheme, where the store keeps them.
        self.usage = usage or usage_counts_for(
            self.credentials, interval=settings.usage_flush_interval, clock=clock
        )
        if schemes is None:
            if settings.oauth2_enabled:
                load_oauth2()  # registers the Bearer scheme
            schemes = [s for s in SCHEMES.values() if s.enabled is None or s.enabled(settings)]
        self.schemes: Mapping[str, Scheme] = {scheme.name.lower(): scheme for scheme in schemes}
        # TBA's alone (the usual case): no header word to read per request.
        self._several_schemes = list(self.schemes.values()) != [OAUTH]
        # Opaque mode signs rejected requests with this, so that they cost what a real check costs.
        self._dummy_secret = secrets.token_urlsafe(32)
        self._limits = limits_for(settings)

    def with_credentials(self, credentials: CredentialStore) -> Guard:
        """The same guard (settings, replay store, clock, hooks, schemes) over another
        credential store: the flow's, which also knows the tokens it issued."""
        guard = Guard(
            self.settings,
            credentials=credentials,
            replay_store=self.replay_store,
            clock=self.clock,
            audit_hooks=self.audit_hooks,
            schemes=self.schemes.values(),
            usage=self.usage,
        )
        guard.observer = self.observer
        return guard

    @property
    def replay_ttl(self) -> int:
        """How long a replay key is kept: `Limits.replay_ttl`."""
        return self.limits.replay_ttl

    @property
    def limits(self) -> Limits:
        """The settings the checks read, copied again whenever `settings` is replaced."""
        if self._limits.settings is not self.settings:
            self._limits = limits_for(self.settings)
        return self._limits

    def scheme_for(self, request: OAuthRequest) -> Scheme:
        """The scheme the request's one `Authorization` header names; TBA's for none, for
        several (its check 2 refuses them) and for a scheme no registered one answers."""
        if request.authorization_count == 1 and self._several_schemes:
            scheme = self.schemes.get(scheme_word(request.authorization))
            if scheme is not None:
                return scheme
        return OAUTH

    def start(
        self,
        request: OAuthRequest,
        step: Step = Step.RESOURCE,
        *,
        tokens: TokenStore | None = None,
        user_lookup: UserLookup | None = None,
    ) -> Verification:
        """A request's state for the sequence, against this guard's settings and stores (and,
        for the flow's steps, its token store and user directory)."""
        limits = self.limits
        return Verification(
            request,
            step,
            limits.settings,
            now=self.clock(),
            credentials=self.credentials,
            replay_store=self.replay_store,
            tokens=tokens,
            user_lookup=user_lookup,
            limits=limits,
        )

    def verifying(
        self,
        request: OAuthRequest,
        read_body: BodyReader | None = None,
        *,
        step: Step = Step.RESOURCE,
        tokens: TokenStore | None = None,
        user_lookup: UserLookup | None = None,
        scheme: Scheme | None = None,
    ) -> Verifying:
        """`async with guard.verifying(request, read_body) as verified:` runs the checks.

        Inside, `verified.error` is the rejection (already audited), else `verified.identity`
        speaks for the request. `read_body` is called only when the signature covers the body;
        without one, `request.body` is taken as it is. On leaving, the body's buffer is given
        back; a flow step is audited then, so that a failure inside the block is its verdict.
        `scheme` runs that one whatever the header says (the OAuth 2.0 token endpoint's grant).
        """
        if self.observer is not None:  # metrics or tracing: the one test a request pays
            return ObservedVerifying(self, request, read_body, step, tokens, user_lookup, scheme)
        return Verifying(self, request, read_body, step, tokens, user_lookup, scheme)

    async def run(self, verification: Verification, *, body: bool, scheme: Scheme = OAUTH) -> None:
        """The scheme's checks for the step before the body, or from the body on, fail-fast.
        In opaque mode a credential rejection first does the work it skipped (`equal_work`)."""
        checks = (scheme.after_body if body else scheme.before_body)[verification.step]
        try:
            for check in checks:
                # An async check returns None where its store answered at once.
                pending = check.run(verification)
                if pending is not None:
                    await pending
        except TBAError as error:
            if (
                scheme is OAUTH
                and self.settings.error_detail == "opaque"
                and error.code not in OPERATIONAL_CODES
            ):
                await self.equal_work(verification)
            raise

    async def diagnose(self, verification: Verification, scheme: Scheme = OAUTH) -> list[Verdict]:
        """Every check of the scheme, run to the end for `explain`: after a failure the later
        checks still run where what they need was established, so every problem shows at once.
        Within one number the first failure or skip decides. Never writes to a store."""
        verdicts: list[Verdict] = []
        decided: set[str] = set()  # numbers whose outcome is known
        stopped: Need | None = None
        for check in scheme.sequence:
            if stopped is not None:
                verdicts.append(Verdict(check, skipped=stopped.unknown, after_stop=True))
            elif verification.step not in check.steps:
                verdicts.append(Verdict(check, applies=False))
            elif check.number in decided:
                continue
            elif check.writes:
                decided.add(check.number)
                verdicts.append(Verdict(check, skipped="explain never writes to a store"))
            elif missing := [n for n in check.needs if getattr(verification, n.field) is None]:
                decided.add(check.number)
                verdicts.append(Verdict(check, skipped=missing[0].unknown))
            else:
                error = await _outcome(check, verification)
                verdicts.append(Verdict(check, error))
                if error is not None:
                    decided.add(check.number)
                    stopped = check.stops
                    if check.recover is not None:
                        check.recover(verification)
        return verdicts

    async def equal_work(self, verification: Verification) -> None:
        """The lookups and the signature a rejection skipped, with the results thrown away.

        In opaque mode the wire does not say which check failed, and the work must not say it
        either: an unknown consumer key, a blocked integration, an unusable token and a bad
        signature each cost the same lookups and one signature (against a random dummy secret
        when the real one is unknown), so timing cannot reveal which keys or tokens exist.
        Requests refused before credentials are looked up (checks 1 to 7) cost no lookup.
        """
        v = verification
        if not v.well_formed or v.verified:
            return
        oauth, step = v.request.oauth, v.step
        with contextlib.suppress(Exception):  # the verdict is already decided
            if step is Step.RESOURCE and not v.looked_up_token:
                await self.credentials.token(oauth["oauth_token"])
            if step is Step.ACCESS_TOKEN and not v.looked_up_token and v.tokens is not None:
                await v.tokens.request_token(oauth["oauth_token"])
            if step is Step.ACCESS_TOKEN and not v.looked_up_user and v.user_lookup is not None:
                await v.user_lookup("")
        if not v.signed:
            signature_matches(v.request, self._dummy_secret, self._dummy_secret)

    async def verify(self, request: OAuthRequest) -> Identity:
        """Verify a request for a protected resource, its body in `request.body`; return who it
        speaks for. Raises `TBAError` with the first failing check's code. Accepted or not,
        the decision goes to the audit log."""
        async with self.verifying(request) as verified:
            if verified.error is not None:
                raise verified.error
            return verified.identity

    async def verify_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes | str = b"",
    ) -> Identity:
        """The single call: verify a whole request given as method, URL, headers and body."""
        return await self.verify(request_from_url(method, url, headers, body))

    async def rejection_detail(self, verification: Verification, error: TBAError) -> str:
        """Why a rejection happened, for its audit record: what the installed diagnosis
        (`DESCRIBERS`) says, asked only when someone listens. It never changes the verdict."""
        if not DESCRIBERS or not is_heard("rejected", self.audit_hooks):
            return ""
        try:
            return await DESCRIBERS[-1](self, verification, error)
        except Exception:  # a diagnosis that fails must not turn a rejection into a 500
            logging.getLogger("tba_guard").exception("diagnosing %s failed", error.code)
            return ""

    def audit(self, request: OAuthRequest, error: TBAError | None) -> None:
        """Record one decision (the audit log and the hooks), if anyone listens. The consumer
        key and token are the OAuth header's, or those another scheme found
        (`request.principal`); a rejection's detail is its diagnosis (`REJECTION_DETAIL`)."""
        if not is_heard("accepted" if error is None else "rejected", self.audit_hooks):
            return
        oauth = request.oauth
        if request.principal is not None:
            scheme_name, consumer_key, token_id = request.principal
        else:
            scheme_name = "tba"
            consumer_key = oauth.get("oauth_consumer_key", "")
            token_id = oauth.get("oauth_token", "")
        record(
            AuditEvent(
                outcome="accepted" if error is None else "rejected",
                code=error.code.value if error else "",
                consumer_key=consumer_key,
                token_id=token_id,
                realm=realm_sent(oauth) or (self.settings.realm or ""),
                method=request.method,
                path=request.path,
                client=request.client,
                time=self.clock(),
                reason=error.reason if error else "",
                scheme=scheme_name,
                detail="" if error is None else REJECTION_DETAIL.get(),
            ),
            self.audit_hooks,
        )


#: Says why a rejection happened, for its record's `detail`. Installed from above, by
#: `tba_guard.diagnosis.operator` when a guarded app is built: the guard never imports it.
Describer = Callable[[Guard, Verification, TBAError], Awaitable[str]]
DESCRIBERS: list[Describer] = []
#: The detail of the rejection being audited: beside `Guard.audit`, whose signature subclasses
#: override, rather than in it.
REJECTION_DETAIL: ContextVar[str] = ContextVar("tba_guard_rejection_detail", default="")


def load_oauth2() -> None:
    """Import OAuth 2.0's sequences (registering the Bearer scheme); its packages are the
    `oauth2` extra's."""
    with needs_extra("OAuth 2.0 (oauth2_signing_keys)"):
        from .core import oauth2_sequence  # noqa: F401


def limits_for(settings: GuardSettings) -> Limits:
    """The settings the checks read, with OAuth 2.0's keys and token cache when it is on."""
    limits = Limits(settings)
    if settings.oauth2_enabled:
        load_oauth2()
        from .core.jose import JoseError
        from .core.oauth2 import AccessTokens

        try:
            limits.oauth2 = AccessTokens(settings)
        except JoseError as exc:  # a key that does not load is a setting to fix
            raise SettingsError(str(exc)) from None
    return limits


async def _outcome(check: Check, verification: Verification) -> TBAError | None:
    """Run one check: the error it raised, or None."""
    try:
        pending = check.run(verification)
        if pending is not None:
            await pending
    except TBAError as error:
        return error
    return None


class Verifying:
    """One request's verification, as `Guard.verifying` runs it (an async context manager)."""

    __slots__ = (
        "error",
        "guard",
        "held",
        "read_body",
        "request",
        "scheme",
        "step",
        "tokens",
        "user_lookup",
        "verification",
    )

    def __init__(
        self,
        guard: Guard,
        request: OAuthRequest,
        read_body: BodyReader | None,
        step: Step,
        tokens: TokenStore | None,
        user_lookup: UserLookup | None,
        scheme: Scheme | None = None,
    ) -> None:
        self.guard = guard
        self.request = request
        self.read_body = read_body
        self.step = step
        self.tokens = tokens
        self.user_lookup = user_lookup
        self.scheme = guard.scheme_for(request) if scheme is None else scheme
        self.verification: Verification | None = None
        self.error: TBAError | None = None
        self.held = 0

    @property
    def identity(self) -> Identity:
        """Who the verified request speaks for (a protected resource's)."""
        assert self.verification is not None
        assert self.error is None
        return self.scheme.identity(self.verification)

    async def __aenter__(self) -> Verifying:
        guard, request, scheme = self.guard, self.request, self.scheme
        verification = guard.start(
            request, self.step, tokens=self.tokens, user_lookup=self.user_lookup
        )
        self.verification = verification
        rejection: TBAError | None = None
        try:
            await guard.run(verification, body=False, scheme=scheme)
            if self.read_body is not None and scheme.wants_body(request):
                request.body, self.held = await self.read_body()
            await guard.run(verification, body=True, scheme=scheme)
        except TBAError as error:
            rejection = error
        except BaseException:
            self.release()
            raise
        if rejection is not None:
            # Diagnosed outside the `except`: compiled by mypyc, an await inside one could
            # raise this exception again in a later request.
            self.release()
            self.error = rejection
            detail = REJECTION_DETAIL.set(await guard.rejection_detail(verification, rejection))
            self.audit(rejection)
            REJECTION_DETAIL.reset(detail)
            return self
        if self.step is Step.RESOURCE:
            self.audit(None)
            if guard.usage is not None:
                self.count_use(guard.usage, verification)
        return self

    def count_use(self, usage: UsageCounts, verification: Verification) -> None:
        scheme = self.scheme
        if scheme.who is not None:
            consumer_key, token_id = scheme.who(verification)
        else:
            oauth = self.request.oauth
            consumer_key, token_id = oauth["oauth_consumer_key"], oauth.get("oauth_token", "")
        usage.count(consumer_key, token_id, scheme.audit_name, verification.now)

    def audit(self, error: TBAError | None) -> None:
        """The guard's audit of this request, naming who its scheme found."""
        scheme, verification = self.scheme, self.verification
        if scheme.who is not None and verification is not None:
            self.request.principal = (scheme.audit_name, *scheme.who(verification))
        self.guard.audit(self.request, error)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
        if self.step is not Step.RESOURCE and self.error is None:
            if exc is None:
                self.audit(None)
            elif isinstance(exc, TBAError):
                self.audit(exc)

    def release(self) -> None:
        """Give the body's buffer back, once."""
        if self.held:
            BUFFERS.give_back(self.held)
            self.held = 0


class ObservedVerifying(Verifying):
    """A verification timed for the guard's observer (metrics, tracing), from entering to the
    verdict: only this one reads a timer, so a guard without an observer pays nothing."""

    __slots__ = ()

    async def __aenter__(self) -> Verifying:
        started = time.perf_counter()
        await super().__aenter__()
        observer = self.guard.observer
        assert observer is not None  # set before the verification began
        observer(self, time.perf_counter() - started)
        return self
