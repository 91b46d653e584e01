"""The three-step TBA authorization flow (NetSuite rules N20 to N26), in front of any ASGI app.

1. `POST /rest/requesttoken`: signed with the consumer secret alone; answers a request token.
2. `GET /app/login/secure/authorizetoken.nl?oauth_token=…`: a consent page where a signed-in
   user picks a role and allows or denies; the browser is sent back to the callback. That page
   is `consent.ConsentPages`, which `TBAFlow` builds and hands its path to.
3. `POST /rest/accesstoken`: signed with the consumer and request-token secrets, carrying the
   verifier; answers an access token, which the guard accepts at once.

Steps one and three go through `Guard.verifying` like any request, so every rejection carries
the code of that step (rule N2) and is rendered by the same renderer, `on_error` included.
`TBAFlow(app, settings)` is also the guard for `app`: every other path goes through
`TBAGuardMiddleware` with the same guard, whose credential store knows the issued tokens.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, urlencode

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.checks import Step, realm_sent, token_store_unavailable
from ..core.errors import ErrorCode, TBAError
from ..core.protocols import (
    TokenStore,
    TokenStoreError,
    UserLookup,
)
from ..core.records import RequestToken, Token
from ..core.request import OAuthRequest
from ..core.settings import GuardSettings
from ..guard import BodyReader, ClientDisconnected, Guard
from ..stores import token_store_for
from ..stores.memory import (
    FlowCredentials,
    MemoryReplayStore,
    MemoryTokenStore,
    settings_user_lookup,
)
from .answers import OnError
from .consent import ConsentPages, CurrentUser
from .middleware import TBAGuardMiddleware, guard_for

#: Set to 1 to serve per-process stores from several workers anyway (benchmarks comparing it).
ALLOW_PER_PROCESS_ENV = "TBA_GUARD_ALLOW_PER_PROCESS_STORES"
#: The worker count when `TBAFlow(workers=)` states none: uvicorn's `--workers` and gunicorn's
#: `workers` default to it, and `tba-guard serve --workers N` sets it for its workers.
WORKERS_ENV = "WEB_CONCURRENCY"
_SECRET_BYTES = 32  # token ids and secrets: 64 hex characters (NetSuite rule N19)
_FORM_TYPE = "application/x-www-form-urlencoded"


logger = logging.getLogger("tba_guard.asgi.flow")


@asynccontextmanager
async def token_store_errors() -> AsyncIterator[None]:
    """The flow's own writes fail closed as the sequence's reads do (`token_store_unavailable`)."""
    try:
        yield
    except TokenStoreError as exc:
        raise token_store_unavailable(exc) from exc


class TBAFlow:
    """The flow's three endpoints, and `TBAGuardMiddleware` in front of `app` for every other
    path (use it in place of the middleware). Without `app`, other paths answer 404.

    Who may consent: pass `current_user` (an async callable from the consent page's request to
    a `User` or None) and, so that step three and the middleware notice a user or role that was
    disabled since, `user_lookup` (entity to `User`). Without `current_user` the flow signs in
    the `users` of the settings with a form of its own.

    Per-process stores (the in-process replay or token store, no `session_secret`) are refused
    when several worker processes serve the app: `workers` states how many, else the
    `WEB_CONCURRENCY` environment variable; see `process_problem`.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        tokens: TokenStore | None = None,
        current_user: CurrentUser | None = None,
        user_lookup: UserLookup | None = None,
        sign_in_url: str | None = None,
        on_error: OnError | None = None,
        workers: int | None = None,
    ) -> None:
        given = guard_for(settings, guard)
        self.settings = settings = given.settings
        self.clock = clock = given.clock
        self.tokens = token_store_for(settings, clock=clock) if tokens is None else tokens
        if user_lookup is None and current_user is None:
            user_lookup = settings_user_lookup(settings.users)
        self.user_lookup = user_lookup
        # The guard's credentials, and the access tokens the flow issues.
        self.credentials = FlowCredentials(given.credentials, self.tokens, user_lookup)
        self.guard = given.with_credentials(self.credentials)
        self.middleware = TBAGuardMiddleware(app or Router(), guard=self.guard, on_error=on_error)
        self.reader = self.middleware.reader
        self.rejections = self.middleware.rejections
        self.consent_pages = ConsentPages(
            settings,
            self.tokens,
            self.credentials,
            self.reader,
            self.guard,
            current_user=current_user,
            user_lookup=user_lookup,
            sign_in_url=sign_in_url,
            clock=clock,
        )
        # OAuth 2.0's token endpoint, beside TBA's flow, when the settings turn it on.
        self.token_endpoint: ASGIApp | None = None
        if settings.oauth2_enabled:
            from .token_endpoint import OAuth2TokenEndpoint

            self.token_endpoint = OAuth2TokenEndpoint(self.guard, self.reader)
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be 1 or more worker processes, not {workers}")
        # Who builds the app, and how many workers serve it if stated: checked where it serves
        # (`process_problem`), where WEB_CONCURRENCY is read when `workers` is None.
        self._built_pid = os.getpid()
        self._workers = workers
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
            if self.token_endpoint is not None and path == s.oauth2_token_path:
                await self.token_endpoint(scope, receive, send)
                return
        await self.middleware(scope, receive, send)

    def process_problem(self) -> str | None:
        """Why this process must not serve, or None: per-process stores while several worker
        processes serve the app (`worker_count`), or, the count unknown, an app built in one
        process and serving in another (a server that forks after loading it). Checked once
        per process, the first time it is called there."""
        pid = os.getpid()
        if pid == self._checked_pid:
            return self._process_problem
        self._checked_pid = pid
        self._process_problem = problem = self._find_process_problem(pid != self._built_pid)
        if problem is not None:
            logger.error(problem)
        return problem

    def worker_count(self) -> int | None:
        """How many worker processes serve this app: `TBAFlow(workers=N)`, else the
        `WEB_CONCURRENCY` environment variable as this process sees it, else None (unknown).
        Raises `ValueError` when WEB_CONCURRENCY is not a whole number of 1 or more."""
        if self._workers is not None:
            return self._workers
        value = os.environ.get(WORKERS_ENV)
        if value is None:
            return None
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV}={value!r} is not a number of worker processes")
        return workers

    def _find_process_problem(self, forked: bool) -> str | None:
        stores = self.per_process_stores()
        if not stores or os.environ.get(ALLOW_PER_PROCESS_ENV) == "1":
            return None
        kept = ", ".join(stores)
        try:
            workers = self.worker_count()
        except ValueError as exc:
            return (
                f"tba_guard refuses to serve: {exc}, so it cannot tell whether other workers "
                f"serve this app, which keeps {kept} in each process. Set {WORKERS_ENV} to the "
                "number of worker processes, or pass TBAFlow(workers=N)."
            )
        if workers is not None:
            if workers == 1:
                return None
            how = f"{workers} worker processes"
        elif forked:
            how = "a process forked after it was built"
        else:
            return None
        return (
            f"tba_guard refuses to serve: this app runs in {how}, but keeps {kept} in each "
            "process, so a nonce, token or cookie one worker knows is unknown to the others. "
            'Set replay_store and token_store to "redis://…" URLs and a shared session_secret, '
            "or run one worker process."
        )

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
        reader, rejections = self.reader, self.rejections
        try:
            request = reader.request_from_scope(scope)
        except TBAError as error:
            stub = reader.stub_of(scope)
            self.guard.audit(stub, error)
            await rejections.answer(scope, receive, send, error, stub)
            return

        async def read_body() -> tuple[bytes, int]:
            """After check 9, as on protected resources: the body only when it is signed."""
            body = await reader.read_body(receive)
            return body, len(body)

        issue = self.issue_request_token if step is Step.REQUEST_TOKEN else self.issue_access_token
        try:
            answer = await issue(request, read_body)
        except ClientDisconnected:
            return
        except TBAError as error:
            await rejections.answer(scope, receive, send, error, request)
            return
        body_bytes = urlencode(answer, quote_via=quote).encode()
        response = Response(
            body_bytes, 200, media_type=_FORM_TYPE, headers={"Cache-Control": "no-store"}
        )
        await response(scope, receive, send)

    # --- step one ------------------------------------------------------------------------------

    async def issue_request_token(
        self, request: OAuthRequest, read_body: BodyReader | None = None
    ) -> list[tuple[str, str]]:
        """The declared sequence for the request-token step; the answer's form fields.
        Raises `TBAError`, audited, for a rejection."""
        verifying = self.guard.verifying(
            request, read_body, step=Step.REQUEST_TOKEN, tokens=self.tokens
        )
        async with verifying as verified:
            if verified.error is not None:
                raise verified.error
            verification = verified.verification
            assert verification is not None
            integration = verification.integration
            assert integration is not None
            role = request.oauth.get("role", "")  # NetSuite rule N22
            token = RequestToken(
                token_id=secrets.token_hex(_SECRET_BYTES),
                token_secret=secrets.token_hex(_SECRET_BYTES),
                consumer_key=integration.consumer_key,
                callback=verification.callback,
                expires_at=self.clock() + self.settings.request_token_ttl,
                realm=self.settings.realm or realm_sent(request.oauth),
                requested_role=role,
            )
            async with token_store_errors():
                await self.tokens.put_request_token(token)
        answer = [
            ("oauth_token", token.token_id),
            ("oauth_token_secret", token.token_secret),
            ("oauth_callback_confirmed", "true"),
        ]
        return [*answer, ("role", role)] if role else answer

    # --- step three ----------------------------------------------------------------------------

    async def issue_access_token(
        self, request: OAuthRequest, read_body: BodyReader | None = None
    ) -> list[tuple[str, str]]:
        """The declared sequence for the access-token step; the answer's form fields.
        Raises `TBAError`, audited, for a rejection.

        The request token is consumed by the first exchange whose signature verified, even one
        with a wrong verifier: a verifier can be tried once.
        """
        verifying = self.guard.verifying(
            request,
            read_body,
            step=Step.ACCESS_TOKEN,
            tokens=self.tokens,
            user_lookup=self.user_lookup,
        )
        async with verifying as verified:
            if verified.error is not None:
                raise verified.error
            verification = verified.verification
            assert verification is not None
            integration, request_token = verification.integration, verification.request_token
            assert integration is not None
            assert request_token is not None
            access = Token(
                token_id=secrets.token_hex(_SECRET_BYTES),
                token_secret=secrets.token_hex(_SECRET_BYTES),
                consumer_key=integration.consumer_key,
                entity=request_token.entity,
                role=request_token.role,
                account=request_token.realm or None,
            )
            async with token_store_errors():
                if not await self.tokens.consume(request_token.token_id):
                    raise TBAError(
                        ErrorCode.TOKEN_REJECTED,
                        "request token used by a concurrent request",
                        problem="token_used",
                    )
                await self.tokens.put_access_token(access)
        return [("oauth_token", access.token_id), ("oauth_token_secret", access.token_secret)]


# --- helpers ---------------------------------------------------------------------------------


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
