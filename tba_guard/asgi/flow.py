"""The three-step TBA authorization flow, as NetSuite runs it, in front of any ASGI app.

1. `POST /rest/requesttoken`: signed with the consumer secret alone; answers a request token.
2. `GET /app/login/secure/authorizetoken.nl?oauth_token=…`: a consent page where a signed-in
   user picks a role and allows or denies; the browser is sent back to the callback.
3. `POST /rest/accesstoken`: signed with the consumer and request-token secrets, carrying the
   verifier; answers an access token, which the guard accepts at once.

Steps one and three run the documented order of checks, with the guard's own functions, so
every rejection carries the code NetSuite gives for that step. `TBAFlow(app, settings)` is
also the guard for `app`: every other path goes through `TBAGuardMiddleware` with the same
guard, whose credential store knows the issued tokens.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import html
import logging
import math
import os
import secrets
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.audit import AuditEvent, AuditHook, record
from ..core.checks import (
    Clock,
    Step,
    check_callback,
    check_entity_and_role,
    check_form_body,
    check_request_token,
    check_signature,
    check_verifier,
    claim_nonce,
    realm_sent,
)
from ..core.errors import OPERATIONAL_CODES, ErrorCode, TBAError
from ..core.protocols import (
    CredentialStore,
    ReplayStore,
    RequestTokenQuotaExceeded,
    TokenStore,
    TokenStoreError,
    UserLookup,
)
from ..core.records import RequestToken, Token, User
from ..core.request import OAuthRequest, wants_body
from ..core.settings import GuardSettings
from ..core.signature import signature_matches
from ..guard import Guard
from ..stores import credential_store_for, token_store_for
from ..stores.memory import (
    FlowCredentials,
    MemoryReplayStore,
    MemoryTokenStore,
    settings_user_lookup,
)
from .middleware import BUFFERS, ClientDisconnected, TBAGuardMiddleware

#: The host application says who is signed in (None: nobody) from the consent page's request.
CurrentUser = Callable[[Request], Awaitable[User | None]]

SESSION_COOKIE = "tba_session"
CSRF_COOKIE = "tba_csrf"
#: Over HTTPS the cookies carry this prefix: the browser then takes them only from this very
#: host over HTTPS, so a sibling subdomain cannot plant one (login CSRF by cookie injection).
HOST_PREFIX = "__Host-"
SESSION_SECONDS = 3600
#: Set to 1 to serve per-process stores from several workers anyway (benchmarks comparing it).
ALLOW_PER_PROCESS_ENV = "TBA_GUARD_ALLOW_PER_PROCESS_STORES"
_THROTTLE_MAX_KEYS = 100_000  # names and addresses remembered per process, oldest dropped first
_PAGE_CONTEXT = "tba_guard.page"  # scope key: the consent page's (secure, client), computed once
_MAX_FORM_BYTES = 16 * 1024
_MAX_STATE_LENGTH = 512
_SECRET_BYTES = 32  # token ids, secrets and verifiers: 64 hex characters, as NetSuite's
_FORM_TYPE = "application/x-www-form-urlencoded"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # No script, no frames (a consent page must not be clickjacked), no Referer to the callback.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


#: Reads the signed body into the request once steps 1 to 9 passed (the endpoint's receive).
BodyReader = Callable[[OAuthRequest], Awaitable[None]]


async def _no_body(request: OAuthRequest) -> None:
    """For a request built with its body (`request_from_url`): add the form's parameters."""
    check_form_body(request)


class PageError(Exception):
    """A consent-page failure: shown to the person as a page, never a redirect."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


logger = logging.getLogger("tba_guard.flow")


@asynccontextmanager
async def token_store_errors() -> AsyncIterator[None]:
    """A failing token store fails closed: the 503 the guard gives for a failing store. An
    integration at its request-token quota gets a code of its own, for it alone."""
    try:
        yield
    except RequestTokenQuotaExceeded as exc:
        raise TBAError(ErrorCode.REQUEST_TOKEN_LIMIT, str(exc)) from exc
    except TokenStoreError as exc:
        raise TBAError(
            ErrorCode.CREDENTIAL_STORE_UNAVAILABLE, f"token store failed: {exc}"
        ) from exc


class TBAFlow:
    """The flow's three endpoints, and `TBAGuardMiddleware` in front of `app` for every other
    path (use it in place of the middleware). Without `app`, other paths answer 404.

    Who may consent: pass `current_user` (an async callable from the consent page's request to
    a `User` or None) and, so that step three and the middleware notice a user or role that was
    disabled since, `user_lookup` (entity to `User`). Without `current_user` the flow signs in
    the `users` of the settings with a form of its own.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        settings: GuardSettings | None = None,
        *,
        tokens: TokenStore | None = None,
        current_user: CurrentUser | None = None,
        user_lookup: UserLookup | None = None,
        sign_in_url: str | None = None,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock = time.time,
        audit_hooks: Iterable[AuditHook] = (),
    ) -> None:
        self.settings = settings = settings or GuardSettings()
        self.clock = clock
        self.tokens = tokens or token_store_for(settings, clock=clock)
        builtin_sign_in = current_user is None
        if user_lookup is None and builtin_sign_in:
            user_lookup = settings_user_lookup(settings.users)
        self.user_lookup = user_lookup
        self.current_user: CurrentUser = current_user or self.session_user
        self.builtin_sign_in = builtin_sign_in
        self.sign_in_url = sign_in_url
        self.credentials = FlowCredentials(
            credentials or credential_store_for(settings), self.tokens, user_lookup
        )
        self.guard = Guard(
            settings,
            credentials=self.credentials,
            replay_store=replay_store,
            clock=clock,
            audit_hooks=audit_hooks,
        )
        self.middleware = TBAGuardMiddleware(app or Router(), guard=self.guard)
        # Signs the session and CSRF cookies. Random per process unless configured: set
        # `session_secret` when several processes serve the consent page.
        self._key = (settings.session_secret or secrets.token_hex(32)).encode()
        self._users_by_name = {user.name: user for user in settings.users}
        # Opaque mode signs rejected flow requests with this, as the guard does on resources.
        self._dummy_secret = secrets.token_urlsafe(32)
        window = settings.sign_in_failure_window
        self.name_failures = SignInThrottle(settings.sign_in_max_failures, window, clock)
        self.address_failures = SignInThrottle(
            settings.sign_in_max_failures_per_address, window, clock
        )
        # Who builds the app, and how many workers the server building it was told to run:
        # checked again where it serves (see `process_problem`).
        self._built_pid = os.getpid()
        self._server_workers = server_workers()
        self._checked_pid = 0
        self._process_problem: str | None = None

    # --- dispatch ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self.process_problem()
        if problem is not None:
            await _refuse_to_serve(scope, receive, send, problem)
            return
        if scope["type"] == "http":
            path = _route_path(scope)
            s = self.settings
            if path == s.request_token_path:
                await self.oauth_endpoint(scope, receive, send, Step.REQUEST_TOKEN)
                return
            if path == s.access_token_path:
                await self.oauth_endpoint(scope, receive, send, Step.ACCESS_TOKEN)
                return
            if path == s.authorize_path:
                request = Request(scope, receive)
                response = await self.consent(request)
                await response(scope, receive, send)
                return
        await self.middleware(scope, receive, send)

    def process_problem(self) -> str | None:
        """Why this process must not serve, or None: per-process stores while the server runs
        several workers (as it was told, read where the app was built), or an app built in one
        process and serving in another (a server that forks after loading it). Once per process."""
        pid = os.getpid()
        if pid == self._checked_pid:
            return self._process_problem
        self._checked_pid = pid
        workers = self._server_workers
        several = workers > 1 if workers is not None else pid != self._built_pid
        stores = self.per_process_stores()
        if not (several and stores) or os.environ.get(ALLOW_PER_PROCESS_ENV) == "1":
            self._process_problem = None
            return None
        how = f"{workers} worker processes" if workers else "a process forked after it was built"
        self._process_problem = (
            f"tba_guard refuses to serve: this app runs in {how}, but keeps "
            f"{', '.join(stores)} in each process, so a nonce, token or cookie one worker "
            'knows is unknown to the others. Set replay_store and token_store to "redis://…" '
            "URLs and a shared session_secret, or run one worker process."
        )
        logger.error(self._process_problem)
        return self._process_problem

    def per_process_stores(self) -> list[str]:
        """What this app keeps in its own process only, by the name of its setting."""
        found = []
        if isinstance(self.guard.replay_store, MemoryReplayStore):
            found.append('the replay store (replay_store = "memory")')
        if isinstance(self.tokens, MemoryTokenStore):
            found.append('the token store (token_store = "memory")')
        if self.settings.session_secret is None:
            found.append("the cookie key (no session_secret)")
        return found

    async def oauth_endpoint(self, scope: Scope, receive: Receive, send: Send, step: Step) -> None:
        """Steps one and three: a signed POST in, form-encoded credentials out."""
        if scope["method"] != "POST":
            refusal = PlainTextResponse("Use POST.", 405, headers={"Allow": "POST"})
            await refusal(scope, receive, send)
            return
        middleware = self.middleware
        held = 0

        async def read_body(request: OAuthRequest) -> None:
            """After step 9, as on protected resources: the body only when it is signed."""
            nonlocal held
            if wants_body(request):
                request.body = await middleware.read_body(receive)
                held = len(request.body)
            check_form_body(request)

        try:
            try:
                request = middleware.request_from_scope(scope)
            except TBAError as error:
                await middleware.refuse(scope, receive, send, error, None)
                return
            if step is Step.REQUEST_TOKEN:
                answer = await self.issue_request_token(request, read_body)
            else:
                answer = await self.issue_access_token(request, read_body)
        except ClientDisconnected:
            return
        except TBAError as error:
            await middleware.reject(scope, receive, send, error)
            return
        finally:
            BUFFERS.give_back(held)
        body_bytes = urlencode(answer, quote_via=quote).encode()
        response = Response(
            body_bytes, 200, media_type=_FORM_TYPE, headers={"Cache-Control": "no-store"}
        )
        await response(scope, receive, send)

    # --- step one ------------------------------------------------------------------------------

    async def issue_request_token(
        self, request: OAuthRequest, read_body: BodyReader = _no_body
    ) -> list[tuple[str, str]]:
        """The order of checks for the request-token step; the answer's form fields."""
        guard, step = self.guard, Step.REQUEST_TOKEN
        work = _Work()
        try:
            key = await guard.check_well_formed(request, step)  # 1-7
            work.credentials_checked = True
            integration = await guard.check_integration(request, step)  # 8
            # 9: there is no token yet
            await read_body(request)
            work.signature = True
            check_signature(request, integration.consumer_secret)  # 10: key `cs&`
            work.verified = True
            callback = check_callback(request.oauth, integration)  # 11
            await claim_nonce(guard.replay_store, key, guard.replay_ttl)  # 12
            role = request.oauth.get("role", "")
            token = RequestToken(
                token_id=secrets.token_hex(_SECRET_BYTES),
                token_secret=secrets.token_hex(_SECRET_BYTES),
                consumer_key=integration.consumer_key,
                callback=callback,
                expires_at=self.clock() + self.settings.request_token_ttl,
                realm=self.settings.realm or realm_sent(request.oauth),
                requested_role=role,
            )
            async with token_store_errors():
                await self.tokens.put_request_token(token)
        except TBAError as error:
            await self.equal_work(request, error, work, step)
            guard.audit(request, error)
            raise
        guard.audit(request, None)
        answer = [
            ("oauth_token", token.token_id),
            ("oauth_token_secret", token.token_secret),
            ("oauth_callback_confirmed", "true"),
        ]
        return [*answer, ("role", role)] if role else answer

    # --- step three ----------------------------------------------------------------------------

    async def issue_access_token(
        self, request: OAuthRequest, read_body: BodyReader = _no_body
    ) -> list[tuple[str, str]]:
        """The order of checks for the access-token step; the answer's form fields.

        The request token is consumed by the first exchange whose signature verified, even one
        with a wrong verifier: a verifier can be tried once.
        """
        guard, step = self.guard, Step.ACCESS_TOKEN
        work = _Work()
        try:
            key = await guard.check_well_formed(request, step)  # 1-7
            work.credentials_checked = True
            oauth = request.oauth  # read by the checks above
            integration = await guard.check_integration(request, step)  # 8
            token_id = oauth["oauth_token"]
            work.token = True
            async with token_store_errors():
                found = await self.tokens.request_token(token_id)
            request_token = check_request_token(  # 9
                found, oauth, integration, realm=self.settings.realm, now=self.clock()
            )
            access = Token(
                token_id=secrets.token_hex(_SECRET_BYTES),
                token_secret=secrets.token_hex(_SECRET_BYTES),
                consumer_key=integration.consumer_key,
                entity=request_token.entity,
                role=request_token.role,
                account=request_token.realm or None,
            )
            if request_token.decision == "allowed":
                work.user = True
                usable = await self.user_usable(request_token.entity, request_token.role)
                check_entity_and_role(dataclasses.replace(access, active=usable))  # 9
            await read_body(request)
            work.signature = True
            check_signature(request, integration.consumer_secret, request_token.token_secret)
            work.verified = True
            try:
                check_verifier(request_token, oauth)  # 11
            except TBAError:
                async with token_store_errors():
                    await self.tokens.consume(token_id)
                raise
            await claim_nonce(guard.replay_store, key, guard.replay_ttl)  # 12
            async with token_store_errors():
                if not await self.tokens.consume(token_id):
                    raise TBAError(
                        ErrorCode.TOKEN_REJECTED,
                        "request token used by a concurrent request",
                        problem="token_used",
                    )
                await self.tokens.put_access_token(access)
        except TBAError as error:
            await self.equal_work(request, error, work, step)
            guard.audit(request, error)
            raise
        guard.audit(request, None)
        return [("oauth_token", access.token_id), ("oauth_token_secret", access.token_secret)]

    async def equal_work(
        self, request: OAuthRequest, error: TBAError, work: _Work, step: Step
    ) -> None:
        """In opaque mode, the lookups and the signature a credential rejection skipped, with
        the results thrown away: an unknown key, a blocked integration, a missing flow box, an
        unusable request token and a bad signature then cost the same counted work."""
        if (
            self.settings.error_detail != "opaque"
            or error.code in OPERATIONAL_CODES
            or not work.credentials_checked
            or work.verified
        ):
            return
        with contextlib.suppress(Exception):  # the verdict is already decided
            if step is Step.ACCESS_TOKEN and not work.token:
                await self.tokens.request_token(request.oauth["oauth_token"])
            if step is Step.ACCESS_TOKEN and not work.user and self.user_lookup is not None:
                await self.user_lookup("")
        if not work.signature:
            signature_matches(request, self._dummy_secret, self._dummy_secret)

    async def user_usable(self, entity: str, role: str) -> bool:
        """Whether the user who consented may still act in that role (no lookup: yes)."""
        if self.user_lookup is None:
            return True
        try:
            user = await self.user_lookup(entity)
        except Exception as exc:  # a failing directory fails closed, never a 500
            raise TBAError(
                ErrorCode.CREDENTIAL_STORE_UNAVAILABLE, f"user lookup failed: {exc!r}"
            ) from exc
        return user is not None and user.may_use(role)

    # --- step two: the consent page ------------------------------------------------------------

    async def consent(self, request: Request) -> Response:
        try:
            self.page_context(request)
            if request.method == "GET":
                return await self.consent_page(request)
            if request.method == "POST":
                return await self.consent_decision(request)
            return PlainTextResponse("Use GET or POST.", 405, headers={"Allow": "GET, POST"})
        except PageError as error:
            return _page(error.title, f"<p>{_e(error.detail)}</p>", status=error.status)
        except (TokenStoreError, TBAError):
            title = "Try again in a moment"
            detail = "<p>The sign-in service cannot reach its token store.</p>"
            return _page(title, detail, status=503, headers={"Retry-After": "1"})

    def page_context(self, request: Request) -> tuple[bool, str]:
        """Whether the page is served over HTTPS, and the client's address, as the guard
        reads them (`public_url`, `trusted_proxies`); computed once per request."""
        context: tuple[bool, str] | None = request.scope.get(_PAGE_CONTEXT)
        if context is None:
            try:
                view = self.middleware.request_from_scope(request.scope)
            except TBAError as error:
                raise PageError(
                    400, "Bad request", "The request cannot be read one way."
                ) from error
            context = request.scope[_PAGE_CONTEXT] = (view.secure, view.client)
        return context

    def cookie_name(self, request: Request, name: str) -> str:
        """`__Host-` and `Secure` over HTTPS; the bare name over plain HTTP (development),
        where a browser would refuse a `__Host-` cookie."""
        return HOST_PREFIX + name if self.page_context(request)[0] else name

    async def consent_page(self, request: Request) -> Response:
        token_id = _single(request.query_params.multi_items(), "oauth_token")
        state = _checked_state(_single(request.query_params.multi_items(), "state"))
        token = await self.pending_token(token_id)
        integration_name = await self.integration_name(token)
        sent = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
        csrf_cookie = sent if self.csrf_cookie_valid(sent) else self.new_csrf_cookie()
        if sent and sent != csrf_cookie:
            reason = "CSRF cookie not issued here: replaced"
            self.audit_page(request, reason, token=token, outcome="rejected")
        csrf = self.csrf_field(csrf_cookie, token_id)
        user = await self.current_user(request)
        if user is None:
            if self.builtin_sign_in:
                response = self.sign_in_form(token, state, csrf, integration_name)
            elif self.sign_in_url:
                return RedirectResponse(
                    f"{self.sign_in_url}?{urlencode({'next': str(request.url)})}", 303
                )
            else:
                raise PageError(401, "Sign in first", "Sign in to the application, then retry.")
        elif not user.active or not user.roles:
            raise PageError(403, "No usable role", "Your account has no role that may do this.")
        else:
            response = self.consent_form(token, state, csrf, integration_name, user)
        if sent != csrf_cookie:
            self.set_cookie(request, response, CSRF_COOKIE, csrf_cookie, None)
        return response

    async def consent_decision(self, request: Request) -> Response:
        form = await _read_form(request)
        token_id = form.get("oauth_token", "")
        state = _checked_state(form.get("state", ""))
        cookie = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
        if not self.csrf_cookie_valid(cookie):
            reason = "consent form without a CSRF cookie issued here"
            self.audit_page(request, reason, token_id=token_id, outcome="rejected")
            raise PageError(403, "Expired form", "Reload the page and try again.")
        if not hmac.compare_digest(self.csrf_field(cookie, token_id), form.get("csrf", "")):
            self.audit_page(
                request,
                "consent form without a valid CSRF value",
                token_id=token_id,
                outcome="rejected",
            )
            raise PageError(403, "Expired form", "Reload the page and try again.")
        if form.get("action") == "sign_in" and self.builtin_sign_in:
            return await self.sign_in(request, form, token_id, state)
        token = await self.pending_token(token_id)
        user = await self.current_user(request)
        if user is None or not user.active:
            raise PageError(401, "Sign in first", "Your session ended. Sign in and retry.")
        decision = form.get("decision")
        if decision == "allow":
            role = form.get("role", "")
            if not user.may_use(role):
                raise PageError(400, "Choose a role", "Choose one of your roles.")
            verifier = secrets.token_hex(_SECRET_BYTES)
            async with token_store_errors():
                done = await self.tokens.decide(
                    token_id, "allowed", verifier=verifier, entity=user.entity, role=role
                )
            answer = [("oauth_verifier", verifier), ("company", token.realm)]
            answer += [("role", role), ("entity", user.entity)]
        elif decision == "deny":
            async with token_store_errors():
                done = await self.tokens.decide(
                    token_id, "denied", verifier="", entity=user.entity, role=""
                )
            answer = [("oauth_verifier", ""), ("company", token.realm)]
        else:
            raise PageError(400, "Choose Allow or Deny", "The form was not sent as shown.")
        if not done:
            raise PageError(400, "Already decided", "This request was already answered.")
        self.audit_page(request, f"consent {decision} by entity {user.entity}", token=token)
        answer = [("oauth_token", token_id), *answer]
        if state:
            answer.append(("state", state))
        return RedirectResponse(_with_query(token.callback, answer), 303, headers=_PAGE_HEADERS)

    async def pending_token(self, token_id: str) -> RequestToken:
        """The request token a consent page is about: known, unexpired, undecided."""
        if not token_id:
            raise PageError(400, "No request", "The link carries no oauth_token.")
        async with token_store_errors():
            token = await self.tokens.request_token(token_id)
        if token is None:
            raise PageError(400, "Unknown request", "Start again from the application.")
        if self.clock() >= token.expires_at:
            raise PageError(400, "Expired request", "This request expired. Start again.")
        if token.decision != "pending" or token.uses:
            raise PageError(400, "Already decided", "This request was already answered.")
        return token

    async def integration_name(self, token: RequestToken) -> str:
        integration = await self.credentials.integration(token.consumer_key)
        if integration is None or integration.state != "enabled":
            raise PageError(400, "Unavailable", "This application can no longer be authorized.")
        return integration.name or integration.consumer_key[:12]

    def audit_page(
        self,
        request: Request,
        reason: str,
        *,
        token: RequestToken | None = None,
        token_id: str = "",
        outcome: Literal["accepted", "rejected"] = "accepted",
    ) -> None:
        """A consent-page event on the audit log: a decision, a sign-in, a refused form. There
        is no catalog code for these; the reason says what happened (never a name typed in the
        sign-in form: people type passwords there by mistake)."""
        record(
            AuditEvent(
                outcome=outcome,
                code="",
                consumer_key=token.consumer_key if token else "",
                token_id=token.token_id if token else token_id,
                realm=token.realm if token else "",
                method=request.method,
                path=request.url.path,
                client=self.page_context(request)[1],
                time=self.clock(),
                reason=reason,
            ),
            self.guard.audit_hooks,
        )

    # --- built-in sign-in for `users` of the settings ------------------------------------------

    async def session_user(self, request: Request) -> User | None:
        """The user of a valid session cookie (the built-in sign-in)."""
        value = request.cookies.get(self.cookie_name(request, SESSION_COOKIE), "")
        encoded, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not (encoded and expires.isdigit() and mac):
            return None
        if not hmac.compare_digest(self.mac("session", encoded, expires), mac):
            return None
        if int(expires) <= self.clock() or self.user_lookup is None:
            return None
        try:
            entity = base64.urlsafe_b64decode(encoded.encode()).decode()
        except ValueError:
            return None
        user = await self.user_lookup(entity)
        return user if user is not None and user.active else None

    async def sign_in(
        self, request: Request, form: dict[str, str], token_id: str, state: str
    ) -> Response:
        token = await self.pending_token(token_id)
        name = form.get("name", "")
        client = self.page_context(request)[1]
        # Throttled before the password is looked at: once refused, even the right one waits.
        wait = max(self.name_failures.wait(name), self.address_failures.wait(client))
        if wait > 0:
            self.audit_page(request, "sign-in throttled", token=token, outcome="rejected")
            minutes = max(1, math.ceil(wait / 60))
            detail = f"Too many failed sign-ins. Try again in {minutes} minute(s)."
            retry = {"Retry-After": str(math.ceil(wait))}
            return _page("Too many attempts", f"<p>{_e(detail)}</p>", status=429, headers=retry)
        user = self._users_by_name.get(name)
        password = form.get("password", "").encode()
        expected = user.password.encode() if user else secrets.token_bytes(16)
        # Compare even for an unknown name, so timing does not tell which names exist.
        if not (hmac.compare_digest(expected, password) and user and user.password and user.active):
            self.name_failures.fail(name)
            self.address_failures.fail(client)
            self.audit_page(request, "sign-in failed", token=token, outcome="rejected")
            integration_name = await self.integration_name(token)
            cookie = request.cookies.get(self.cookie_name(request, CSRF_COOKIE), "")
            csrf = self.csrf_field(cookie, token_id)
            response = self.sign_in_form(
                token, state, csrf, integration_name, failed=True, status=401
            )
            return response
        self.name_failures.clear(name)
        self.audit_page(request, f"signed in as entity {user.entity}", token=token)
        query = [("oauth_token", token_id)] + ([("state", state)] if state else [])
        response = RedirectResponse(
            f"{request.url.path}?{urlencode(query)}", 303, headers=_PAGE_HEADERS
        )
        expires = str(int(self.clock()) + SESSION_SECONDS)
        encoded = base64.urlsafe_b64encode(user.entity.encode()).decode()
        value = f"{encoded}.{expires}.{self.mac('session', encoded, expires)}"
        self.set_cookie(request, response, SESSION_COOKIE, value, SESSION_SECONDS)
        return response

    # --- cookies and pages ---------------------------------------------------------------------

    def mac(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def new_csrf_cookie(self) -> str:
        """A CSRF cookie this server issued: a random value and its MAC, so a value chosen by
        the client (or planted by another site) is recognised and refused."""
        value = secrets.token_hex(16)
        return f"{value}.{self.mac('csrf-cookie', value)}"

    def csrf_cookie_valid(self, cookie: str) -> bool:
        value, _, mac = cookie.partition(".")
        return bool(value and mac) and hmac.compare_digest(self.mac("csrf-cookie", value), mac)

    def csrf_field(self, cookie: str, token_id: str) -> str:
        """The form's CSRF value: bound to the browser's cookie and to this request token."""
        return self.mac("csrf", cookie, token_id)

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int | None
    ) -> None:
        secure = self.page_context(request)[0]
        response.set_cookie(
            self.cookie_name(request, name),
            value,
            max_age=max_age,
            path="/",  # and no Domain: what `__Host-` requires
            secure=secure,
            httponly=True,
            samesite="lax",
        )

    def hidden_fields(self, token: RequestToken, state: str, csrf: str) -> str:
        fields = [("oauth_token", token.token_id), ("csrf", csrf)]
        fields += [("state", state)] if state else []
        return "".join(
            f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in fields
        )

    def sign_in_form(
        self,
        token: RequestToken,
        state: str,
        csrf: str,
        integration_name: str,
        *,
        failed: bool = False,
        status: int = 200,
    ) -> Response:
        notice = '<p class="error">Wrong name or password.</p>' if failed else ""
        body = f"""<p><strong>{_e(integration_name)}</strong> asks for access to your account.
Sign in to continue.</p>{notice}
<form method="post" action="{_e(self.settings.authorize_path)}">
{self.hidden_fields(token, state, csrf)}<input type="hidden" name="action" value="sign_in">
<label>Name <input name="name" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Sign in</button>
</form>"""
        return _page("Sign in", body, status=status)

    def consent_form(
        self, token: RequestToken, state: str, csrf: str, integration_name: str, user: User
    ) -> Response:
        options = "".join(
            f'<option value="{_e(role)}"{" selected" if role == token.requested_role else ""}>'
            f"{_e(role)}</option>"
            for role in user.roles
        )
        account = f" of account <strong>{_e(token.realm)}</strong>" if token.realm else ""
        body = f"""<p><strong>{_e(integration_name)}</strong> asks to act as you,
<strong>{_e(user.name)}</strong>{account}.</p>
<form method="post" action="{_e(self.settings.authorize_path)}">
{self.hidden_fields(token, state, csrf)}
<label>Role <select name="role">{options}</select></label>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>"""
        return _page(f"Authorize {integration_name}", body)


# --- helpers ---------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Work:
    """What a flow step has spent so far, so that opaque mode can spend the rest."""

    credentials_checked: bool = False  # steps 1-7 passed: step 8 looked the integration up
    token: bool = False  # the request token was looked up
    user: bool = False  # its user was looked up
    signature: bool = False  # the signature was computed
    verified: bool = False  # and it matched: past here the caller holds the secrets


class SignInThrottle:
    """Failed sign-ins per key (a name, or a client address) in a sliding window: after
    `limit` failures within `window` seconds the key waits until the oldest of them ages out.
    In-process and bounded: past `_THROTTLE_MAX_KEYS` keys the longest quiet are forgotten."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        failures = self._failures.get(key)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self.clock())

    def fail(self, key: str) -> None:
        failures = self._failures.pop(key, None)  # re-inserted last: the most recent
        if failures is None:
            if len(self._failures) >= _THROTTLE_MAX_KEYS:
                del self._failures[next(iter(self._failures))]
            failures = deque(maxlen=self.limit)
        failures.append(self.clock())
        self._failures[key] = failures

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


def server_workers() -> int | None:
    """How many worker processes the server that is building the app (uvicorn's `Config`,
    gunicorn's `cfg`, found up the call stack) was told to run; None when built elsewhere.
    uvicorn ignores `--workers` when it reloads."""
    frame = sys._getframe(1)
    while frame is not None:
        owner: Any = frame.f_locals.get("self")
        if owner is not None and type(owner).__module__.startswith(("uvicorn.", "gunicorn.")):
            for config in (owner, getattr(owner, "config", None), getattr(owner, "cfg", None)):
                workers = getattr(config, "workers", None)
                if isinstance(workers, int) and not isinstance(workers, bool):
                    return 1 if getattr(config, "reload", False) is True else workers
        frame = frame.f_back  # type: ignore[assignment]
    return None


async def _refuse_to_serve(scope: Scope, receive: Receive, send: Send, problem: str) -> None:
    """Fail the server's start-up (uvicorn then stops every worker) or, where it runs without
    a lifespan, answer 503 to every request."""
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": problem})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1011})
        return
    response = PlainTextResponse(
        "This service is misconfigured: see its log.", 503, headers={"Retry-After": "60"}
    )
    await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below any mount point (Starlette keeps the full path in `path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _single(items: Iterable[tuple[str, str]], name: str) -> str:
    values = [value for key, value in items if key == name]
    if len(values) > 1:
        raise PageError(400, "Bad link", f"{name} is given twice.")
    return values[0] if values else ""


def _checked_state(state: str) -> str:
    """`state` is optional, alphanumeric, at most 512 characters (NetSuite's rule)."""
    if state and not (len(state) <= _MAX_STATE_LENGTH and state.isascii() and state.isalnum()):
        raise PageError(400, "Bad link", "state must be letters and digits, 512 at most.")
    return state


async def _read_form(request: Request) -> dict[str, str]:
    """The consent form's fields; small, form-encoded and each name once."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise PageError(400, "Bad form", "The form was not sent as a form.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            raise PageError(413, "Bad form", "The form is too large.")
        chunks.append(chunk)
    try:
        pairs = parse_qsl(b"".join(chunks).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PageError(400, "Bad form", "The form is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise PageError(400, "Bad form", f"{name} is given twice.")
        form[name] = value
    return form


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    """The callback with our parameters added after any query of its own."""
    query = urlencode(params, quote_via=quote)
    if "?" not in url:
        return f"{url}?{query}"
    return f"{url}{'' if url.endswith(('?', '&')) else '&'}{query}"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.75rem 0}input,select{display:block;margin-top:.25rem}"
    "button{margin:.5rem .5rem 0 0;padding:.4rem 1.2rem}.error{color:#b00020}"
)


def _page(
    title: str, body: str, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status, headers={**_PAGE_HEADERS, **(headers or {})})
