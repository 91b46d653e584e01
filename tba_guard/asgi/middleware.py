"""`TBAGuardMiddleware`: the guard as pure ASGI, in the manner of Starlette's CORS middleware.

Stateless per request: it reads one `OAuthRequest` from the scope and hands it to
`Guard.verifying`, with a way to read the body should the signature cover it (a form, or
`oauth_body_hash`). That body is replayed to the application unchanged; any other body streams
through untouched. A rejection is answered by the one renderer (`answers.Rejections`).
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr
from starlette.authentication import AuthCredentials, BaseUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import TBAError
from ..core.records import Identity
from ..core.settings import GuardSettings
from ..guard import ClientDisconnected, Guard
from ..stores.usage import UsageCounts
from .answers import OnError, Rejections
from .governance import Governance
from .metrics import observe
from .scope import ReplayedBody, RequestReader


class TBAUser(BaseUser):
    """Starlette's `request.user` for a verified request."""

    def __init__(self, identity: Identity) -> None:
        self.tba = identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.tba.entity or self.tba.token_id

    @property
    def identity(self) -> str:
        return self.tba.token_id


class VerifiedCredentials(AuthCredentials):
    """Starlette's `request.auth` for a verified request. One object serves every request, so
    its scopes cannot be changed in place; an application that grants more sets its own."""

    def __init__(self) -> None:
        pass  # the scopes are the property's, not an attribute

    @property
    def scopes(self) -> list[str]:
        return ["authenticated"]

    @scopes.setter
    def scopes(self, value: list[str]) -> None:
        raise AttributeError("shared by every verified request: set scope['auth'] instead")


VERIFIED = VerifiedCredentials()


def guard_for(settings: GuardSettings | None, guard: Guard | None) -> Guard:
    """`guard=` or `settings=`: the stores, clock and hooks belong to the `Guard`. Both at once
    is a `TypeError` unless the settings are the guard's own."""
    if guard is None:
        return Guard(settings)
    if settings is not None and settings is not guard.settings:
        raise TypeError("guard= already carries its settings: pass settings= or guard=, not both")
    return guard


def authenticate(scope: Scope, identity: Identity) -> None:
    """What the application reads of a verified request, as Starlette's authentication sets."""
    scope["tba"] = identity
    scope["auth"] = VERIFIED
    scope["user"] = TBAUser(identity)


def usage_written_at_shutdown(receive: Receive, usage: UsageCounts) -> Receive:
    """The lifespan's `receive`, writing the usage counts when the server shuts down."""

    async def receiving() -> Message:
        message = await receive()
        if message["type"] == "lifespan.shutdown":
            await usage.drain()
        return message

    return receiving


@mypyc_attr(allow_interpreted_subclasses=True)
class TBAGuardMiddleware:
    """Verifies every HTTP request and websocket handshake before `app` sees it.

    Give `settings=` (a `Guard` is built from them) or a ready `guard=`, which carries the
    stores, clock and audit hooks. `on_error(connection, error)` renders an HTTP rejection the
    application's way (see `Rejections`); the audit event is recorded before it runs.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self.app = app
        self.guard = guard = guard_for(settings, guard)
        self.settings = guard.settings
        self.reader = RequestReader(guard.settings)
        self.rejections = Rejections(guard.settings, on_error, clock=guard.clock)
        # Concurrency governance, when a limit is set: the slots of verified HTTP requests.
        self.governance = (
            Governance(guard.settings, guard.audit, credentials=guard.credentials)
            if guard.settings.governance_enabled
            else None
        )
        # Metrics and tracing, where the settings turn them on (asgi/metrics.py).
        self.observability = observe(guard)

    def is_exempt(self, scope: Scope) -> bool:
        """Whether the request passes unguarded (`exempt_paths`): a hook for subclasses."""
        return self.reader.is_exempt(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observability = self.observability
        if (
            observability is not None
            and scope["type"] == "http"
            and scope["path"] == observability.path
        ):
            await observability.serve(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket") or self.is_exempt(scope):
            if scope["type"] == "lifespan" and self.guard.usage is not None:
                receive = usage_written_at_shutdown(receive, self.guard.usage)
            await self.app(scope, receive, send)
            return
        try:
            request = self.reader.request_from_scope(scope)
        except TBAError as error:
            stub = self.reader.stub_of(scope)
            self.guard.audit(stub, error)
            await self.rejections.answer(scope, receive, send, error, stub)
            return
        body = ReplayedBody(self.reader, receive) if scope["type"] == "http" else None
        try:
            read_body = body.read if body is not None else None
            async with self.guard.verifying(request, read_body) as verified:
                if verified.error is not None:
                    await self.rejections.answer(scope, receive, send, verified.error, request)
                    return
                identity = verified.identity
                authenticate(scope, identity)
                # The body, if read, is the application's until it answers.
                app_receive = body.receive if body else receive
                if self.governance is None or body is None:
                    await self.app(scope, app_receive, send)
                else:
                    governance = self.governance
                    await governance.serve(scope, app_receive, send, self.app, verified, identity)
        except ClientDisconnected:
            return
