"""`TBAGuardMiddleware`: the guard as pure ASGI, in the manner of Starlette's CORS middleware.

Stateless per request: it builds an `OAuthRequest` from the scope, reads the body only when
the signature covers it (a form body) or the client sent `oauth_body_hash`, and replays that
body to the application unchanged. Any other body streams through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.authentication import AuthCredentials, BaseUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import AuditHook
from .checks import Clock, Guard, Identity
from .credentials import CredentialStore
from .errors import ErrorCode, TBAError, error_response
from .explain import development_hint
from .replay import ReplayStore
from .request import OAuthRequest, base_string_uri, is_form_content_type, read_parameters
from .settings import GuardSettings


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


class TBAGuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock = time.time,
        audit_hooks: Iterable[AuditHook] = (),
    ) -> None:
        self.app = app
        self.guard = guard or Guard(
            settings,
            credentials=credentials,
            replay_store=replay_store,
            clock=clock,
            audit_hooks=audit_hooks,
        )
        self.settings = settings = self.guard.settings
        self.exempt_exact = frozenset(p for p in settings.exempt_paths if not p.endswith("/"))
        self.exempt_prefixes = tuple(p for p in settings.exempt_paths if p.endswith("/"))
        self.public: tuple[str, str, str] | None = None
        if settings.public_url:
            public = urlsplit(settings.public_url)
            self.public = (public.scheme, public.netloc, public.path.rstrip("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = self.request_from_scope(scope)
        body_wanted = request.authorization is not None and (
            request.is_form or "oauth_body_hash" in request.authorization
        )
        try:
            if body_wanted and scope["type"] == "http" and self.settings.feature_enabled:
                body = await self.read_body(receive)
                if body is None:
                    return  # the client went away before sending its body
                request.body = body
                receive = _replay(body, receive)
            identity = await self.guard.verify(request)
        except TBAError as error:
            if error.code in (ErrorCode.REQUEST_BODY_TOO_LARGE, ErrorCode.REQUEST_BODY_TIMEOUT):
                self.audit_before_verification(request, error)
            hint = development_hint(error, request) if self.settings.development_hints else None
            await self.reject(scope, receive, send, error, hint=hint)
            return
        scope["tba"] = identity
        scope["auth"] = AuthCredentials(["authenticated"])
        scope["user"] = TBAUser(identity)
        await self.app(scope, receive, send)

    def audit_before_verification(self, request: OAuthRequest, error: TBAError) -> None:
        """Audit a body that failed before the checks ran, naming (unverified, as in every
        rejection) the consumer key and token the header claims, if the header parses."""
        with contextlib.suppress(TBAError):
            read_parameters(
                request,
                max_header_length=self.settings.max_header_length,
                max_header_parameters=self.settings.max_header_parameters,
            )
        self.guard.audit(request, error)

    def is_exempt(self, path: str) -> bool:
        return path in self.exempt_exact or (
            bool(self.exempt_prefixes) and path.startswith(self.exempt_prefixes)
        )

    def request_from_scope(self, scope: Scope) -> OAuthRequest:
        authorizations: list[str] = []
        host = content_type = forwarded_proto = forwarded_host = None
        for raw_name, raw_value in scope["headers"]:
            if raw_name == b"authorization":
                authorizations.append(raw_value.decode("latin-1"))
            elif raw_name == b"host":
                host = raw_value.decode("latin-1")
            elif raw_name == b"content-type":
                content_type = raw_value.decode("latin-1")
            elif raw_name == b"x-forwarded-proto":
                forwarded_proto = raw_value.decode("latin-1").split(",")[0].strip()
            elif raw_name == b"x-forwarded-host":
                forwarded_host = raw_value.decode("latin-1").split(",")[0].strip()
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
        if self.public is not None:
            scheme, host, prefix = self.public
            path = prefix + path
        else:
            if self.settings.trust_forwarded_headers:
                scheme = forwarded_proto or scheme
                host = forwarded_host or host
            if host is None:
                server = scope.get("server") or ("localhost", None)
                host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
        client = scope.get("client")
        return OAuthRequest(
            method="GET" if scope["type"] == "websocket" else scope["method"],
            uri=base_string_uri(scheme, host, path),
            query=scope.get("query_string", b"").decode("latin-1"),
            authorization=authorizations[0] if authorizations else None,
            authorization_count=len(authorizations),
            is_form=is_form_content_type(content_type),
            secure=scheme in ("https", "wss"),
            path=scope["path"],
            client=client[0] if client else "",
        )

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, capped and bounded in time; None if the client disconnected."""
        cap = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        raise TBAError(
                            ErrorCode.REQUEST_BODY_TOO_LARGE, f"body larger than {cap} bytes"
                        )
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise TBAError(
                ErrorCode.REQUEST_BODY_TIMEOUT, "the body did not arrive in time"
            ) from None

    async def reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: TBAError,
        *,
        hint: str | None = None,
    ) -> None:
        response = error_response(
            error, realm=self.settings.realm or "", detail=self.settings.error_detail, hint=hint
        )
        if scope["type"] == "websocket":
            # Refuse the handshake before accepting it: with the denial-response extension the
            # client gets our status and JSON body, otherwise the server answers 403.
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": response.status,
                        "headers": response.headers,
                    }
                )
                await send({"type": "websocket.http.response.body", "body": response.body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        await send({"type": "http.response.body", "body": response.body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the buffered body over once, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
