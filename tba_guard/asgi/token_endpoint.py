"""OAuth 2.0's token endpoint, as NetSuite serves machine-to-machine clients:
`POST /services/rest/auth/oauth2/v1/token` with `grant_type=client_credentials` and a JWT client
assertion signed by a mapping's certificate key (RFC 7523). The answer is an access token the
guard signed, which its Bearer scheme accepts on every guarded route.

The assertion goes through `Guard.verifying` with the declared `CLIENT_CREDENTIALS` order, so
that it is audited, replay-protected and explained as TBA's requests are; a refusal is RFC
6749's JSON (`{"error": …, "error_description": …}`), 400, or the operational status it has.
"""

from __future__ import annotations

import json

from mypy_extensions import mypyc_attr
from starlette.types import Receive, Scope, Send

from ..core.checks import Step
from ..core.errors import GRANT_CODES, RETRY_AFTER_SECONDS, TBAError, grant_error_body
from ..core.oauth2 import AccessTokens
from ..core.oauth2_sequence import CLIENT_CREDENTIALS
from ..core.request import OAuthRequest
from ..guard import ClientDisconnected, Guard
from .scope import RequestReader

_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


@mypyc_attr(allow_interpreted_subclasses=True)
class OAuth2TokenEndpoint:
    """The token endpoint as an ASGI app, over `guard`'s settings, stores and keys. `TBAFlow`
    serves it at `oauth2_token_path` when OAuth 2.0 is on; mount it yourself beside a plain
    `TBAGuardMiddleware`."""

    def __init__(self, guard: Guard, reader: RequestReader | None = None) -> None:
        if not guard.settings.oauth2_enabled:
            raise ValueError("the token endpoint needs oauth2_signing_keys (docs/oauth2.md)")
        self.guard = guard
        self.reader = reader or RequestReader(guard.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _send(
                send,
                405,
                {"error": "invalid_request", "error_description": "use POST"},
                [(b"allow", b"POST")],
            )
            return
        reader, guard = self.reader, self.guard
        try:
            request = reader.request_from_scope(scope)
        except TBAError as error:
            stub = reader.stub_of(scope)
            stub.principal = ("oauth2", "", "")
            guard.audit(stub, error)
            await self.refuse(send, error, stub)
            return

        async def read_body() -> tuple[bytes, int]:
            body = await reader.read_body(receive)
            return body, len(body)

        try:
            verifying = guard.verifying(
                request, read_body, step=Step.ACCESS_TOKEN, scheme=CLIENT_CREDENTIALS
            )
            async with verifying as verified:
                if verified.error is not None:
                    await self.refuse(send, verified.error, request)
                    return
                verification = verified.verification
                assert verification is not None
                assert verification.certificate is not None
                tokens: AccessTokens = guard.limits.oauth2
                access_token = tokens.issue(
                    verification.certificate, verification.scopes, verification.now
                )
        except ClientDisconnected:
            return
        answer = {
            "access_token": access_token,
            "expires_in": str(tokens.ttl),  # a string, as NetSuite sends it
            "token_type": "bearer",
        }
        await _send(send, 200, answer, _NO_STORE)

    async def refuse(self, send: Send, error: TBAError, request: OAuthRequest) -> None:
        """RFC 6749's answer for the grant's codes; an operational one keeps its status."""
        settings = self.guard.settings
        detail = settings.error_detail
        if error.code in GRANT_CODES:
            hint = None
            if settings.development_hints and detail == "code":
                from ..diagnosis.hints import development_hint  # loaded only in development

                hint = development_hint(error, request, settings=settings, now=self.guard.clock())
            body = grant_error_body(error, detail=detail, hint=hint)
            await _send_bytes(send, 400, body, _NO_STORE)
            return
        kind = "temporarily_unavailable" if error.status >= 500 else "invalid_request"
        headers = list(_NO_STORE)
        if error.status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
        payload = {"error": kind, "error_description": f"{error.code.value}: {error.message}"}
        await _send(send, error.status, payload, headers)


async def _send(
    send: Send, status: int, payload: dict[str, str], headers: list[tuple[bytes, bytes]]
) -> None:
    await _send_bytes(send, status, json.dumps(payload, ensure_ascii=True).encode(), headers)


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
