"""Reading a request from an ASGI scope, as the client signed it: the one reader every way of
guarding shares (the middleware, `RequireTBA`, the flow and its consent page).

Forwarded headers are believed only from trusted proxies, as uvicorn's proxy-header middleware
decides it; the body is read capped, bounded in time and counted against the process's buffers.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Message, Receive, Scope

from ..core.errors import ErrorCode, TBAError
from ..core.request import HeaderFields, OAuthRequest, base_string_uri, check_content_type
from ..core.settings import GuardSettings
from ..guard import BUFFERS, ClientDisconnected
from . import receiving

_FORWARDED_SCHEMES = frozenset({"http", "https", "ws", "wss"})


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


class RequestReader:
    """The settings' view of a scope: which paths are exempt, which host and proxies are
    believed, the URL the client signed, and how much body may be read. Built once."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
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

    def stub_of(self, scope: Scope) -> OAuthRequest:
        """What the audit records of a request refused before it could be read."""
        read = _as_dict(scope)
        return OAuthRequest(_method(read), "", path=read["path"], client=_client_host(read))


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


def replayed(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the buffered body over once, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ReplayedBody:
    """A request's `receive`, and the body reader the guard calls: once the body is read, the
    application's `receive` hands it over again before the rest of the channel."""

    __slots__ = ("reader", "receive")

    def __init__(self, reader: RequestReader, receive: Receive) -> None:
        self.reader = reader
        self.receive = receive

    async def read(self) -> tuple[bytes, int]:
        body = await self.reader.read_body(self.receive)
        self.receive = replayed(body, self.receive)
        return body, len(body)
