"""Per-route protection: the middleware's verification for one endpoint at a time.

For applications that guard only some routes. `RequireTBA` runs what `TBAGuardMiddleware` runs
(the same request reader, `Guard.verifying`, body caps and audit) and answers a rejection with
exactly what the middleware answers, through the same renderer.

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
from collections.abc import Awaitable, Callable
from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..core.errors import TBAError
from ..core.records import Identity
from ..core.settings import GuardSettings
from ..guard import ClientDisconnected, Guard
from .answers import OnError, Rejections
from .middleware import authenticate, guard_for
from .scope import RequestReader

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

    Takes the middleware's options: `settings=` or a ready `guard=` (which carries the stores,
    clock and audit hooks), and `on_error`, which renders rejections as it does for the
    middleware. `exempt_paths` do not apply: a protected endpoint is protected.

    A request that a `TBAGuardMiddleware` in front already verified (`scope["tba"]` is set) is
    not verified again, which would find its nonce used: its identity is handed over.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self.guard = guard = guard_for(settings, guard)
        self.settings = guard.settings
        self.reader = RequestReader(guard.settings)
        self.rejections = Rejections(guard.settings, on_error, clock=guard.clock)

    async def __call__(self, request: Request) -> Identity:
        """The FastAPI dependency: the verified identity, or `TBARejection`.

        FastAPI reads a body it parses into parameters before any dependency runs: a JSON or
        raw body is cached and verified as read, but a `Form(...)` parameter leaves no bytes to
        verify (`RuntimeError`); read such a form in the endpoint with `await request.form()`.
        FastAPI offers no plain hook for after the endpoint: the body's buffer is given back
        before it runs.
        """
        verified = request.scope.get("tba")
        if isinstance(verified, Identity):
            return verified
        outcome: Identity | Response = await self.check(request, None)
        if isinstance(outcome, Response):
            raise TBARejection(outcome)
        return outcome

    def endpoint(self, func: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette decorator: `func` runs only for a verified request."""

        @functools.wraps(func)
        async def protected(request: Request) -> Response:
            if isinstance(request.scope.get("tba"), Identity):
                return await _call(func, request)
            outcome = await self.check(request, func)
            assert isinstance(outcome, Response)
            return outcome

        return protected

    async def check(self, request: Request, func: Endpoint | None) -> Identity | Response:
        """Verify the request; then run `func` (the body still held, as with the middleware)
        and return its response, or without `func` return the identity. A rejection is the
        (audited) response to answer."""
        scope = request.scope
        try:
            oauth = self.reader.request_from_scope(scope)
        except TBAError as error:
            stub = self.reader.stub_of(scope)
            self.guard.audit(stub, error)
            return await self.rejections.response(request, error, stub)

        async def read_body() -> tuple[bytes, int]:
            return await self.body(request)

        try:
            async with self.guard.verifying(oauth, read_body) as verified:
                if verified.error is not None:
                    return await self.rejections.response(request, verified.error, oauth)
                identity = verified.identity
                authenticate(scope, identity)
                return identity if func is None else await _call(func, request)
        except ClientDisconnected:
            raise ClientDisconnect from None  # what `request.body()` raises in the endpoint

    async def body(self, request: Request) -> tuple[bytes, int]:
        """The body the signature covers, and how much of it this call took from the buffers.

        Read with the middleware's caps and stored where `Request.body()` caches it, so the
        endpoint's `body()` or `form()` reads the very bytes that were verified.
        """
        cached: bytes | None = getattr(request, "_body", None)
        if cached is not None:  # read before us (FastAPI reads a JSON body first): in memory
            self.reader.check_body_size(len(cached))
            return cached, 0
        if getattr(request, "_stream_consumed", False) or request._form is not None:
            raise RuntimeError(
                "the request body was consumed before tba_guard could verify it (a FastAPI "
                "Form parameter?): read the form in the endpoint with `await request.form()`"
            )
        body = await self.reader.read_body(request.receive)
        request._body = body
        return body, len(body)


async def _call(func: Endpoint, request: Request) -> Response:
    if inspect.iscoroutinefunction(func):
        return await cast(Awaitable[Response], func(request))
    # a plain function runs in the thread pool, as Starlette runs it unprotected
    return await run_in_threadpool(cast(Callable[[Request], Response], func), request)
