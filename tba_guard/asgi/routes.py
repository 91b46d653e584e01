"""Per-route protection: the middleware's verification for one endpoint at a time.

For applications that guard only some routes. `RequireTBA` runs what `TBAGuardMiddleware` runs
(the same request construction, checks, replay store, body caps and audit) and answers a
rejection with exactly what the middleware answers, through the middleware's own methods.

- FastAPI: `identity: Identity = Depends(require_tba)`. A rejection raises `TBARejection`;
  register `tba_rejection_handler` for it so that the client gets the guard's answer.
- Starlette: `@require_tba.endpoint` on `async def endpoint(request)`; a rejection is returned
  directly, an accepted request reaches the endpoint with `scope["tba"]`, `request.user` and
  `request.auth` set as the middleware sets them.

FastAPI is not imported: a dependency is any callable taking a Starlette `Request`.
"""

# No `from __future__ import annotations`: FastAPI reads `__call__`'s annotation to inject the
# Request, and older versions cannot resolve a string annotation on a callable instance.
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from starlette.authentication import AuthCredentials
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.audit import AuditHook
from ..core.checks import Clock
from ..core.errors import TBAError
from ..core.protocols import CredentialStore, ReplayStore
from ..core.records import Identity
from ..core.request import OAuthRequest, wants_body
from ..core.settings import GuardSettings
from ..guard import Guard
from .middleware import BUFFERS, ClientDisconnected, OnError, TBAGuardMiddleware, TBAUser

Endpoint = Callable[[Request], Awaitable[Response] | Response]


class TBARejection(HTTPException):
    """A rejected request, raised by the FastAPI dependency; `response` is the guard's answer.

    An `HTTPException` so that, should `tba_rejection_handler` not be registered, the framework
    still answers with the rejection's status and challenge headers rather than a 500.
    """

    def __init__(self, response: Response) -> None:
        headers = {
            key: value
            for key, value in response.headers.items()
            if key not in ("content-length", "content-type")  # the framework renders its own
        }
        super().__init__(response.status_code, "request rejected", headers=headers)
        self.response = response


async def tba_rejection_handler(request: Request, exc: Exception) -> Response:
    """The exception handler that answers a `TBARejection` with the guard's own response:
    `app.add_exception_handler(TBARejection, tba_rejection_handler)`."""
    assert isinstance(exc, TBARejection)
    return exc.response


class RequireTBA:
    """Verifies the requests of the endpoints it is applied to, as `TBAGuardMiddleware` does.

    Takes the middleware's options: `settings` with `credentials`, `replay_store`, `clock` and
    `audit_hooks`, or a ready `guard=` (not both); and `on_error`, which renders rejections as
    it does for the middleware. `exempt_paths` do not apply: a protected endpoint is protected.

    A request that a `TBAGuardMiddleware` in front already verified (`scope["tba"]` is set) is
    not verified again, which would find its nonce used: its identity is handed over.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock | None = None,
        audit_hooks: Iterable[AuditHook] = (),
        on_error: OnError | None = None,
    ) -> None:
        # Never called as an application: it lends its request construction, body reading
        # and rendering, so that the two ways of guarding cannot drift apart.
        self.middleware = TBAGuardMiddleware(
            _no_application,
            settings,
            guard=guard,
            credentials=credentials,
            replay_store=replay_store,
            clock=clock,
            audit_hooks=audit_hooks,
            on_error=on_error,
        )
        self.guard = self.middleware.guard
        self.settings = self.middleware.settings

    async def __call__(self, request: Request) -> Identity:
        """The FastAPI dependency: the verified identity, or `TBARejection`.

        FastAPI reads a body it parses into parameters before any dependency runs: a JSON or
        raw body is cached and verified as read, but a `Form(...)` parameter leaves no bytes to
        verify (`RuntimeError`); read such a form in the endpoint with `await request.form()`.
        """
        outcome, held = await self.check(request)
        BUFFERS.give_back(held)  # FastAPI offers no plain hook for after the endpoint
        if isinstance(outcome, Response):
            raise TBARejection(outcome)
        return outcome

    def endpoint(self, func: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette decorator: `func` runs only for a verified request."""

        @functools.wraps(func)
        async def protected(request: Request) -> Response:
            outcome, held = await self.check(request)
            try:
                if isinstance(outcome, Response):
                    return outcome
                if inspect.iscoroutinefunction(func):
                    return await cast(Awaitable[Response], func(request))
                # a plain function runs in the thread pool, as Starlette runs it unprotected
                return await run_in_threadpool(cast(Callable[[Request], Response], func), request)
            finally:  # the body is the endpoint's until it answers, as with the middleware
                BUFFERS.give_back(held)

        return protected

    async def check(self, request: Request) -> tuple[Identity | Response, int]:
        """The identity, or the (audited) rejection to answer; and the body bytes held
        against the process's buffers, which the caller gives back."""
        scope = request.scope
        verified = scope.get("tba")
        if isinstance(verified, Identity):
            return verified, 0
        middleware, guard = self.middleware, self.guard
        oauth: OAuthRequest | None = None
        held = 0
        try:
            oauth = middleware.request_from_scope(scope)
            checked = await guard.check_before_body(oauth)
            if wants_body(oauth):
                oauth.body, held = await self.body(request)
            identity = await guard.check_body_and_signature(oauth, checked)
        except ClientDisconnected:
            raise ClientDisconnect from None  # what `request.body()` raises in the endpoint
        except TBAError as error:
            BUFFERS.give_back(held)
            oauth = middleware.audit_refusal(scope, error, oauth)
            return await middleware.render(request, error, oauth), 0
        guard.audit(oauth, None)
        scope["tba"] = identity
        scope["auth"] = AuthCredentials(["authenticated"])
        scope["user"] = TBAUser(identity)
        return identity, held

    async def body(self, request: Request) -> tuple[bytes, int]:
        """The body the signature covers, and how much of it this call took from the buffers.

        Read with the middleware's caps and stored where `Request.body()` caches it, so the
        endpoint's `body()` or `form()` reads the very bytes that were verified.
        """
        cached: bytes | None = getattr(request, "_body", None)
        if cached is not None:  # read before us (FastAPI reads a JSON body first): in memory
            self.middleware.check_body_size(len(cached))
            return cached, 0
        if getattr(request, "_stream_consumed", False) or request._form is not None:
            raise RuntimeError(
                "the request body was consumed before tba_guard could verify it (a FastAPI "
                "Form parameter?): read the form in the endpoint with `await request.form()`"
            )
        body = await self.middleware.read_body(request.receive)
        request._body = body
        return body, len(body)


async def _no_application(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("RequireTBA's middleware is never called as an application")
