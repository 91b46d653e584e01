"""The three-step TBA authorization flow, as NetSuite runs it, in front of any ASGI app.

1. `POST /rest/requesttoken`: signed with the consumer secret alone; answers a request token.
2. `GET /app/login/secure/authorizetoken.nl?oauth_token=…`: a consent page where a signed-in
   user picks a role and allows or denies; the browser is sent back to the callback. That page
   is `consent.ConsentPages`, which `TBAFlow` builds and hands its path to.
3. `POST /rest/accesstoken`: signed with the consumer and request-token secrets, carrying the
   verifier; answers an access token, which the guard accepts at once.

Steps one and three run the documented order of checks, with the guard's own functions, so
every rejection carries the code NetSuite gives for that step. `TBAFlow(app, settings)` is
also the guard for `app`: every other path goes through `TBAGuardMiddleware` with the same
guard, whose credential store knows the issued tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.audit import AuditHook
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
from ..core.records import RequestToken, Token
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
from .consent import ConsentPages, CurrentUser
from .middleware import BUFFERS, ClientDisconnected, TBAGuardMiddleware

#: Set to 1 to serve per-process stores from several workers anyway (benchmarks comparing it).
ALLOW_PER_PROCESS_ENV = "TBA_GUARD_ALLOW_PER_PROCESS_STORES"
_SECRET_BYTES = 32  # token ids and secrets: 64 hex characters, as NetSuite's
_FORM_TYPE = "application/x-www-form-urlencoded"


#: Reads the signed body into the request once steps 1 to 9 passed (the endpoint's receive).
BodyReader = Callable[[OAuthRequest], Awaitable[None]]


async def _no_body(request: OAuthRequest) -> None:
    """For a request built with its body (`request_from_url`): add the form's parameters."""
    check_form_body(request)


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
        if user_lookup is None and current_user is None:
            user_lookup = settings_user_lookup(settings.users)
        self.user_lookup = user_lookup
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
        self.consent_pages = ConsentPages(
            settings,
            self.tokens,
            self.credentials,
            self.middleware,
            current_user=current_user,
            user_lookup=user_lookup,
            sign_in_url=sign_in_url,
            clock=clock,
        )
        # Opaque mode signs rejected flow requests with this, as the guard does on resources.
        self._dummy_secret = secrets.token_urlsafe(32)
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
                await self.consent_pages(scope, receive, send)
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


# --- helpers ---------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Work:
    """What a flow step has spent so far, so that opaque mode can spend the rest."""

    credentials_checked: bool = False  # steps 1-7 passed: step 8 looked the integration up
    token: bool = False  # the request token was looked up
    user: bool = False  # its user was looked up
    signature: bool = False  # the signature was computed
    verified: bool = False  # and it matched: past here the caller holds the secrets


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
