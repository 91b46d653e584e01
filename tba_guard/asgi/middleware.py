"""`TBAGuardMiddleware`: the guard as pure ASGI, in the manner of Starlette's CORS middleware.

Stateless per request. It builds one `OAuthRequest` from the scope, runs every check that needs
no body, and only then reads the body, when the parsed parameters say the signature covers it
(a form, or `oauth_body_hash`). That body is handed to the application unchanged; any other
body streams through untouched.

A rejection is answered with the documented JSON body and `WWW-Authenticate` challenge, or by
the application's own `on_error` hook, as Starlette's `AuthenticationMiddleware` allows.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from mypy_extensions import mypyc_attr
from starlette.authentication import AuthCredentials, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.audit import AuditHook
from ..core.checks import Clock
from ..core.errors import ErrorCode, ErrorResponse, TBAError, error_response
from ..core.protocols import CredentialStore, ReplayStore
from ..core.records import Identity
from ..core.request import (
    HeaderFields,
    OAuthRequest,
    base_string_uri,
    check_content_type,
    wants_body,
)
from ..core.settings import GuardSettings
from ..guard import Guard
from . import receiving

_FORWARDED_SCHEMES = frozenset({"http", "https", "ws", "wss"})

logger = logging.getLogger("tba_guard")

#: Renders a rejection the application's way: the connection and the real error (never the
#: opaque one) in, a Starlette `Response` out, returned or awaited.
OnError = Callable[[HTTPConnection, TBAError], Response | Awaitable[Response]]


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


#: One per process: the limit is on the process's memory, whatever the number of middlewares.
BUFFERS = BodyBuffers()


class TrustedProxies:
    """The peers whose forwarded headers are believed, as uvicorn's proxy-header middleware
    decides it: explicit addresses and networks, parsed once; `*` trusts every peer."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = tuple(entries)
        self.everyone = "*" in entries
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != "*")

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_from(self, forwarded_for: str) -> str | None:
        """The nearest address in X-Forwarded-For that is not itself a trusted proxy."""
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if hop and not self.trusts(hop):
                return hop
        return hops[0] or None


@mypyc_attr(allow_interpreted_subclasses=True)
class TBAGuardMiddleware:
    """Verifies every HTTP request and websocket handshake before `app` sees it.

    Give either the options a `Guard` is built from (`settings`, `credentials`, `replay_store`,
    `clock`, `audit_hooks`) or a ready `guard=`; both at once is a `TypeError` naming the
    options the guard already carries.

    `on_error(connection, error)` renders an HTTP rejection the application's way (sync or
    async, returning a Starlette `Response`). It sees the real `TBAError`, in opaque mode too:
    it runs on the server, and what it reveals is the application's choice. The audit event is
    recorded before it runs, and an operational 503 keeps its `Retry-After` if the response sets
    none. If the hook raises or returns no `Response`, the exception is logged (logger
    `tba_guard`) and the documented default answers. Websocket rejections ignore the hook.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: GuardSettings | None = None,
        *,
        guard: Guard | None = None,
        credentials: CredentialStore | None = None,
        replay_store: ReplayStore | None = None,
        clock: Clock | None = None,
        audit_hooks: Iterable[AuditHook] = (),
        on_error: OnError | None = None,
    ) -> None:
        self.app = app
        hooks = tuple(audit_hooks)
        if guard is None:
            guard = Guard(
                settings,
                credentials=credentials,
                replay_store=replay_store,
                clock=clock,
                audit_hooks=hooks,
            )
        else:
            _refuse_overridden(
                guard,
                settings=settings,
                credentials=credentials,
                replay_store=replay_store,
                clock=clock,
                audit_hooks=hooks,
            )
        self.guard = guard
        self.on_error = on_error
        self.settings = settings = self.guard.settings
        self.exempt_exact = frozenset(p for p in settings.exempt_paths if not p.endswith("/"))
        self.exempt_prefixes = tuple(p for p in settings.exempt_paths if p.endswith("/"))
        self.public: tuple[str, str, str] | None = None
        if settings.public_url:
            public = urlsplit(settings.public_url)
            self.public = (public.scheme, public.netloc, public.path.rstrip("/"))
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.any_host = not settings.allowed_hosts or "*" in settings.allowed_hosts
        self.hosts = frozenset(h for h in settings.allowed_hosts if not h.startswith("*."))
        self.host_suffixes = tuple(h[1:] for h in settings.allowed_hosts if h.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.is_exempt(scope):
            await self.app(scope, receive, send)
            return
        request: OAuthRequest | None = None
        held = 0
        guard = self.guard
        try:
            request = self.request_from_scope(scope)
            # Guard.check_before_body and check_body_and_signature, one coroutine each less.
            checked = guard.start(request)
            await guard.run(checked, body=False)
            if scope["type"] == "http" and wants_body(request):
                body = await self.read_body(receive)
                held = len(body)
                request.body = body
                receive = _replay(body, receive)
            await guard.run(checked, body=True)
            identity = guard.identity(checked)
        except ClientDisconnected:
            return
        except TBAError as error:
            BUFFERS.give_back(held)
            await self.refuse(scope, receive, send, error, request)
            return
        guard.audit(request, None)
        scope["tba"] = identity
        scope["auth"] = AuthCredentials(["authenticated"])
        scope["user"] = TBAUser(identity)
        if not held:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:  # the body is the application's until it answers
            BUFFERS.give_back(held)

    async def refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: TBAError,
        request: OAuthRequest | None,
    ) -> None:
        request = self.audit_refusal(scope, error, request)
        if self.on_error is not None and scope["type"] == "http":
            response = await self.render(HTTPConnection(scope), error, request)
            await response(scope, receive, send)
            return
        await self.reject(scope, receive, send, error, hint=self.hint_for(error, request))

    def audit_refusal(
        self, scope: Scope, error: TBAError, request: OAuthRequest | None
    ) -> OAuthRequest:
        """Record the rejection; return the request it was recorded for."""
        if request is None:  # refused before it could be built: audit what the scope says
            read = _as_dict(scope)
            request = OAuthRequest(_method(read), "", path=read["path"], client=_client_host(read))
        self.guard.audit(request, error)
        return request

    def hint_for(self, error: TBAError, request: OAuthRequest) -> str | None:
        if not self.settings.development_hints:
            return None
        from ..core.hints import development_hint  # loaded only in development

        return development_hint(error, request, settings=self.settings)

    def default_answer(self, error: TBAError, request: OAuthRequest) -> ErrorResponse:
        """The documented answer: status, JSON body and challenge, opaque where configured."""
        settings = self.settings
        return error_response(
            error,
            realm=settings.realm or "",
            detail=settings.error_detail,
            hint=self.hint_for(error, request),
        )

    async def render(
        self, connection: HTTPConnection, error: TBAError, request: OAuthRequest
    ) -> Response:
        """The answer to an HTTP rejection (already audited) as a Starlette `Response`:
        `on_error`'s, or the documented default when there is no hook or it fails."""
        default = self.default_answer(error, request)
        if self.on_error is not None:
            try:
                result = self.on_error(connection, error)
                response = await result if inspect.isawaitable(result) else result
                if not isinstance(response, Response):
                    raise TypeError(f"on_error returned {type(response).__name__}, not a Response")
            except Exception:
                # A broken hook must not turn a rejection into a 500 that, in opaque mode,
                # would tell the client which check its request tripped.
                logger.exception("on_error failed on %s; answering the default", error.code)
            else:
                retry_after = dict(default.headers).get(b"retry-after")
                if retry_after is not None and "retry-after" not in response.headers:
                    response.headers["retry-after"] = retry_after.decode("latin-1")
                return response
        return as_response(default)

    def is_exempt(self, scope: Scope) -> bool:
        """Exempt paths match the path the router will see; a path that a router or proxy could
        normalise into another one (dot segments, encoded slashes) is never exempt."""
        path: str = scope["path"]
        if not (
            (bool(self.exempt_exact) and path in self.exempt_exact)
            or (bool(self.exempt_prefixes) and path.startswith(self.exempt_prefixes))
        ):
            return False
        return not _could_normalise(path, scope.get("raw_path"))

    def request_from_scope(self, scope: Scope) -> OAuthRequest:
        """The request as the client signed it. Raises `TBAError` for ambiguous headers and
        for a host outside `allowed_hosts`. Forwarded values are believed only from a trusted
        proxy, and then handed to the application too (scheme and client), as uvicorn does."""
        read = _as_dict(scope)
        fields = HeaderFields(read["headers"])
        is_form = check_content_type(fields.content_type)
        scheme = read.get("scheme") or ("ws" if read["type"] == "websocket" else "http")
        host = fields.host
        client = _client_host(read)
        if self.proxies and self.proxies.trusts(client):
            if fields.forwarded_proto is not None:
                proto = fields.forwarded_proto.split(",")[0].strip().lower()
                if proto in _FORWARDED_SCHEMES:
                    scheme = scope["scheme"] = _scheme_for(scope, proto)
            if fields.forwarded_host is not None:
                host = fields.forwarded_host.split(",")[0].strip() or host
            if fields.forwarded_for is not None:
                forwarded = self.proxies.client_from(fields.forwarded_for)
                if forwarded is not None:
                    port = read["client"][1] if read.get("client") else 0
                    scope["client"] = (forwarded, port)
                    client = forwarded
        if not self.any_host:
            self.check_host(host)
        raw_path: bytes | None = read.get("raw_path")  # typed: a native latin-1 decode
        path = raw_path.decode("latin-1") if raw_path else read["path"]
        if self.public is not None:
            scheme, host, prefix = self.public
            path = prefix + path
        elif host is None:
            server = read.get("server") or ("localhost", None)
            host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
        authorizations = fields.authorizations
        query: bytes = read.get("query_string", b"")
        return OAuthRequest(
            method=_method(read),
            uri=base_string_uri(scheme, host, path),
            query=query.decode("latin-1"),
            authorization=authorizations[0] if authorizations else None,
            authorization_count=len(authorizations),
            is_form=is_form,
            secure=scheme in ("https", "wss"),
            path=read["path"],
            client=client,
        )

    def check_host(self, host: str | None) -> None:
        """Starlette's `TrustedHostMiddleware` rule: the host without its port, any case."""
        name = (host or "").rpartition(":")[0] if (host or "").count(":") == 1 else host or ""
        name = name.lower()
        if name in self.hosts or (bool(self.host_suffixes) and name.endswith(self.host_suffixes)):
            return
        raise TBAError(ErrorCode.HOST_NOT_ALLOWED, f"host {name[:64]!r} is not allowed")

    async def read_body(self, receive: Receive) -> bytes:
        """The whole body, capped, bounded in time and counted against the process's buffers.

        Raises `ClientDisconnected` if the client went away first.
        """
        settings = self.settings
        limit = settings.body_buffer_max_bytes
        chunks: list[bytes] = []
        size = 0
        deadline: float | None = None
        try:
            while True:
                message, rest = receiving.start(receive)
                if message is None:  # it has to wait: now the deadline matters
                    if deadline is None:
                        deadline = asyncio.get_running_loop().time() + settings.body_timeout
                    assert rest is not None
                    message = await receiving.finish(rest, deadline)
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                self.check_body_size(size + len(chunk))
                BUFFERS.take(len(chunk), limit)
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            BUFFERS.give_back(size)
            raise TBAError(
                ErrorCode.REQUEST_BODY_TIMEOUT, "the body did not arrive in time"
            ) from None
        except BaseException:
            BUFFERS.give_back(size)
            raise

    def check_body_size(self, size: int) -> None:
        cap = self.settings.body_max_bytes
        if size > cap:
            raise TBAError(ErrorCode.REQUEST_BODY_TOO_LARGE, f"body larger than {cap} bytes")

    async def reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: TBAError,
        *,
        hint: str | None = None,
    ) -> None:
        settings = self.settings
        response = error_response(
            error, realm=settings.realm or "", detail=settings.error_detail, hint=hint
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


def as_response(answer: ErrorResponse) -> Response:
    """The documented answer as a Starlette `Response`, byte for byte what `reject` sends."""
    response = Response(answer.body, status_code=answer.status)
    response.raw_headers = list(answer.headers)
    return response


def _refuse_overridden(
    guard: Guard,
    *,
    settings: GuardSettings | None,
    credentials: CredentialStore | None,
    replay_store: ReplayStore | None,
    clock: Clock | None,
    audit_hooks: tuple[AuditHook, ...],
) -> None:
    """`guard=` carries its own settings, stores, clock and hooks: options given beside it
    would be ignored, so name them instead. The guard's own settings object is no conflict."""
    given = [
        name
        for name, is_given in (
            ("settings", settings is not None and settings is not guard.settings),
            ("credentials", credentials is not None),
            ("replay_store", replay_store is not None),
            ("clock", clock is not None),
            ("audit_hooks", bool(audit_hooks)),
        )
        if is_given
    ]
    if given:
        raise TypeError(f"guard= already carries: {', '.join(given)}; pass them to Guard instead")


def _as_dict(scope: Scope) -> dict[str, Any]:
    """The scope to read from: servers hand a plain dict, which compiled code reads natively."""
    return scope if isinstance(scope, dict) else dict(scope)


def _method(scope: dict[str, Any]) -> str:
    return "GET" if scope["type"] == "websocket" else str(scope["method"])


def _client_host(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _scheme_for(scope: Scope, proto: str) -> str:
    """A forwarded scheme, kept to the scope's kind: a websocket stays ws/wss."""
    secure = proto in ("https", "wss")
    if scope["type"] == "websocket":
        return "wss" if secure else "ws"
    return "https" if secure else "http"


def _could_normalise(path: str, raw_path: bytes | None) -> bool:
    """Dot segments, empty segments, backslashes, or an encoded slash, backslash or dot."""
    if "//" in path or "\\" in path or any(s in (".", "..") for s in path.split("/")):
        return True
    if raw_path:
        lowered = raw_path.lower()
        return b"%2f" in lowered or b"%5c" in lowered or b"%2e" in lowered
    return False


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
