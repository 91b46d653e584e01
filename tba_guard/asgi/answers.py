"""The one renderer of rejections, for every way of guarding: the documented answer (JSON body,
`WWW-Authenticate` challenge, opaque where configured, a development hint where asked), or the
application's own `on_error`; a websocket handshake refused before it is accepted. Every one
carries a `Date` from the guard's clock, so that a client told its timestamp is off can compare.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import ErrorResponse, TBAError, error_response
from ..core.request import OAuthRequest
from ..core.settings import GuardSettings

logger = logging.getLogger("tba_guard")

#: Renders a rejection the application's way: the connection and the real error (never the
#: opaque one) in, a Starlette `Response` out, returned or awaited.
OnError = Callable[[HTTPConnection, TBAError], Response | Awaitable[Response]]


class Rejections:
    """Answers rejections, already audited, as the settings and `on_error` say.

    `on_error` sees the real `TBAError`, in opaque mode too: it runs on the server, and what it
    reveals is the application's choice. An operational 503 keeps its `Retry-After` if the hook
    sets none. If the hook raises or returns no `Response`, the exception is logged (logger
    `tba_guard`) and the documented default answers. Websocket rejections ignore the hook.
    """

    def __init__(
        self,
        settings: GuardSettings,
        on_error: OnError | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.on_error = on_error
        self.clock = time.time if clock is None else clock  # the guard's, where it is given
        # Building a guarded app gives its guard's audit records their diagnosis (the detail):
        # loaded here, once, never while a request is verified.
        from ..diagnosis.operator import install

        install()

    def date(self) -> bytes:
        """The `Date` of a rejection, an RFC 9110 IMF-fixdate from the clock."""
        return formatdate(self.clock(), usegmt=True).encode("ascii")

    def hint_for(self, error: TBAError, request: OAuthRequest) -> str | None:
        if not self.settings.development_hints:
            return None
        from ..diagnosis.hints import development_hint  # loaded only in development

        return development_hint(error, request, settings=self.settings, now=self.clock())

    def default(self, error: TBAError, request: OAuthRequest) -> ErrorResponse:
        """The documented answer: status, JSON body and challenge, opaque where configured."""
        settings = self.settings
        answer = error_response(
            error,
            realm=settings.realm or "",
            detail=settings.error_detail,
            hint=self.hint_for(error, request),
        )
        answer.headers.append((b"date", self.date()))
        return answer

    async def response(
        self, connection: HTTPConnection, error: TBAError, request: OAuthRequest
    ) -> Response:
        """The answer to an HTTP rejection as a Starlette `Response`: `on_error`'s, or the
        documented default when there is no hook or it fails."""
        default = self.default(error, request)
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
                if "date" not in response.headers:
                    response.headers["date"] = self.date().decode("ascii")
                return response
        return as_response(default)

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, error: TBAError, request: OAuthRequest
    ) -> None:
        """Send the answer to a rejection over ASGI, HTTP or websocket."""
        if scope["type"] == "websocket":
            await _refuse_handshake(receive, send, scope, self.default(error, request))
        elif self.on_error is not None:
            response = await self.response(HTTPConnection(scope), error, request)
            await response(scope, receive, send)
        else:
            answer = self.default(error, request)
            await send(
                {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
            )
            await send({"type": "http.response.body", "body": answer.body})


def as_response(answer: ErrorResponse) -> Response:
    """The documented answer as a Starlette `Response`, byte for byte what `answer` sends."""
    response = Response(answer.body, status_code=answer.status)
    response.raw_headers = list(answer.headers)
    return response


async def _refuse_handshake(
    receive: Receive, send: Send, scope: Scope, answer: ErrorResponse
) -> None:
    """Refuse the handshake before accepting it: with the denial-response extension the client
    gets our status and JSON body, otherwise the server answers 403."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": answer.status,
                "headers": answer.headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": 1008})
